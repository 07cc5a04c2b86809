/*
 * HKDF-SHA256 (RFC 5869) on libsodium's HMAC-SHA256: libsodium 1.0.18, the version Debian and
 * ESP-IDF ship, has no HKDF API. Extract: prk = HMAC(salt, ikm); expand: T(i) = HMAC(prk,
 * T(i-1) || info || i). An empty salt is the same HMAC key as HashLen zero bytes (HMAC pads
 * keys with zeros), as RFC 5869 asks.
 */
#include <sodium.h>
#include <string.h>

#include "internal.h"

void smqtt__hmac3(uint8_t out[32], const uint8_t *key, size_t key_len, const uint8_t *a, size_t a_len,
                  const uint8_t *b, size_t b_len, const uint8_t *c, size_t c_len) {
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, key, key_len);
    if (a != NULL && a_len > 0) crypto_auth_hmacsha256_update(&state, a, a_len);
    if (b != NULL && b_len > 0) crypto_auth_hmacsha256_update(&state, b, b_len);
    if (c != NULL && c_len > 0) crypto_auth_hmacsha256_update(&state, c, c_len);
    crypto_auth_hmacsha256_final(&state, out);
    sodium_memzero(&state, sizeof state);
}

smqtt_err smqtt_hkdf_sha256(uint8_t *okm, size_t okm_len, const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
                            size_t salt_len, const uint8_t *info, size_t info_len) {
    if (okm == NULL || okm_len > 255u * 32u) return SMQTT_ERR_INVALID_ARGUMENT;
    if ((ikm == NULL && ikm_len > 0) || (salt == NULL && salt_len > 0) || (info == NULL && info_len > 0))
        return SMQTT_ERR_INVALID_ARGUMENT;
    static const uint8_t empty[1] = {0};
    uint8_t prk[32];
    uint8_t t[32];
    size_t t_len = 0;
    smqtt__hmac3(prk, salt != NULL ? salt : empty, salt_len, ikm, ikm_len, NULL, 0, NULL, 0);
    for (size_t done = 0, i = 1; done < okm_len; i++) {
        uint8_t counter = (uint8_t)i;
        crypto_auth_hmacsha256_state state;
        crypto_auth_hmacsha256_init(&state, prk, sizeof prk);
        if (t_len > 0) crypto_auth_hmacsha256_update(&state, t, t_len);
        if (info_len > 0) crypto_auth_hmacsha256_update(&state, info, info_len);
        crypto_auth_hmacsha256_update(&state, &counter, 1);
        crypto_auth_hmacsha256_final(&state, t);
        sodium_memzero(&state, sizeof state);
        t_len = sizeof t;
        size_t take = okm_len - done < sizeof t ? okm_len - done : sizeof t;
        memcpy(okm + done, t, take);
        done += take;
    }
    sodium_memzero(prk, sizeof prk);
    sodium_memzero(t, sizeof t);
    return SMQTT_OK;
}
