/*
 * smqtt-c: one JSON job on stdin, one JSON answer on stdout, so tests in other languages can
 * drive libsmqtt. Bytes are hex. Exit status: 0 done, 1 refused (the answer names the code),
 * 2 a bad job.
 *
 *   {"op":"seal","suite":1,"group":7,"epoch":300,"kid":1000,"seq":1,"sentAt":1790000000,
 *    "retain":false,"topic":"t","payload":"00","epochKey":"..","signingSeed":"..",
 *    "properties":{...}}                        -> {"ok":true,"envelope":".."}
 *   {"op":"open","topic":"t","envelope":"..","epochKey":"..","suite":1,"group":7,"epoch":300,
 *    "writers":[{"kid":1000,"publicKey":".."}],"now":1790000000,"properties":{...}}
 *                                               -> {"ok":true,"payload":"..","sender":1000,...}
 *   {"op":"verify", same as open without epochKey}   -> {"ok":true,"sender":1000,...}
 *   {"op":"keypair","signingSeed":".."}        -> {"ok":true,"publicKey":".."}
 *   {"op":"password","clientId":"thermostat-1","timestamp":1796000000,"nonce":"<16 bytes>",
 *    "signingSeed":".."}                       -> {"ok":true,"password":"smqtt1.…"}
 *   {"op":"device-seal"|"device-open", "bundle":{payload,signature}, "keyServerPublicKey":"..",
 *    "id":"thermostat-1","agreementSecret":"..","agreementKey":"..","now":..., then as seal
 *    (signingSeed, kid, seq, sentAt, topic, payload) or open (topic, envelope)}: the device opens
 *    its key bundle and seals with the topic's group's newest epoch key, or opens with the
 *    bundle's writers and their publish rights.
 *   refused: {"ok":false,"code":"ERR_ENVELOPE_SIGNATURE_INVALID"}
 *
 * "properties" are the MQTT 5 properties sent (seal) or received (open/verify), as in
 * packages/core/vectors/envelope-v1-bound-properties.json. With "now", open uses a replay window.
 */
#include <stdlib.h>
#include <string.h>

#include "../tests/testutil.h"

typedef struct writer {
    uint32_t kid;
    uint8_t public_key[32];
} writer;

typedef struct job_keys {
    uint32_t group, epoch;
    uint8_t suite, epoch_key[32];
    int has_epoch_key;
    writer writers[64];
    size_t writer_count;
} job_keys;

static int epoch_key_cb(void *ctx, uint32_t group, uint32_t epoch, uint8_t key[32], uint8_t *suite) {
    job_keys *k = ctx;
    if (!k->has_epoch_key || group != k->group || epoch != k->epoch) return -1;
    memcpy(key, k->epoch_key, 32);
    *suite = k->suite;
    return 0;
}

static int writer_key_cb(void *ctx, uint32_t group, uint32_t sender, uint8_t pk[32]) {
    job_keys *k = ctx;
    if (group != k->group) return -1;
    for (size_t i = 0; i < k->writer_count; i++)
        if (k->writers[i].kid == sender) return memcpy(pk, k->writers[i].public_key, 32), 0;
    return -1;
}

static void print_hex(const char *name, const uint8_t *bytes, size_t len) {
    printf("\"%s\":\"", name);
    for (size_t i = 0; i < len; i++) printf("%02x", bytes[i]);
    printf("\"");
}

static int refused(smqtt_err err) {
    printf("{\"ok\":false,\"code\":\"%s\"}\n", smqtt_err_code_str((int)err));
    return 1;
}

static int bad_job(const char *why) {
    printf("{\"ok\":false,\"error\":\"bad job: %s\"}\n", why);
    return 2;
}

/* The job's "topic" and its hex field `name` ("payload", "envelope"), decoded into *bytes
 * (malloc): 0, or the exit status of a bad job. */
static int topic_and_bytes(const cJSON *job, const char *name, const char **topic, uint8_t **bytes, size_t *len) {
    char why[64];
    const char *hex = tu_str(job, name);
    *topic = tu_str(job, "topic");
    *len = 0;
    if (*topic == NULL || hex == NULL) return snprintf(why, sizeof why, "topic, %s", name), bad_job(why);
    *bytes = tu_hex(hex, len);
    if (*bytes == NULL) return snprintf(why, sizeof why, "%s hex", name), bad_job(why);
    return 0;
}

