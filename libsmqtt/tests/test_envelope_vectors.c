/*
 * packages/core/vectors/envelope-v1.json, read from there: per case, the derived sender key and
 * iv, seal reproduces the envelope byte for byte, open returns the payload, verify accepts it.
 * Then the refusals of docs/envelope.md ("Opening: order of checks") on envelopes made from
 * the vectors: each cause gives its code, and the earlier check wins.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static uint8_t work[1 << 16];
static uint8_t plain[1 << 15];

static smqtt_err open_with(const uint8_t *env, size_t len, const char *topic, tu_keys *ks, smqtt_replay *replay,
                           int64_t now, size_t *pt_len) {
    smqtt_keyring keys = tu_keyring(ks, 1);
    smqtt_open_options o;
    memset(&o, 0, sizeof o);
    o.keys = &keys;
    o.replay = replay;
    o.now = now;
    size_t dummy;
    return smqtt_envelope_open(plain, sizeof plain, pt_len != NULL ? pt_len : &dummy, NULL, env, len,
                               (const uint8_t *)topic, strlen(topic), &o, work, sizeof work);
}

/* Re-signs modified bytes (header or ciphertext changed) so that only the intended check fails. */
static size_t resign(uint8_t *env, size_t len, const char *topic, const uint8_t sk[64]) {
    smqtt_envelope_header h;
    if (smqtt_envelope_parse(&h, env, len) != SMQTT_OK) return 0;
    size_t n = 0;
    memcpy(work, "smqtt/v1 envelope", 18);
    n = 18;
    memcpy(work + n, env, h.header_len);
    n += h.header_len;
    size_t tl = strlen(topic);
    work[n++] = (uint8_t)(tl >> 8);
    work[n++] = (uint8_t)tl;
    memcpy(work + n, topic, tl);
    n += tl;
    size_t ct = len - h.header_len - 64;
    memcpy(work + n, env + h.header_len, ct);
    n += ct;
    crypto_sign_detached(env + len - 64, NULL, work, n, sk);
    return len;
}

