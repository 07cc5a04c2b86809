/*
 * smqtt-device: the Linux reference device of libsmqtt. A thermostat that
 *
 *   1. enrolls with a one-time token (proof of possession, pins the key server's key),
 *   2. connects to an SMQTT broker with its CONNECT password (or its client certificate),
 *   3. fetches and opens its key bundle and the revocation list,
 *   4. publishes sealed temperatures and receives sealed commands, verified and replay-checked,
 *   5. survives restarts: sequence numbers are reserved ahead in storage, the replay window saved.
 *
 *   smqtt-device enroll --dir DIR --key-server URL --ca FILE --id ID --token TOKEN
 *                       [--key-server-key BASE64URL] [--tls-public-key DER-FILE]
 *   smqtt-device run    --dir DIR --key-server URL --ca FILE --broker HOST:PORT
 *                       --publish TOPIC --commands TOPIC [--readings N] [--interval-ms MS]
 *                       [--expect-commands N] [--seconds S] [--tls-key PEM-FILE]
 *                       [--sequence flash|key-server]
 *
 * Every protocol step is libsmqtt's; this file moves bytes between it, libcurl (key_server.c),
 * libmosquitto and the storage directory (storage.c). It prints one JSON object per line
 * ("event": enrolled, connected, connect-refused, keys, subscribed, published, command,
 * security-error, done, …). Exit status: 0 done, 1 usage, 2 failure, 3 CONNECT refused by the
 * broker, 4 refused by the key server (e.g. ERR_PRINCIPAL_REVOKED).
 */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <mosquitto.h>
#include <signal.h>
#include <smqtt/smqtt.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "key_server.h"
#include "storage.h"

enum { EXIT_DONE = 0, EXIT_USAGE = 1, EXIT_FAILED = 2, EXIT_CONNECT_REFUSED = 3, EXIT_KEY_SERVER_REFUSED = 4 };

/* Fixed buffers, sized for this device's messages: a reading or command of at most 256 bytes. */
#define MAX_TOPIC_BYTES 256
#define MAX_PAYLOAD_BYTES 256
#define MAX_ENVELOPE_BYTES SMQTT_SEALED_MAX_BYTES(MAX_PAYLOAD_BYTES)

typedef struct options {
    const char *command, *dir, *key_server_url, *ca_file;
    const char *id, *token, *key_server_key, *tls_public_key; /* enroll */
    const char *broker, *publish_topic, *command_topic, *tls_key, *sequence; /* run */
    long readings, interval_ms, expect_commands, seconds;
} options;

/* ---- output: one JSON object per line ------------------------------------------------------ */

/* Writes `text` as a JSON string (UTF-8 passed through; quotes, backslashes, controls escaped). */
static void print_json_string(const uint8_t *text, size_t len) {
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"' || text[i] == '\\') printf("\\%c", text[i]);
        else if (text[i] < 0x20) printf("\\u%04x", text[i]);
        else putchar(text[i]);
    }
    putchar('"');
}

/* {"event":"<name>", then `fields` (printf format, already JSON), then "}". */
static void event(const char *name, const char *fields, ...) {
    printf("{\"event\":\"%s\"", name);
    if (fields != NULL && fields[0] != '\0') {
        va_list args;
        va_start(args, fields);
        putchar(',');
        vprintf(fields, args);
        va_end(args);
    }
    printf("}\n");
    fflush(stdout);
}

static void fail(const char *what, smqtt_err err) {
    event("error", "\"what\":\"%s\",\"code\":\"%s\"", what, smqtt_err_code_str(err));
}

/* ---- enroll ---------------------------------------------------------------------------------- */

