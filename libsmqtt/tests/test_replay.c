/* The replay window's rules (packages/core/src/replay-window.ts) over caller-owned arrays. */
#include <string.h>

#include "testutil.h"

#define NOW 1790000000

int main(void) {
    smqtt_replay r;
    smqtt_replay_entry entries[2];
    smqtt_replay_floor floors[1];
    CHECK_ERR(smqtt_replay_init(&r, entries, 2, floors, 1, NULL), SMQTT_OK, "init");
    /* freshness: 300 s old is fine, 301 s is stale; 30 s ahead is fine, 31 s is stale */
    CHECK_ERR(smqtt_replay_check(&r, 1, 1, 1, 0, NOW - 300, NOW, 0), SMQTT_OK, "300 s old");
    CHECK_ERR(smqtt_replay_check(&r, 1, 1, 1, 0, NOW - 301, NOW, 0), SMQTT_ERR_STALE, "301 s old");
    CHECK_ERR(smqtt_replay_check(&r, 1, 1, 1, 0, NOW + 30, NOW, 0), SMQTT_OK, "30 s ahead");
    CHECK_ERR(smqtt_replay_check(&r, 1, 1, 1, 0, NOW + 31, NOW, 0), SMQTT_ERR_STALE, "31 s ahead");
    /* retained: 7 days, never recorded */
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 90, NOW - 86400, NOW, 1), SMQTT_OK, "retained, a day old");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 90, NOW - 86400, NOW, 1), SMQTT_OK, "retained again");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 5, NOW - 8 * 86400, NOW, 1), SMQTT_ERR_STALE, "retained, 8 days");
    /* window: accepted once, reordered inside the window once, older refused */
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 100, NOW, NOW, 0), SMQTT_OK, "100");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 100, NOW, NOW, 0), SMQTT_ERR_REPLAY, "100 again");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 90, NOW, NOW, 0), SMQTT_OK, "90 (the retained 90 was not recorded)");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 120, NOW, NOW, 0), SMQTT_OK, "120");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 89, NOW, NOW, 0), SMQTT_OK, "89: age 31");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 89, NOW, NOW, 0), SMQTT_ERR_REPLAY, "89 again");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 88, NOW, NOW, 0), SMQTT_ERR_REPLAY, "88: age 32, out of window");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 100, NOW, NOW, 0), SMQTT_ERR_REPLAY, "100 after shift");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 119, NOW, NOW, 0), SMQTT_OK, "119");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 160, NOW, NOW, 0), SMQTT_OK, "160: shift past the window");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 130, NOW, NOW, 0), SMQTT_OK, "130: age 30, unseen");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 128, NOW, NOW, 0), SMQTT_ERR_REPLAY, "128: age 32");
    /* another epoch is another window */
    CHECK_ERR(smqtt_replay_accept(&r, 1, 2, 1, 100, NOW, NOW, 0), SMQTT_OK, "epoch 2");
    /* a third sender evicts the least recently used window (epoch 1) into the floor */
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 2, 0, NOW, NOW, 0), SMQTT_OK, "sender 2");
    CHECK_ERR(smqtt_replay_check(&r, 1, 1, 1, 159, NOW, NOW, 0), SMQTT_ERR_REPLAY, "evicted: below the floor");
    CHECK_ERR(smqtt_replay_check(&r, 1, 1, 1, 160, NOW, NOW, 0), SMQTT_ERR_REPLAY, "evicted: at the floor");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 161, NOW, NOW, 0), SMQTT_OK, "evicted: above the floor, back as a window");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 150, NOW, NOW, 0), SMQTT_ERR_REPLAY, "back from the floor: all below seen");
    /* floors full: the oldest floor is dropped and not_before rises to its eviction + skew */
    CHECK_ERR(smqtt_replay_accept(&r, 9, 9, 9, 0, NOW, NOW, 0), SMQTT_OK, "evicts again, drops a floor");
    CHECK_ERR(smqtt_replay_accept(&r, 8, 8, 8, 0, NOW + 30, NOW, 0), SMQTT_ERR_REPLAY, "new sender sent before the drop");
    CHECK_ERR(smqtt_replay_accept(&r, 8, 8, 8, 0, NOW + 31, NOW + 40, 0), SMQTT_OK, "new sender sent after");
    /* reset after loss */
    smqtt_replay_reset_after_loss(&r, NOW + 100);
    CHECK_ERR(smqtt_replay_check(&r, 7, 7, 7, 0, NOW + 130, NOW + 100, 0), SMQTT_ERR_REPLAY, "after loss");
    CHECK_ERR(smqtt_replay_check(&r, 7, 7, 7, 0, NOW + 131, NOW + 110, 0), SMQTT_OK, "after loss, later");
    /* persistence: export, import into fresh arrays, all or nothing */
    {
        smqtt_replay a, b;
        smqtt_replay_entry ea[3], eb[3], ec[1];
        smqtt_replay_floor fa[2], fb[2], fc[2];
        uint8_t state[SMQTT_REPLAY_STATE_BYTES(3, 2)];
        size_t len = 0;
        smqtt_replay_init(&a, ea, 3, fa, 2, NULL);
        CHECK_ERR(smqtt_replay_accept(&a, 1, 1, 1, 50, NOW, NOW, 0), SMQTT_OK, "a: 50");
        CHECK_ERR(smqtt_replay_accept(&a, 1, 1, 1, 48, NOW, NOW, 0), SMQTT_OK, "a: 48");
        CHECK_ERR(smqtt_replay_accept(&a, 2, 1, 7, 9, NOW, NOW, 0), SMQTT_OK, "a: other sender");
        CHECK_ERR(smqtt_replay_export(&a, state, sizeof state, &len), SMQTT_OK, "export");
        smqtt_replay_init(&b, eb, 3, fb, 2, NULL);
        CHECK_ERR(smqtt_replay_import(&b, state, len, NOW + 5), SMQTT_OK, "import");
        CHECK_ERR(smqtt_replay_check(&b, 1, 1, 1, 48, NOW, NOW + 5, 0), SMQTT_ERR_REPLAY, "48 remembered");
        CHECK_ERR(smqtt_replay_check(&b, 1, 1, 1, 49, NOW, NOW + 5, 0), SMQTT_OK, "49 never seen");
        CHECK_ERR(smqtt_replay_check(&b, 2, 1, 7, 9, NOW, NOW + 5, 0), SMQTT_ERR_REPLAY, "other sender remembered");
        /* into one window: the rest come back as floors */
        smqtt_replay c;
        smqtt_replay_init(&c, ec, 1, fc, 2, NULL);
        CHECK_ERR(smqtt_replay_import(&c, state, len, NOW + 5), SMQTT_OK, "import into one window");
        CHECK_ERR(smqtt_replay_check(&c, 1, 1, 1, 50, NOW, NOW + 5, 0), SMQTT_ERR_REPLAY, "as a floor or window: 50 seen");
        CHECK_ERR(smqtt_replay_check(&c, 2, 1, 7, 9, NOW, NOW + 5, 0), SMQTT_ERR_REPLAY, "as a floor or window: 9 seen");
        /* corrupt or truncated storage: refused, window unchanged */
        state[20] ^= 1;
        CHECK_ERR(smqtt_replay_import(&b, state, len, NOW), SMQTT_ERR_REPLAY_STATE_INVALID, "corrupt");
        state[20] ^= 1;
        CHECK_ERR(smqtt_replay_import(&b, state, len - 1, NOW), SMQTT_ERR_REPLAY_STATE_INVALID, "truncated");
        CHECK_ERR(smqtt_replay_import(&b, state, 3, NOW), SMQTT_ERR_REPLAY_STATE_INVALID, "3 bytes");
        CHECK_ERR(smqtt_replay_check(&b, 1, 1, 1, 48, NOW, NOW + 5, 0), SMQTT_ERR_REPLAY, "unchanged after a refusal");
        CHECK_ERR(smqtt_replay_export(&a, state, 10, &len), SMQTT_ERR_BUFFER_TOO_SMALL, "export buffer");
    }
    /* a window of 1 */
    smqtt_replay_options o = {1, 60, 0, 0};
    CHECK_ERR(smqtt_replay_init(&r, entries, 2, NULL, 0, &o), SMQTT_OK, "init window 1");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 10, NOW, NOW, 0), SMQTT_OK, "10");
    CHECK_ERR(smqtt_replay_accept(&r, 1, 1, 1, 9, NOW, NOW, 0), SMQTT_ERR_REPLAY, "9 outside a window of 1");
    CHECK_ERR(smqtt_replay_check(&r, 1, 1, 1, 11, NOW + 1, NOW, 0), SMQTT_ERR_STALE, "no future skew");
    o.window_size = SMQTT_REPLAY_WINDOW_BITS + 1;
    CHECK_ERR(smqtt_replay_init(&r, entries, 2, NULL, 0, &o), SMQTT_ERR_INVALID_ARGUMENT, "window too large");
    printf("replay: RAM per window entry %zu bytes, per floor %zu bytes (window %d bits)\n", sizeof(smqtt_replay_entry),
           sizeof(smqtt_replay_floor), SMQTT_REPLAY_WINDOW_BITS);
    return tu_finish("replay");
}