static void refusals(const cJSON *c, const uint8_t *env, size_t env_len, tu_keys base, const uint8_t sk[64]) {
    const char *topic = tu_str(c, "topic");
    int64_t now = (int64_t)tu_u64(c, "sentAt");
    uint8_t buf[4096];
    tu_keys ks;
    smqtt_replay_entry entries[4];
    smqtt_replay_floor floors[2];
    smqtt_replay replay;

    /* 1. size limit before structure */
    {
        smqtt_keyring keys = tu_keyring(&ks, 0);
        smqtt_open_options o;
        memset(&o, 0, sizeof o);
        ks = base;
        o.keys = &keys;
        o.max_envelope_bytes = env_len - 1;
        size_t pl;
        CHECK_ERR(smqtt_envelope_open(plain, sizeof plain, &pl, NULL, env, env_len, (const uint8_t *)topic, strlen(topic),
                                      &o, work, sizeof work),
                  SMQTT_ERR_ENVELOPE_TOO_LARGE, "too large");
        CHECK_ERR(smqtt_envelope_verify(NULL, env, env_len, (const uint8_t *)topic, strlen(topic), &o, work, sizeof work),
                  SMQTT_ERR_ENVELOPE_TOO_LARGE, "verify: too large");
    }
    /* structure */
    ks = base;
    memcpy(buf, env, env_len);
    buf[0] = 2;
    CHECK_ERR(open_with(buf, env_len, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_UNSUPPORTED, "version 2");
    memcpy(buf, env, env_len);
    buf[1] = (uint8_t)((buf[1] & 0xf0) | 3);
    CHECK_ERR(open_with(buf, env_len, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_UNSUPPORTED, "suite 3");
    for (uint8_t flag = 0x40; flag != 0; flag = (uint8_t)(flag << 1)) {
        memcpy(buf, env, env_len);
        buf[1] |= flag;
        CHECK_ERR(open_with(buf, env_len, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_MALFORMED, "unknown flag");
    }
    memcpy(buf, env, env_len);
    buf[1] |= 0x20; /* a reader sees a descriptor where the bytes say otherwise: checked, not misread */
    smqtt_err e = open_with(buf, env_len, topic, &ks, NULL, now, NULL);
    CHECK(e == SMQTT_ERR_ENVELOPE_MALFORMED || e == SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID, "flag 0x20 set: %s",
          smqtt_err_code_str((int)e));
    CHECK_ERR(open_with(env, 2 + 4 + 4 + 79, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_MALFORMED, "too short");
    CHECK_ERR(open_with(env, 1, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_MALFORMED, "one byte");
    /* non-minimal varint: group 7 written as 0x87 0x00 */
    {
        buf[0] = env[0];
        buf[1] = env[1];
        smqtt_envelope_header h;
        smqtt_envelope_parse(&h, env, env_len);
        if (h.group < 0x80) {
            buf[2] = (uint8_t)(env[2] | 0x80);
            buf[3] = 0x00;
            memcpy(buf + 4, env + 3, env_len - 3);
            CHECK_ERR(open_with(buf, env_len + 1, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_MALFORMED,
                      "non-minimal varint");
        }
    }
    /* 2. revoked before replay, keys and signature */
    ks = base;
    ks.revoked = 1;
    memcpy(buf, env, env_len);
    buf[env_len - 1] ^= 1;
    CHECK_ERR(open_with(buf, env_len, topic, &ks, NULL, now, NULL), SMQTT_ERR_SENDER_REVOKED, "revoked");
    /* 3. freshness and replay (read-only), before keys */
    ks = base;
    smqtt_replay_init(&replay, entries, 4, floors, 2, NULL);
    CHECK_ERR(open_with(env, env_len, topic, &ks, &replay, now + 301, NULL), SMQTT_ERR_STALE, "stale");
    CHECK_ERR(open_with(env, env_len, topic, &ks, &replay, now - 31, NULL), SMQTT_ERR_STALE, "future");
    ks.epoch = base.epoch + 1; /* no key: the replay window must record nothing */
    CHECK_ERR(open_with(env, env_len, topic, &ks, &replay, now, NULL), SMQTT_ERR_UNKNOWN_EPOCH, "unknown epoch");
    ks = base;
    memcpy(buf, env, env_len);
    buf[env_len - 1] ^= 1;
    CHECK_ERR(open_with(buf, env_len, topic, &ks, &replay, now, NULL), SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID, "forged");
    CHECK_ERR(open_with(env, env_len, topic, &ks, &replay, now, NULL), SMQTT_OK, "forgeries burn no sequence number");
    CHECK_ERR(open_with(env, env_len, topic, &ks, &replay, now, NULL), SMQTT_ERR_REPLAY, "replayed");
    ks.epoch = base.epoch + 1;
    CHECK_ERR(open_with(env, env_len, topic, &ks, &replay, now, NULL), SMQTT_ERR_REPLAY, "replay before epoch");
    /* 4. epoch key, group suite */
    ks = base;
    ks.suite = base.suite == 1 ? 2 : 1;
    CHECK_ERR(open_with(env, env_len, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_UNSUPPORTED, "downgrade");
    /* 5. listed writer, signature */
    ks = base;
    ks.sender = base.sender + 1;
    CHECK_ERR(open_with(env, env_len, topic, &ks, NULL, now, NULL), SMQTT_ERR_UNKNOWN_SENDER, "unknown sender");
    ks = base;
    char other[512];
    snprintf(other, sizeof other, "%s/x", topic);
    CHECK_ERR(open_with(env, env_len, other, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID, "moved topic");
    {
        smqtt_envelope_header hh;
        smqtt_envelope_parse(&hh, env, env_len);
        /* one byte shorter: the ciphertext/signature boundary moves (or no room is left for them) */
        smqtt_err want = env_len - 1 < (size_t)hh.header_len + 80 ? SMQTT_ERR_ENVELOPE_MALFORMED
                                                                   : SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID;
        CHECK_ERR(open_with(env, env_len - 1, topic, &ks, NULL, now, NULL), want, "truncated");
        memcpy(buf, env, env_len);
        buf[env_len] = 0;
        CHECK_ERR(open_with(buf, env_len + 1, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID,
                  "extended");
    }
    /* every single bit flipped is refused */
    int all_refused = 1;
    for (size_t i = 0; i < env_len; i++) {
        memcpy(buf, env, env_len);
        buf[i] ^= 0x01;
        if (open_with(buf, env_len, topic, &ks, NULL, now, NULL) == SMQTT_OK) all_refused = 0;
    }
    CHECK(all_refused, "a flipped bit was accepted");
    /* publish right, after the signature */
    ks = base;
    ks.forbid = 1;
    CHECK_ERR(open_with(env, env_len, topic, &ks, NULL, now, NULL), SMQTT_ERR_SENDER_NOT_PERMITTED, "not permitted");
    /* 6. decryption: ciphertext altered and signed again by the real sender */
    ks = base;
    memcpy(buf, env, env_len);
    smqtt_envelope_header h;
    smqtt_envelope_parse(&h, env, env_len);
    buf[h.header_len] ^= 0x80;
    resign(buf, env_len, topic, sk);
    CHECK_ERR(open_with(buf, env_len, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_DECRYPTION_FAILED, "decryption");
    ks.epoch_key[0] ^= 1; /* wrong epoch key: the same code */
    CHECK_ERR(open_with(env, env_len, topic, &ks, NULL, now, NULL), SMQTT_ERR_ENVELOPE_DECRYPTION_FAILED, "wrong key");
    /* buffers */
    ks = base;
    {
        smqtt_keyring keys = tu_keyring(&ks, 0);
        smqtt_open_options o;
        memset(&o, 0, sizeof o);
        o.keys = &keys;
        size_t pl;
        CHECK_ERR(smqtt_envelope_open(plain, sizeof plain, &pl, NULL, env, env_len, (const uint8_t *)topic, strlen(topic),
                                      &o, work, SMQTT_OPEN_WORK_BYTES(env_len, strlen(topic), 0) - 1),
                  SMQTT_ERR_BUFFER_TOO_SMALL, "work too small");
        CHECK_ERR(smqtt_envelope_open(plain, sizeof plain, &pl, NULL, env, env_len, (const uint8_t *)topic, strlen(topic),
                                      &o, work, SMQTT_OPEN_WORK_BYTES(env_len, strlen(topic), 0)),
                  SMQTT_OK, "work exactly the size");
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || smqtt_init() != SMQTT_OK) return 2;
    cJSON *json = tu_load_json(argv[1], "packages/core/vectors/envelope-v1.json");
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(json, "cases");
    int count = 0, sealed = 0, skipped = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *name = tu_str(c, "name");
        tu_keys ks;
        uint8_t sk[64], pk[32], key[32], iv[12], want_key[32], want_iv[12];
        CHECK(tu_keys_from_case(&ks, sk, c) == 0, "%s: keys", name);
        CHECK(tu_hex_into(pk, 32, tu_str(c, "signingPublicKey")) == 0, "%s: public key", name);
        CHECK(tu_hex_into(want_key, 32, tu_str(c, "senderKey")) == 0, "%s: senderKey", name);
        CHECK(tu_hex_into(want_iv, 12, tu_str(c, "senderIv")) == 0, "%s: senderIv", name);
        CHECK(memcmp(pk, ks.public_key, 32) == 0, "%s: public key from seed", name);
        CHECK_ERR(smqtt_sender_key(key, iv, ks.epoch_key, ks.suite, ks.group, ks.epoch, ks.sender), SMQTT_OK, name);
        CHECK(memcmp(key, want_key, 32) == 0 && memcmp(iv, want_iv, 12) == 0, "%s: sender key and iv", name);

        size_t payload_len = 0, env_len = 0;
        uint8_t *payload = tu_hex(tu_str(c, "payload"), &payload_len);
        uint8_t *env = tu_hex(tu_str(c, "envelope"), &env_len);
        const char *topic = tu_str(c, "topic");
        cJSON *retain = cJSON_GetObjectItemCaseSensitive(c, "retain");

        if (!smqtt_suite_available(ks.suite)) {
            printf("SKIP %s: suite %u has no AES-GCM on this CPU (refused as ERR_ENVELOPE_UNSUPPORTED)\n", name, ks.suite);
            skipped++;
            free(payload);
            free(env);
            count++;
            continue;
        }
        smqtt_seal_params p;
        memset(&p, 0, sizeof p);
        p.suite = ks.suite;
        p.retain = cJSON_IsTrue(retain) ? 1 : 0;
        p.group = ks.group;
        p.epoch = ks.epoch;
        p.sender = ks.sender;
        p.seq = tu_u64(c, "seq");
        p.sent_at = (uint32_t)tu_u64(c, "sentAt");
        p.epoch_key = ks.epoch_key;
        p.signing_key = sk;
        uint8_t out[4096];
        size_t out_len = 0;
        CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &out_len, &p, (const uint8_t *)topic, strlen(topic), payload,
                                      payload_len, work, SMQTT_SEAL_WORK_BYTES(payload_len, strlen(topic), 0)),
                  SMQTT_OK, name);
        CHECK(out_len == env_len && memcmp(out, env, env_len) == 0, "%s: sealed bytes differ from the vector", name);
        if (out_len == env_len && memcmp(out, env, env_len) == 0) sealed++;

        size_t pt_len = 0;
        smqtt_envelope_header h;
        smqtt_keyring keys = tu_keyring(&ks, 0);
        smqtt_open_options o;
        memset(&o, 0, sizeof o);
        o.keys = &keys;
        CHECK_ERR(smqtt_envelope_open(plain, sizeof plain, &pt_len, &h, env, env_len, (const uint8_t *)topic,
                                      strlen(topic), &o, work, sizeof work),
                  SMQTT_OK, name);
        CHECK(pt_len == payload_len && (payload_len == 0 || memcmp(plain, payload, payload_len) == 0), "%s: payload",
              name);
        CHECK(h.sender == ks.sender && h.group == ks.group && h.epoch == ks.epoch && h.seq == p.seq &&
                  h.sent_at == p.sent_at && h.retain == p.retain && h.suite == ks.suite && !h.has_binding,
              "%s: header", name);
        CHECK_ERR(smqtt_envelope_verify(&h, env, env_len, (const uint8_t *)topic, strlen(topic), &o, work, sizeof work),
                  SMQTT_OK, name);
        refusals(c, env, env_len, ks, sk);
        free(payload);
        free(env);
        count++;
    }
    /* seal-side refusals */
    {
        uint8_t key[32] = {1}, sk[64], pk[32], seed[32] = {2}, out[256];
        crypto_sign_seed_keypair(pk, sk, seed);
        smqtt_seal_params p;
        memset(&p, 0, sizeof p);
        p.suite = 1;
        p.epoch_key = key;
        p.signing_key = sk;
        size_t n;
        const char *bad[] = {"", "a/+", "a/#", "a\xff", "a\xc0\x80"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
            CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &n, &p, (const uint8_t *)bad[i], strlen(bad[i]), NULL, 0, work,
                                          sizeof work),
                      SMQTT_ERR_TOPIC_INVALID, bad[i]);
        CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &n, &p, (const uint8_t *)"a\0b", 3, NULL, 0, work, sizeof work),
                  SMQTT_ERR_TOPIC_INVALID, "NUL");
        p.seq = SMQTT_MAX_SEQ + 1;
        CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &n, &p, (const uint8_t *)"a", 1, NULL, 0, work, sizeof work),
                  SMQTT_ERR_INVALID_ARGUMENT, "seq over 2^53-1");
        p.seq = SMQTT_MAX_SEQ;
        p.group = p.epoch = p.sender = SMQTT_MAX_ID;
        CHECK_ERR(smqtt_envelope_seal(out, 109, &n, &p, (const uint8_t *)"a", 1, NULL, 0, work, sizeof work), SMQTT_OK,
                  "largest ids: 109 bytes of overhead");
        CHECK(n == 109, "overhead %zu", n);
        CHECK_ERR(smqtt_envelope_seal(out, 108, &n, &p, (const uint8_t *)"a", 1, NULL, 0, work, sizeof work),
                  SMQTT_ERR_BUFFER_TOO_SMALL, "out too small");
        p.group = 1, p.epoch = 1, p.sender = 1, p.seq = 1;
        CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &n, &p, (const uint8_t *)"a", 1, NULL, 0, work, sizeof work),
                  SMQTT_OK, "smallest");
        CHECK(n == 90, "smallest overhead %zu", n);
    }
    printf("envelope-v1.json: %d cases, %d sealed byte for byte, %d skipped\n", count, sealed, skipped);
    cJSON_Delete(json);
    return tu_finish("envelope_vectors");
}