static int enroll(const options *o) {
    device_identity me;
    if (storage_load_identity(o->dir, &me) != 1) {
        event("error", "\"what\":\"already enrolled (or %s/identity.json unreadable)\"", o->dir);
        return EXIT_FAILED;
    }
    memset(&me, 0, sizeof me);
    if (strlen(o->id) >= sizeof me.id) return EXIT_USAGE;
    strcpy(me.id, o->id);

    /* Fresh keys from libsodium's RNG (the integrator's entropy: PORTING.md). */
    uint8_t seed[32], signing_public[32];
    randombytes_buf(seed, sizeof seed);
    crypto_sign_seed_keypair(signing_public, me.signing_key, seed);
    sodium_memzero(seed, sizeof seed);
    randombytes_buf(me.agreement_secret, sizeof me.agreement_secret);
    crypto_scalarmult_base(me.agreement_public, me.agreement_secret);

    /* The key server's key, when the factory provisioned it: the answer must then carry this one. */
    uint8_t pinned[32];
    size_t pinned_len = 0;
    if (o->key_server_key != NULL &&
        (smqtt_base64url_decode(pinned, 32, &pinned_len, o->key_server_key, strlen(o->key_server_key)) != 0 ||
         pinned_len != 32))
        return EXIT_USAGE;

    char proof[87], signing_b64[44], agreement_b64[44];
    size_t len = 0;
    smqtt_err err = smqtt_enrollment_proof(proof, o->token, signing_public, me.agreement_public, me.signing_key);
    if (err != SMQTT_OK) return fail("enrollment proof", err), EXIT_FAILED;
    smqtt_base64url_encode(signing_b64, sizeof signing_b64, &len, signing_public, 32);
    smqtt_base64url_encode(agreement_b64, sizeof agreement_b64, &len, me.agreement_public, 32);

    /* POST /v1/enroll (docs/documents.md §10); cJSON escapes the token and id. */
    cJSON *request = cJSON_CreateObject(), *identity = cJSON_CreateObject();
    cJSON_AddStringToObject(request, "token", o->token);
    cJSON_AddStringToObject(identity, "type", "smqtt.public-identity");
    cJSON_AddNumberToObject(identity, "v", 1);
    cJSON_AddStringToObject(identity, "id", me.id);
    cJSON_AddStringToObject(identity, "kem", "x25519");
    cJSON_AddStringToObject(identity, "signingKey", signing_b64);
    cJSON_AddStringToObject(identity, "agreementKey", agreement_b64);
    cJSON_AddItemToObject(request, "identity", identity);
    cJSON_AddStringToObject(request, "proof", proof);
    if (o->tls_public_key != NULL) {
        /* A P-256 SubjectPublicKeyInfo (DER): the answer then carries a client certificate. */
        uint8_t der[512];
        char der_b64[700];
        size_t der_len = 0;
        if (storage_read(NULL, o->tls_public_key, der, sizeof der, &der_len) != 0) return cJSON_Delete(request), EXIT_USAGE;
        smqtt_base64url_encode(der_b64, sizeof der_b64, &len, der, der_len);
        cJSON_AddStringToObject(request, "tlsPublicKey", der_b64);
    }
    char *body = cJSON_PrintUnformatted(request);
    cJSON_Delete(request);
    key_server server = {o->key_server_url, o->ca_file};
    key_server_answer answer;
    int sent = body != NULL ? key_server_call(&server, "POST", "/v1/enroll", body, NULL, &answer) : -1;
    cJSON_free(body);
    char code[256];
    if (sent != 0 || answer.status != 200) {
        event("enroll-refused", "\"code\":\"%s\"", key_server_error_code(&answer, code, sizeof code));
        key_server_answer_free(&answer);
        return sent != 0 ? EXIT_FAILED : EXIT_KEY_SERVER_REFUSED;
    }

    /* The answer must be our own principal record, signed by the key server we pin from now on. */
    smqtt_principal_record record;
    uint8_t key_server_key[32];
    size_t work_cap = SMQTT_DOCUMENT_WORK_BYTES(answer.len);
    uint8_t *work = malloc(work_cap);
    err = work == NULL ? SMQTT_ERR_INTERNAL
                       : smqtt_enrollment_answer_check(&record, key_server_key, answer.body, answer.len,
                                                       o->key_server_key != NULL ? pinned : NULL, me.id,
                                                       signing_public, me.agreement_public, work, work_cap);
    free(work);
    if (err == SMQTT_OK && o->tls_public_key != NULL) {
        cJSON *json = cJSON_Parse(answer.body);
        const cJSON *pem = cJSON_GetObjectItemCaseSensitive(json, "certificatePem");
        if (!cJSON_IsString(pem) || storage_write(o->dir, "certificate.pem", pem->valuestring,
                                                  strlen(pem->valuestring), 0644) != 0)
            err = SMQTT_ERR_INTERNAL;
        cJSON_Delete(json);
    }
    key_server_answer_free(&answer);
    if (err != SMQTT_OK) return fail("enrollment answer", err), EXIT_FAILED;

    /* An empty replay state: from now on a missing state file means it was lost (see load_replay). */
    smqtt_replay_entry entries[1];
    smqtt_replay replay;
    uint8_t state[SMQTT_REPLAY_STATE_BYTES(1, 0)];
    smqtt_replay_init(&replay, entries, 1, NULL, 0, NULL);
    smqtt_replay_export(&replay, state, sizeof state, &len);

    me.kid = record.kid;
    if (storage_save_key_server_key(o->dir, key_server_key) != 0 || storage_write(o->dir, "replay.bin", state, len, 0644) != 0 ||
        storage_save_identity(o->dir, &me) != 0) {
        event("error", "\"what\":\"cannot write to %s\"", o->dir);
        return EXIT_FAILED;
    }
    sodium_memzero(&me, sizeof me);
    event("enrolled", "\"id\":\"%s\",\"kid\":%u", record.id, (unsigned)record.kid);
    return EXIT_DONE;
}

