/*
 * Sequence numbers that never repeat: the counter hands out only numbers from ranges its source
 * reserved durably first (packages/core/src/sequence-counter.ts). A run's first range is 4096
 * numbers and each further range twice the last, at most 65536 (docs/envelope.md, "Overhead").
 * On a device there is no background task: the next range is reserved when the current one is
 * used up, inside smqtt_seq_next.
 */
#include <string.h>

#include "internal.h"

#define FIRST_RANGE 4096u
#define MAX_RANGE 65536u

smqtt_err smqtt_seq_init(smqtt_seq_counter *c, const smqtt_seq_source *source) {
    if (c == NULL || source == NULL || source->reserve == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->source = *source;
    c->run_step = FIRST_RANGE;
    return SMQTT_OK;
}

smqtt_err smqtt_seq_next(smqtt_seq_counter *c, uint64_t *seq) {
    if (c == NULL || seq == NULL || c->source.reserve == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    if (c->next >= c->end) {
        if (c->end > SMQTT_MAX_SEQ) return SMQTT_ERR_SEQUENCE_EXHAUSTED;
        uint64_t start = 0, end = 0;
        if (c->source.reserve(c->source.ctx, c->run_step, &start, &end) != 0) return SMQTT_ERR_SEQUENCE_UNAVAILABLE;
        /* A later range must start above the earlier ones, so numbers rise. */
        if (end <= start || start < c->end) return SMQTT_ERR_SEQUENCE_UNAVAILABLE;
        if (start > SMQTT_MAX_SEQ) return SMQTT_ERR_SEQUENCE_EXHAUSTED;
        if (end > SMQTT_MAX_SEQ + 1) end = SMQTT_MAX_SEQ + 1;
        c->next = start;
        c->end = end;
        if (c->run_step < MAX_RANGE) c->run_step *= 2;
    }
    *seq = c->next++;
    return SMQTT_OK;
}

/* Reserves [high water, high water + wanted) by storing the new high-water mark first. */
static int flash_reserve(void *ctx, uint64_t wanted, uint64_t *start, uint64_t *end) {
    smqtt_seq_flash *flash = (smqtt_seq_flash *)ctx;
    uint64_t high_water = 0;
    if (flash->load(flash->ctx, &high_water) != 0) return -1;
    if (high_water > SMQTT_MAX_SEQ) {
        *start = high_water; /* the counter reports exhaustion */
        *end = high_water + 1;
        return 0;
    }
    uint64_t new_end = high_water + wanted;
    if (new_end > SMQTT_MAX_SEQ + 1) new_end = SMQTT_MAX_SEQ + 1;
    if (flash->store(flash->ctx, new_end) != 0) return -1; /* nothing handed out unless durable */
    *start = high_water;
    *end = new_end;
    return 0;
}

void smqtt_seq_source_flash(smqtt_seq_source *source, smqtt_seq_flash *flash) {
    if (source == NULL) return;
    source->reserve = flash_reserve;
    source->ctx = flash;
}
