/*
 * HPKE base mode (RFC 9180) for one suite: DHKEM(X25519, HKDF-SHA256) (0x0020), HKDF-SHA256
 * (0x0001), ChaCha20-Poly1305 (0x0003). Labeled extract/expand are written out with the
 * HMAC-SHA256 helper, so no buffer ever holds a concatenation of unbounded size.
 */
#include <sodium.h>
#include <string.h>

#include "internal.h"

static const uint8_t KEM_SUITE[5] = {'K', 'E', 'M', 0x00, 0x20};
static const uint8_t HPKE_SUITE[10] = {'H', 'P', 'K', 'E', 0x00, 0x20, 0x00, 0x01, 0x00, 0x03};
static const uint8_t VERSION_LABEL[7] = {'H', 'P', 'K', 'E', '-', 'v', '1'};

/* LabeledExtract(salt, label, ikm) = HMAC(salt, "HPKE-v1" || suite || label || ikm) */
static void labeled_extract(uint8_t prk[32], const uint8_t *salt, size_t salt_len, const uint8_t *suite,
                            size_t suite_len, const char *label, const uint8_t *ikm, size_t ikm_len) {
    static const uint8_t empty[1] = {0};
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, salt_len > 0 ? salt : empty, salt_len);
    crypto_auth_hmacsha256_update(&st, VERSION_LABEL, sizeof VERSION_LABEL);
    crypto_auth_hmacsha256_update(&st, suite, suite_len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label));
    if (ikm_len > 0) crypto_auth_hmacsha256_update(&st, ikm, ikm_len);
    crypto_auth_hmacsha256_final(&st, prk);
    sodium_memzero(&st, sizeof st);
}

/* LabeledExpand(prk, label, info, L) for L <= 64: HKDF-Expand with info = I2OSP(L, 2) || "HPKE-v1" || suite || label || info */
static void labeled_expand(uint8_t *out, size_t out_len, const uint8_t prk[32], const uint8_t *suite, size_t suite_len,
                           const char *label, const uint8_t *info, size_t info_len) {
    uint8_t t[32];
    uint8_t length[2] = {(uint8_t)(out_len >> 8), (uint8_t)out_len};
    size_t done = 0;
    for (uint8_t i = 1; done < out_len; i++) {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, prk, 32);
        if (i > 1) crypto_auth_hmacsha256_update(&st, t, sizeof t);
        crypto_auth_hmacsha256_update(&st, length, 2);
        crypto_auth_hmacsha256_update(&st, VERSION_LABEL, sizeof VERSION_LABEL);
        crypto_auth_hmacsha256_update(&st, suite, suite_len);
        crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label));
        if (info_len > 0) crypto_auth_hmacsha256_update(&st, info, info_len);
        crypto_auth_hmacsha256_update(&st, &i, 1);
        crypto_auth_hmacsha256_final(&st, t);
        sodium_memzero(&st, sizeof st);
        size_t take = out_len - done < 32 ? out_len - done : 32;
        memcpy(out + done, t, take);
        done += take;
    }
    sodium_memzero(t, sizeof t);
}

/* ExtractAndExpand(dh, kem_context) of DHKEM(X25519, HKDF-SHA256) */
static void kem_shared_secret(uint8_t shared[32], const uint8_t dh[32], const uint8_t enc[32], const uint8_t pk_r[32]) {
    uint8_t prk[32], kem_context[64];
    memcpy(kem_context, enc, 32);
    memcpy(kem_context + 32, pk_r, 32);
    labeled_extract(prk, NULL, 0, KEM_SUITE, sizeof KEM_SUITE, "eae_prk", dh, 32);
    labeled_expand(shared, 32, prk, KEM_SUITE, sizeof KEM_SUITE, "shared_secret", kem_context, sizeof kem_context);
    sodium_memzero(prk, sizeof prk);
}