/* ---- run: the device's state ----------------------------------------------------------------- */

#define MAX_SENDERS 16 /* replay windows: one per command sender, LRU beyond */

typedef struct device {
    const options *o;
    device_identity me;
    uint8_t key_server_key[32];
    key_server server;
    /* what the device holds: its key bundle and the revocation list, as one keyring */
    smqtt_bundle_group groups[8];
    smqtt_bundle_epoch epochs[32];
    smqtt_bundle_writer writers[128];
    char strings[8192];
    smqtt_key_bundle bundle;
    uint32_t revoked[1024];
    smqtt_revocation_list revocations;
    smqtt_device_keys keys;
    smqtt_keyring keyring;
    /* receiving: a replay window per sender, kept across restarts */
    smqtt_replay_entry replay_entries[MAX_SENDERS];
    smqtt_replay_floor replay_floors[MAX_SENDERS];
    smqtt_replay replay;
    /* sending: sequence numbers reserved ahead in storage */
    smqtt_seq_flash flash;
    smqtt_seq_counter counter;
    /* MQTT */
    struct mosquitto *mqtt;
    int connack;     /* -1 until the CONNACK (or the connection's end) */
    int connected, subscribed;
    int unacked;     /* QoS 1 publishes without PUBACK */
    long commands;   /* verified commands */
} device;

static device the_device; /* about 20 KB: static rather than on the stack */
static volatile sig_atomic_t stopping;

static void on_signal(int signal_number) {
    (void)signal_number;
    stopping = 1;
}

/* Fetches `route` (a signed GET) and returns its `member` as JSON text (NULL for JSON null) in *text.
 * 0 fetched, 1 the key server refused (event printed), -1 failure. */
static int fetch_document(device *d, const char *route, const char *member, char **text) {
    key_server_answer answer;
    char code[256];
    *text = NULL;
    if (key_server_call(&d->server, "GET", route, NULL, &d->me, &answer) != 0 || answer.status != 200) {
        int refused = answer.status != 0;
        event(refused ? "key-server-refused" : "error", "\"route\":\"%s\",\"code\":\"%s\"", route,
              key_server_error_code(&answer, code, sizeof code));
        key_server_answer_free(&answer);
        return refused ? 1 : -1;
    }
    cJSON *json = cJSON_Parse(answer.body);
    const cJSON *document = cJSON_GetObjectItemCaseSensitive(json, member);
    int result = -1;
    if (cJSON_IsNull(document)) result = 0;
    else if (cJSON_IsObject(document) && (*text = cJSON_PrintUnformatted(document)) != NULL) result = 0;
    cJSON_Delete(json);
    key_server_answer_free(&answer);
    if (result != 0) event("error", "\"route\":\"%s\",\"what\":\"not the documented answer\"", route);
    return result;
}

/* Each document is opened with a work buffer of the size it needs (the heap: not the hot path). */
static smqtt_err open_revocations(device *d, const char *text) {
    size_t work_cap = SMQTT_DOCUMENT_WORK_BYTES(strlen(text));
    uint8_t *work = malloc(work_cap);
    d->revocations.kids = d->revoked, d->revocations.kid_cap = sizeof d->revoked / sizeof d->revoked[0];
    smqtt_err err = work == NULL ? SMQTT_ERR_INTERNAL
                                 : smqtt_revocation_list_open(&d->revocations, text, strlen(text), d->key_server_key,
                                                              work, work_cap);
    free(work);
    return err;
}

static smqtt_err open_bundle(device *d, const char *text) {
    smqtt_key_bundle *b = &d->bundle;
    memset(b, 0, sizeof *b);
    b->groups = d->groups, b->group_cap = sizeof d->groups / sizeof d->groups[0];
    b->epochs = d->epochs, b->epoch_cap = sizeof d->epochs / sizeof d->epochs[0];
    b->writers = d->writers, b->writer_cap = sizeof d->writers / sizeof d->writers[0];
    b->strings = d->strings, b->strings_cap = sizeof d->strings;
    size_t work_cap = SMQTT_DOCUMENT_WORK_BYTES(strlen(text));
    uint8_t *work = malloc(work_cap);
    smqtt_err err = work == NULL ? SMQTT_ERR_INTERNAL
                                 : smqtt_key_bundle_open(b, text, strlen(text), d->key_server_key, d->me.id,
                                                         d->me.agreement_secret, d->me.agreement_public,
                                                         (int64_t)time(NULL), work, work_cap);
    free(work);
    return err;
}

