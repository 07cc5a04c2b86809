/*
 * Envelope v1 (docs/envelope.md): parse, seal, open, verify. No heap: the signed bytes
 *   "smqtt/v1 envelope" 0x00 || header || topic length u16 BE || topic || bound || ciphertext
 * are laid out in the caller's work buffer; the AEAD's associated data is their middle part.
 */
#include <sodium.h>
#include <string.h>

#include "internal.h"

#define FLAG_RETAIN 0x10u
#define FLAG_PROPERTIES 0x20u
#define KNOWN_FLAGS (FLAG_RETAIN | FLAG_PROPERTIES)
#define KNOWN_BIND_BITS 0x07u
#define MAX_TOPIC_LEVELS 128u

static const uint8_t CONTEXT[SMQTT_ENVELOPE_CONTEXT_BYTES] = "smqtt/v1 envelope"; /* + its 0x00 */
static const uint8_t SENDER_SALT[15] = {'s', 'm', 'q', 't', 't', '/', 'v', '1', ' ', 's', 'e', 'n', 'd', 'e', 'r'};

int smqtt_suite_available(uint8_t suite) {
    if (suite == SMQTT_SUITE_CHACHA20POLY1305_ED25519) return 1;
    if (suite == SMQTT_SUITE_AES256GCM_ED25519) return crypto_aead_aes256gcm_is_available();
    return 0;
}

/* ---- varints (unsigned LEB128, minimal) ---------------------------------------------------- */

static size_t write_varint(uint8_t *out, uint64_t value) {
    size_t n = 0;
    while (value >= 0x80u) {
        out[n++] = (uint8_t)((value & 0x7fu) | 0x80u);
        value >>= 7;
    }
    out[n++] = (uint8_t)value;
    return n;
}

/* Reads a varint of at most `max_bytes` bytes and value <= max; 0 on success. */
static int read_varint(const uint8_t *bytes, size_t len, size_t *offset, uint64_t max, size_t max_bytes,
                       uint64_t *value) {
    uint64_t result = 0;
    for (size_t i = 0; i < max_bytes; i++) {
        if (*offset >= len) return -1; /* truncated */
        uint8_t byte = bytes[(*offset)++];
        result |= (uint64_t)(byte & 0x7fu) << (7u * i);
        if ((byte & 0x80u) == 0) {
            if (byte == 0 && i > 0) return -1; /* not minimal */
            if (result > max) return -1;        /* out of range */
            *value = result;
            return 0;
        }
    }
    return -1; /* too long */
}

/* ---- header ---------------------------------------------------------------------------------- */

smqtt_err smqtt_envelope_parse(smqtt_envelope_header *h, const uint8_t *bytes, size_t len) {
    if (h == NULL || (bytes == NULL && len > 0)) return SMQTT_ERR_INVALID_ARGUMENT;
    memset(h, 0, sizeof *h);
    if (len < 2) return SMQTT_ERR_ENVELOPE_MALFORMED;
    if (bytes[0] != SMQTT_ENVELOPE_VERSION) return SMQTT_ERR_ENVELOPE_UNSUPPORTED;
    uint8_t suite = bytes[1] & 0x0fu;
    if (suite != SMQTT_SUITE_CHACHA20POLY1305_ED25519 && suite != SMQTT_SUITE_AES256GCM_ED25519)
        return SMQTT_ERR_ENVELOPE_UNSUPPORTED;
    if ((bytes[1] & 0xf0u & ~KNOWN_FLAGS) != 0) return SMQTT_ERR_ENVELOPE_MALFORMED;
    size_t offset = 2;
    uint64_t group, epoch, sender, seq;
    /* 2^53-1 needs 8 LEB128 bytes; ids up to 2^32-1 need 5. */
    if (read_varint(bytes, len, &offset, SMQTT_MAX_ID, 5, &group) != 0 ||
        read_varint(bytes, len, &offset, SMQTT_MAX_ID, 5, &epoch) != 0 ||
        read_varint(bytes, len, &offset, SMQTT_MAX_ID, 5, &sender) != 0 ||
        read_varint(bytes, len, &offset, SMQTT_MAX_SEQ, 8, &seq) != 0)
        return SMQTT_ERR_ENVELOPE_MALFORMED;
    int bound = (bytes[1] & FLAG_PROPERTIES) != 0;
    size_t header_end = offset + 4u + (bound ? 2u : 0u);
    if (len < header_end + SMQTT_TAG_BYTES + SMQTT_SIGNATURE_BYTES) return SMQTT_ERR_ENVELOPE_MALFORMED;
    if (bound) {
        uint8_t mask = bytes[offset + 4], count = bytes[offset + 5];
        if ((mask & ~KNOWN_BIND_BITS) != 0) return SMQTT_ERR_ENVELOPE_MALFORMED;
        if (count > SMQTT_MAX_BOUND_USER_PROPERTIES) return SMQTT_ERR_ENVELOPE_MALFORMED;
        if (mask == 0 && count == 0) return SMQTT_ERR_ENVELOPE_MALFORMED;
        h->has_binding = 1;
        h->bind_mask = mask;
        h->bind_user_count = count;
    }
    h->version = bytes[0];
    h->suite = suite;
    h->retain = (bytes[1] & FLAG_RETAIN) != 0;
    h->group = (uint32_t)group;
    h->epoch = (uint32_t)epoch;
    h->sender = (uint32_t)sender;
    h->seq = seq;
    h->sent_at = ((uint32_t)bytes[offset] << 24) | ((uint32_t)bytes[offset + 1] << 16) |
                 ((uint32_t)bytes[offset + 2] << 8) | (uint32_t)bytes[offset + 3];
    h->header_len = (uint8_t)header_end;
    return SMQTT_OK;
}

