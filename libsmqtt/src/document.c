/*
 * Signed documents (docs/documents.md): base64url, the reading steps of §3.2, the strict field
 * rules of §3.3, the key bundle (§4) and the revocation list (§5), and the CONNECT password
 * (§8). JSON is parsed with cJSON after a strict grammar pass (json_strict.c).
 */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- base64url ------------------------------------------------------------------------------ */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int smqtt_base64url_decode(uint8_t *out, size_t out_cap, size_t *out_len, const char *text, size_t len) {
    if (out_len == NULL || (text == NULL && len > 0)) return -1;
    *out_len = 0;
    if (len % 4 == 1) return -1;
    size_t n = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (n > out_cap) return -1;
    for (size_t i = 0; i < len; i++)
        if (b64_value((unsigned char)text[i]) < 0) return -1;
    /* the unused low bits of the last character are zero (canonical form only) */
    if (len % 4 == 2 && (b64_value((unsigned char)text[len - 1]) & 0x0f) != 0) return -1;
    if (len % 4 == 3 && (b64_value((unsigned char)text[len - 1]) & 0x03) != 0) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 6) | (uint32_t)b64_value((unsigned char)text[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out_len = o;
    return 0;
}

int smqtt_base64url_encode(char *out, size_t out_cap, size_t *out_len, const uint8_t *bytes, size_t len) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
    if (out == NULL || out_len == NULL || out_cap < n + 1 || (bytes == NULL && len > 0)) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | bytes[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = alphabet[(acc >> bits) & 0x3f];
        }
    }
    if (bits > 0) out[o++] = alphabet[(acc << (6 - bits)) & 0x3f];
    out[o] = '\0';
    *out_len = o;
    return 0;
}