/*
 * GET /v1/revocations and GET /v1/bundle, opened under the pinned key, checked against what was
 * held before (documents.md §4.4, §5: no rollback, the revocation watermark), kept as the keyring.
 */
static int load_keys(device *d) {
    device_held held;
    if (storage_load_held(d->o->dir, &held) < 0) return event("error", "\"what\":\"held.json unreadable\""), -1;

    char *text = NULL;
    int got = fetch_document(d, "/v1/revocations", "revocations", &text);
    if (got != 0) return got;
    smqtt_err err = SMQTT_OK;
    if (text != NULL) {
        err = open_revocations(d, text);
        cJSON_free(text);
        if (err == SMQTT_OK && held.has_revocations) {
            smqtt_revocation_list before;
            int replace = 0;
            memset(&before, 0, sizeof before);
            before.version = held.revocations_version;
            memcpy(before.payload_hash, held.revocations_hash, 32);
            err = smqtt_revocation_list_compare(&before, &d->revocations, &replace);
        }
    } else if (held.has_revocations) {
        err = SMQTT_ERR_REVOCATION_LIST_ROLLBACK; /* a list was held: "none" is a rollback */
    }
    if (err != SMQTT_OK) return fail("revocation list", err), -1;
    d->keys.revocations = text != NULL ? &d->revocations : NULL;

    got = fetch_document(d, "/v1/bundle", "bundle", &text);
    if (got != 0 || text == NULL) return got != 0 ? got : -1;
    err = open_bundle(d, text);
    cJSON_free(text);
    /* Same issuedAt: taken as the bundle held (a product also compares the content, §4.4). */
    if (err == SMQTT_OK && d->bundle.issued_at < held.bundle_issued_at) err = SMQTT_ERR_BUNDLE_ROLLBACK;
    if (err == SMQTT_OK && d->keys.revocations != NULL && d->bundle.issued_at < d->revocations.pruned_before)
        err = SMQTT_ERR_BUNDLE_EXPIRED; /* issued before revocations the list no longer names */
    if (err != SMQTT_OK) return fail("key bundle", err), -1;
    d->keys.bundle = &d->bundle;
    smqtt_device_keyring(&d->keyring, &d->keys);

    held.bundle_issued_at = d->bundle.issued_at;
    held.has_revocations = d->keys.revocations != NULL;
    if (held.has_revocations) {
        held.revocations_version = d->revocations.version;
        memcpy(held.revocations_hash, d->revocations.payload_hash, 32);
    }
    if (storage_save_held(d->o->dir, &held) != 0) return event("error", "\"what\":\"cannot write held.json\""), -1;
    event("keys", "\"groups\":%zu,\"epochs\":%zu,\"writers\":%zu,\"revoked\":%zu", d->bundle.group_count,
          d->bundle.epoch_count, d->bundle.writer_count,
          d->keys.revocations != NULL ? d->revocations.kid_count : (size_t)0);
    return 0;
}

/* The replay window as saved by the last run; if the saved state is gone or corrupt, every
 * envelope that could have been accepted before now is refused (smqtt_replay_reset_after_loss). */
static void load_replay(device *d) {
    static uint8_t state[SMQTT_REPLAY_STATE_BYTES(MAX_SENDERS, MAX_SENDERS)];
    size_t len = 0;
    smqtt_replay_init(&d->replay, d->replay_entries, MAX_SENDERS, d->replay_floors, MAX_SENDERS, NULL);
    if (storage_read(d->o->dir, "replay.bin", state, sizeof state, &len) != 0 ||
        smqtt_replay_import(&d->replay, state, len, (int64_t)time(NULL)) != SMQTT_OK) {
        smqtt_replay_reset_after_loss(&d->replay, (int64_t)time(NULL));
        event("replay-state-lost", NULL);
    }
}

static void save_replay(device *d) {
    static uint8_t state[SMQTT_REPLAY_STATE_BYTES(MAX_SENDERS, MAX_SENDERS)];
    size_t len = 0;
    if (smqtt_replay_export(&d->replay, state, sizeof state, &len) != SMQTT_OK ||
        storage_write(d->o->dir, "replay.bin", state, len, 0644) != 0)
        event("error", "\"what\":\"cannot save the replay state\"");
}