static size_t encode_header(uint8_t out[SMQTT_HEADER_MAX_BYTES], const smqtt_envelope_header *h) {
    size_t n = 0;
    out[n++] = SMQTT_ENVELOPE_VERSION;
    out[n++] = (uint8_t)((h->retain ? FLAG_RETAIN : 0u) | (h->has_binding ? FLAG_PROPERTIES : 0u) | h->suite);
    n += write_varint(out + n, h->group);
    n += write_varint(out + n, h->epoch);
    n += write_varint(out + n, h->sender);
    n += write_varint(out + n, h->seq);
    out[n++] = (uint8_t)(h->sent_at >> 24);
    out[n++] = (uint8_t)(h->sent_at >> 16);
    out[n++] = (uint8_t)(h->sent_at >> 8);
    out[n++] = (uint8_t)h->sent_at;
    if (h->has_binding) {
        out[n++] = h->bind_mask;
        out[n++] = h->bind_user_count;
    }
    return n;
}

/* ---- keys and nonces --------------------------------------------------------------------------- */

smqtt_err smqtt_sender_key(uint8_t key[SMQTT_SENDER_KEY_BYTES], uint8_t iv[SMQTT_SENDER_IV_BYTES],
                           const uint8_t epoch_key[SMQTT_EPOCH_KEY_BYTES], uint8_t suite, uint32_t group,
                           uint32_t epoch, uint32_t sender) {
    if (key == NULL || iv == NULL || epoch_key == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    if (suite != SMQTT_SUITE_CHACHA20POLY1305_ED25519 && suite != SMQTT_SUITE_AES256GCM_ED25519)
        return SMQTT_ERR_INVALID_ARGUMENT;
    /* info = suite id alone (not the flags byte) || group || epoch || sender, u32 big-endian */
    uint8_t info[13];
    uint32_t ids[3] = {group, epoch, sender};
    info[0] = suite;
    for (int i = 0; i < 3; i++) {
        info[1 + 4 * i] = (uint8_t)(ids[i] >> 24);
        info[2 + 4 * i] = (uint8_t)(ids[i] >> 16);
        info[3 + 4 * i] = (uint8_t)(ids[i] >> 8);
        info[4 + 4 * i] = (uint8_t)ids[i];
    }
    uint8_t okm[SMQTT_SENDER_KEY_BYTES + SMQTT_SENDER_IV_BYTES];
    smqtt_err err = smqtt_hkdf_sha256(okm, sizeof okm, epoch_key, SMQTT_EPOCH_KEY_BYTES, SENDER_SALT,
                                      sizeof SENDER_SALT, info, sizeof info);
    if (err == SMQTT_OK) {
        memcpy(key, okm, SMQTT_SENDER_KEY_BYTES);
        memcpy(iv, okm + SMQTT_SENDER_KEY_BYTES, SMQTT_SENDER_IV_BYTES);
    }
    sodium_memzero(okm, sizeof okm);
    return err;
}

/* nonce = iv XOR (seq as a 96-bit big-endian integer) */
static void sender_nonce(uint8_t nonce[12], const uint8_t iv[12], uint64_t seq) {
    memcpy(nonce, iv, 12);
    for (int i = 11; i >= 4; i--) {
        nonce[i] ^= (uint8_t)seq;
        seq >>= 8;
    }
}

static int aead_seal(uint8_t suite, uint8_t *c, const uint8_t *m, size_t m_len, const uint8_t *ad, size_t ad_len,
                     const uint8_t nonce[12], const uint8_t key[32]) {
    unsigned long long c_len = 0;
    if (suite == SMQTT_SUITE_AES256GCM_ED25519)
        return crypto_aead_aes256gcm_encrypt(c, &c_len, m, m_len, ad, ad_len, NULL, nonce, key);
    return crypto_aead_chacha20poly1305_ietf_encrypt(c, &c_len, m, m_len, ad, ad_len, NULL, nonce, key);
}

static int aead_open(uint8_t suite, uint8_t *m, const uint8_t *c, size_t c_len, const uint8_t *ad, size_t ad_len,
                     const uint8_t nonce[12], const uint8_t key[32]) {
    const uint8_t *tag = c + c_len - SMQTT_TAG_BYTES;
    size_t body = c_len - SMQTT_TAG_BYTES;
    if (suite == SMQTT_SUITE_AES256GCM_ED25519)
        return crypto_aead_aes256gcm_decrypt_detached(m, NULL, c, body, tag, ad, ad_len, nonce, key);
    return crypto_aead_chacha20poly1305_ietf_decrypt_detached(m, NULL, c, body, tag, ad, ad_len, nonce, key);
}

/* ---- topics and bound properties ---------------------------------------------------------------- */

int smqtt__is_mqtt_text(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c == 0) return 0;
        if (c < 0x80u) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2u && c <= 0xdfu) n = 1, cp = c & 0x1fu;
        else if (c >= 0xe0u && c <= 0xefu) n = 2, cp = c & 0x0fu;
        else if (c >= 0xf0u && c <= 0xf4u) n = 3, cp = c & 0x07u;
        else return 0;
        if (len - i - 1 < n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0u) != 0x80u) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((n == 2 && cp < 0x800u) || (n == 3 && (cp < 0x10000u || cp > 0x10ffffu))) return 0; /* overlong */
        if (cp >= 0xd800u && cp <= 0xdfffu) return 0;                                            /* surrogate */
        i += n + 1;
    }
    return 1;
}