static int seal(const cJSON *job) {
    uint8_t epoch_key[32], seed[32], pk[32], sk[64];
    if (tu_hex_into(epoch_key, 32, tu_str(job, "epochKey")) != 0) return bad_job("epochKey");
    if (tu_hex_into(seed, 32, tu_str(job, "signingSeed")) != 0) return bad_job("signingSeed");
    const char *topic;
    uint8_t *payload;
    size_t payload_len;
    int status = topic_and_bytes(job, "payload", &topic, &payload, &payload_len);
    if (status != 0) return status;
    crypto_sign_seed_keypair(pk, sk, seed);
    tu_props props;
    const cJSON *props_json = cJSON_GetObjectItemCaseSensitive(job, "properties");
    if (tu_props_from_json(&props, props_json) != 0) return bad_job("properties");
    smqtt_seal_params p;
    memset(&p, 0, sizeof p);
    p.suite = (uint8_t)tu_u64(job, "suite");
    p.retain = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(job, "retain")) ? 1 : 0;
    p.group = (uint32_t)tu_u64(job, "group");
    p.epoch = (uint32_t)tu_u64(job, "epoch");
    p.sender = (uint32_t)tu_u64(job, "kid");
    p.seq = tu_u64(job, "seq");
    p.sent_at = (uint32_t)tu_u64(job, "sentAt");
    p.epoch_key = epoch_key;
    p.signing_key = sk;
    p.properties = props_json != NULL ? &props.props : NULL;
    size_t topic_len = strlen(topic);
    size_t out_cap = SMQTT_SEALED_MAX_BYTES(payload_len);
    size_t work_cap = SMQTT_SEAL_WORK_BYTES(payload_len, topic_len, SMQTT_MAX_BOUND_PROPERTIES_BYTES);
    uint8_t *out = malloc(out_cap), *work = malloc(work_cap);
    size_t out_len = 0;
    smqtt_err err = smqtt_envelope_seal(out, out_cap, &out_len, &p, (const uint8_t *)topic, topic_len, payload,
                                        payload_len, work, work_cap);
    if (err != SMQTT_OK) {
        status = refused(err);
    } else {
        printf("{\"ok\":true,");
        print_hex("envelope", out, out_len);
        printf("}\n");
    }
    free(out), free(work), free(payload);
    tu_props_free(&props);
    sodium_memzero(sk, sizeof sk);
    return status;
}

static int open_or_verify(const cJSON *job, int open) {
    static job_keys keys;
    memset(&keys, 0, sizeof keys);
    keys.group = (uint32_t)tu_u64(job, "group");
    keys.epoch = (uint32_t)tu_u64(job, "epoch");
    keys.suite = (uint8_t)tu_u64(job, "suite");
    if (open) {
        if (tu_hex_into(keys.epoch_key, 32, tu_str(job, "epochKey")) != 0) return bad_job("epochKey");
        keys.has_epoch_key = 1;
    }
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(job, "writers")) {
        if (keys.writer_count >= 64) return bad_job("at most 64 writers");
        writer *entry = &keys.writers[keys.writer_count++];
        entry->kid = (uint32_t)tu_u64(w, "kid");
        if (tu_hex_into(entry->public_key, 32, tu_str(w, "publicKey")) != 0) return bad_job("writer publicKey");
    }
    const char *topic;
    uint8_t *env;
    size_t env_len;
    int status = topic_and_bytes(job, "envelope", &topic, &env, &env_len);
    if (status != 0) return status;
    tu_props props;
    const cJSON *props_json = cJSON_GetObjectItemCaseSensitive(job, "properties");
    if (tu_props_from_json(&props, props_json) != 0) return bad_job("properties");

    smqtt_keyring ring = {epoch_key_cb, writer_key_cb, NULL, NULL, &keys};
    smqtt_replay replay;
    smqtt_replay_entry entries[4];
    smqtt_open_options o;
    memset(&o, 0, sizeof o);
    o.keys = &ring;
    o.properties = props_json != NULL ? &props.props : NULL;
    const cJSON *now = cJSON_GetObjectItemCaseSensitive(job, "now");
    if (cJSON_IsNumber(now)) {
        smqtt_replay_init(&replay, entries, 4, NULL, 0, NULL);
        o.replay = &replay;
        o.now = (int64_t)now->valuedouble;
    }
    size_t topic_len = strlen(topic);
    size_t work_cap = SMQTT_OPEN_WORK_BYTES(env_len, topic_len, SMQTT_MAX_BOUND_PROPERTIES_BYTES);
    uint8_t *work = malloc(work_cap), *plain = malloc(env_len);
    size_t plain_len = 0;
    smqtt_envelope_header h;
    smqtt_err err = open ? smqtt_envelope_open(plain, env_len, &plain_len, &h, env, env_len, (const uint8_t *)topic,
                                               topic_len, &o, work, work_cap)
                         : smqtt_envelope_verify(&h, env, env_len, (const uint8_t *)topic, topic_len, &o, work, work_cap);
    if (err != SMQTT_OK) {
        status = refused(err);
    } else {
        printf("{\"ok\":true,");
        if (open) print_hex("payload", plain, plain_len), printf(",");
        printf("\"sender\":%u,\"group\":%u,\"epoch\":%u,\"seq\":%llu,\"sentAt\":%u,\"suite\":%u,\"retain\":%s", h.sender,
               h.group, h.epoch, (unsigned long long)h.seq, h.sent_at, h.suite, h.retain ? "true" : "false");
        if (h.has_binding) printf(",\"bindMask\":%u,\"bindUserProperties\":%u", h.bind_mask, h.bind_user_count);
        printf("}\n");
    }
    free(work), free(plain), free(env);
    tu_props_free(&props);
    return status;
}