/* ---- sending --------------------------------------------------------------------------------- */

/*
 * --sequence key-server: an smqtt_seq_source over POST /v1/sequence. The key server hands each
 * identity ranges above every range it gave before, so even a device restored from an old backup,
 * or a clone, never reuses a number (the flash source cannot promise that). It is called inside
 * smqtt_seq_next when a range is used up: publishing needs the key server then.
 */
static int key_server_reserve(void *ctx, uint64_t wanted, uint64_t *start, uint64_t *end) {
    device *d = ctx;
    char body[96];
    key_server_answer answer;
    snprintf(body, sizeof body, "{\"atLeast\":%llu,\"size\":%llu}", (unsigned long long)d->counter.end,
             (unsigned long long)wanted);
    if (key_server_call(&d->server, "POST", "/v1/sequence", body, &d->me, &answer) != 0 || answer.status != 200) {
        char code[256];
        event("key-server-refused", "\"route\":\"/v1/sequence\",\"code\":\"%s\"",
              key_server_error_code(&answer, code, sizeof code));
        key_server_answer_free(&answer);
        return -1; /* smqtt_seq_next: SEQUENCE_UNAVAILABLE */
    }
    cJSON *json = cJSON_Parse(answer.body);
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(json, "start");
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(json, "end");
    /* Integers up to 2^53 are exact in cJSON's double; the counter checks that the range rises. */
    int ok = cJSON_IsNumber(first) && cJSON_IsNumber(last) && first->valuedouble >= 0 &&
             last->valuedouble <= (double)SMQTT_MAX_SEQ + 1;
    if (ok) *start = (uint64_t)first->valuedouble, *end = (uint64_t)last->valuedouble;
    cJSON_Delete(json);
    key_server_answer_free(&answer);
    return ok ? 0 : -1;
}

/* The key `topic` is sealed with: its group's newest epoch active now (as @smqtt/client's Keyring). */
static const smqtt_bundle_epoch *sealing_epoch(const device *d, const char *topic, const smqtt_bundle_group **group) {
    const smqtt_key_bundle *b = &d->bundle;
    int64_t now = (int64_t)time(NULL);
    *group = NULL;
    for (size_t i = 0; i < b->group_count && *group == NULL; i++)
        if (smqtt_topic_matches(b->strings + b->groups[i].filter_offset, (const uint8_t *)topic, strlen(topic)))
            *group = &b->groups[i];
    const smqtt_bundle_epoch *newest = NULL;
    for (size_t i = 0; *group != NULL && i < b->epoch_count; i++) {
        const smqtt_bundle_epoch *e = &b->epochs[i];
        if (e->group == (*group)->group && e->activates_at <= now && now < e->retires_at &&
            (newest == NULL || e->epoch > newest->epoch))
            newest = e;
    }
    return newest;
}

static int publish_sealed(device *d, const char *topic, const char *text) {
    size_t topic_len = strlen(topic), text_len = strlen(text);
    uint8_t envelope[MAX_ENVELOPE_BYTES], work[SMQTT_SEAL_WORK_BYTES(MAX_PAYLOAD_BYTES, MAX_TOPIC_BYTES, 0)];
    uint8_t writer_key[32];
    if (topic_len > MAX_TOPIC_BYTES || text_len > MAX_PAYLOAD_BYTES) return fail("reading", SMQTT_ERR_INVALID_ARGUMENT), -1;
    const smqtt_bundle_group *group = NULL;
    const smqtt_bundle_epoch *epoch = sealing_epoch(d, topic, &group);
    if (group == NULL) return fail("publish", SMQTT_ERR_NO_KEY_GROUP), -1;
    if (smqtt_key_bundle_writer_key(&d->bundle, group->group, d->me.kid, writer_key) != 0)
        return fail("publish", SMQTT_ERR_FORBIDDEN), -1; /* not a writer of this group */
    if (epoch == NULL) return fail("publish", SMQTT_ERR_UNKNOWN_EPOCH), -1;

    smqtt_seal_params p;
    memset(&p, 0, sizeof p);
    p.suite = (uint8_t)group->suite;
    p.group = group->group;
    p.epoch = epoch->epoch;
    p.sender = d->me.kid;
    p.sent_at = (uint32_t)time(NULL);
    p.epoch_key = epoch->key;
    p.signing_key = d->me.signing_key;
    /* Never twice: the counter hands out numbers only from a range stored in `sequence` first. */
    smqtt_err err = smqtt_seq_next(&d->counter, &p.seq);
    size_t envelope_len = 0;
    if (err == SMQTT_OK)
        err = smqtt_envelope_seal(envelope, sizeof envelope, &envelope_len, &p, (const uint8_t *)topic, topic_len,
                                  (const uint8_t *)text, text_len, work, sizeof work);
    if (err != SMQTT_OK) return fail("seal", err), -1;
    if (mosquitto_publish(d->mqtt, NULL, topic, (int)envelope_len, envelope, 1, false) != MOSQ_ERR_SUCCESS)
        return event("error", "\"what\":\"publish\""), -1;
    d->unacked++;
    event("published", "\"topic\":\"%s\",\"seq\":%llu,\"epoch\":%u,\"bytes\":%zu", topic, (unsigned long long)p.seq,
          (unsigned)p.epoch, envelope_len);
    return 0;
}