/* A topic name as validateTopic accepts it: not empty, no wildcard, no NUL, valid UTF-8, limits. */
static int topic_is_valid(const uint8_t *topic, size_t len) {
    if (len == 0 || len > SMQTT_MAX_TOPIC_BYTES) return 0;
    size_t levels = 1;
    for (size_t i = 0; i < len; i++) {
        if (topic[i] == '+' || topic[i] == '#') return 0;
        if (topic[i] == '/') levels++;
    }
    return levels <= MAX_TOPIC_LEVELS && smqtt__is_mqtt_text(topic, len);
}

/* Size of one length-prefixed field, or 0 when over the per-property limit. */
static size_t field_size(size_t len) { return len > SMQTT_MAX_BOUND_PROPERTY_BYTES ? 0 : 2 + len; }

static size_t put_field(uint8_t *out, const uint8_t *bytes, size_t len) {
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)len;
    if (len > 0) memcpy(out + 2, bytes, len);
    return 2 + len;
}

smqtt_err smqtt_bound_properties_encode(uint8_t *out, size_t out_cap, size_t *out_len, uint8_t mask,
                                        uint8_t user_count, const smqtt_properties *p) {
    if (out_len == NULL || (out == NULL && out_cap > 0)) return SMQTT_ERR_INVALID_ARGUMENT;
    *out_len = 0;
    static const smqtt_properties none;
    if (p == NULL) p = &none;
    const uint8_t *values[3] = {p->content_type, p->response_topic, p->correlation_data};
    size_t lengths[3] = {p->content_type_len, p->response_topic_len, p->correlation_data_len};
    /* First the size, with the limits: received properties that cannot have been sealed. */
    size_t size = 0;
    for (int k = 0; k < 3; k++) {
        if ((mask & (1u << k)) == 0) continue;
        size += 1;
        if (values[k] != NULL) {
            size_t f = field_size(lengths[k]);
            if (f == 0) return SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID;
            size += f;
        }
    }
    if (p->user_property_count < user_count) return SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID;
    if (user_count > 0 && p->user_properties == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < user_count; i++) {
        const smqtt_user_property *u = &p->user_properties[i];
        size_t fk = field_size(u->key_len), fv = field_size(u->value_len);
        if (fk == 0 || fv == 0) return SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID;
        if ((u->key == NULL && u->key_len > 0) || (u->value == NULL && u->value_len > 0))
            return SMQTT_ERR_INVALID_ARGUMENT;
        size += fk + fv;
    }
    if (size > SMQTT_MAX_BOUND_PROPERTIES_BYTES) return SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID;
    if (size > out_cap) return SMQTT_ERR_BUFFER_TOO_SMALL;
    size_t n = 0;
    for (int k = 0; k < 3; k++) {
        if ((mask & (1u << k)) == 0) continue;
        if (values[k] == NULL) {
            out[n++] = 0x00;
        } else {
            out[n++] = 0x01;
            n += put_field(out + n, values[k], lengths[k]);
        }
    }
    for (size_t i = 0; i < user_count; i++) {
        n += put_field(out + n, p->user_properties[i].key, p->user_properties[i].key_len);
        n += put_field(out + n, p->user_properties[i].value, p->user_properties[i].value_len);
    }
    *out_len = n;
    return SMQTT_OK;
}