int smqtt_ed25519_public_key_is_valid(const uint8_t pk[32]) {
    /* docs/documents.md, "A valid Ed25519 public key": y canonical, not one of the five
     * small-order y values (bit 255 ignored), and a point on the curve. Mixed-order points are
     * valid (crypto_sign_verify_detached accepts them as A, and the key server enrolls them), so
     * neither crypto_core_ed25519_is_valid_point nor crypto_scalarmult_ed25519_noclamp will do:
     * with libsodium 1.0.18 both also demand the prime-order subgroup. crypto_core_ed25519_add
     * decodes its inputs and checks only that they are on the curve. */
    static const uint8_t small_order_y[5][32] = {
        {0x01},
        {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
        {0x00},
        {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
         0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
        {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
         0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
    };
    /* The base point, a valid second operand for the addition. */
    static const uint8_t base[32] = {0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
                                     0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
                                     0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66};
    if (pk == NULL) return 0;
    uint8_t y[32];
    memcpy(y, pk, 32);
    y[31] &= 0x7f;
    /* y < p = 2^255 - 19: only 0x7fff...ffed and above fail, i.e. top byte 0x7f, the middle all
     * 0xff and the low byte at least 0xed. */
    int middle_all_ff = 1;
    for (size_t i = 1; i < 31; i++) middle_all_ff &= y[i] == 0xff;
    if (y[31] == 0x7f && middle_all_ff && y[0] >= 0xed) return 0;
    for (size_t i = 0; i < 5; i++)
        if (memcmp(y, small_order_y[i], 32) == 0) return 0;
    uint8_t sum[32];
    return crypto_core_ed25519_add(sum, pk, base) == 0;
}

/* ---- topic filters -------------------------------------------------------------------------- */

static int filter_is_valid(const char *f) {
    size_t len = strlen(f);
    if (len == 0 || len > 65535 || !smqtt__is_mqtt_text((const uint8_t *)f, len)) return 0;
    size_t levels = 1, level_start = 0;
    for (size_t i = 0; i < len; i++) {
        char c = f[i];
        if (c == '/') {
            levels++;
            level_start = i + 1;
        } else if (c == '+' || c == '#') {
            if (i != level_start) return 0;
            if (c == '+' && i + 1 < len && f[i + 1] != '/') return 0;
            if (c == '#' && i + 1 != len) return 0;
        }
    }
    return levels <= 128;
}

/* The next level of `s` from *pos (length in *len); 0 when there is none left. */
static int next_level(const char *s, size_t n, size_t *pos, const char **level, size_t *len, int *done) {
    if (*done) return 0;
    size_t start = *pos, i = start;
    while (i < n && s[i] != '/') i++;
    *level = s + start;
    *len = i - start;
    if (i >= n) *done = 1;
    else *pos = i + 1;
    return 1;
}

static int level_is(const char *level, size_t len, const char *word) { return len == strlen(word) && memcmp(level, word, len) == 0; }

/* filterCovers(wide, narrow): every topic `narrow` matches, `wide` matches (documents.md note 1). */
static int filter_covers(const char *wide, const char *narrow) {
    size_t wn = strlen(wide), nn = strlen(narrow), wp = 0, np = 0;
    int wd = 0, nd = 0, first = 1;
    for (;;) {
        const char *wl = NULL, *nl = NULL;
        size_t wlen = 0, nlen = 0;
        int has_w = next_level(wide, wn, &wp, &wl, &wlen, &wd);
        int has_n = next_level(narrow, nn, &np, &nl, &nlen, &nd);
        if (first) {
            first = 0;
            int w_wild = has_w && (level_is(wl, wlen, "+") || level_is(wl, wlen, "#"));
            int n_dollar = has_n && nlen > 0 && nl[0] == '$';
            if (w_wild && n_dollar) return 0;
        }
        if (has_w && level_is(wl, wlen, "#")) return 1;
        if (!has_w || !has_n) return has_w == has_n;
        if (level_is(nl, nlen, "#")) return 0;
        if (!level_is(wl, wlen, "+") && !(wlen == nlen && memcmp(wl, nl, wlen) == 0)) return 0;
    }
}

int smqtt_topic_matches(const char *filter, const uint8_t *topic, size_t topic_len) {
    if (filter == NULL || topic == NULL) return 0;
    const char *t = (const char *)topic;
    size_t fn = strlen(filter), fp = 0, tp = 0;
    int fd = 0, td = 0;
    if (topic_len > 0 && t[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return 0;
    for (;;) {
        const char *fl = NULL, *tl = NULL;
        size_t flen = 0, tlen = 0;
        int has_f = next_level(filter, fn, &fp, &fl, &flen, &fd);
        int has_t = next_level(t, topic_len, &tp, &tl, &tlen, &td);
        if (has_f && level_is(fl, flen, "#")) return 1; /* also matches the parent level */
        if (!has_f || !has_t) return has_f == has_t;
        if (!level_is(fl, flen, "+") && !(flen == tlen && memcmp(fl, tl, flen) == 0)) return 0;
    }
}

/* ---- strict field rules (§3.3) --------------------------------------------------------------- */

/* Exactly the required keys plus any optional ones, none twice. */
static int keys_exact(const cJSON *obj, const char *const *required, const char *const *optional) {
    if (!cJSON_IsObject(obj)) return 0;
    size_t need = 0;
    for (const char *const *r = required; *r != NULL; r++) need++;
    size_t seen_required = 0;
    for (const cJSON *a = obj->child; a != NULL; a = a->next) {
        for (const cJSON *b = obj->child; b != a; b = b->next)
            if (strcmp(a->string, b->string) == 0) return 0; /* duplicate key: refused (left open by the docs) */
        int known = 0;
        for (const char *const *r = required; *r != NULL && !known; r++)
            if (strcmp(a->string, *r) == 0) known = 1, seen_required++;
        for (const char *const *o = optional; o != NULL && *o != NULL && !known; o++)
            if (strcmp(a->string, *o) == 0) known = 1;
        if (!known) return 0;
    }
    return seen_required == need;
}

static const cJSON *field(const cJSON *obj, const char *key) { return cJSON_GetObjectItemCaseSensitive(obj, key); }

static int u32_of(const cJSON *item, uint32_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= 4294967295.0) || v != (double)(uint32_t)v) return 0;
    *out = (uint32_t)v;
    return 1;
}

/* text(n): 1..n UTF-16 code units, no control characters (U+0000-001F, U+007F-009F). */
static int text_of(const cJSON *item, size_t max_units) {
    if (!cJSON_IsString(item) || item->valuestring == NULL) return 0;
    const uint8_t *s = (const uint8_t *)item->valuestring;
    size_t len = strlen(item->valuestring), units = 0;
    if (!smqtt__is_mqtt_text(s, len)) return 0;
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        uint32_t cp;
        size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        cp = n == 1 ? c : n == 2 ? (c & 0x1fu) : n == 3 ? (c & 0x0fu) : (c & 0x07u);
        for (size_t k = 1; k < n; k++) cp = (cp << 6) | (s[i + k] & 0x3fu);
        if (cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f)) return 0;
        units += n == 4 ? 2 : 1;
        i += n;
    }
    return units >= 1 && units <= max_units;
}

static int literal_string(const cJSON *item, const char *value) {
    return cJSON_IsString(item) && item->valuestring != NULL && strcmp(item->valuestring, value) == 0;
}

static int literal_number(const cJSON *item, double value) { return cJSON_IsNumber(item) && item->valuedouble == value; }

/* b64(n): canonical base64url decoding to exactly n bytes. */
static int b64_of(const cJSON *item, uint8_t *out, size_t n) {
    size_t len = 0;
    if (!cJSON_IsString(item) || item->valuestring == NULL) return 0;
    return smqtt_base64url_decode(out, n, &len, item->valuestring, strlen(item->valuestring)) == 0 && len == n;
}

/* ---- reading a signed document (§3.2 steps 1-6) ------------------------------------------------ */

/*
 * Steps 1-6: on success *body is the parsed payload (the caller frees it). The decoded payload
 * is laid out in `work` after the signature context, so the signature is checked in place.
 */
static smqtt_err read_document(cJSON **body, uint8_t payload_hash[32], const char *document, size_t document_len,
                               const char *type, const uint8_t public_key[32], smqtt_err malformed,
                               smqtt_err signature_invalid, uint8_t *work, size_t work_cap) {
    *body = NULL;
    if (document == NULL || public_key == NULL || work == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    /* 1. the outer object, exactly payload and signature */
    if (!smqtt__json_is_strict((const uint8_t *)document, document_len)) return malformed;
    cJSON *outer = cJSON_ParseWithLength(document, document_len);
    if (outer == NULL) return malformed;
    static const char *const outer_keys[] = {"payload", "signature", NULL};
    smqtt_err err = SMQTT_OK;
    if (!keys_exact(outer, outer_keys, NULL)) err = malformed;
    const cJSON *payload = field(outer, "payload"), *signature = field(outer, "signature");
    /* 2. payload: canonical base64url of at most 1 MiB */
    size_t max_chars = (SMQTT_DOCUMENT_MAX_PAYLOAD_BYTES * 4 + 2) / 3;
    size_t prefix = 9 + strlen(type) + 1, payload_len = 0;
    if (err == SMQTT_OK) {
        if (!cJSON_IsString(payload) || payload->valuestring == NULL) err = malformed;
        else {
            size_t chars = strlen(payload->valuestring);
            if (chars == 0 || chars > max_chars) err = malformed;
            else if (work_cap < prefix + chars) err = SMQTT_ERR_BUFFER_TOO_SMALL;
            else if (smqtt_base64url_decode(work + prefix, work_cap - prefix, &payload_len, payload->valuestring, chars) != 0 ||
                     payload_len > SMQTT_DOCUMENT_MAX_PAYLOAD_BYTES)
                err = malformed;
            else if (payload_hash != NULL)
                crypto_hash_sha256(payload_hash, (const uint8_t *)payload->valuestring, chars);
        }
    }
    /* 3. signature: a string of 1..128 characters (else M) decoding to 64 bytes (else S) */
    uint8_t sig[64];
    if (err == SMQTT_OK) {
        if (!cJSON_IsString(signature) || signature->valuestring == NULL || signature->valuestring[0] == '\0' ||
            strlen(signature->valuestring) > 128)
            err = malformed;
        else if (!b64_of(signature, sig, 64))
            err = signature_invalid;
    }
    cJSON_Delete(outer);
    if (err != SMQTT_OK) return err;
    /* 4. the signature under the pinned key, context = the document's type */
    memcpy(work, "smqtt/v1 ", 9);
    memcpy(work + 9, type, strlen(type));
    work[prefix - 1] = 0x00;
    if (crypto_sign_verify_detached(sig, work, prefix + payload_len, public_key) != 0) return signature_invalid;
    /* 5. UTF-8 (a leading BOM dropped), 6. JSON */
    const uint8_t *text = work + prefix;
    size_t text_len = payload_len;
    if (text_len >= 3 && text[0] == 0xef && text[1] == 0xbb && text[2] == 0xbf) text += 3, text_len -= 3;
    if (!smqtt__is_mqtt_text(text, text_len)) return malformed;
    if (!smqtt__json_is_strict(text, text_len)) return malformed;
    *body = cJSON_ParseWithLength((const char *)text, text_len);
    return *body != NULL ? SMQTT_OK : malformed;
}

/* ---- key bundle (§4) ----------------------------------------------------------------------------- */

static int count_array(const cJSON *item, size_t max) {
    return cJSON_IsArray(item) && (size_t)cJSON_GetArraySize(item) <= max;
}

/* Appends a NUL-terminated string to a pool; -1 when full. */
static int pool_put(char *pool, size_t cap, size_t *used, const char *s, uint32_t *offset) {
    size_t len = strlen(s) + 1;
    if (cap - *used < len) return -1;
    memcpy(pool + *used, s, len);
    if (offset != NULL) *offset = (uint32_t)*used;
    *used += len;
    return 0;
}

static int pool_add(smqtt_key_bundle *b, const char *s, uint32_t *offset) {
    return pool_put(b->strings, b->strings_cap, &b->strings_len, s, offset);
}

/* A writer's fields into `writer`, its filters into the pool (all checked before). */
static void copy_writer(smqtt_bundle_writer *writer, const cJSON *w, uint32_t group, char *pool, size_t cap, size_t *used);

/* Step 7 for a writer: fields, key, rights within the group's filter. */
static int writer_is_valid(const cJSON *w, const char *group_filter, uint8_t key[32]) {
    static const char *const keys[] = {"kid", "principal", "signingKey", "publish", NULL};
    static const char *const publish_keys[] = {"allow", "deny", NULL};
    uint32_t kid;
    if (!keys_exact(w, keys, NULL) || !u32_of(field(w, "kid"), &kid) || !text_of(field(w, "principal"), 256)) return 0;
    if (!b64_of(field(w, "signingKey"), key, 32) || !smqtt_ed25519_public_key_is_valid(key)) return 0;
    const cJSON *publish = field(w, "publish");
    if (!keys_exact(publish, publish_keys, NULL)) return 0;
    const cJSON *allow = field(publish, "allow"), *deny = field(publish, "deny");
    if (!count_array(allow, 32) || !count_array(deny, 32)) return 0;
    if (cJSON_GetArraySize(allow) == 0 || cJSON_GetArraySize(allow) + cJSON_GetArraySize(deny) > 32) return 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, publish) {
        const cJSON *item;
        cJSON_ArrayForEach(item, f) {
            if (!text_of(item, 65535) || !filter_is_valid(item->valuestring) ||
                !filter_covers(group_filter, item->valuestring))
                return 0;
        }
    }
    return 1;
}

static smqtt_err bundle_rules(const cJSON *body, smqtt_key_bundle *out, size_t *epochs, size_t *writers,
                              size_t *strings) {
    static const char *const top[] = {"type", "v", "principal", "issuedAt", "notBefore", "notAfter", "groups", NULL};
    static const char *const group_keys[] = {"group", "name", "filter", "suite", "epochs", "writers", NULL};
    static const char *const epoch_keys[] = {"epoch", "activatesAt", "retiresAt", "enc", "sealedKey", "kem", NULL};
    const smqtt_err M = SMQTT_ERR_BUNDLE_MALFORMED;
    if (!keys_exact(body, top, NULL) || !literal_string(field(body, "type"), "smqtt.key-bundle") ||
        !literal_number(field(body, "v"), 2) || !text_of(field(body, "principal"), 256) ||
        !u32_of(field(body, "issuedAt"), &out->issued_at) || !u32_of(field(body, "notBefore"), &out->not_before) ||
        !u32_of(field(body, "notAfter"), &out->not_after) || out->not_before > out->not_after)
        return M;
    const cJSON *groups = field(body, "groups");
    if (!count_array(groups, 65536)) return M;
    *epochs = *writers = *strings = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, groups) {
        uint32_t id = 0, suite = 0, number = 0, a = 0, r = 0, kid = 0;
        if (!keys_exact(g, group_keys, NULL) || !u32_of(field(g, "group"), &id) || !text_of(field(g, "name"), 256) ||
            !text_of(field(g, "filter"), 65535) || !u32_of(field(g, "suite"), &suite))
            return M;
        for (const cJSON *h = groups->child; h != g; h = h->next) {
            uint32_t other;
            if (u32_of(field(h, "group"), &other) && other == id) return M;
        }
        const char *filter = field(g, "filter")->valuestring;
        *strings += strlen(filter) + 1;
        const cJSON *es = field(g, "epochs"), *ws = field(g, "writers");
        if (!count_array(es, 65536) || !count_array(ws, 65536)) return M;
        const cJSON *e;
        cJSON_ArrayForEach(e, es) {
            const cJSON *kem = field(e, "kem");
            uint8_t enc[1120], sealed[48];
            if (!keys_exact(e, epoch_keys, NULL) || !u32_of(field(e, "epoch"), &number) ||
                !u32_of(field(e, "activatesAt"), &a) || !u32_of(field(e, "retiresAt"), &r) || a > r)
                return M;
            int x25519 = literal_string(kem, "x25519"), xwing = literal_string(kem, "xwing");
            if ((!x25519 && !xwing) || !b64_of(field(e, "enc"), enc, x25519 ? 32 : 1120) ||
                !b64_of(field(e, "sealedKey"), sealed, 48))
                return M;
            for (const cJSON *f = es->child; f != e; f = f->next) {
                uint32_t other;
                if (u32_of(field(f, "epoch"), &other) && other == number) return M;
            }
            (*epochs)++;
        }
        const cJSON *w;
        cJSON_ArrayForEach(w, ws) {
            uint8_t key[32];
            if (!writer_is_valid(w, filter, key)) return M;
            u32_of(field(w, "kid"), &kid);
            for (const cJSON *v = ws->child; v != w; v = v->next) {
                uint32_t other;
                if (u32_of(field(v, "kid"), &other) && other == kid) return M;
            }
            const cJSON *publish = field(w, "publish"), *list, *item;
            cJSON_ArrayForEach(list, publish) cJSON_ArrayForEach(item, list) *strings += strlen(item->valuestring) + 1;
            (*writers)++;
        }
    }
    return SMQTT_OK;
}