static int keypair(const cJSON *job) {
    uint8_t seed[32], pk[32], sk[64];
    if (tu_hex_into(seed, 32, tu_str(job, "signingSeed")) != 0) return bad_job("signingSeed");
    crypto_sign_seed_keypair(pk, sk, seed);
    printf("{\"ok\":true,");
    print_hex("publicKey", pk, 32);
    printf("}\n");
    sodium_memzero(sk, sizeof sk);
    return 0;
}

static int connect_password(const cJSON *job) {
    uint8_t seed[32], pk[32], sk[64], nonce[16];
    const char *client_id = tu_str(job, "clientId");
    if (tu_hex_into(seed, 32, tu_str(job, "signingSeed")) != 0) return bad_job("signingSeed");
    if (tu_hex_into(nonce, 16, tu_str(job, "nonce")) != 0) return bad_job("nonce");
    if (client_id == NULL) return bad_job("clientId");
    crypto_sign_seed_keypair(pk, sk, seed);
    char password[SMQTT_CONNECT_PASSWORD_MAX_BYTES];
    size_t len = 0;
    smqtt_err err = smqtt_connect_password(password, sizeof password, &len, client_id, tu_u64(job, "timestamp"), nonce, sk);
    sodium_memzero(sk, sizeof sk);
    if (err != SMQTT_OK) return refused(err);
    printf("{\"ok\":true,\"password\":\"%s\"}\n", password);
    return 0;
}

/* ---- a device with its key bundle: device-seal, device-open --------------------------------------- */

typedef struct device_state {
    smqtt_bundle_group groups[16];
    smqtt_bundle_epoch epochs[64];
    smqtt_bundle_writer writers[256];
    char strings[16384];
    smqtt_key_bundle bundle;
} device_state;

/* Opens the job's "bundle" (a signed document object) as the job's "id" with its X25519 keys:
 * 0, or the exit status once the answer (a bad job or the refusal) is printed. */
static int open_device_bundle(device_state *d, const cJSON *job) {
    const char *needs = "keyServerPublicKey, agreementSecret, agreementKey, id, bundle";
    uint8_t ks[32], sk[32], pk[32];
    memset(d, 0, sizeof *d);
    d->bundle.groups = d->groups, d->bundle.group_cap = 16;
    d->bundle.epochs = d->epochs, d->bundle.epoch_cap = 64;
    d->bundle.writers = d->writers, d->bundle.writer_cap = 256;
    d->bundle.strings = d->strings, d->bundle.strings_cap = sizeof d->strings;
    if (tu_hex_into(ks, 32, tu_str(job, "keyServerPublicKey")) != 0 || tu_hex_into(sk, 32, tu_str(job, "agreementSecret")) != 0 ||
        tu_hex_into(pk, 32, tu_str(job, "agreementKey")) != 0 || tu_str(job, "id") == NULL)
        return bad_job(needs);
    char *text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(job, "bundle"));
    if (text == NULL) return bad_job(needs);
    size_t work_cap = SMQTT_DOCUMENT_WORK_BYTES(strlen(text));
    uint8_t *work = malloc(work_cap);
    smqtt_err err = smqtt_key_bundle_open(&d->bundle, text, strlen(text), ks, tu_str(job, "id"), sk, pk,
                                          (int64_t)tu_u64(job, "now"), work, work_cap);
    free(work);
    cJSON_free(text);
    sodium_memzero(sk, sizeof sk);
    if (err == SMQTT_ERR_INVALID_ARGUMENT) return bad_job(needs);
    return err == SMQTT_OK ? 0 : refused(err);
}

