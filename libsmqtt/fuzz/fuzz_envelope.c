/*
 * libFuzzer harness for the envelope parser and the whole open/verify path: the input is an
 * envelope received on a fixed topic by a receiver that holds a key and a writer, so mutations
 * of the vectors' envelopes reach the signature, AEAD and bound-property code. Any input must
 * return an smqtt_err and never crash, read out of bounds or invoke undefined behaviour.
 */
#include <string.h>

#include "smqtt/smqtt.h"

static const uint8_t EPOCH_KEY[32] = {0x80, 0x83, 0x86, 0x89, 0x8c, 0x8f, 0x92, 0x95, 0x98, 0x9b, 0x9e,
                                      0xa1, 0xa4, 0xa7, 0xaa, 0xad, 0xb0, 0xb3, 0xb6, 0xb9, 0xbc, 0xbf,
                                      0xc2, 0xc5, 0xc8, 0xcb, 0xce, 0xd1, 0xd4, 0xd7, 0xda, 0xdd};
static const uint8_t WRITER[32] = {0x4e, 0x1d, 0xb2, 0x34, 0x4c, 0xdb, 0x4f, 0x1d, 0x5e, 0x32, 0x7e,
                                   0x84, 0x35, 0x87, 0x73, 0xcb, 0x3d, 0x4e, 0xf8, 0x13, 0xe4, 0x0c,
                                   0x24, 0xf9, 0xe4, 0x4f, 0x27, 0x1c, 0xf6, 0x1c, 0x0e, 0x88};

static int epoch_key(void *ctx, uint32_t group, uint32_t epoch, uint8_t key[32], uint8_t *suite) {
    (void)ctx, (void)group, (void)epoch;
    memcpy(key, EPOCH_KEY, 32);
    *suite = 1;
    return 0;
}
static int writer_key(void *ctx, uint32_t group, uint32_t sender, uint8_t pk[32]) {
    (void)ctx, (void)group, (void)sender;
    memcpy(pk, WRITER, 32);
    return 0;
}

static uint8_t work[SMQTT_OPEN_WORK_BYTES(70000, 64, SMQTT_MAX_BOUND_PROPERTIES_BYTES)];
static uint8_t plain[70000];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready = 0;
    if (!ready) ready = smqtt_init() == SMQTT_OK;
    if (size > 65536) return 0;
    static const char topic[] = "home/hall/thermostat/temp";
    static const smqtt_user_property users[2] = {{(const uint8_t *)"k", 1, (const uint8_t *)"v", 1},
                                                 {(const uint8_t *)"", 0, (const uint8_t *)"", 0}};
    smqtt_properties props = {(const uint8_t *)"text/plain", 10, NULL, 0, (const uint8_t *)"", 0, users, 2};
    smqtt_keyring keys = {epoch_key, writer_key, NULL, NULL, NULL};
    smqtt_replay_entry entries[2];
    smqtt_replay replay;
    smqtt_replay_init(&replay, entries, 2, NULL, 0, NULL);
    smqtt_open_options o;
    memset(&o, 0, sizeof o);
    o.keys = &keys;
    o.replay = &replay;
    o.now = 1790000000;
    o.properties = (size & 1) ? &props : NULL;
    smqtt_envelope_header h;
    size_t len = 0;
    smqtt_envelope_parse(&h, data, size);
    smqtt_envelope_verify(&h, data, size, (const uint8_t *)topic, sizeof topic - 1, &o, work, sizeof work);
    smqtt_envelope_open(plain, sizeof plain, &len, &h, data, size, (const uint8_t *)topic, sizeof topic - 1, &o, work,
                        sizeof work);
    return 0;
}