/* A sealer's properties (what SMQTT's checkSealerProperties refuses). */
static smqtt_err check_sealer_properties(const smqtt_properties *p, uint8_t count) {
    const uint8_t *texts[2] = {p->content_type, p->response_topic};
    size_t lengths[2] = {p->content_type_len, p->response_topic_len};
    for (int k = 0; k < 2; k++)
        if (texts[k] != NULL && !smqtt__is_mqtt_text(texts[k], lengths[k])) return SMQTT_ERR_INVALID_ARGUMENT;
    if (p->user_property_count > 0 && p->user_properties == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < p->user_property_count; i++) {
        const smqtt_user_property *u = &p->user_properties[i];
        if ((u->key == NULL && u->key_len > 0) || (u->value == NULL && u->value_len > 0))
            return SMQTT_ERR_INVALID_ARGUMENT;
        if (!smqtt__is_mqtt_text(u->key, u->key_len) || !smqtt__is_mqtt_text(u->value, u->value_len))
            return SMQTT_ERR_INVALID_ARGUMENT;
    }
    if (count > SMQTT_MAX_BOUND_USER_PROPERTIES) return SMQTT_ERR_ENVELOPE_TOO_LARGE;
    return SMQTT_OK;
}

/* ---- signed bytes in the work buffer ----------------------------------------------------------- */

/*
 * Lays out context | header | topic length | topic | bound in `work` (bound encoded from the
 * descriptor and `properties`); returns the offset where the ciphertext goes, in *ct_offset.
 */
static smqtt_err layout_signed_bytes(uint8_t *work, size_t work_cap, size_t *ct_offset, const uint8_t *header,
                                     size_t header_len, const uint8_t *topic, size_t topic_len,
                                     const smqtt_envelope_header *h, const smqtt_properties *properties) {
    size_t n = SMQTT_ENVELOPE_CONTEXT_BYTES + header_len + 2 + topic_len;
    if (work_cap < n) return SMQTT_ERR_BUFFER_TOO_SMALL;
    memcpy(work, CONTEXT, SMQTT_ENVELOPE_CONTEXT_BYTES);
    memcpy(work + SMQTT_ENVELOPE_CONTEXT_BYTES, header, header_len);
    work[SMQTT_ENVELOPE_CONTEXT_BYTES + header_len] = (uint8_t)(topic_len >> 8);
    work[SMQTT_ENVELOPE_CONTEXT_BYTES + header_len + 1] = (uint8_t)topic_len;
    if (topic_len > 0) memcpy(work + SMQTT_ENVELOPE_CONTEXT_BYTES + header_len + 2, topic, topic_len);
    if (h->has_binding) {
        size_t bound_len = 0;
        smqtt_err err = smqtt_bound_properties_encode(work + n, work_cap - n, &bound_len, h->bind_mask,
                                                      h->bind_user_count, properties);
        if (err != SMQTT_OK) return err;
        n += bound_len;
    }
    *ct_offset = n;
    return SMQTT_OK;
}

