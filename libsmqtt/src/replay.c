/*
 * Replay window per (group, epoch, sender) with freshness limits: the rules of
 * packages/core/src/replay-window.ts over caller-owned arrays. A window remembers the highest
 * sequence number seen and a bitmap of the `window_size` numbers below it. Memory is bounded by
 * the arrays: the least recently used window is evicted into a floor (everything at or below its
 * highest counts as seen); when a floor must be dropped, `not_before` rises so a window created
 * from nothing only accepts messages sent after the dropped one was evicted.
 */
#include <sodium.h>
#include <string.h>

#include "internal.h"

#define DAY 86400u

smqtt_err smqtt_replay_init(smqtt_replay *r, smqtt_replay_entry *entries, size_t capacity, smqtt_replay_floor *floors,
                            size_t floor_capacity, const smqtt_replay_options *o) {
    if (r == NULL || entries == NULL || capacity == 0 || (floors == NULL && floor_capacity > 0))
        return SMQTT_ERR_INVALID_ARGUMENT;
    uint32_t window = SMQTT_REPLAY_WINDOW_BITS, max_age = 300, skew = 30, retained = 7 * DAY;
    if (o != NULL) {
        if (o->window_size > SMQTT_REPLAY_WINDOW_BITS) return SMQTT_ERR_INVALID_ARGUMENT;
        if (o->window_size != 0) window = o->window_size;
        if (o->max_age_seconds != 0) max_age = o->max_age_seconds;
        skew = o->max_future_skew_seconds; /* 0 is a valid skew */
        if (o->retained_max_age_seconds != 0) retained = o->retained_max_age_seconds;
    }
    memset(r, 0, sizeof *r);
    memset(entries, 0, capacity * sizeof *entries);
    if (floor_capacity > 0) memset(floors, 0, floor_capacity * sizeof *floors);
    r->entries = entries;
    r->capacity = capacity;
    r->floors = floors;
    r->floor_capacity = floor_capacity;
    r->not_before = INT64_MIN;
    r->latest_now = INT64_MIN;
    r->window_size = window;
    r->max_age = max_age;
    r->max_skew = skew;
    r->retained_max_age = retained;
    return SMQTT_OK;
}

static smqtt_replay_entry *find_window(const smqtt_replay *r, uint32_t group, uint32_t epoch, uint32_t sender) {
    for (size_t i = 0; i < r->capacity; i++) {
        smqtt_replay_entry *e = &r->entries[i];
        if (e->in_use && e->group == group && e->epoch == epoch && e->sender == sender) return e;
    }
    return NULL;
}

