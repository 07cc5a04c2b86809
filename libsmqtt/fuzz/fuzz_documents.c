/*
 * libFuzzer harness for the signed-document readers and the saved replay state: the input is the
 * JSON text of a key bundle or a revocation list, or a replay-window state (the first byte picks). The signature check comes early, so the
 * strict JSON pass and the outer object are what mutations reach most; the inner rules are
 * reached through the unit tests' negative vectors.
 */
#include <string.h>

#include "smqtt/smqtt.h"

static uint8_t work[SMQTT_DOCUMENT_WORK_BYTES(1 << 16)];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready = 0;
    if (!ready) ready = smqtt_init() == SMQTT_OK;
    if (size < 1 || size > 65536) return 0;
    static const uint8_t ks[32] = {0xe2, 0x69, 0xdc, 0x1a, 0xe2, 0x00, 0xc8, 0xa3, 0x30, 0x24, 0xe7,
                                   0x64, 0xf1, 0xcb, 0xe3, 0x85, 0x2e, 0xb8, 0xe9, 0x61, 0x21, 0xc0,
                                   0x18, 0xf4, 0xd1, 0x81, 0x76, 0xe8, 0x41, 0xa4, 0x85, 0x75};
    static const uint8_t sk[32] = {1}, pk[32] = {9};
    const char *text = (const char *)data + 1;
    if (data[0] % 3 == 2) {
        smqtt_replay_entry entries[4];
        smqtt_replay_floor floors[2];
        smqtt_replay r;
        smqtt_replay_init(&r, entries, 4, floors, 2, NULL);
        smqtt_replay_import(&r, data + 1, size - 1, 1796000000);
        smqtt_replay_check(&r, 1, 1, 1, 5, 1796000000, 1796000000, 0);
    } else if (data[0] % 3 == 1) {
        smqtt_bundle_group groups[4];
        smqtt_bundle_epoch epochs[8];
        smqtt_bundle_writer writers[8];
        char strings[1024];
        smqtt_key_bundle b = {0, 0, 0, groups, 4, 0, epochs, 8, 0, writers, 8, 0, strings, sizeof strings, 0};
        smqtt_key_bundle_open(&b, text, size - 1, ks, "thermostat-1", sk, pk, 1796000000, work, sizeof work);
    } else {
        uint32_t kids[16];
        smqtt_revocation_list l = {0, 0, 0, {0}, kids, 16, 0};
        smqtt_revocation_list_open(&l, text, size - 1, ks, work, sizeof work);
    }
    return 0;
}