/* KeySchedule for mode_base with an empty PSK, from the KEM's shared secret, which Encap and
 * Decap both derive from their DH result, enc and the recipient's public key */
static void key_schedule(smqtt_hpke_context *ctx, const uint8_t dh[32], const uint8_t enc[32], const uint8_t pk_r[32],
                         const uint8_t *info, size_t info_len) {
    uint8_t shared[32], context[65], secret[32];
    kem_shared_secret(shared, dh, enc, pk_r);
    context[0] = 0x00; /* mode_base */
    labeled_extract(context + 1, NULL, 0, HPKE_SUITE, sizeof HPKE_SUITE, "psk_id_hash", NULL, 0);
    labeled_extract(context + 33, NULL, 0, HPKE_SUITE, sizeof HPKE_SUITE, "info_hash", info, info_len);
    labeled_extract(secret, shared, 32, HPKE_SUITE, sizeof HPKE_SUITE, "secret", NULL, 0);
    labeled_expand(ctx->key, 32, secret, HPKE_SUITE, sizeof HPKE_SUITE, "key", context, sizeof context);
    labeled_expand(ctx->base_nonce, 12, secret, HPKE_SUITE, sizeof HPKE_SUITE, "base_nonce", context, sizeof context);
    labeled_expand(ctx->exporter_secret, 32, secret, HPKE_SUITE, sizeof HPKE_SUITE, "exp", context, sizeof context);
    ctx->seq = 0;
    sodium_memzero(shared, sizeof shared);
    sodium_memzero(secret, sizeof secret);
}

smqtt_err smqtt_hpke_setup_base_r(smqtt_hpke_context *ctx, const uint8_t enc[32], const uint8_t sk_r[32],
                                  const uint8_t pk_r[32], const uint8_t *info, size_t info_len) {
    if (ctx == NULL || enc == NULL || sk_r == NULL || pk_r == NULL || (info == NULL && info_len > 0))
        return SMQTT_ERR_INVALID_ARGUMENT;
    uint8_t dh[32];
    /* libsodium refuses an all-zero result (a small-order enc): RFC 9180 §7.1.4 */
    if (crypto_scalarmult(dh, sk_r, enc) != 0) return SMQTT_ERR_HPKE_OPEN_FAILED;
    key_schedule(ctx, dh, enc, pk_r, info, info_len);
    sodium_memzero(dh, sizeof dh);
    return SMQTT_OK;
}

smqtt_err smqtt_hpke_setup_base_s(smqtt_hpke_context *ctx, uint8_t enc[32], const uint8_t sk_e[32],
                                  const uint8_t pk_r[32], const uint8_t *info, size_t info_len) {
    if (ctx == NULL || enc == NULL || sk_e == NULL || pk_r == NULL || (info == NULL && info_len > 0))
        return SMQTT_ERR_INVALID_ARGUMENT;
    uint8_t dh[32];
    if (crypto_scalarmult_base(enc, sk_e) != 0) return SMQTT_ERR_KEY_INVALID;
    if (crypto_scalarmult(dh, sk_e, pk_r) != 0) return SMQTT_ERR_KEY_INVALID;
    key_schedule(ctx, dh, enc, pk_r, info, info_len);
    sodium_memzero(dh, sizeof dh);
    return SMQTT_OK;
}

static void context_nonce(uint8_t nonce[12], const smqtt_hpke_context *ctx) {
    memcpy(nonce, ctx->base_nonce, 12);
    uint64_t seq = ctx->seq;
    for (int i = 11; i >= 4; i--) {
        nonce[i] ^= (uint8_t)seq;
        seq >>= 8;
    }
}

