/*
 * packages/core/vectors/envelope-v1-bound-properties.json, read from there: seal with the
 * vector's binding reproduces `boundProperties` and the envelope; each check opens and verifies
 * with the properties the receiver got and expects "opened" (with the verified / unsigned split
 * the header's descriptor gives) or the error code.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static uint8_t work[1 << 15];

static int same(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    if ((a == NULL) != (b == NULL)) return 0;
    return a == NULL || (al == bl && (al == 0 || memcmp(a, b, al) == 0));
}

/* The split the descriptor implies, compared with the vector's `verified` and `unsigned`. */
static int split_matches(const smqtt_envelope_header *h, const smqtt_properties *got, const cJSON *verified_json,
                         const cJSON *unsigned_json) {
    tu_props verified, unsigned_;
    if (tu_props_from_json(&verified, verified_json) != 0 || tu_props_from_json(&unsigned_, unsigned_json) != 0)
        return 0;
    int ok = 1;
    const uint8_t *gv[3] = {got->content_type, got->response_topic, got->correlation_data};
    size_t gl[3] = {got->content_type_len, got->response_topic_len, got->correlation_data_len};
    const smqtt_properties *vp = &verified.props, *up = &unsigned_.props;
    const uint8_t *vv[3] = {vp->content_type, vp->response_topic, vp->correlation_data};
    size_t vl[3] = {vp->content_type_len, vp->response_topic_len, vp->correlation_data_len};
    const uint8_t *uv[3] = {up->content_type, up->response_topic, up->correlation_data};
    size_t ul[3] = {up->content_type_len, up->response_topic_len, up->correlation_data_len};
    for (int k = 0; k < 3; k++) {
        int bound = h->has_binding && (h->bind_mask & (1u << k));
        const uint8_t *want_v = bound ? gv[k] : NULL, *want_u = bound ? NULL : gv[k];
        ok &= same(vv[k], vl[k], want_v, gl[k]) && same(uv[k], ul[k], want_u, gl[k]);
    }
    size_t count = h->has_binding ? h->bind_user_count : 0;
    ok &= vp->user_property_count == (got->user_property_count < count ? got->user_property_count : count);
    ok &= up->user_property_count == (got->user_property_count > count ? got->user_property_count - count : 0);
    for (size_t i = 0; ok && i < got->user_property_count; i++) {
        const smqtt_user_property *want = &got->user_properties[i];
        const smqtt_user_property *have = i < count ? &vp->user_properties[i] : &up->user_properties[i - count];
        ok &= same(have->key, have->key_len, want->key, want->key_len) &&
              same(have->value, have->value_len, want->value, want->value_len);
    }
    tu_props_free(&verified);
    tu_props_free(&unsigned_);
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 2 || smqtt_init() != SMQTT_OK) return 2;
    cJSON *json = tu_load_json(argv[1], "packages/core/vectors/envelope-v1-bound-properties.json");
    int cases = 0, checks = 0, sealed = 0, skipped = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(json, "cases")) {
        const char *name = tu_str(c, "name");
        tu_keys ks;
        uint8_t sk[64];
        CHECK(tu_keys_from_case(&ks, sk, c) == 0, "%s: keys", name);
        size_t payload_len, env_len, bound_len;
        uint8_t *payload = tu_hex(tu_str(c, "payload"), &payload_len);
        uint8_t *env = tu_hex(tu_str(c, "envelope"), &env_len);
        uint8_t *bound = tu_hex(tu_str(c, "boundProperties"), &bound_len);
        const char *topic = tu_str(c, "topic");
        size_t topic_len = strlen(topic);
        const cJSON *binding = cJSON_GetObjectItemCaseSensitive(c, "binding");
        uint8_t mask = (uint8_t)((cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(binding, "contentType")) ? 1 : 0) |
                                 (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(binding, "responseTopic")) ? 2 : 0) |
                                 (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(binding, "correlationData")) ? 4 : 0));
        uint8_t count = (uint8_t)tu_num(binding, "userProperties");
        tu_props sent;
        CHECK(tu_props_from_json(&sent, cJSON_GetObjectItemCaseSensitive(c, "properties")) == 0, "%s", name);
        cases++;
        if (!smqtt_suite_available(ks.suite)) {
            printf("SKIP %s: suite %u has no AES-GCM on this CPU\n", name, ks.suite);
            skipped++;
            free(payload), free(env), free(bound), tu_props_free(&sent);
            continue;
        }

        uint8_t enc[8192];
        size_t enc_len = 0;
        CHECK_ERR(smqtt_bound_properties_encode(enc, sizeof enc, &enc_len, mask, count, &sent.props), SMQTT_OK, name);
        CHECK(enc_len == bound_len && memcmp(enc, bound, bound_len) == 0, "%s: boundProperties differ", name);

        smqtt_seal_params p;
        memset(&p, 0, sizeof p);
        p.suite = ks.suite;
        p.retain = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "retain")) ? 1 : 0;
        p.group = ks.group, p.epoch = ks.epoch, p.sender = ks.sender;
        p.seq = tu_u64(c, "seq");
        p.sent_at = (uint32_t)tu_u64(c, "sentAt");
        p.epoch_key = ks.epoch_key;
        p.signing_key = sk;
        p.properties = &sent.props;
        p.bind_mask = mask;
        p.bind_user_count = count;
        uint8_t out[8192];
        size_t out_len = 0;
        CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &out_len, &p, (const uint8_t *)topic, topic_len, payload,
                                      payload_len, work, SMQTT_SEAL_WORK_BYTES(payload_len, topic_len, bound_len)),
                  SMQTT_OK, name);
        int same_bytes = out_len == env_len && memcmp(out, env, env_len) == 0;
        CHECK(same_bytes, "%s: sealed bytes differ", name);
        sealed += same_bytes;

        const cJSON *check;
        cJSON_ArrayForEach(check, cJSON_GetObjectItemCaseSensitive(c, "checks")) {
            const char *check_name = tu_str(check, "name");
            const char *result = tu_str(check, "result");
            tu_props got;
            CHECK(tu_props_from_json(&got, cJSON_GetObjectItemCaseSensitive(check, "received")) == 0, "%s", check_name);
            smqtt_keyring keys = tu_keyring(&ks, 0);
            smqtt_open_options o;
            memset(&o, 0, sizeof o);
            o.keys = &keys;
            o.properties = &got.props;
            uint8_t plain[4096];
            size_t pt_len = 0;
            smqtt_envelope_header h;
            smqtt_err opened = smqtt_envelope_open(plain, sizeof plain, &pt_len, &h, env, env_len, (const uint8_t *)topic,
                                                   topic_len, &o, work, sizeof work);
            smqtt_err verified = smqtt_envelope_verify(NULL, env, env_len, (const uint8_t *)topic, topic_len, &o, work,
                                                       sizeof work);
            char label[512];
            snprintf(label, sizeof label, "%s / %s", name, check_name);
            if (strcmp(result, "opened") == 0) {
                CHECK_ERR(opened, SMQTT_OK, label);
                CHECK_ERR(verified, SMQTT_OK, label);
                CHECK(pt_len == payload_len && memcmp(plain, payload, payload_len) == 0, "%s: payload", label);
                CHECK(split_matches(&h, &got.props, cJSON_GetObjectItemCaseSensitive(check, "verified"),
                                    cJSON_GetObjectItemCaseSensitive(check, "unsigned")),
                      "%s: verified/unsigned split", label);
            } else {
                CHECK(opened != SMQTT_OK && strcmp(smqtt_err_code_str((int)opened), result) == 0, "%s: open gave %s, want %s",
                      label, smqtt_err_code_str((int)opened), result);
                CHECK(verified != SMQTT_OK && strcmp(smqtt_err_code_str((int)verified), result) == 0,
                      "%s: verify gave %s, want %s", label, smqtt_err_code_str((int)verified), result);
            }
            checks++;
            tu_props_free(&got);
        }
        /* Given no properties at all, an envelope binding present ones fails the signature. */
        {
            smqtt_keyring keys = tu_keyring(&ks, 0);
            smqtt_open_options o;
            memset(&o, 0, sizeof o);
            o.keys = &keys;
            int any_present = sent.props.content_type != NULL || sent.props.response_topic != NULL ||
                              sent.props.correlation_data != NULL || count > 0;
            smqtt_err e = smqtt_envelope_verify(NULL, env, env_len, (const uint8_t *)topic, topic_len, &o, work, sizeof work);
            if (any_present) CHECK_ERR(e, SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID, "no properties given");
        }
        /* descriptor refusals: mask bit in 0xF8, count above 16, nothing bound */
        {
            smqtt_envelope_header h;
            smqtt_envelope_parse(&h, env, env_len);
            uint8_t copy[8192];
            uint8_t bad[3][2] = {{0x08, 0}, {0x07, 17}, {0, 0}};
            for (int i = 0; i < 3; i++) {
                memcpy(copy, env, env_len);
                copy[h.header_len - 2] = bad[i][0];
                copy[h.header_len - 1] = bad[i][1];
                CHECK_ERR(smqtt_envelope_parse(&h, copy, env_len), SMQTT_ERR_ENVELOPE_MALFORMED, "bad descriptor");
                smqtt_envelope_parse(&h, env, env_len);
            }
        }
        free(payload), free(env), free(bound), tu_props_free(&sent);
    }
    /* The sealer's limits: over them is ERR_ENVELOPE_TOO_LARGE. */
    {
        uint8_t key[32] = {1}, seed[32] = {2}, pk[32], sk[64], out[8192];
        crypto_sign_seed_keypair(pk, sk, seed);
        static uint8_t big[1025];
        memset(big, 'a', sizeof big);
        smqtt_properties props;
        memset(&props, 0, sizeof props);
        props.content_type = big;
        props.content_type_len = 1025;
        smqtt_seal_params p;
        memset(&p, 0, sizeof p);
        p.suite = 1, p.epoch_key = key, p.signing_key = sk, p.properties = &props;
        size_t n;
        CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &n, &p, (const uint8_t *)"t", 1, NULL, 0, work, sizeof work),
                  SMQTT_ERR_ENVELOPE_TOO_LARGE, "content type over 1024 bytes");
        smqtt_user_property users[17];
        for (int i = 0; i < 17; i++) users[i] = (smqtt_user_property){big, 1, big, 1};
        props.content_type_len = 10;
        props.user_properties = users;
        props.user_property_count = 17;
        CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &n, &p, (const uint8_t *)"t", 1, NULL, 0, work, sizeof work),
                  SMQTT_ERR_ENVELOPE_TOO_LARGE, "17 user properties");
        for (int i = 0; i < 4; i++) users[i] = (smqtt_user_property){big, 1024, big, 1024};
        props.user_property_count = 4;
        CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &n, &p, (const uint8_t *)"t", 1, NULL, 0, work, sizeof work),
                  SMQTT_ERR_ENVELOPE_TOO_LARGE, "over 4096 bytes in all");
        props.user_property_count = 0;
        props.content_type = (const uint8_t *)"a\0b";
        props.content_type_len = 3;
        CHECK_ERR(smqtt_envelope_seal(out, sizeof out, &n, &p, (const uint8_t *)"t", 1, NULL, 0, work, sizeof work),
                  SMQTT_ERR_INVALID_ARGUMENT, "U+0000 in a property");
    }
    printf("envelope-v1-bound-properties.json: %d cases (%d sealed byte for byte, %d skipped), %d receiver checks\n",
           cases, sealed, skipped, checks);
    cJSON_Delete(json);
    return tu_finish("bound_properties");
}
