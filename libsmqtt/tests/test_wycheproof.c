/*
 * Wycheproof (packages/core/vectors/wycheproof/, read from there) through the primitives the
 * library uses: Ed25519 strict verify (all 151), X25519 (all 518), ChaCha20-Poly1305 with 96-bit
 * nonces, AES-256-GCM with 96-bit nonces and 128-bit tags (where the CPU has it), and our
 * HKDF-SHA256 built on HMAC-SHA256 (all 86).
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static uint8_t *hex_of(const cJSON *t, const char *key, size_t *len) {
    const char *s = tu_str(t, key);
    return s != NULL ? tu_hex(s, len) : NULL;
}

/* Checks one test of a group; returns 1, or 0 for a test outside what the library uses. */
typedef int (*check_fn)(const cJSON *group, const cJSON *test);

/* Runs `check` on every test of a Wycheproof file; returns how many it checked. */
static int each_test(const char *root, const char *file, check_fn check) {
    cJSON *json = tu_load_json(root, file);
    int n = 0;
    const cJSON *g, *t;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(json, "testGroups")) {
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(g, "tests")) n += check(g, t);
    }
    cJSON_Delete(json);
    return n;
}

static int wants_valid(const cJSON *t) { return strcmp(tu_str(t, "result"), "valid") == 0; }

static int ed25519(const cJSON *g, const cJSON *t) {
    size_t pk_len, msg_len, sig_len;
    uint8_t *pk = hex_of(cJSON_GetObjectItemCaseSensitive(g, "publicKey"), "pk", &pk_len);
    uint8_t *msg = hex_of(t, "msg", &msg_len), *sig = hex_of(t, "sig", &sig_len);
    int valid = sig_len == 64 && pk_len == 32 && crypto_sign_verify_detached(sig, msg, msg_len, pk) == 0;
    CHECK(valid == wants_valid(t), "ed25519 tcId %d", (int)tu_num(t, "tcId"));
    free(pk), free(msg), free(sig);
    return 1;
}

static int x25519(const cJSON *g, const cJSON *t) {
    (void)g;
    uint8_t pub[32], priv[32], shared[32], out[32], zero[32] = {0};
    CHECK(tu_hex_into(pub, 32, tu_str(t, "public")) == 0 && tu_hex_into(priv, 32, tu_str(t, "private")) == 0 &&
              tu_hex_into(shared, 32, tu_str(t, "shared")) == 0,
          "x25519 tcId %d: lengths", (int)tu_num(t, "tcId"));
    /* libsodium refuses an all-zero result (-1), which is what HPKE needs; else compare. */
    int rc = crypto_scalarmult(out, priv, pub);
    if (rc == 0) CHECK(memcmp(out, shared, 32) == 0, "x25519 tcId %d", (int)tu_num(t, "tcId"));
    else CHECK(memcmp(shared, zero, 32) == 0, "x25519 tcId %d refused a non-zero result", (int)tu_num(t, "tcId"));
    return 1;
}

/* 96-bit nonces, 128-bit tags and 256-bit keys only: what SMQTT uses. */
static int aead(const cJSON *g, const cJSON *t, int aes) {
    if (tu_num(g, "ivSize") != 96 || tu_num(g, "tagSize") != 128 || tu_num(g, "keySize") != 256) return 0;
    size_t kl, il, al, ml, cl, tl;
    uint8_t *key = hex_of(t, "key", &kl), *iv = hex_of(t, "iv", &il), *ad = hex_of(t, "aad", &al);
    uint8_t *msg = hex_of(t, "msg", &ml), *ct = hex_of(t, "ct", &cl), *tag = hex_of(t, "tag", &tl);
    uint8_t *out = malloc(ml + 1);
    int ok = tl == 16 && cl == ml;
    if (ok) {
        ok = (aes ? crypto_aead_aes256gcm_decrypt_detached(out, NULL, ct, cl, tag, ad, al, iv, key)
                  : crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, ct, cl, tag, ad, al, iv, key)) == 0;
        if (ok) ok = ml == 0 || memcmp(out, msg, ml) == 0;
    }
    CHECK(ok == wants_valid(t), "%s tcId %d", aes ? "aes-256-gcm" : "chacha20-poly1305", (int)tu_num(t, "tcId"));
    free(key), free(iv), free(ad), free(msg), free(ct), free(tag), free(out);
    return 1;
}
static int chacha20_poly1305(const cJSON *g, const cJSON *t) { return aead(g, t, 0); }
static int aes_256_gcm(const cJSON *g, const cJSON *t) { return aead(g, t, 1); }

static int hkdf(const cJSON *g, const cJSON *t) {
    (void)g;
    size_t il, sl, fl, ol;
    uint8_t *ikm = hex_of(t, "ikm", &il), *salt = hex_of(t, "salt", &sl), *info = hex_of(t, "info", &fl);
    uint8_t *okm = hex_of(t, "okm", &ol);
    size_t size = (size_t)tu_num(t, "size");
    uint8_t *out = malloc(size + 1);
    int ok = smqtt_hkdf_sha256(out, size, ikm, il, salt, sl, info, fl) == SMQTT_OK && ol == size && memcmp(out, okm, size) == 0;
    CHECK(ok == wants_valid(t), "hkdf tcId %d", (int)tu_num(t, "tcId"));
    free(ikm), free(salt), free(info), free(okm), free(out);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || smqtt_init() != SMQTT_OK) return 2;
    const char *root = argv[1];
    int ed = each_test(root, "packages/core/vectors/wycheproof/ed25519_test.json", ed25519);
    int x = each_test(root, "packages/core/vectors/wycheproof/x25519_test.json", x25519);
    int chacha = each_test(root, "packages/core/vectors/wycheproof/chacha20_poly1305_test.json", chacha20_poly1305);
    int aes = crypto_aead_aes256gcm_is_available()
                  ? each_test(root, "packages/core/vectors/wycheproof/aes_gcm_test.json", aes_256_gcm)
                  : -1;
    int h = each_test(root, "packages/core/vectors/wycheproof/hkdf_sha256_test.json", hkdf);
    CHECK(ed == 151, "ed25519 cases %d", ed);
    CHECK(x == 518, "x25519 cases %d", x);
    CHECK(chacha == 316, "chacha20-poly1305 cases %d", chacha);
    CHECK(aes == 66 || aes == -1, "aes-gcm cases %d", aes);
    CHECK(h == 86, "hkdf cases %d", h);
    printf("wycheproof: ed25519 %d, x25519 %d, chacha20-poly1305 %d, aes-256-gcm %d%s, hkdf-sha256 %d\n", ed, x, chacha,
           aes < 0 ? 0 : aes, aes < 0 ? " (no AES-GCM on this CPU)" : "", h);
    return tu_finish("wycheproof");
}