static int device_seal(const cJSON *job) {
    static device_state d;
    int status = open_device_bundle(&d, job);
    if (status != 0) return status;
    const char *topic = tu_str(job, "topic"), *payload_hex = tu_str(job, "payload");
    uint8_t seed[32], pk[32], sk[64];
    if (topic == NULL || payload_hex == NULL || tu_hex_into(seed, 32, tu_str(job, "signingSeed")) != 0)
        return bad_job("topic, payload, signingSeed");
    /* the topic's group, and its newest epoch */
    const smqtt_bundle_group *group = NULL;
    for (size_t i = 0; i < d.bundle.group_count && group == NULL; i++)
        if (smqtt_topic_matches(d.strings + d.groups[i].filter_offset, (const uint8_t *)topic, strlen(topic))) group = &d.groups[i];
    const smqtt_bundle_epoch *epoch = NULL;
    for (size_t i = 0; group != NULL && i < d.bundle.epoch_count; i++)
        if (d.epochs[i].group == group->group && (epoch == NULL || d.epochs[i].epoch > epoch->epoch)) epoch = &d.epochs[i];
    if (epoch == NULL) return refused(SMQTT_ERR_NO_KEY_GROUP);
    crypto_sign_seed_keypair(pk, sk, seed);
    size_t payload_len = 0;
    uint8_t *payload = tu_hex(payload_hex, &payload_len);
    smqtt_seal_params p;
    memset(&p, 0, sizeof p);
    p.suite = (uint8_t)group->suite, p.group = group->group, p.epoch = epoch->epoch;
    p.sender = (uint32_t)tu_u64(job, "kid"), p.seq = tu_u64(job, "seq"), p.sent_at = (uint32_t)tu_u64(job, "sentAt");
    p.epoch_key = epoch->key, p.signing_key = sk;
    size_t out_cap = SMQTT_SEALED_MAX_BYTES(payload_len), work_cap = SMQTT_SEAL_WORK_BYTES(payload_len, strlen(topic), 0);
    uint8_t *out = malloc(out_cap), *work = malloc(work_cap);
    size_t out_len = 0;
    smqtt_err err = smqtt_envelope_seal(out, out_cap, &out_len, &p, (const uint8_t *)topic, strlen(topic), payload,
                                        payload_len, work, work_cap);
    if (err != SMQTT_OK) status = refused(err);
    else printf("{\"ok\":true,"), print_hex("envelope", out, out_len), printf("}\n");
    free(out), free(work), free(payload);
    sodium_memzero(sk, sizeof sk);
    return status;
}

static int device_open(const cJSON *job) {
    static device_state d;
    int status = open_device_bundle(&d, job);
    if (status != 0) return status;
    const char *topic;
    uint8_t *env;
    size_t env_len;
    status = topic_and_bytes(job, "envelope", &topic, &env, &env_len);
    if (status != 0) return status;
    smqtt_device_keys keys = {&d.bundle, NULL};
    smqtt_keyring ring;
    smqtt_device_keyring(&ring, &keys);
    smqtt_replay replay;
    smqtt_replay_entry entries[4];
    smqtt_replay_init(&replay, entries, 4, NULL, 0, NULL);
    smqtt_open_options o;
    memset(&o, 0, sizeof o);
    o.keys = &ring, o.replay = &replay, o.now = (int64_t)tu_u64(job, "now");
    size_t work_cap = SMQTT_OPEN_WORK_BYTES(env_len, strlen(topic), 0), plain_len = 0;
    uint8_t *work = malloc(work_cap), *plain = malloc(env_len);
    smqtt_envelope_header h;
    smqtt_err err = smqtt_envelope_open(plain, env_len, &plain_len, &h, env, env_len, (const uint8_t *)topic, strlen(topic),
                                        &o, work, work_cap);
    if (err != SMQTT_OK) {
        status = refused(err);
    } else {
        printf("{\"ok\":true,"), print_hex("payload", plain, plain_len);
        printf(",\"sender\":%u,\"group\":%u,\"epoch\":%u,\"seq\":%llu}\n", h.sender, h.group, h.epoch, (unsigned long long)h.seq);
    }
    free(work), free(plain), free(env);
    return status;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("smqtt-c %s\n", smqtt_version_string());
        return 0;
    }
    if (smqtt_init() != SMQTT_OK) return bad_job("libsodium did not initialize");
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    size_t got;
    while ((got = fread(text + len, 1, cap - len - 1, stdin)) > 0) {
        len += got;
        if (cap - len - 1 == 0) text = realloc(text, cap *= 2);
    }
    text[len] = '\0';
    cJSON *job = cJSON_Parse(text);
    free(text);
    if (job == NULL) return bad_job("not JSON");
    const char *op = tu_str(job, "op");
    int status;
    if (op != NULL && strcmp(op, "seal") == 0) status = seal(job);
    else if (op != NULL && strcmp(op, "open") == 0) status = open_or_verify(job, 1);
    else if (op != NULL && strcmp(op, "verify") == 0) status = open_or_verify(job, 0);
    else if (op != NULL && strcmp(op, "keypair") == 0) status = keypair(job);
    else if (op != NULL && strcmp(op, "password") == 0) status = connect_password(job);
    else if (op != NULL && strcmp(op, "device-seal") == 0) status = device_seal(job);
    else if (op != NULL && strcmp(op, "device-open") == 0) status = device_open(job);
    else status = bad_job("unknown op");
    cJSON_Delete(job);
    return status;
}
