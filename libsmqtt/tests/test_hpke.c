/*
 * RFC 9180 A.2.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base mode), from
 * packages/core/vectors/hpke-rfc9180-x25519-sha256-chacha20poly1305.json: the receiver's key
 * schedule, every encryption opened at its sequence number, the sender's side reproduced from
 * skEm, and refusals (altered ciphertext, wrong aad, small-order enc).
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

int main(int argc, char **argv) {
    if (argc < 2 || smqtt_init() != SMQTT_OK) return 2;
    cJSON *v = tu_load_json(argv[1], "packages/core/vectors/hpke-rfc9180-x25519-sha256-chacha20poly1305.json");
    CHECK(tu_num(v, "mode") == 0 && tu_num(v, "kem_id") == 32 && tu_num(v, "kdf_id") == 1 && tu_num(v, "aead_id") == 3,
          "suite");
    uint8_t enc[32], sk_r[32], pk_r[32], sk_e[32], key[32], nonce[12], exp[32];
    size_t info_len;
    uint8_t *info = tu_hex(tu_str(v, "info"), &info_len);
    CHECK(tu_hex_into(enc, 32, tu_str(v, "enc")) == 0 && tu_hex_into(sk_r, 32, tu_str(v, "skRm")) == 0 &&
              tu_hex_into(pk_r, 32, tu_str(v, "pkRm")) == 0 && tu_hex_into(sk_e, 32, tu_str(v, "skEm")) == 0 &&
              tu_hex_into(key, 32, tu_str(v, "key")) == 0 && tu_hex_into(nonce, 12, tu_str(v, "base_nonce")) == 0 &&
              tu_hex_into(exp, 32, tu_str(v, "exporter_secret")) == 0,
          "vector fields");
    smqtt_hpke_context r, s;
    CHECK_ERR(smqtt_hpke_setup_base_r(&r, enc, sk_r, pk_r, info, info_len), SMQTT_OK, "setup R");
    CHECK(memcmp(r.key, key, 32) == 0 && memcmp(r.base_nonce, nonce, 12) == 0 &&
              memcmp(r.exporter_secret, exp, 32) == 0,
          "key schedule");
    uint8_t enc_s[32];
    CHECK_ERR(smqtt_hpke_setup_base_s(&s, enc_s, sk_e, pk_r, info, info_len), SMQTT_OK, "setup S");
    CHECK(memcmp(enc_s, enc, 32) == 0 && memcmp(s.key, key, 32) == 0, "sender side");
    int opened = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(v, "encryptions")) {
        size_t pt_len, aad_len, ct_len, out_len;
        uint8_t *pt = tu_hex(tu_str(e, "pt"), &pt_len), *aad = tu_hex(tu_str(e, "aad"), &aad_len);
        uint8_t *ct = tu_hex(tu_str(e, "ct"), &ct_len);
        uint8_t out[256];
        uint64_t seq = tu_u64(e, "sequence_number");
        r.seq = seq;
        CHECK_ERR(smqtt_hpke_context_open(&r, out, sizeof out, &out_len, ct, ct_len, aad, aad_len), SMQTT_OK, "open");
        CHECK(out_len == pt_len && memcmp(out, pt, pt_len) == 0 && r.seq == seq + 1, "plaintext at %u", (unsigned)seq);
        s.seq = seq;
        CHECK_ERR(smqtt_hpke_context_seal(&s, out, sizeof out, &out_len, pt, pt_len, aad, aad_len), SMQTT_OK, "seal");
        CHECK(out_len == ct_len && memcmp(out, ct, ct_len) == 0, "ciphertext at %u", (unsigned)seq);
        r.seq = seq;
        ct[0] ^= 1;
        CHECK_ERR(smqtt_hpke_context_open(&r, out, sizeof out, &out_len, ct, ct_len, aad, aad_len),
                  SMQTT_ERR_HPKE_OPEN_FAILED, "altered");
        ct[0] ^= 1;
        r.seq = seq + 1;
        CHECK_ERR(smqtt_hpke_context_open(&r, out, sizeof out, &out_len, ct, ct_len, aad, aad_len),
                  SMQTT_ERR_HPKE_OPEN_FAILED, "wrong sequence number");
        if (seq == 0) {
            CHECK_ERR(smqtt_hpke_open_base(out, sizeof out, &out_len, enc, sk_r, pk_r, info, info_len, aad, aad_len, ct,
                                           ct_len),
                      SMQTT_OK, "single shot");
            CHECK_ERR(smqtt_hpke_open_base(out, sizeof out, &out_len, enc, sk_r, pk_r, info, info_len - 1, aad, aad_len,
                                           ct, ct_len),
                      SMQTT_ERR_HPKE_OPEN_FAILED, "other info");
        }
        free(pt), free(aad), free(ct);
        opened++;
    }
    uint8_t small_order[32] = {0}; /* the point 0: an all-zero shared secret is refused */
    CHECK_ERR(smqtt_hpke_setup_base_r(&r, small_order, sk_r, pk_r, info, info_len), SMQTT_ERR_HPKE_OPEN_FAILED,
              "small-order enc");
    printf("hpke rfc9180: key schedule and %d encryptions\n", opened);
    free(info);
    cJSON_Delete(v);
    return tu_finish("hpke");
}
