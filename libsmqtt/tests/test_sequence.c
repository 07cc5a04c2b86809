/*
 * The sequence counter persisted ahead: numbers only from ranges stored first, rising across
 * restarts, nothing handed out when storing fails, exhaustion at 2^53 - 1.
 */
#include <string.h>

#include "testutil.h"

typedef struct fake_flash {
    uint64_t stored;
    int has_value;
    int fail_store;
    int fail_load;
    int stores;
} fake_flash;

static int load(void *ctx, uint64_t *high_water) {
    fake_flash *f = ctx;
    if (f->fail_load) return -1;
    *high_water = f->has_value ? f->stored : 0;
    return 0;
}
static int store(void *ctx, uint64_t high_water) {
    fake_flash *f = ctx;
    if (f->fail_store) return -1;
    f->stored = high_water;
    f->has_value = 1;
    f->stores++;
    return 0;
}

int main(void) {
    fake_flash flash_state = {0, 0, 0, 0, 0};
    smqtt_seq_flash flash = {load, store, &flash_state};
    smqtt_seq_source source;
    smqtt_seq_source_flash(&source, &flash);
    smqtt_seq_counter c;
    uint64_t seq = 0, last = 0;
    CHECK_ERR(smqtt_seq_init(&c, &source), SMQTT_OK, "init");
    CHECK(flash_state.stores == 0, "nothing reserved before the first number");
    CHECK_ERR(smqtt_seq_next(&c, &seq), SMQTT_OK, "first");
    CHECK(seq == 0 && flash_state.stored == 4096, "first range stored before use: %llu", (unsigned long long)flash_state.stored);
    int rising = 1;
    for (int i = 1; i < 4096 + 8192 + 5; i++) {
        last = seq;
        if (smqtt_seq_next(&c, &seq) != SMQTT_OK || seq != last + 1) rising = 0;
        if (seq >= flash_state.stored) rising = 0; /* handed out only below what is durable */
    }
    CHECK(rising, "numbers rise by one and stay below the stored mark");
    CHECK(flash_state.stored == 4096 + 8192 + 16384, "ranges double: %llu", (unsigned long long)flash_state.stored);
    /* restart: a new counter starts above everything reserved before, even unused numbers */
    uint64_t before_restart = seq;
    CHECK_ERR(smqtt_seq_init(&c, &source), SMQTT_OK, "restart");
    CHECK_ERR(smqtt_seq_next(&c, &seq), SMQTT_OK, "after restart");
    CHECK(seq == 4096 + 8192 + 16384 && seq > before_restart, "after restart %llu", (unsigned long long)seq);
    /* storage failure: nothing handed out, later it resumes */
    CHECK_ERR(smqtt_seq_init(&c, &source), SMQTT_OK, "restart 2");
    flash_state.fail_store = 1;
    CHECK_ERR(smqtt_seq_next(&c, &seq), SMQTT_ERR_SEQUENCE_UNAVAILABLE, "store fails");
    flash_state.fail_store = 0;
    flash_state.fail_load = 1;
    CHECK_ERR(smqtt_seq_next(&c, &seq), SMQTT_ERR_SEQUENCE_UNAVAILABLE, "load fails");
    flash_state.fail_load = 0;
    uint64_t mark = flash_state.stored;
    CHECK_ERR(smqtt_seq_next(&c, &seq), SMQTT_OK, "resumes");
    CHECK(seq == mark, "resumes at the mark");
    /* exhaustion */
    flash_state.stored = SMQTT_MAX_SEQ - 1;
    CHECK_ERR(smqtt_seq_init(&c, &source), SMQTT_OK, "near the end");
    CHECK_ERR(smqtt_seq_next(&c, &seq), SMQTT_OK, "2^53 - 2");
    CHECK(seq == SMQTT_MAX_SEQ - 1, "2^53-2");
    CHECK_ERR(smqtt_seq_next(&c, &seq), SMQTT_OK, "2^53 - 1");
    CHECK(seq == SMQTT_MAX_SEQ, "2^53-1");
    CHECK_ERR(smqtt_seq_next(&c, &seq), SMQTT_ERR_SEQUENCE_EXHAUSTED, "past 2^53 - 1");
    CHECK_ERR(smqtt_seq_init(&c, &source), SMQTT_OK, "restart at the end");
    CHECK_ERR(smqtt_seq_next(&c, &seq), SMQTT_ERR_SEQUENCE_EXHAUSTED, "still exhausted after restart");
    return tu_finish("sequence");
}