/* ---- seal ------------------------------------------------------------------------------------------ */

smqtt_err smqtt_envelope_seal(uint8_t *out, size_t out_cap, size_t *out_len, const smqtt_seal_params *p,
                              const uint8_t *topic, size_t topic_len, const uint8_t *payload, size_t payload_len,
                              uint8_t *work, size_t work_cap) {
    if (out_len != NULL) *out_len = 0;
    if (out == NULL || out_len == NULL || p == NULL || work == NULL || (topic == NULL && topic_len > 0) ||
        (payload == NULL && payload_len > 0) || p->epoch_key == NULL || p->signing_key == NULL)
        return SMQTT_ERR_INVALID_ARGUMENT;
    if (p->suite != SMQTT_SUITE_CHACHA20POLY1305_ED25519 && p->suite != SMQTT_SUITE_AES256GCM_ED25519)
        return SMQTT_ERR_INVALID_ARGUMENT;
    if (p->seq > SMQTT_MAX_SEQ) return SMQTT_ERR_INVALID_ARGUMENT;
    if (payload_len > SMQTT_DEFAULT_MAX_PAYLOAD_BYTES) return SMQTT_ERR_ENVELOPE_TOO_LARGE;
    if (!topic_is_valid(topic, topic_len)) return SMQTT_ERR_TOPIC_INVALID;
    if (!smqtt_suite_available(p->suite)) return SMQTT_ERR_ENVELOPE_UNSUPPORTED;

    smqtt_envelope_header h;
    memset(&h, 0, sizeof h);
    h.version = SMQTT_ENVELOPE_VERSION;
    h.suite = p->suite;
    h.retain = p->retain ? 1 : 0;
    h.group = p->group;
    h.epoch = p->epoch;
    h.sender = p->sender;
    h.seq = p->seq;
    h.sent_at = p->sent_at;
    if (p->properties != NULL) {
        uint8_t mask = p->bind_mask, count = p->bind_user_count;
        if (mask == 0 && count == 0) {
            /* SMQTT's own sealer: every kind (present or absent) and every user property given. */
            mask = KNOWN_BIND_BITS;
            if (p->properties->user_property_count > SMQTT_MAX_BOUND_USER_PROPERTIES)
                return SMQTT_ERR_ENVELOPE_TOO_LARGE;
            count = (uint8_t)p->properties->user_property_count;
        }
        if ((mask & ~KNOWN_BIND_BITS) != 0 || count > p->properties->user_property_count)
            return SMQTT_ERR_INVALID_ARGUMENT;
        smqtt_err err = check_sealer_properties(p->properties, count);
        if (err != SMQTT_OK) return err;
        h.has_binding = 1;
        h.bind_mask = mask;
        h.bind_user_count = count;
    }

    uint8_t header[SMQTT_HEADER_MAX_BYTES];
    size_t header_len = encode_header(header, &h);
    size_t ct_len = payload_len + SMQTT_TAG_BYTES;
    size_t total = header_len + ct_len + SMQTT_SIGNATURE_BYTES;
    if (out_cap < total) return SMQTT_ERR_BUFFER_TOO_SMALL;

    size_t ct_offset = 0;
    smqtt_err err = layout_signed_bytes(work, work_cap, &ct_offset, header, header_len, topic, topic_len, &h,
                                        p->properties);
    /* Over the limits on the sealing side is ENVELOPE_TOO_LARGE (a receiver reads it as a bad signature). */
    if (err == SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID) return SMQTT_ERR_ENVELOPE_TOO_LARGE;
    if (err != SMQTT_OK) return err;
    if (work_cap - ct_offset < ct_len) return SMQTT_ERR_BUFFER_TOO_SMALL;

    uint8_t key[32], iv[12], nonce[12];
    err = smqtt_sender_key(key, iv, p->epoch_key, p->suite, p->group, p->epoch, p->sender);
    if (err != SMQTT_OK) return err;
    sender_nonce(nonce, iv, p->seq);
    const uint8_t *aad = work + SMQTT_ENVELOPE_CONTEXT_BYTES;
    int rc = aead_seal(p->suite, work + ct_offset, payload, payload_len, aad, ct_offset - SMQTT_ENVELOPE_CONTEXT_BYTES,
                       nonce, key);
    sodium_memzero(key, sizeof key);
    sodium_memzero(iv, sizeof iv);
    if (rc != 0) return SMQTT_ERR_INTERNAL;
    memcpy(out, header, header_len);
    memcpy(out + header_len, work + ct_offset, ct_len);
    if (crypto_sign_detached(out + header_len + ct_len, NULL, work, ct_offset + ct_len, p->signing_key) != 0)
        return SMQTT_ERR_INTERNAL;
    *out_len = total;
    return SMQTT_OK;
}