/* ---- receiving ------------------------------------------------------------------------------- */

static void on_message(struct mosquitto *mqtt, void *userdata, const struct mosquitto_message *message) {
    (void)mqtt;
    device *d = userdata;
    size_t topic_len = strlen(message->topic);
    uint8_t plaintext[MAX_ENVELOPE_BYTES];
    uint8_t work[SMQTT_OPEN_WORK_BYTES(MAX_ENVELOPE_BYTES, MAX_TOPIC_BYTES, 0)];
    size_t plaintext_len = 0;
    smqtt_envelope_header header;
    smqtt_open_options o;
    memset(&o, 0, sizeof o);
    o.keys = &d->keyring;
    o.replay = &d->replay;
    o.now = (int64_t)time(NULL);
    o.retained = message->retain ? 1 : 0;
    o.max_envelope_bytes = MAX_ENVELOPE_BYTES; /* larger envelopes: ENVELOPE_TOO_LARGE */
    smqtt_err err = topic_len > MAX_TOPIC_BYTES ? SMQTT_ERR_TOPIC_INVALID
                    : message->payloadlen < 0   ? SMQTT_ERR_ENVELOPE_MALFORMED
                                                : smqtt_envelope_open(plaintext, sizeof plaintext, &plaintext_len, &header,
                                                                      message->payload, (size_t)message->payloadlen,
                                                                      (const uint8_t *)message->topic, topic_len, &o,
                                                                      work, sizeof work);
    if (err != SMQTT_OK) {
        /* Not from a listed writer, tampered, replayed, stale, from a revoked sender: dropped. */
        event("security-error", "\"topic\":\"%s\",\"code\":\"%s\"", message->topic, smqtt_err_code_str(err));
        return;
    }
    save_replay(d); /* the window now holds this seq: a restart must still refuse it */
    d->commands++;
    printf("{\"event\":\"command\",\"topic\":\"%s\",\"sender\":%u,\"seq\":%llu,\"payload\":", message->topic,
           (unsigned)header.sender, (unsigned long long)header.seq);
    print_json_string(plaintext, plaintext_len);
    printf("}\n");
    fflush(stdout);
    sodium_memzero(plaintext, plaintext_len);
}

static void on_connect(struct mosquitto *mqtt, void *userdata, int result) {
    (void)mqtt;
    device *d = userdata;
    d->connack = result;
    d->connected = result == 0;
}

static void on_disconnect(struct mosquitto *mqtt, void *userdata, int reason) {
    (void)mqtt;
    device *d = userdata;
    if (d->connack == -1) d->connack = MOSQ_ERR_CONN_LOST; /* closed before any CONNACK */
    if (d->connected && !stopping) event("disconnected", "\"reason\":%d", reason);
    d->connected = 0;
}

static void on_subscribe(struct mosquitto *mqtt, void *userdata, int mid, int count, const int *granted) {
    (void)mqtt, (void)mid;
    device *d = userdata;
    d->subscribed = count == 1 && granted[0] <= 2 ? 1 : -1; /* 0x80: refused by the broker */
}

static void on_publish(struct mosquitto *mqtt, void *userdata, int mid) {
    (void)mqtt, (void)mid;
    device *d = userdata;
    d->unacked--;
}

/* Runs the MQTT loop for `ms` milliseconds, or until `done` holds (checked every 50 ms). */
static void mqtt_wait(device *d, long ms, int (*done)(const device *)) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if ((done != NULL && done(d)) || stopping) return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L;
        if (elapsed >= ms) return;
        int rc = mosquitto_loop(d->mqtt, 50, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            if (d->connack == -1) d->connack = rc;
            return;
        }
    }
}

