/* Test helpers: checks that count, hex, files and JSON. */
#ifndef SMQTT_TESTUTIL_H
#define SMQTT_TESTUTIL_H

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "smqtt/smqtt.h"

extern int tu_failures;
extern int tu_checks;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        tu_checks++;                                                                  \
        if (!(cond)) {                                                                \
            tu_failures++;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

#define CHECK_ERR(got, want, label)                                                   \
    CHECK((int)(got) == (int)(want), "%s: got %s, want %s", (label), smqtt_err_code_str((int)(got)), \
          smqtt_err_code_str((int)(want)))

/* Decodes hex into a new buffer (malloc; tests may allocate); *len its length. NULL on bad hex. */
uint8_t *tu_hex(const char *hex, size_t *len);
/* Decodes exactly `n` bytes of hex into out; 0 on success. */
int tu_hex_into(uint8_t *out, size_t n, const char *hex);
/* 1 when the `n` bytes are what `hex` (of exactly n bytes) says, else 0. */
int tu_hex_equals(const uint8_t *bytes, size_t n, const char *hex);
/* Reads a whole file (NUL-terminated); NULL on error. */
char *tu_read_file(const char *path, size_t *len);
/* Parses a JSON file under the repository root: root/relative. Exits on failure. */
cJSON *tu_load_json(const char *root, const char *relative);
const char *tu_str(const cJSON *obj, const char *key);
double tu_num(const cJSON *obj, const char *key);
uint64_t tu_u64(const cJSON *obj, const char *key);
/* Prints the summary and returns the exit status. */
int tu_finish(const char *name);

#endif

/* Properties read from a vector's JSON object (contentType, responseTopic, correlationData hex,
 * userProperties [[key, value], ...]); the views point into `storage`. */
typedef struct tu_props {
    smqtt_properties props;
    smqtt_user_property users[32];
    uint8_t *correlation;
} tu_props;
/* Fills `out` from `obj` (NULL obj: no properties). 0 on success. */
int tu_props_from_json(tu_props *out, const cJSON *obj);
void tu_props_free(tu_props *p);

/* A receiver holding one epoch key and one writer, as an envelope vector describes them. */
typedef struct tu_keys {
    uint32_t group, epoch, sender;
    uint8_t suite, epoch_key[32], public_key[32];
    int revoked; /* with checks: the sender is on the revocation list */
    int forbid;  /* with checks: the sender may not publish on the topic */
} tu_keys;
/* From a vector case: group, epoch, kid (the sender), suite, epochKey, and the writer's key pair
 * from signingSeed (its secret key in sk). 0 on success. */
int tu_keys_from_case(tu_keys *k, uint8_t sk[64], const cJSON *c);
/* An smqtt_keyring over `k` (which must outlive it); with `checks`, also writer_may_publish and
 * is_revoked, answering from k->forbid and k->revoked. */
smqtt_keyring tu_keyring(tu_keys *k, int checks);