/* ---- verify and open ----------------------------------------------------------------------------- */

/*
 * The steps verify and open share once the sender is known: lay out the signed bytes with the
 * bound properties as received and check the signature. On success *aad_len is the length of the
 * AEAD's associated data, which starts at work + SMQTT_ENVELOPE_CONTEXT_BYTES.
 */
static smqtt_err check_signature(const smqtt_envelope_header *h, const uint8_t *envelope, size_t envelope_len,
                                 const uint8_t *topic, size_t topic_len, const smqtt_properties *properties,
                                 const uint8_t public_key[32], uint8_t *work, size_t work_cap, size_t *aad_len) {
    size_t ct_len = envelope_len - h->header_len - SMQTT_SIGNATURE_BYTES;
    size_t ct_offset = 0;
    smqtt_err err = layout_signed_bytes(work, work_cap, &ct_offset, envelope, h->header_len, topic, topic_len, h,
                                        properties);
    if (err != SMQTT_OK) return err; /* SIGNATURE_INVALID when received properties cannot match */
    if (work_cap - ct_offset < ct_len) return SMQTT_ERR_BUFFER_TOO_SMALL;
    memcpy(work + ct_offset, envelope + h->header_len, ct_len);
    if (crypto_sign_verify_detached(envelope + envelope_len - SMQTT_SIGNATURE_BYTES, work, ct_offset + ct_len,
                                    public_key) != 0)
        return SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID;
    *aad_len = ct_offset - SMQTT_ENVELOPE_CONTEXT_BYTES;
    return SMQTT_OK;
}

static smqtt_err begin(smqtt_envelope_header *h, const uint8_t *envelope, size_t envelope_len, const uint8_t *topic,
                       size_t topic_len, const smqtt_open_options *o, uint8_t *work) {
    if (h == NULL || envelope == NULL || o == NULL || o->keys == NULL || work == NULL ||
        (topic == NULL && topic_len > 0))
        return SMQTT_ERR_INVALID_ARGUMENT;
    if (topic_len > SMQTT_MAX_TOPIC_BYTES) return SMQTT_ERR_INVALID_ARGUMENT;
    size_t limit = o->max_envelope_bytes != 0 ? o->max_envelope_bytes : SMQTT_DEFAULT_MAX_ENVELOPE_BYTES;
    if (envelope_len > limit) return SMQTT_ERR_ENVELOPE_TOO_LARGE;
    return smqtt_envelope_parse(h, envelope, envelope_len);
}

smqtt_err smqtt_envelope_verify(smqtt_envelope_header *header, const uint8_t *envelope, size_t envelope_len,
                                const uint8_t *topic, size_t topic_len, const smqtt_open_options *o, uint8_t *work,
                                size_t work_cap) {
    smqtt_envelope_header h;
    smqtt_err err = begin(&h, envelope, envelope_len, topic, topic_len, o, work);
    if (err == SMQTT_OK && o->keys->writer_key == NULL) err = SMQTT_ERR_INVALID_ARGUMENT;
    if (err != SMQTT_OK) return err;
    uint8_t public_key[32];
    if (o->keys->writer_key(o->keys->ctx, h.group, h.sender, public_key) != 0) return SMQTT_ERR_UNKNOWN_SENDER;
    size_t aad_len = 0;
    err = check_signature(&h, envelope, envelope_len, topic, topic_len, o->properties, public_key, work, work_cap,
                          &aad_len);
    if (err == SMQTT_OK && header != NULL) *header = h;
    return err;
}