/* info = "smqtt/v1 group-key" 0x00 || u32be(group) || u32be(epoch) || u32be(suite) || utf8(recipient) */
static size_t group_key_info(uint8_t *info, uint32_t group, uint32_t epoch, uint32_t suite, const char *recipient) {
    static const char label[] = "smqtt/v1 group-key";
    size_t n = sizeof label; /* with its 0x00 */
    memcpy(info, label, n);
    uint32_t v[3] = {group, epoch, suite};
    for (int i = 0; i < 3; i++, n += 4) {
        info[n] = (uint8_t)(v[i] >> 24);
        info[n + 1] = (uint8_t)(v[i] >> 16);
        info[n + 2] = (uint8_t)(v[i] >> 8);
        info[n + 3] = (uint8_t)v[i];
    }
    size_t len = strlen(recipient);
    memcpy(info + n, recipient, len);
    return n + len;
}

smqtt_err smqtt_key_bundle_open(smqtt_key_bundle *out, const char *document, size_t document_len,
                                const uint8_t ks_public_key[32], const char *own_id, const uint8_t sk[32],
                                const uint8_t pk[32], int64_t now, uint8_t *work, size_t work_cap) {
    if (out == NULL || own_id == NULL || sk == NULL || pk == NULL || strlen(own_id) > 1024) return SMQTT_ERR_INVALID_ARGUMENT;
    out->group_count = out->epoch_count = out->writer_count = out->strings_len = 0;
    cJSON *body = NULL;
    smqtt_err err = read_document(&body, NULL, document, document_len, "smqtt.key-bundle", ks_public_key,
                                  SMQTT_ERR_BUNDLE_MALFORMED, SMQTT_ERR_BUNDLE_SIGNATURE_INVALID, work, work_cap);
    if (err != SMQTT_OK) return err;
    size_t epochs = 0, writers = 0, strings = 0;
    err = bundle_rules(body, out, &epochs, &writers, &strings); /* 7 */
    if (err == SMQTT_OK && strcmp(field(body, "principal")->valuestring, own_id) != 0) err = SMQTT_ERR_BUNDLE_WRONG_RECIPIENT;
    else if (err == SMQTT_OK && now < (int64_t)out->not_before) err = SMQTT_ERR_BUNDLE_NOT_YET_VALID;
    else if (err == SMQTT_OK && now >= (int64_t)out->not_after) err = SMQTT_ERR_BUNDLE_EXPIRED;
    const cJSON *groups = field(body, "groups");
    if (err == SMQTT_OK &&
        ((size_t)cJSON_GetArraySize(groups) > out->group_cap || epochs > out->epoch_cap || writers > out->writer_cap ||
         strings > out->strings_cap || out->groups == NULL || out->epochs == NULL || out->writers == NULL ||
         out->strings == NULL))
        err = SMQTT_ERR_BUFFER_TOO_SMALL;
    /* 11: every epoch opens, then everything is copied out */
    const cJSON *g;
    if (err == SMQTT_OK) cJSON_ArrayForEach(g, groups) {
        smqtt_bundle_group *group = &out->groups[out->group_count++];
        u32_of(field(g, "group"), &group->group);
        u32_of(field(g, "suite"), &group->suite);
        pool_add(out, field(g, "filter")->valuestring, &group->filter_offset);
        const cJSON *e;
        cJSON_ArrayForEach(e, field(g, "epochs")) {
            smqtt_bundle_epoch *epoch = &out->epochs[out->epoch_count++];
            epoch->group = group->group;
            u32_of(field(e, "epoch"), &epoch->epoch);
            u32_of(field(e, "activatesAt"), &epoch->activates_at);
            u32_of(field(e, "retiresAt"), &epoch->retires_at);
            uint8_t enc[32], sealed[48], info[19 + 12 + 1024];
            size_t key_len = 0;
            if (!literal_string(field(e, "kem"), "x25519")) {
                err = SMQTT_ERR_HPKE_OPEN_FAILED; /* not the device's KEM */
                break;
            }
            b64_of(field(e, "enc"), enc, 32);
            b64_of(field(e, "sealedKey"), sealed, 48);
            size_t info_len = group_key_info(info, group->group, epoch->epoch, group->suite, own_id);
            if (smqtt_hpke_open_base(epoch->key, 32, &key_len, enc, sk, pk, info, info_len, NULL, 0, sealed, 48) != SMQTT_OK ||
                key_len != 32) {
                err = SMQTT_ERR_HPKE_OPEN_FAILED;
                break;
            }
        }
        if (err != SMQTT_OK) break;
        const cJSON *w;
        cJSON_ArrayForEach(w, field(g, "writers")) {
            copy_writer(&out->writers[out->writer_count++], w, group->group, out->strings, out->strings_cap,
                        &out->strings_len);
        }
    }
    cJSON_Delete(body);
    if (err != SMQTT_OK) {
        if (out->epochs != NULL) sodium_memzero(out->epochs, out->epoch_count * sizeof *out->epochs);
        out->group_count = out->epoch_count = out->writer_count = out->strings_len = 0;
    }
    return err;
}

