/*
 * What a device signs for the key server: HTTP requests (docs/documents.md §9) and the
 * enrollment proof of possession (§10). Both are Ed25519 signatures with a context (§2).
 */
#include <sodium.h>
#include <string.h>

#include "internal.h"

static size_t put(uint8_t *out, const void *bytes, size_t len) {
    memcpy(out, bytes, len);
    return len;
}

static size_t decimal(char out[13], uint64_t value) {
    char reversed[13];
    size_t n = 0;
    do reversed[n++] = (char)('0' + value % 10), value /= 10;
    while (value > 0);
    for (size_t i = 0; i < n; i++) out[i] = reversed[n - 1 - i];
    out[n] = '\0';
    return n;
}

smqtt_err smqtt_request_sign(smqtt_request_headers *out, const char *method, const char *path, const uint8_t *body,
                             size_t body_len, uint64_t timestamp, const uint8_t nonce[16], const uint8_t signing_key[64]) {
    if (out == NULL || method == NULL || path == NULL || nonce == NULL || signing_key == NULL ||
        (body == NULL && body_len > 0) || timestamp > 999999999999ull)
        return SMQTT_ERR_INVALID_ARGUMENT;
    size_t method_len = strlen(method), path_len = strlen(path), len = 0;
    if (method_len == 0 || method_len > SMQTT_REQUEST_MAX_METHOD_BYTES || path_len == 0 ||
        path_len > SMQTT_REQUEST_MAX_PATH_BYTES)
        return SMQTT_ERR_INVALID_ARGUMENT;
    uint8_t hash[32];
    char hash_text[44];
    crypto_hash_sha256(hash, body, body_len);
    smqtt_base64url_encode(hash_text, sizeof hash_text, &len, hash, sizeof hash);
    size_t ts_len = decimal(out->timestamp, timestamp), nonce_len = 0;
    smqtt_base64url_encode(out->nonce, sizeof out->nonce, &nonce_len, nonce, 16);
    /* "smqtt/v1 http-request" 0x00 || METHOD \n path \n timestamp \n nonce \n base64url(SHA-256(body)) */
    uint8_t m[22 + SMQTT_REQUEST_MAX_METHOD_BYTES + 1 + SMQTT_REQUEST_MAX_PATH_BYTES + 1 + 12 + 1 + 22 + 1 + 43];
    size_t n = put(m, "smqtt/v1 http-request", 22); /* with its 0x00 */
    for (size_t i = 0; i < method_len; i++)
        m[n++] = (uint8_t)(method[i] >= 'a' && method[i] <= 'z' ? method[i] - 'a' + 'A' : method[i]);
    m[n++] = '\n';
    n += put(m + n, path, path_len);
    m[n++] = '\n';
    n += put(m + n, out->timestamp, ts_len);
    m[n++] = '\n';
    n += put(m + n, out->nonce, nonce_len);
    m[n++] = '\n';
    n += put(m + n, hash_text, len);
    uint8_t signature[64];
    if (crypto_sign_detached(signature, NULL, m, n, signing_key) != 0) return SMQTT_ERR_INTERNAL;
    smqtt_base64url_encode(out->signature, sizeof out->signature, &len, signature, sizeof signature);
    return SMQTT_OK;
}

smqtt_err smqtt_enrollment_proof(char out[87], const char *token, const uint8_t signing_public_key[32],
                                 const uint8_t agreement_public_key[32], const uint8_t signing_key[64]) {
    if (out == NULL || token == NULL || signing_public_key == NULL || agreement_public_key == NULL || signing_key == NULL)
        return SMQTT_ERR_INVALID_ARGUMENT;
    /* "smqtt/v1 enrollment" 0x00 || SHA-256(utf8(token)) || signingKey || agreementKey */
    uint8_t m[20 + 32 + 32 + 32], signature[64];
    size_t n = put(m, "smqtt/v1 enrollment", 20), len = 0;
    crypto_hash_sha256(m + n, (const uint8_t *)token, strlen(token));
    n += 32;
    n += put(m + n, signing_public_key, 32);
    n += put(m + n, agreement_public_key, 32);
    if (crypto_sign_detached(signature, NULL, m, n, signing_key) != 0) return SMQTT_ERR_INTERNAL;
    smqtt_base64url_encode(out, 87, &len, signature, sizeof signature);
    return SMQTT_OK;
}