smqtt_err smqtt_envelope_open(uint8_t *plaintext, size_t plaintext_cap, size_t *plaintext_len,
                              smqtt_envelope_header *header, const uint8_t *envelope, size_t envelope_len,
                              const uint8_t *topic, size_t topic_len, const smqtt_open_options *o, uint8_t *work,
                              size_t work_cap) {
    if (plaintext_len != NULL) *plaintext_len = 0;
    if (plaintext_len == NULL || (plaintext == NULL && plaintext_cap > 0)) return SMQTT_ERR_INVALID_ARGUMENT;
    smqtt_envelope_header h;
    /* 1. size, then structure */
    smqtt_err err = begin(&h, envelope, envelope_len, topic, topic_len, o, work);
    if (err != SMQTT_OK) return err;
    const smqtt_keyring *keys = o->keys;
    if (keys->epoch_key == NULL || keys->writer_key == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    size_t ct_len = envelope_len - h.header_len - SMQTT_SIGNATURE_BYTES;
    if (plaintext_cap < ct_len - SMQTT_TAG_BYTES) return SMQTT_ERR_BUFFER_TOO_SMALL;
    /* 2. revocation */
    if (keys->is_revoked != NULL && keys->is_revoked(keys->ctx, h.sender)) return SMQTT_ERR_SENDER_REVOKED;
    /* 3. replay and freshness, read-only; the retained rules only when both retain flags are set */
    int retained = h.retain && o->retained;
    if (o->replay != NULL) {
        err = smqtt_replay_check(o->replay, h.group, h.epoch, h.sender, h.seq, h.sent_at, o->now, retained);
        if (err != SMQTT_OK) return err;
    }
    /* 4. epoch key, and the group's suite (nobody can downgrade a group) */
    uint8_t epoch_key[SMQTT_EPOCH_KEY_BYTES];
    uint8_t group_suite = 0;
    if (keys->epoch_key(keys->ctx, h.group, h.epoch, epoch_key, &group_suite) != 0) return SMQTT_ERR_UNKNOWN_EPOCH;
    if (group_suite != h.suite || !smqtt_suite_available(h.suite)) {
        err = SMQTT_ERR_ENVELOPE_UNSUPPORTED;
        goto done;
    }
    /* 5. listed writer, signature (over the bound properties as received) */
    uint8_t public_key[32];
    if (keys->writer_key(keys->ctx, h.group, h.sender, public_key) != 0) {
        err = SMQTT_ERR_UNKNOWN_SENDER;
        goto done;
    }
    size_t aad_len = 0;
    err = check_signature(&h, envelope, envelope_len, topic, topic_len, o->properties, public_key, work, work_cap,
                          &aad_len);
    if (err != SMQTT_OK) goto done;
    /* the sender is authenticated: its right to publish on this topic */
    if (keys->writer_may_publish != NULL && !keys->writer_may_publish(keys->ctx, h.group, h.sender, topic, topic_len)) {
        err = SMQTT_ERR_SENDER_NOT_PERMITTED;
        goto done;
    }
    /* 6. decryption: one code for every cause */
    {
        uint8_t key[32], iv[12], nonce[12];
        err = smqtt_sender_key(key, iv, epoch_key, h.suite, h.group, h.epoch, h.sender);
        if (err != SMQTT_OK) goto done;
        sender_nonce(nonce, iv, h.seq);
        const uint8_t *ct = envelope + h.header_len;
        int rc = aead_open(h.suite, plaintext, ct, ct_len, work + SMQTT_ENVELOPE_CONTEXT_BYTES, aad_len, nonce, key);
        sodium_memzero(key, sizeof key);
        sodium_memzero(iv, sizeof iv);
        if (rc != 0) {
            err = SMQTT_ERR_ENVELOPE_DECRYPTION_FAILED;
            goto done;
        }
    }
    /* 7. only now is the sequence number recorded (again checked: a copy may have been accepted) */
    if (keys->is_revoked != NULL && keys->is_revoked(keys->ctx, h.sender)) {
        err = SMQTT_ERR_SENDER_REVOKED;
        goto done;
    }
    if (o->replay != NULL) {
        err = smqtt_replay_accept(o->replay, h.group, h.epoch, h.sender, h.seq, h.sent_at, o->now, retained);
        if (err != SMQTT_OK) goto done;
    }
    *plaintext_len = ct_len - SMQTT_TAG_BYTES;
    if (header != NULL) *header = h;
done:
    sodium_memzero(epoch_key, sizeof epoch_key);
    if (err != SMQTT_OK && plaintext_cap > 0) sodium_memzero(plaintext, ct_len - SMQTT_TAG_BYTES);
    return err;
}