static void copy_writer(smqtt_bundle_writer *writer, const cJSON *w, uint32_t group, char *pool, size_t cap, size_t *used) {
    writer->group = group;
    u32_of(field(w, "kid"), &writer->kid);
    b64_of(field(w, "signingKey"), writer->signing_key, 32);
    const cJSON *publish = field(w, "publish");
    writer->allow_count = (uint16_t)cJSON_GetArraySize(field(publish, "allow"));
    writer->deny_count = (uint16_t)cJSON_GetArraySize(field(publish, "deny"));
    writer->filters_offset = (uint32_t)*used;
    const cJSON *item;
    cJSON_ArrayForEach(item, field(publish, "allow")) pool_put(pool, cap, used, item->valuestring, NULL);
    cJSON_ArrayForEach(item, field(publish, "deny")) pool_put(pool, cap, used, item->valuestring, NULL);
}

/* ---- writer record (§6) ---------------------------------------------------------------------------- */

smqtt_err smqtt_writer_record_open(smqtt_writer_record *out, const char *document, size_t document_len,
                                   const uint8_t ks_public_key[32], const char *own_id, int64_t now, uint8_t *work,
                                   size_t work_cap) {
    static const char *const top[] = {"type", "v", "reader", "group", "filter", "issuedAt", "notAfter", "writers", NULL};
    const smqtt_err M = SMQTT_ERR_BUNDLE_MALFORMED;
    if (out == NULL || own_id == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    out->writer_count = out->strings_len = 0;
    cJSON *body = NULL;
    smqtt_err err = read_document(&body, NULL, document, document_len, "smqtt.writer-record", ks_public_key, M,
                                  SMQTT_ERR_BUNDLE_SIGNATURE_INVALID, work, work_cap);
    if (err != SMQTT_OK) return err;
    const cJSON *filter = field(body, "filter"), *writers = field(body, "writers");
    if (!keys_exact(body, top, NULL) || !literal_string(field(body, "type"), "smqtt.writer-record") ||
        !literal_number(field(body, "v"), 1) || !text_of(field(body, "reader"), 256) ||
        !u32_of(field(body, "group"), &out->group) || !text_of(filter, 65535) || !filter_is_valid(filter->valuestring) ||
        !u32_of(field(body, "issuedAt"), &out->issued_at) || !u32_of(field(body, "notAfter"), &out->not_after) ||
        out->issued_at > out->not_after || !count_array(writers, 256))
        err = M;
    size_t strings = 0, count = 0;
    const cJSON *w;
    if (err == SMQTT_OK) {
        strings = strlen(filter->valuestring) + 1;
        cJSON_ArrayForEach(w, writers) {
            uint8_t key[32];
            uint32_t kid = 0, other = 0;
            if (!writer_is_valid(w, filter->valuestring, key)) {
                err = M;
                break;
            }
            u32_of(field(w, "kid"), &kid);
            for (const cJSON *v = writers->child; v != w; v = v->next)
                if (u32_of(field(v, "kid"), &other) && other == kid) err = M;
            const cJSON *list, *item;
            cJSON_ArrayForEach(list, field(w, "publish")) cJSON_ArrayForEach(item, list) strings += strlen(item->valuestring) + 1;
            count++;
        }
    }
    if (err == SMQTT_OK && strcmp(field(body, "reader")->valuestring, own_id) != 0) err = SMQTT_ERR_BUNDLE_WRONG_RECIPIENT;
    else if (err == SMQTT_OK && now + 60 < (int64_t)out->issued_at) err = SMQTT_ERR_BUNDLE_NOT_YET_VALID;
    else if (err == SMQTT_OK && now >= (int64_t)out->not_after) err = SMQTT_ERR_BUNDLE_EXPIRED;
    else if (err == SMQTT_OK && (count > out->writer_cap || strings > out->strings_cap || out->strings == NULL ||
                                 (count > 0 && out->writers == NULL)))
        err = SMQTT_ERR_BUFFER_TOO_SMALL;
    if (err == SMQTT_OK) {
        pool_put(out->strings, out->strings_cap, &out->strings_len, filter->valuestring, &out->filter_offset);
        cJSON_ArrayForEach(w, writers) copy_writer(&out->writers[out->writer_count++], w, out->group, out->strings,
                                                  out->strings_cap, &out->strings_len);
    }
    cJSON_Delete(body);
    return err;
}

/* ---- principal record (§7) --------------------------------------------------------------------------- */

int smqtt_x25519_public_key_is_valid(const uint8_t pk[32]) {
    if (pk == NULL || (pk[31] & 0x80) != 0) return 0;
    /* u >= 2^255 - 19: 0x7f ff .. ff then a low byte >= 0xed */
    int high = pk[31] == 0x7f && pk[0] >= 0xed;
    for (int i = 1; i < 31 && high; i++) high = pk[i] == 0xff;
    if (high) return 0;
    /* A clamped scalar is a multiple of 8, so the result is zero exactly for points of small order. */
    static const uint8_t scalar[32] = {9};
    uint8_t q[32];
    return crypto_scalarmult(q, scalar, pk) == 0;
}

static int xwing_public_key_is_valid(const uint8_t *pk) {
    /* ML-KEM-768 encapsulation key: every 12-bit coefficient below q = 3329 (FIPS 203) */
    for (size_t i = 0; i < 3 * 384; i += 3) {
        unsigned a = pk[i] | ((unsigned)(pk[i + 1] & 0x0f) << 8), b = (pk[i + 1] >> 4) | ((unsigned)pk[i + 2] << 4);
        if (a >= 3329 || b >= 3329) return 0;
    }
    return smqtt_x25519_public_key_is_valid(pk + 1184);
}

smqtt_err smqtt_principal_record_open(smqtt_principal_record *out, const char *document, size_t document_len,
                                      const uint8_t ks_public_key[32], uint8_t *work, size_t work_cap) {
    static const char *const top[] = {"type", "v", "id", "kid", "roles", "signingKey", "agreementKey", "kem", "issuedAt", NULL};
    const smqtt_err M = SMQTT_ERR_IDENTITY_MALFORMED;
    if (out == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    cJSON *body = NULL;
    smqtt_err err = read_document(&body, NULL, document, document_len, "smqtt.principal", ks_public_key, M,
                                  SMQTT_ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID, work, work_cap);
    if (err != SMQTT_OK) return err;
    const cJSON *roles = field(body, "roles"), *kem = field(body, "kem"), *role;
    if (!keys_exact(body, top, NULL) || !literal_string(field(body, "type"), "smqtt.principal") ||
        !literal_number(field(body, "v"), 1) || !text_of(field(body, "id"), 256) || !u32_of(field(body, "kid"), &out->kid) ||
        !count_array(roles, 64) || !b64_of(field(body, "signingKey"), out->signing_key, 32) ||
        !smqtt_ed25519_public_key_is_valid(out->signing_key) || !u32_of(field(body, "issuedAt"), &out->issued_at))
        err = M;
    if (err == SMQTT_OK) cJSON_ArrayForEach(role, roles) if (!text_of(role, 64)) err = M;
    if (err == SMQTT_OK && literal_string(kem, "x25519")) {
        out->kem = SMQTT_KEM_X25519;
        if (!b64_of(field(body, "agreementKey"), out->agreement_key, 32) || !smqtt_x25519_public_key_is_valid(out->agreement_key))
            err = M;
    } else if (err == SMQTT_OK && literal_string(kem, "xwing")) {
        uint8_t xwing[1216];
        out->kem = SMQTT_KEM_XWING;
        if (!b64_of(field(body, "agreementKey"), xwing, sizeof xwing) || !xwing_public_key_is_valid(xwing)) err = M;
        else memcpy(out->agreement_key, xwing + 1184, 32);
    } else if (err == SMQTT_OK) {
        err = M;
    }
    if (err == SMQTT_OK) {
        const char *id = field(body, "id")->valuestring;
        memcpy(out->id, id, strlen(id) + 1); /* text(256) is at most 768 bytes */
    }
    cJSON_Delete(body);
    if (err != SMQTT_OK) memset(out, 0, sizeof *out);
    return err;
}

int smqtt_key_bundle_epoch_key(void *ctx, uint32_t group, uint32_t epoch, uint8_t key[32], uint8_t *suite) {
    const smqtt_key_bundle *b = ctx;
    for (size_t i = 0; i < b->epoch_count; i++) {
        if (b->epochs[i].group != group || b->epochs[i].epoch != epoch) continue;
        for (size_t j = 0; j < b->group_count; j++) {
            if (b->groups[j].group != group) continue;
            memcpy(key, b->epochs[i].key, 32);
            *suite = b->groups[j].suite > 0xff ? 0 : (uint8_t)b->groups[j].suite;
            return 0;
        }
    }
    return -1;
}

static const smqtt_bundle_writer *find_writer(const smqtt_key_bundle *b, uint32_t group, uint32_t kid) {
    for (size_t i = 0; i < b->writer_count; i++)
        if (b->writers[i].group == group && b->writers[i].kid == kid) return &b->writers[i];
    return NULL;
}

int smqtt_key_bundle_writer_key(void *ctx, uint32_t group, uint32_t sender, uint8_t public_key[32]) {
    const smqtt_bundle_writer *w = find_writer(ctx, group, sender);
    if (w == NULL) return -1;
    memcpy(public_key, w->signing_key, 32);
    return 0;
}

int smqtt_key_bundle_writer_may_publish(void *ctx, uint32_t group, uint32_t sender, const uint8_t *topic, size_t len) {
    const smqtt_key_bundle *b = ctx;
    const smqtt_bundle_writer *w = find_writer(b, group, sender);
    if (w == NULL) return 0;
    const char *f = b->strings + w->filters_offset;
    int allowed = 0;
    for (unsigned i = 0; i < (unsigned)w->allow_count + w->deny_count; i++, f += strlen(f) + 1) {
        int match = smqtt_topic_matches(f, topic, len);
        if (i < w->allow_count) allowed |= match;
        else if (match) return 0;
    }
    return allowed;
}

/* ---- revocation list (§5) ------------------------------------------------------------------------ */

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

smqtt_err smqtt_revocation_list_open(smqtt_revocation_list *out, const char *document, size_t document_len,
                                     const uint8_t ks_public_key[32], uint8_t *work, size_t work_cap) {
    static const char *const top[] = {"type", "v", "version", "issuedAt", "entries", NULL};
    static const char *const optional[] = {"prunedBefore", NULL};
    static const char *const entry_keys[] = {"principal", "kid", "revokedAt", NULL};
    const smqtt_err M = SMQTT_ERR_REVOCATION_LIST_MALFORMED;
    if (out == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    out->kid_count = 0;
    cJSON *body = NULL;
    smqtt_err err = read_document(&body, out->payload_hash, document, document_len, "smqtt.revocations", ks_public_key,
                                  M, SMQTT_ERR_REVOCATION_LIST_SIGNATURE_INVALID, work, work_cap);
    if (err != SMQTT_OK) return err;
    const cJSON *pruned = field(body, "prunedBefore"), *entries = field(body, "entries");
    out->pruned_before = 0;
    if (!keys_exact(body, top, optional) || !literal_string(field(body, "type"), "smqtt.revocations") ||
        !literal_number(field(body, "v"), 1) || !u32_of(field(body, "version"), &out->version) ||
        !u32_of(field(body, "issuedAt"), &out->issued_at) || (pruned != NULL && !u32_of(pruned, &out->pruned_before)) ||
        !count_array(entries, 1000000))
        err = M;
    const cJSON *e;
    if (err == SMQTT_OK) cJSON_ArrayForEach(e, entries) {
        uint32_t kid, at;
        if (!keys_exact(e, entry_keys, NULL) || !text_of(field(e, "principal"), 256) || !u32_of(field(e, "kid"), &kid) ||
            !u32_of(field(e, "revokedAt"), &at)) {
            err = M;
            break;
        }
        if (out->kids == NULL || out->kid_count >= out->kid_cap) {
            err = SMQTT_ERR_BUFFER_TOO_SMALL;
            break;
        }
        out->kids[out->kid_count++] = kid;
    }
    if (err == SMQTT_OK && out->kid_count > 1) {
        qsort(out->kids, out->kid_count, sizeof *out->kids, compare_u32);
        for (size_t i = 1; i < out->kid_count; i++)
            if (out->kids[i] == out->kids[i - 1]) err = M; /* kids unique across the list */
    }
    cJSON_Delete(body);
    if (err != SMQTT_OK) out->kid_count = 0;
    return err;
}

smqtt_err smqtt_revocation_list_compare(const smqtt_revocation_list *held, const smqtt_revocation_list *candidate,
                                        int *replace) {
    if (candidate == NULL || replace == NULL) return SMQTT_ERR_INVALID_ARGUMENT;
    *replace = 0;
    if (held == NULL || candidate->version > held->version) return *replace = 1, SMQTT_OK;
    if (candidate->version < held->version) return SMQTT_ERR_REVOCATION_LIST_ROLLBACK;
    if (sodium_memcmp(candidate->payload_hash, held->payload_hash, 32) != 0) return SMQTT_ERR_REVOCATION_LIST_ROLLBACK;
    return SMQTT_OK; /* the same list: unchanged */
}

int smqtt_revocation_list_is_revoked(void *ctx, uint32_t sender) {
    const smqtt_revocation_list *l = ctx;
    size_t lo = 0, hi = l->kid_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->kids[mid] == sender) return 1;
        if (l->kids[mid] < sender) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* ---- enrollment answer (§10) ------------------------------------------------------------------------ */

smqtt_err smqtt_enrollment_answer_check(smqtt_principal_record *record, uint8_t ks_key[32], const char *answer,
                                        size_t answer_len, const uint8_t *pinned_key, const char *own_id,
                                        const uint8_t signing_public_key[32], const uint8_t agreement_public_key[32],
                                        uint8_t *work, size_t work_cap) {
    static const char *const keys[] = {"principal", "kid", "keyServerPublicKey", NULL};
    static const char *const optional[] = {"certificatePem", NULL};
    const smqtt_err M = SMQTT_ERR_IDENTITY_MALFORMED;
    if (record == NULL || ks_key == NULL || answer == NULL || own_id == NULL || signing_public_key == NULL ||
        agreement_public_key == NULL)
        return SMQTT_ERR_INVALID_ARGUMENT;
    memset(record, 0, sizeof *record);
    if (!smqtt__json_is_strict((const uint8_t *)answer, answer_len)) return M;
    cJSON *body = cJSON_ParseWithLength(answer, answer_len);
    if (body == NULL) return M;
    uint32_t kid = 0;
    smqtt_err err = SMQTT_OK;
    const cJSON *pem = field(body, "certificatePem");
    if (!keys_exact(body, keys, optional) || !u32_of(field(body, "kid"), &kid) || (pem != NULL && !cJSON_IsString(pem)))
        err = M;
    else if (!b64_of(field(body, "keyServerPublicKey"), ks_key, 32) ||
             (pinned_key != NULL && sodium_memcmp(ks_key, pinned_key, 32) != 0))
        err = SMQTT_ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID;
    char *principal = err == SMQTT_OK ? cJSON_PrintUnformatted(field(body, "principal")) : NULL;
    if (err == SMQTT_OK && principal == NULL) err = M;
    if (err == SMQTT_OK) err = smqtt_principal_record_open(record, principal, strlen(principal), ks_key, work, work_cap);
    if (err == SMQTT_OK &&
        (strcmp(record->id, own_id) != 0 || record->kid != kid || record->kem != SMQTT_KEM_X25519 ||
         sodium_memcmp(record->signing_key, signing_public_key, 32) != 0 ||
         sodium_memcmp(record->agreement_key, agreement_public_key, 32) != 0))
        err = M;
    cJSON_free(principal);
    cJSON_Delete(body);
    if (err != SMQTT_OK) memset(record, 0, sizeof *record);
    return err;
}

/* ---- the device's keyring ---------------------------------------------------------------------- */

static int device_epoch_key(void *ctx, uint32_t group, uint32_t epoch, uint8_t key[32], uint8_t *suite) {
    return smqtt_key_bundle_epoch_key(((smqtt_device_keys *)ctx)->bundle, group, epoch, key, suite);
}
static int device_writer_key(void *ctx, uint32_t group, uint32_t sender, uint8_t public_key[32]) {
    return smqtt_key_bundle_writer_key(((smqtt_device_keys *)ctx)->bundle, group, sender, public_key);
}
static int device_may_publish(void *ctx, uint32_t group, uint32_t sender, const uint8_t *topic, size_t len) {
    return smqtt_key_bundle_writer_may_publish(((smqtt_device_keys *)ctx)->bundle, group, sender, topic, len);
}
static int device_is_revoked(void *ctx, uint32_t sender) {
    smqtt_revocation_list *list = ((smqtt_device_keys *)ctx)->revocations;
    return list != NULL && smqtt_revocation_list_is_revoked(list, sender);
}

void smqtt_device_keyring(smqtt_keyring *ring, smqtt_device_keys *keys) {
    if (ring == NULL) return;
    ring->epoch_key = device_epoch_key;
    ring->writer_key = device_writer_key;
    ring->writer_may_publish = device_may_publish;
    ring->is_revoked = device_is_revoked;
    ring->ctx = keys;
}

/* ---- CONNECT password (§8) ------------------------------------------------------------------------- */

smqtt_err smqtt_connect_password(char *out, size_t out_cap, size_t *out_len, const char *client_id, uint64_t timestamp,
                                 const uint8_t nonce[16], const uint8_t signing_key[64]) {
    if (out_len != NULL) *out_len = 0;
    if (out == NULL || out_len == NULL || client_id == NULL || nonce == NULL || signing_key == NULL)
        return SMQTT_ERR_INVALID_ARGUMENT;
    size_t id_len = strlen(client_id);
    if (id_len == 0 || id_len > SMQTT_CONNECT_CLIENT_ID_MAX_BYTES || timestamp > 999999999999ull)
        return SMQTT_ERR_INVALID_ARGUMENT;
    if (out_cap < SMQTT_CONNECT_PASSWORD_MAX_BYTES) return SMQTT_ERR_BUFFER_TOO_SMALL;
    char decimal[13], nonce_text[23], signature_text[87];
    size_t d = 0, nonce_len = 0, signature_len = 0;
    uint64_t t = timestamp;
    char reversed[13];
    do reversed[d++] = (char)('0' + t % 10), t /= 10;
    while (t > 0);
    for (size_t i = 0; i < d; i++) decimal[i] = reversed[d - 1 - i];
    decimal[d] = '\0';
    smqtt_base64url_encode(nonce_text, sizeof nonce_text, &nonce_len, nonce, 16);
    /* signed = "smqtt/v1 mqtt-connect" 0x00 || clientId "\n" timestamp "\n" nonce */
    uint8_t signed_bytes[22 + SMQTT_CONNECT_CLIENT_ID_MAX_BYTES + 1 + 12 + 1 + 22];
    size_t n = 0;
    memcpy(signed_bytes, "smqtt/v1 mqtt-connect", 21);
    n = 21;
    signed_bytes[n++] = 0x00;
    memcpy(signed_bytes + n, client_id, id_len), n += id_len;
    signed_bytes[n++] = '\n';
    memcpy(signed_bytes + n, decimal, d), n += d;
    signed_bytes[n++] = '\n';
    memcpy(signed_bytes + n, nonce_text, nonce_len), n += nonce_len;
    uint8_t signature[64];
    if (crypto_sign_detached(signature, NULL, signed_bytes, n, signing_key) != 0) return SMQTT_ERR_INTERNAL;
    smqtt_base64url_encode(signature_text, sizeof signature_text, &signature_len, signature, 64);
    size_t o = 0;
    memcpy(out, "smqtt1.", 7), o = 7;
    memcpy(out + o, decimal, d), o += d;
    out[o++] = '.';
    memcpy(out + o, nonce_text, nonce_len), o += nonce_len;
    out[o++] = '.';
    memcpy(out + o, signature_text, signature_len), o += signature_len;
    out[o] = '\0';
    *out_len = o;
    return SMQTT_OK;
}
