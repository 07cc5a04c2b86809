/* The device's storage directory (storage.h). POSIX file calls only. */
#define _POSIX_C_SOURCE 200809L

#include "storage.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int path_of(char *out, size_t cap, const char *dir, const char *name) {
    int n = dir != NULL ? snprintf(out, cap, "%s/%s", dir, name) : snprintf(out, cap, "%s", name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int write_all(int fd, const uint8_t *p, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n, len -= (size_t)n;
    }
    return 0;
}

int storage_write(const char *dir, const char *name, const void *data, size_t len, int mode) {
    char path[PATH_MAX], tmp[PATH_MAX];
    if (path_of(path, sizeof path, dir, name) != 0 || path_of(tmp, sizeof tmp, dir, "tmp") != 0) return -1;
    if (strlen(tmp) + strlen(name) + 2 > sizeof tmp) return -1;
    strcat(strcat(tmp, "-"), name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, (mode_t)mode);
    if (fd < 0) return -1;
    int failed = write_all(fd, data, len) != 0 || fsync(fd) != 0;
    failed |= close(fd) != 0;
    if (failed || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    /* The rename is durable only once the directory entry is. */
    int dfd = open(dir, O_RDONLY);
    if (dfd < 0) return -1;
    failed = fsync(dfd) != 0;
    close(dfd);
    return failed ? -1 : 0;
}

int storage_read(const char *dir, const char *name, void *buf, size_t cap, size_t *len) {
    char path[PATH_MAX];
    if (path_of(path, sizeof path, dir, name) != 0) return -1;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return errno == ENOENT ? 1 : -1;
    size_t n = fread(buf, 1, cap, f);
    int failed = ferror(f) || (n == cap && fgetc(f) != EOF); /* too big for buf */
    fclose(f);
    if (failed) return -1;
    *len = n;
    return 0;
}

/* Reads dir/name as a NUL-terminated text. */
static int read_text(const char *dir, const char *name, char *buf, size_t cap) {
    size_t len = 0;
    int got = storage_read(dir, name, buf, cap - 1, &len);
    if (got == 0) buf[len] = '\0';
    return got;
}

static int b64_field(uint8_t *out, size_t want, const cJSON *object, const char *field) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, field);
    size_t len = 0;
    if (!cJSON_IsString(item)) return -1;
    if (smqtt_base64url_decode(out, want, &len, item->valuestring, strlen(item->valuestring)) != 0) return -1;
    return len == want ? 0 : -1;
}

int storage_load_identity(const char *dir, device_identity *identity) {
    char text[1024];
    int got = read_text(dir, "identity.json", text, sizeof text);
    if (got != 0) return got;
    cJSON *json = cJSON_Parse(text);
    sodium_memzero(text, sizeof text);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(json, "id");
    const cJSON *kid = cJSON_GetObjectItemCaseSensitive(json, "kid");
    uint8_t seed[32];
    int bad = !cJSON_IsString(id) || strlen(id->valuestring) >= sizeof identity->id || !cJSON_IsNumber(kid) ||
              kid->valuedouble < 0 || kid->valuedouble > SMQTT_MAX_ID ||
              b64_field(seed, sizeof seed, json, "signingSeed") != 0 ||
              b64_field(identity->agreement_secret, 32, json, "agreementSecret") != 0;
    if (!bad) {
        strcpy(identity->id, id->valuestring);
        identity->kid = (uint32_t)kid->valuedouble;
        uint8_t public_key[32];
        crypto_sign_seed_keypair(public_key, identity->signing_key, seed);
        crypto_scalarmult_base(identity->agreement_public, identity->agreement_secret);
    }
    sodium_memzero(seed, sizeof seed);
    cJSON_Delete(json); /* (cJSON does not wipe: on a device, give it an allocator that does) */
    return bad ? -1 : 0;
}