static int got_connack(const device *d) { return d->connack != -1; }
static int got_suback(const device *d) { return d->subscribed != 0; }
static int finished(const device *d) {
    return !d->connected || (d->unacked == 0 && d->commands >= d->o->expect_commands);
}

/* ---- run ------------------------------------------------------------------------------------- */

static int run(const options *o) {
    device *d = &the_device;
    d->o = o;
    d->connack = -1;
    d->server.url = o->key_server_url;
    d->server.ca_file = o->ca_file;
    if (storage_load_identity(o->dir, &d->me) != 0 || storage_load_key_server_key(o->dir, d->key_server_key) != 0) {
        event("error", "\"what\":\"not enrolled: no identity in %s\"", o->dir);
        return EXIT_FAILED;
    }
    load_replay(d);
    smqtt_seq_source source = {key_server_reserve, d};
    if (o->sequence == NULL || strcmp(o->sequence, "flash") == 0) {
        storage_sequence_flash(&d->flash, o->dir); /* the file `sequence` */
        smqtt_seq_source_flash(&source, &d->flash);
    }
    smqtt_seq_init(&d->counter, &source);

    /* CONNECT: client id = username = principal id; the password is made fresh for every CONNECT
     * (or the client certificate from enrollment, with --tls-key). */
    char host[256];
    long port = 0;
    const char *colon = strrchr(o->broker, ':');
    if (colon == NULL || (size_t)(colon - o->broker) >= sizeof host || (port = strtol(colon + 1, NULL, 10)) <= 0)
        return EXIT_USAGE;
    memcpy(host, o->broker, (size_t)(colon - o->broker));
    host[colon - o->broker] = '\0';
    d->mqtt = mosquitto_new(d->me.id, true, d);
    if (d->mqtt == NULL) return EXIT_FAILED;
    mosquitto_connect_callback_set(d->mqtt, on_connect);
    mosquitto_disconnect_callback_set(d->mqtt, on_disconnect);
    mosquitto_subscribe_callback_set(d->mqtt, on_subscribe);
    mosquitto_publish_callback_set(d->mqtt, on_publish);
    mosquitto_message_callback_set(d->mqtt, on_message);
    char certificate[4096];
    int tls;
    if (o->tls_key != NULL) {
        snprintf(certificate, sizeof certificate, "%s/certificate.pem", o->dir);
        tls = mosquitto_tls_set(d->mqtt, o->ca_file, NULL, certificate, o->tls_key, NULL);
    } else {
        char password[SMQTT_CONNECT_PASSWORD_MAX_BYTES];
        uint8_t nonce[16];
        size_t len = 0;
        randombytes_buf(nonce, sizeof nonce);
        smqtt_err err = smqtt_connect_password(password, sizeof password, &len, d->me.id, (uint64_t)time(NULL), nonce,
                                               d->me.signing_key);
        if (err != SMQTT_OK) return fail("CONNECT password", err), EXIT_FAILED;
        mosquitto_username_pw_set(d->mqtt, d->me.id, password);
        tls = mosquitto_tls_set(d->mqtt, o->ca_file, NULL, NULL, NULL, NULL);
    }
    if (tls != MOSQ_ERR_SUCCESS || mosquitto_connect(d->mqtt, host, (int)port, 30) != MOSQ_ERR_SUCCESS) {
        event("error", "\"what\":\"cannot reach the broker at %s\"", o->broker);
        return EXIT_FAILED;
    }
    mqtt_wait(d, 10000, got_connack);
    if (d->connack != 0) {
        /* A revoked or unknown principal, a bad password: the broker refuses the CONNECT. */
        event("connect-refused", "\"reason\":%d,\"text\":\"%s\"", d->connack,
              d->connack > 0 && d->connack < 6 ? mosquitto_connack_string(d->connack) : mosquitto_strerror(d->connack));
        return EXIT_CONNECT_REFUSED;
    }
    event("connected", "\"id\":\"%s\",\"kid\":%u", d->me.id, (unsigned)d->me.kid);

    int keys = load_keys(d);
    if (keys != 0) return keys > 0 ? EXIT_KEY_SERVER_REFUSED : EXIT_FAILED;
    if (mosquitto_subscribe(d->mqtt, NULL, o->command_topic, 1) != MOSQ_ERR_SUCCESS) return EXIT_FAILED;
    mqtt_wait(d, 10000, got_suback);
    if (d->subscribed != 1) return event("error", "\"what\":\"subscribe refused\""), EXIT_FAILED;
    event("subscribed", "\"topic\":\"%s\"", o->command_topic);

    /* Simulated readings: 21.0, 21.1, … °C. */
    for (long i = 0; i < o->readings && d->connected && !stopping; i++) {
        char reading[64];
        snprintf(reading, sizeof reading, "{\"celsius\":%.1f}", 21.0 + 0.1 * (double)i);
        if (publish_sealed(d, o->publish_topic, reading) != 0) return EXIT_FAILED;
        mqtt_wait(d, o->interval_ms, NULL);
    }
    mqtt_wait(d, o->seconds * 1000L, finished);

    int lost = !d->connected && !stopping;
    d->connected = 0; /* leaving: the disconnect below is ours */
    mosquitto_disconnect(d->mqtt);
    mosquitto_destroy(d->mqtt);
    save_replay(d);
    event("done", "\"published\":%ld,\"commands\":%ld,\"unacked\":%d", o->readings, d->commands, d->unacked);
    return lost ? EXIT_FAILED : EXIT_DONE;
}