static smqtt_replay_floor *find_floor(const smqtt_replay *r, uint32_t group, uint32_t epoch, uint32_t sender) {
    for (size_t i = 0; i < r->floor_capacity; i++) {
        smqtt_replay_floor *f = &r->floors[i];
        if (f->in_use && f->group == group && f->epoch == epoch && f->sender == sender) return f;
    }
    return NULL;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The LRU clock. After 2^32 - 1 ticks every age restarts at 0: eviction order is then briefly
 * arbitrary, which costs only which sender is evicted first, never a replay. */
static uint32_t tick(smqtt_replay *r) {
    if (++r->clock == 0) {
        for (size_t i = 0; i < r->capacity; i++) r->entries[i].last_used = 0;
        for (size_t i = 0; i < r->floor_capacity; i++) r->floors[i].order = 0;
        r->clock = 1;
    }
    return r->clock;
}

smqtt_err smqtt_replay_check(const smqtt_replay *r, uint32_t group, uint32_t epoch, uint32_t sender, uint64_t seq,
                             uint32_t sent_at, int64_t now, int retained) {
    if (r == NULL || seq > SMQTT_MAX_SEQ) return SMQTT_ERR_INVALID_ARGUMENT;
    int64_t sent = (int64_t)sent_at;
    int64_t max_age = retained ? (int64_t)r->retained_max_age : (int64_t)r->max_age;
    if (sent < now - max_age) return SMQTT_ERR_STALE;             /* sent too long ago */
    if (sent > now + (int64_t)r->max_skew) return SMQTT_ERR_STALE; /* sent in the future */
    if (retained) return SMQTT_OK; /* retained: neither checked against nor recorded in the window */
    const smqtt_replay_entry *w = find_window(r, group, epoch, sender);
    if (w != NULL) {
        if (sent <= w->not_before) return SMQTT_ERR_REPLAY;
        if (!w->has_highest || seq > w->highest) return SMQTT_OK;
        uint64_t age = w->highest - seq;
        if (age >= r->window_size) return SMQTT_ERR_REPLAY;
        if ((w->seen[age >> 5] >> (age & 31u)) & 1u) return SMQTT_ERR_REPLAY;
        return SMQTT_OK;
    }
    const smqtt_replay_floor *f = find_floor(r, group, epoch, sender);
    if (f != NULL) {
        if (sent <= f->not_before) return SMQTT_ERR_REPLAY;
        if (seq <= f->highest) return SMQTT_ERR_REPLAY;
        return SMQTT_OK;
    }
    if (sent <= r->not_before) return SMQTT_ERR_REPLAY;
    return SMQTT_OK;
}

/* Drops the oldest floor (raising not_before) and returns its slot. */
static smqtt_replay_floor *drop_oldest_floor(smqtt_replay *r) {
    smqtt_replay_floor *oldest = NULL;
    for (size_t i = 0; i < r->floor_capacity; i++) {
        smqtt_replay_floor *f = &r->floors[i];
        if (f->in_use && (oldest == NULL || f->order < oldest->order)) oldest = f;
    }
    if (oldest == NULL) return NULL;
    r->not_before = max64(r->not_before, oldest->evicted_at + (int64_t)r->max_skew);
    oldest->in_use = 0;
    return oldest;
}

/* Evicts the least recently used window into a floor; returns the freed slot. */
static smqtt_replay_entry *evict_least_recently_used(smqtt_replay *r) {
    smqtt_replay_entry *lru = NULL;
    for (size_t i = 0; i < r->capacity; i++)
        if (lru == NULL || r->entries[i].last_used < lru->last_used) lru = &r->entries[i];
    if (lru == NULL) return NULL;
    /* Every message this window recorded was sent at most latest_now + max_skew. */
    if (r->floor_capacity == 0) {
        r->not_before = max64(r->not_before, r->latest_now + (int64_t)r->max_skew);
    } else {
        smqtt_replay_floor *slot = NULL;
        for (size_t i = 0; i < r->floor_capacity && slot == NULL; i++)
            if (!r->floors[i].in_use) slot = &r->floors[i];
        if (slot == NULL) slot = drop_oldest_floor(r);
        slot->in_use = 1;
        slot->group = lru->group;
        slot->epoch = lru->epoch;
        slot->sender = lru->sender;
        /* A window that never recorded anything cannot be in use; has_highest is always set here. */
        slot->highest = lru->highest;
        slot->not_before = lru->not_before;
        slot->evicted_at = r->latest_now;
        slot->order = tick(r);
    }
    memset(lru, 0, sizeof *lru);
    return lru;
}

static void record(smqtt_replay_entry *w, uint64_t seq, uint32_t window_size) {
    if (w->has_highest && seq <= w->highest) {
        uint64_t age = w->highest - seq;
        w->seen[age >> 5] |= 1u << (age & 31u);
        return;
    }
    uint64_t shift = w->has_highest ? seq - w->highest : (uint64_t)window_size;
    w->highest = seq;
    w->has_highest = 1;
    if (shift >= window_size) {
        memset(w->seen, 0, sizeof w->seen);
    } else {
        /* Shift the bitmap up by `shift` bits (bit k becomes bit k + shift), top word first. */
        size_t word_shift = (size_t)(shift >> 5);
        unsigned bit_shift = (unsigned)(shift & 31u);
        for (size_t w_i = SMQTT_REPLAY_WINDOW_WORDS; w_i-- > 0;) {
            uint32_t word = 0;
            if (w_i >= word_shift) {
                size_t from = w_i - word_shift;
                word = w->seen[from] << bit_shift;
                if (bit_shift != 0 && from >= 1) word |= w->seen[from - 1] >> (32u - bit_shift);
            }
            w->seen[w_i] = word;
        }
    }
    w->seen[0] |= 1u;
}

smqtt_err smqtt_replay_accept(smqtt_replay *r, uint32_t group, uint32_t epoch, uint32_t sender, uint64_t seq,
                              uint32_t sent_at, int64_t now, int retained) {
    smqtt_err err = smqtt_replay_check(r, group, epoch, sender, seq, sent_at, now, retained);
    if (err != SMQTT_OK || retained) return err;
    if (now > r->latest_now) r->latest_now = now;
    smqtt_replay_entry *w = find_window(r, group, epoch, sender);
    if (w == NULL) {
        smqtt_replay_floor *f = find_floor(r, group, epoch, sender);
        smqtt_replay_floor saved; /* the floor's values: evicting may reuse its slot */
        for (size_t i = 0; i < r->capacity && w == NULL; i++)
            if (!r->entries[i].in_use) w = &r->entries[i];
        if (w == NULL) {
            if (f != NULL) saved = *f, f->in_use = 0;
            w = evict_least_recently_used(r);
            if (f != NULL) f = &saved;
        } else if (f != NULL) {
            f->in_use = 0;
        }
        memset(w, 0, sizeof *w);
        w->in_use = 1;
        w->group = group;
        w->epoch = epoch;
        w->sender = sender;
        if (f != NULL) {
            /* Coming back from a floor: everything at or below its highest counts as seen. */
            w->highest = f->highest;
            w->has_highest = 1;
            w->not_before = f->not_before;
            memset(w->seen, 0xff, sizeof w->seen);
        } else {
            w->not_before = r->not_before;
        }
    }
    w->last_used = tick(r);
    record(w, seq, r->window_size);
    return SMQTT_OK;
}

void smqtt_replay_reset_after_loss(smqtt_replay *r, int64_t now) {
    if (r == NULL) return;
    memset(r->entries, 0, r->capacity * sizeof *r->entries);
    if (r->floor_capacity > 0) memset(r->floors, 0, r->floor_capacity * sizeof *r->floors);
    r->not_before = max64(r->not_before, now + (int64_t)r->max_skew);
}

/* ---- persistence ----------------------------------------------------------------------------- */

static const uint8_t STATE_MAGIC[4] = {'S', 'R', 'W', '1'};

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

smqtt_err smqtt_replay_export(const smqtt_replay *r, uint8_t *out, size_t cap, size_t *out_len) {
    if (r == NULL || out == NULL || out_len == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    *out_len = 0;
    size_t windows = 0, floors = 0;
    for (size_t i = 0; i < r->capacity; i++) windows += r->entries[i].in_use;
    for (size_t i = 0; i < r->floor_capacity; i++) floors += r->floors[i].in_use;
    size_t need = 4 + 2 + 8 + 4 + windows * (28 + 4 * SMQTT_REPLAY_WINDOW_WORDS) + 4 + floors * 36 + 16;
    if (cap < need) return SMQTT_ERR_BUFFER_TOO_SMALL;
    size_t n = 0;
    memcpy(out, STATE_MAGIC, 4), n = 4;
    out[n++] = (uint8_t)SMQTT_REPLAY_WINDOW_BITS, out[n++] = (uint8_t)(SMQTT_REPLAY_WINDOW_BITS >> 8);
    put64(out + n, (uint64_t)r->not_before), n += 8;
    put32(out + n, (uint32_t)windows), n += 4;
    /* least recently used first, so an import keeps the order */
    for (uint32_t done = 0, last = 0; done < windows; done++) {
        const smqtt_replay_entry *next = NULL;
        for (size_t i = 0; i < r->capacity; i++) {
            const smqtt_replay_entry *e = &r->entries[i];
            if (e->in_use && (done == 0 || e->last_used > last) && (next == NULL || e->last_used < next->last_used)) next = e;
        }
        if (next == NULL) return SMQTT_ERR_INTERNAL;
        last = next->last_used;
        put32(out + n, next->group), put32(out + n + 4, next->epoch), put32(out + n + 8, next->sender), n += 12;
        put64(out + n, next->has_highest ? next->highest : UINT64_MAX), n += 8;
        put64(out + n, (uint64_t)next->not_before), n += 8;
        for (size_t w = 0; w < SMQTT_REPLAY_WINDOW_WORDS; w++) put32(out + n, next->seen[w]), n += 4;
    }
    put32(out + n, (uint32_t)floors), n += 4;
    for (size_t i = 0; i < r->floor_capacity; i++) {
        const smqtt_replay_floor *f = &r->floors[i];
        if (!f->in_use) continue;
        put32(out + n, f->group), put32(out + n + 4, f->epoch), put32(out + n + 8, f->sender), n += 12;
        put64(out + n, f->highest), put64(out + n + 8, (uint64_t)f->not_before), put64(out + n + 16, (uint64_t)f->evicted_at);
        n += 24;
    }
    crypto_generichash(out + n, 16, out, n, NULL, 0);
    *out_len = n + 16;
    return SMQTT_OK;
}

smqtt_err smqtt_replay_import(smqtt_replay *r, const uint8_t *s, size_t len, int64_t now) {
    if (r == NULL || (s == NULL && len > 0)) return SMQTT_ERR_INVALID_ARGUMENT;
    const smqtt_err bad = SMQTT_ERR_REPLAY_STATE_INVALID;
    uint8_t sum[16];
    if (len < 4 + 2 + 8 + 4 + 4 + 16 || memcmp(s, STATE_MAGIC, 4) != 0) return bad;
    crypto_generichash(sum, 16, s, len - 16, NULL, 0);
    if (sodium_memcmp(sum, s + len - 16, 16) != 0) return bad;
    unsigned bits = s[4] | (unsigned)s[5] << 8;
    if (bits == 0 || bits % 32 != 0 || bits > 4096) return bad;
    size_t words = bits / 32, n = 14;
    uint64_t windows = get32(s + n);
    n += 4;
    if (windows > (len - n) / (28 + 4 * words)) return bad;
    size_t windows_at = n;
    n += (size_t)windows * (28 + 4 * words);
    if (len - n < 4 + 16) return bad;
    uint64_t floors = get32(s + n);
    n += 4;
    if (floors > (len - n - 16) / 36 || n + floors * 36 + 16 != len) return bad;
    size_t floors_at = n;
    /* keys unique across windows and floors, and each highest a sequence number */
    for (uint64_t i = 0; i < windows + floors; i++) {
        const uint8_t *a = i < windows ? s + windows_at + i * (28 + 4 * words) : s + floors_at + (i - windows) * 36;
        uint64_t highest = get64(a + 12);
        if (highest > SMQTT_MAX_SEQ && !(i < windows && highest == UINT64_MAX)) return bad;
        for (uint64_t j = 0; j < i; j++) {
            const uint8_t *b = j < windows ? s + windows_at + j * (28 + 4 * words) : s + floors_at + (j - windows) * 36;
            if (memcmp(a, b, 12) == 0) return bad;
        }
    }
    /* valid: apply */
    memset(r->entries, 0, r->capacity * sizeof *r->entries);
    if (r->floor_capacity > 0) memset(r->floors, 0, r->floor_capacity * sizeof *r->floors);
    r->not_before = max64(r->not_before, (int64_t)get64(s + 6));
    if (now > r->latest_now) r->latest_now = now;
    r->clock = 0;
    size_t fi = 0;
    for (uint64_t i = 0; i < floors; i++) {
        const uint8_t *f = s + floors_at + i * 36;
        if (fi >= r->floor_capacity) {
            r->not_before = max64(r->not_before, (int64_t)get64(f + 28) + (int64_t)r->max_skew);
            continue;
        }
        smqtt_replay_floor *slot = &r->floors[fi++];
        slot->in_use = 1, slot->group = get32(f), slot->epoch = get32(f + 4), slot->sender = get32(f + 8);
        slot->highest = get64(f + 12), slot->not_before = (int64_t)get64(f + 20), slot->evicted_at = (int64_t)get64(f + 28);
        slot->order = tick(r);
    }
    size_t wi = 0;
    for (uint64_t i = 0; i < windows; i++) {
        const uint8_t *w = s + windows_at + i * (28 + 4 * words);
        uint64_t highest = get64(w + 12);
        if (words == SMQTT_REPLAY_WINDOW_WORDS && wi < r->capacity) {
            smqtt_replay_entry *e = &r->entries[wi++];
            e->in_use = 1, e->group = get32(w), e->epoch = get32(w + 4), e->sender = get32(w + 8);
            e->has_highest = highest != UINT64_MAX, e->highest = e->has_highest ? highest : 0;
            e->not_before = (int64_t)get64(w + 20);
            for (size_t k = 0; k < words; k++) e->seen[k] = get32(w + 28 + 4 * k);
            e->last_used = tick(r);
        } else if (fi < r->floor_capacity && highest != UINT64_MAX) {
            /* another window size, or no room: a floor (everything at or below highest counts as seen) */
            smqtt_replay_floor *slot = &r->floors[fi++];
            slot->in_use = 1, slot->group = get32(w), slot->epoch = get32(w + 4), slot->sender = get32(w + 8);
            slot->highest = highest, slot->not_before = (int64_t)get64(w + 20), slot->evicted_at = now;
            slot->order = tick(r);
        } else {
            r->not_before = max64(r->not_before, now + (int64_t)r->max_skew);
        }
    }
    return SMQTT_OK;
}