int storage_save_identity(const char *dir, const device_identity *identity) {
    char seed[44], agreement[44], text[1024];
    size_t len = 0;
    smqtt_base64url_encode(seed, sizeof seed, &len, identity->signing_key, 32); /* the seed half */
    smqtt_base64url_encode(agreement, sizeof agreement, &len, identity->agreement_secret, 32);
    /* The id is checked at enrollment to match ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$: no escaping needed. */
    int n = snprintf(text, sizeof text, "{\"id\":\"%s\",\"kid\":%" PRIu32 ",\"signingSeed\":\"%s\",\"agreementSecret\":\"%s\"}\n",
                     identity->id, identity->kid, seed, agreement);
    int result = n > 0 && (size_t)n < sizeof text ? storage_write(dir, "identity.json", text, (size_t)n, 0600) : -1;
    sodium_memzero(seed, sizeof seed), sodium_memzero(agreement, sizeof agreement), sodium_memzero(text, sizeof text);
    return result;
}

int storage_load_key_server_key(const char *dir, uint8_t key[32]) {
    char text[64];
    int got = read_text(dir, "key-server.key", text, sizeof text);
    if (got != 0) return got;
    text[strcspn(text, "\n")] = '\0';
    size_t len = 0;
    return smqtt_base64url_decode(key, 32, &len, text, strlen(text)) == 0 && len == 32 ? 0 : -1;
}

int storage_save_key_server_key(const char *dir, const uint8_t key[32]) {
    char text[45];
    size_t len = 0;
    smqtt_base64url_encode(text, sizeof text - 1, &len, key, 32);
    text[len++] = '\n';
    return storage_write(dir, "key-server.key", text, len, 0644);
}

int storage_load_held(const char *dir, device_held *held) {
    char text[256];
    memset(held, 0, sizeof *held);
    int got = read_text(dir, "held.json", text, sizeof text);
    if (got != 0) return got;
    cJSON *json = cJSON_Parse(text);
    const cJSON *issued_at = cJSON_GetObjectItemCaseSensitive(json, "bundleIssuedAt");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(json, "revocationsVersion");
    int bad = !cJSON_IsNumber(issued_at) || issued_at->valuedouble < 0 || issued_at->valuedouble > UINT32_MAX;
    if (!bad && version != NULL) {
        bad = !cJSON_IsNumber(version) || version->valuedouble < 0 || version->valuedouble > UINT32_MAX ||
              b64_field(held->revocations_hash, 32, json, "revocationsHash") != 0;
        held->has_revocations = !bad;
        if (!bad) held->revocations_version = (uint32_t)version->valuedouble;
    }
    if (!bad) held->bundle_issued_at = (uint32_t)issued_at->valuedouble;
    cJSON_Delete(json);
    return bad ? -1 : 0;
}

int storage_save_held(const char *dir, const device_held *held) {
    char text[256], hash[44];
    size_t len = 0;
    int n = snprintf(text, sizeof text, "{\"bundleIssuedAt\":%" PRIu32, held->bundle_issued_at);
    if (held->has_revocations) {
        smqtt_base64url_encode(hash, sizeof hash, &len, held->revocations_hash, 32);
        n += snprintf(text + n, sizeof text - (size_t)n, ",\"revocationsVersion\":%" PRIu32 ",\"revocationsHash\":\"%s\"",
                      held->revocations_version, hash);
    }
    n += snprintf(text + n, sizeof text - (size_t)n, "}\n");
    return storage_write(dir, "held.json", text, (size_t)n, 0644);
}

/* smqtt_seq_flash over the file `sequence`: a decimal high-water mark. */
static int sequence_load(void *ctx, uint64_t *high_water) {
    char text[32];
    int got = read_text((const char *)ctx, "sequence", text, sizeof text);
    if (got == 1) {
        *high_water = 0; /* never written: nothing used yet */
        return 0;
    }
    char *end = NULL;
    if (got != 0 || text[0] < '0' || text[0] > '9') return -1;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || (*end != '\n' && *end != '\0')) return -1; /* unreadable: refuse to guess */
    *high_water = (uint64_t)value;
    return 0;
}

static int sequence_store(void *ctx, uint64_t high_water) {
    char text[32];
    int n = snprintf(text, sizeof text, "%" PRIu64 "\n", high_water);
    return storage_write((const char *)ctx, "sequence", text, (size_t)n, 0644); /* 0 only once durable */
}

void storage_sequence_flash(smqtt_seq_flash *flash, const char *dir) {
    flash->load = sequence_load;
    flash->store = sequence_store;
    flash->ctx = (void *)(uintptr_t)dir;
}