smqtt_err smqtt_hpke_context_open(smqtt_hpke_context *ctx, uint8_t *pt, size_t pt_cap, size_t *pt_len,
                                  const uint8_t *ct, size_t ct_len, const uint8_t *aad, size_t aad_len) {
    if (pt_len != NULL) *pt_len = 0;
    if (ctx == NULL || pt_len == NULL || (ct == NULL && ct_len > 0) || (aad == NULL && aad_len > 0) ||
        (pt == NULL && pt_cap > 0))
        return SMQTT_ERR_INVALID_ARGUMENT;
    if (ct_len < 16) return SMQTT_ERR_HPKE_OPEN_FAILED;
    if (pt_cap < ct_len - 16) return SMQTT_ERR_BUFFER_TOO_SMALL;
    if (ctx->seq == UINT64_MAX) return SMQTT_ERR_HPKE_OPEN_FAILED; /* MessageLimitReached */
    uint8_t nonce[12];
    context_nonce(nonce, ctx);
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(pt, NULL, ct, ct_len - 16, ct + ct_len - 16, aad, aad_len,
                                                           nonce, ctx->key) != 0) {
        if (pt_cap > 0) sodium_memzero(pt, ct_len - 16);
        return SMQTT_ERR_HPKE_OPEN_FAILED;
    }
    ctx->seq++;
    *pt_len = ct_len - 16;
    return SMQTT_OK;
}

smqtt_err smqtt_hpke_context_seal(smqtt_hpke_context *ctx, uint8_t *out, size_t out_cap, size_t *out_len,
                                  const uint8_t *pt, size_t pt_len, const uint8_t *aad, size_t aad_len) {
    if (out_len != NULL) *out_len = 0;
    if (ctx == NULL || out == NULL || out_len == NULL || (pt == NULL && pt_len > 0) || (aad == NULL && aad_len > 0))
        return SMQTT_ERR_INVALID_ARGUMENT;
    if (out_cap < pt_len + 16 || pt_len + 16 < pt_len) return SMQTT_ERR_BUFFER_TOO_SMALL;
    if (ctx->seq == UINT64_MAX) return SMQTT_ERR_INVALID_ARGUMENT;
    uint8_t nonce[12];
    context_nonce(nonce, ctx);
    unsigned long long len = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt(out, &len, pt, pt_len, aad, aad_len, NULL, nonce, ctx->key);
    ctx->seq++;
    *out_len = (size_t)len;
    return SMQTT_OK;
}

smqtt_err smqtt_hpke_open_base(uint8_t *pt, size_t pt_cap, size_t *pt_len, const uint8_t enc[32],
                               const uint8_t sk_r[32], const uint8_t pk_r[32], const uint8_t *info, size_t info_len,
                               const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len) {
    smqtt_hpke_context ctx;
    smqtt_err err = smqtt_hpke_setup_base_r(&ctx, enc, sk_r, pk_r, info, info_len);
    if (err == SMQTT_OK) err = smqtt_hpke_context_open(&ctx, pt, pt_cap, pt_len, ct, ct_len, aad, aad_len);
    sodium_memzero(&ctx, sizeof ctx);
    return err;
}

/* ---- context signatures ---------------------------------------------------------------------------- */

int smqtt_verify_with_context(const uint8_t signature[64], const char *context, const uint8_t *message,
                              size_t message_len, const uint8_t public_key[32], uint8_t *work, size_t work_cap) {
    if (signature == NULL || context == NULL || public_key == NULL || work == NULL || (message == NULL && message_len > 0))
        return 0;
    size_t context_len = strlen(context);
    if (context_len == 0 || context_len > 128) return 0;
    for (size_t i = 0; i < context_len; i++)
        if (context[i] < 0x20 || context[i] > 0x7e) return 0;
    size_t total = 9 + context_len + 1 + message_len;
    if (total < message_len || work_cap < total) return 0;
    memcpy(work, "smqtt/v1 ", 9);
    memcpy(work + 9, context, context_len);
    work[9 + context_len] = 0x00;
    if (message_len > 0) memcpy(work + 10 + context_len, message, message_len);
    return crypto_sign_verify_detached(signature, work, total, public_key) == 0;
}
