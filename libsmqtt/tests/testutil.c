#include "testutil.h"

#include <stdlib.h>
#include <string.h>

int tu_failures = 0;
int tu_checks = 0;

static int nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

uint8_t *tu_hex(const char *hex, size_t *len) {
    size_t n = strlen(hex);
    if (n % 2 != 0) return NULL;
    uint8_t *out = malloc(n / 2 + 1);
    if (out == NULL) return NULL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (uint8_t)(hi * 16 + lo);
    }
    *len = n / 2;
    return out;
}

int tu_hex_into(uint8_t *out, size_t n, const char *hex) {
    size_t len = 0;
    uint8_t *bytes = hex != NULL ? tu_hex(hex, &len) : NULL;
    if (bytes == NULL || len != n) {
        free(bytes);
        return -1;
    }
    memcpy(out, bytes, n);
    free(bytes);
    return 0;
}

int tu_hex_equals(const uint8_t *bytes, size_t n, const char *hex) {
    size_t len = 0;
    uint8_t *want = hex != NULL ? tu_hex(hex, &len) : NULL;
    int equal = want != NULL && len == n && (n == 0 || memcmp(bytes, want, n) == 0);
    free(want);
    return equal;
}

char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 4096 + 1 > cap) buf = realloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL) *len = n;
    return buf;
}

cJSON *tu_load_json(const char *root, const char *relative) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, relative);
    char *text = tu_read_file(path, NULL);
    if (text == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    cJSON *json = cJSON_Parse(text);
    free(text);
    if (json == NULL) {
        fprintf(stderr, "cannot parse %s\n", path);
        exit(2);
    }
    return json;
}

const char *tu_str(const cJSON *obj, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

double tu_num(const cJSON *obj, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(item) ? item->valuedouble : -1;
}

uint64_t tu_u64(const cJSON *obj, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    /* Doubles hold integers up to 2^53 exactly, which is every id and seq in the vectors. */
    return cJSON_IsNumber(item) ? (uint64_t)item->valuedouble : 0;
}

int tu_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    return tu_failures == 0 ? 0 : 1;
}

int tu_props_from_json(tu_props *out, const cJSON *obj) {
    memset(out, 0, sizeof *out);
    if (obj == NULL) return 0;
    const char *ct = tu_str(obj, "contentType");
    if (ct != NULL) out->props.content_type = (const uint8_t *)ct, out->props.content_type_len = strlen(ct);
    const char *rt = tu_str(obj, "responseTopic");
    if (rt != NULL) out->props.response_topic = (const uint8_t *)rt, out->props.response_topic_len = strlen(rt);
    const char *cd = tu_str(obj, "correlationData");
    if (cd != NULL) {
        size_t len = 0;
        out->correlation = tu_hex(cd, &len);
        if (out->correlation == NULL) return -1;
        out->props.correlation_data = out->correlation;
        out->props.correlation_data_len = len;
    }
    const cJSON *users = cJSON_GetObjectItemCaseSensitive(obj, "userProperties");
    const cJSON *pair;
    size_t n = 0;
    cJSON_ArrayForEach(pair, users) {
        if (n >= 32 || cJSON_GetArraySize(pair) != 2) return -1;
        const char *k = cJSON_GetArrayItem(pair, 0)->valuestring;
        const char *v = cJSON_GetArrayItem(pair, 1)->valuestring;
        if (k == NULL || v == NULL) return -1;
        out->users[n].key = (const uint8_t *)k;
        out->users[n].key_len = strlen(k);
        out->users[n].value = (const uint8_t *)v;
        out->users[n].value_len = strlen(v);
        n++;
    }
    out->props.user_properties = n > 0 ? out->users : NULL;
    out->props.user_property_count = n;
    return 0;
}

void tu_props_free(tu_props *p) {
    free(p->correlation);
    p->correlation = NULL;
}

int tu_keys_from_case(tu_keys *k, uint8_t sk[64], const cJSON *c) {
    uint8_t seed[32];
    memset(k, 0, sizeof *k);
    k->group = (uint32_t)tu_u64(c, "group");
    k->epoch = (uint32_t)tu_u64(c, "epoch");
    k->sender = (uint32_t)tu_u64(c, "kid");
    k->suite = (uint8_t)tu_u64(c, "suite");
    if (tu_hex_into(k->epoch_key, 32, tu_str(c, "epochKey")) != 0 || tu_hex_into(seed, 32, tu_str(c, "signingSeed")) != 0)
        return -1;
    crypto_sign_seed_keypair(k->public_key, sk, seed);
    return 0;
}

static int keys_epoch_key(void *ctx, uint32_t group, uint32_t epoch, uint8_t key[32], uint8_t *suite) {
    const tu_keys *k = ctx;
    if (group != k->group || epoch != k->epoch) return -1;
    memcpy(key, k->epoch_key, 32);
    *suite = k->suite;
    return 0;
}

static int keys_writer_key(void *ctx, uint32_t group, uint32_t sender, uint8_t pk[32]) {
    const tu_keys *k = ctx;
    if (group != k->group || sender != k->sender) return -1;
    memcpy(pk, k->public_key, 32);
    return 0;
}

static int keys_may_publish(void *ctx, uint32_t group, uint32_t sender, const uint8_t *topic, size_t topic_len) {
    (void)group, (void)sender, (void)topic, (void)topic_len;
    return !((const tu_keys *)ctx)->forbid;
}

static int keys_is_revoked(void *ctx, uint32_t sender) {
    const tu_keys *k = ctx;
    return k->revoked && sender == k->sender;
}

smqtt_keyring tu_keyring(tu_keys *k, int checks) {
    smqtt_keyring ring = {keys_epoch_key, keys_writer_key, NULL, NULL, k};
    if (checks) ring.writer_may_publish = keys_may_publish, ring.is_revoked = keys_is_revoked;
    return ring;
}