/* ---- command line ---------------------------------------------------------------------------- */

static int usage(void) {
    fprintf(stderr,
            "usage: smqtt-device enroll --dir DIR --key-server URL --ca FILE --id ID --token TOKEN\n"
            "                           [--key-server-key BASE64URL] [--tls-public-key DER-FILE]\n"
            "       smqtt-device run --dir DIR --key-server URL --ca FILE --broker HOST:PORT\n"
            "                        --publish TOPIC --commands TOPIC [--readings N] [--interval-ms MS]\n"
            "                        [--expect-commands N] [--seconds S] [--tls-key PEM-FILE]\n"
            "                        [--sequence flash|key-server]\n");
    return EXIT_USAGE;
}

static int parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->readings = 3, o->interval_ms = 200, o->seconds = 30;
    if (argc < 2) return -1;
    o->command = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *name = argv[i], *value = argv[i + 1];
        const char **text = strcmp(name, "--dir") == 0              ? &o->dir
                            : strcmp(name, "--key-server") == 0     ? &o->key_server_url
                            : strcmp(name, "--ca") == 0             ? &o->ca_file
                            : strcmp(name, "--id") == 0             ? &o->id
                            : strcmp(name, "--token") == 0          ? &o->token
                            : strcmp(name, "--key-server-key") == 0 ? &o->key_server_key
                            : strcmp(name, "--tls-public-key") == 0 ? &o->tls_public_key
                            : strcmp(name, "--broker") == 0         ? &o->broker
                            : strcmp(name, "--publish") == 0        ? &o->publish_topic
                            : strcmp(name, "--commands") == 0       ? &o->command_topic
                            : strcmp(name, "--tls-key") == 0        ? &o->tls_key
                            : strcmp(name, "--sequence") == 0       ? &o->sequence
                                                                    : NULL;
        long *number = strcmp(name, "--readings") == 0          ? &o->readings
                       : strcmp(name, "--interval-ms") == 0     ? &o->interval_ms
                       : strcmp(name, "--expect-commands") == 0 ? &o->expect_commands
                       : strcmp(name, "--seconds") == 0         ? &o->seconds
                                                                : NULL;
        if (text != NULL) *text = value;
        else if (number != NULL && (*number = strtol(value, NULL, 10)) >= 0) continue;
        else return -1;
    }
    if ((argc % 2) != 0 || o->dir == NULL || o->key_server_url == NULL) return -1;
    if (strcmp(o->command, "enroll") == 0) return o->id != NULL && o->token != NULL ? 0 : -1;
    if (o->sequence != NULL && strcmp(o->sequence, "flash") != 0 && strcmp(o->sequence, "key-server") != 0) return -1;
    if (strcmp(o->command, "run") == 0) return o->broker != NULL && o->publish_topic != NULL && o->command_topic != NULL ? 0 : -1;
    return -1;
}

int main(int argc, char **argv) {
    options o;
    if (parse_options(argc, argv, &o) != 0) return usage();
    if (smqtt_init() != SMQTT_OK) return EXIT_FAILED;
    struct sigaction stop;
    memset(&stop, 0, sizeof stop);
    stop.sa_handler = on_signal;
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGINT, &stop, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    mosquitto_lib_init();
    int status = strcmp(o.command, "enroll") == 0 ? enroll(&o) : run(&o);
    mosquitto_lib_cleanup();
    curl_global_cleanup();
    sodium_memzero(&the_device.me, sizeof the_device.me);
    return status;
}
