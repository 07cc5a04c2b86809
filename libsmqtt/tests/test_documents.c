/*
 * packages/core/vectors/documents-v1.json, read from there: base64url, signatures with context,
 * HPKE as bundles use it, the key bundle (opened content, validity boundaries, every negative
 * case with its code, the accepted variants), the revocation list (valid, negative, holding
 * sequences) and the CONNECT password.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static uint8_t work[1 << 21];

/* The vector's document object as the JSON text a device receives. */
static char *document_text(const cJSON *doc) { return cJSON_PrintUnformatted(doc); }

/* Runs `check` on every case of a vector array; returns how many it checked (check: 1, or 0 for
 * a case it passes over). */
static int each_case(const cJSON *cases, int (*check)(const cJSON *c)) {
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) n += check(c);
    return n;
}

static int base64url_valid(const cJSON *c) {
    size_t want_len = 0, len = 0;
    uint8_t *want = tu_hex(tu_str(c, "hex"), &want_len);
    uint8_t out[64];
    char text[128];
    const char *t = tu_str(c, "text");
    CHECK(smqtt_base64url_decode(out, sizeof out, &len, t, strlen(t)) == 0 && len == want_len && memcmp(out, want, len) == 0,
          "decode %s", t);
    CHECK(smqtt_base64url_encode(text, sizeof text, &len, want, want_len) == 0 && strcmp(text, t) == 0, "encode %s", t);
    free(want);
    return 1;
}

static int base64url_invalid(const cJSON *c) {
    uint8_t out[64];
    size_t len;
    CHECK(smqtt_base64url_decode(out, sizeof out, &len, c->valuestring, strlen(c->valuestring)) != 0, "refuse '%s'",
          c->valuestring);
    return 1;
}

static int signature(const cJSON *c) {
    uint8_t pk[32], sig[64];
    size_t msg_len;
    uint8_t *msg = tu_hex(tu_str(c, "message"), &msg_len);
    CHECK(tu_hex_into(pk, 32, tu_str(c, "signingKey")) == 0 && tu_hex_into(sig, 64, tu_str(c, "signature")) == 0, "fields");
    CHECK(smqtt_verify_with_context(sig, tu_str(c, "context"), msg, msg_len, pk, work, sizeof work) == 1, "context %s",
          tu_str(c, "context"));
    sig[0] ^= 1;
    CHECK(smqtt_verify_with_context(sig, tu_str(c, "context"), msg, msg_len, pk, work, sizeof work) == 0, "altered");
    free(msg);
    return 1;
}

/* X25519 cases only: libsmqtt refuses X-Wing epochs (README). */
static int hpke(const cJSON *c) {
    if (strcmp(tu_str(c, "kem"), "x25519") != 0) return 0;
    uint8_t sk[32], pk[32], ske[32], enc[32], key[32], got_enc[32], out[64];
    size_t info_len, ct_len, len = 0;
    uint8_t *info = tu_hex(tu_str(c, "info"), &info_len), *ct = tu_hex(tu_str(c, "ciphertext"), &ct_len);
    CHECK(tu_hex_into(sk, 32, tu_str(c, "recipientSecretKey")) == 0 && tu_hex_into(pk, 32, tu_str(c, "recipientPublicKey")) == 0 &&
              tu_hex_into(ske, 32, tu_str(c, "ephemeralSecretKey")) == 0 && tu_hex_into(enc, 32, tu_str(c, "enc")) == 0 &&
              tu_hex_into(key, 32, tu_str(c, "plaintext")) == 0,
          "hpke fields");
    CHECK_ERR(smqtt_hpke_open_base(out, sizeof out, &len, enc, sk, pk, info, info_len, NULL, 0, ct, ct_len), SMQTT_OK,
              tu_str(c, "name"));
    CHECK(len == 32 && memcmp(out, key, 32) == 0, "hpke key %s", tu_str(c, "name"));
    smqtt_hpke_context s;
    CHECK_ERR(smqtt_hpke_setup_base_s(&s, got_enc, ske, pk, info, info_len), SMQTT_OK, "setup S");
    CHECK_ERR(smqtt_hpke_context_seal(&s, out, sizeof out, &len, key, 32, NULL, 0), SMQTT_OK, "seal");
    CHECK(memcmp(got_enc, enc, 32) == 0 && len == ct_len && memcmp(out, ct, ct_len) == 0, "hpke sealed %s", tu_str(c, "name"));
    free(info), free(ct);
    return 1;
}

typedef struct bundle_memory {
    smqtt_bundle_group groups[16];
    smqtt_bundle_epoch epochs[32];
    smqtt_bundle_writer writers[32];
    char strings[8192];
    smqtt_key_bundle b;
} bundle_memory;

static void bundle_init(bundle_memory *m) {
    memset(m, 0, sizeof *m);
    m->b.groups = m->groups, m->b.group_cap = 16;
    m->b.epochs = m->epochs, m->b.epoch_cap = 32;
    m->b.writers = m->writers, m->b.writer_cap = 32;
    m->b.strings = m->strings, m->b.strings_cap = sizeof m->strings;
}

static smqtt_err open_bundle(bundle_memory *m, const cJSON *doc, const char *recipient, const uint8_t ks[32],
                             const uint8_t sk[32], const uint8_t pk[32], int64_t now) {
    char *text = document_text(doc);
    bundle_init(m);
    smqtt_err e = smqtt_key_bundle_open(&m->b, text, strlen(text), ks, recipient, sk, pk, now, work, sizeof work);
    free(text);
    return e;
}

/* The opened bundle equals the vector's `opened` (groups, epoch keys, writers and their rights). */
static void compare_opened(const smqtt_key_bundle *b, const cJSON *opened) {
    CHECK(b->issued_at == tu_u64(opened, "issuedAt") && b->not_before == tu_u64(opened, "notBefore") &&
              b->not_after == tu_u64(opened, "notAfter"),
          "validity");
    size_t gi = 0, ei = 0, wi = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(opened, "groups")) {
        const smqtt_bundle_group *group = &b->groups[gi++];
        CHECK(group->group == tu_u64(g, "group") && group->suite == tu_u64(g, "suite") &&
                  strcmp(b->strings + group->filter_offset, tu_str(g, "filter")) == 0,
              "group %u", (unsigned)group->group);
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(g, "epochs")) {
            const smqtt_bundle_epoch *epoch = &b->epochs[ei++];
            CHECK(epoch->group == group->group && epoch->epoch == tu_u64(e, "epoch") &&
                      epoch->activates_at == tu_u64(e, "activatesAt") && epoch->retires_at == tu_u64(e, "retiresAt") &&
                      tu_hex_equals(epoch->key, 32, tu_str(e, "key")),
                  "epoch %u", (unsigned)epoch->epoch);
        }
        const cJSON *w;
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(g, "writers")) {
            const smqtt_bundle_writer *writer = &b->writers[wi++];
            const cJSON *publish = cJSON_GetObjectItemCaseSensitive(w, "publish");
            const char *f = b->strings + writer->filters_offset;
            int filters_ok = 1;
            const cJSON *list, *item;
            cJSON_ArrayForEach(list, publish) cJSON_ArrayForEach(item, list) {
                filters_ok &= strcmp(f, item->valuestring) == 0;
                f += strlen(f) + 1;
            }
            CHECK(writer->group == group->group && writer->kid == tu_u64(w, "kid") && tu_hex_equals(writer->signing_key, 32, tu_str(w, "signingKey")) &&
                      writer->allow_count == cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(publish, "allow")) &&
                      filters_ok,
                  "writer %u", (unsigned)writer->kid);
        }
    }
    CHECK(gi == b->group_count && ei == b->epoch_count && wi == b->writer_count, "counts");
}

int main(int argc, char **argv) {
    if (argc < 2 || smqtt_init() != SMQTT_OK) return 2;
    cJSON *v = tu_load_json(argv[1], "packages/core/vectors/documents-v1.json");
    uint8_t ks[32];
    tu_hex_into(ks, 32, tu_str(cJSON_GetObjectItemCaseSensitive(v, "keyServer"), "signingKey"));
    const cJSON *b64_cases = cJSON_GetObjectItemCaseSensitive(v, "base64url");
    int b64 = each_case(cJSON_GetObjectItemCaseSensitive(b64_cases, "valid"), base64url_valid) +
              each_case(cJSON_GetObjectItemCaseSensitive(b64_cases, "invalid"), base64url_invalid);
    int sigs = each_case(cJSON_GetObjectItemCaseSensitive(v, "signatureWithContext"), signature);
    int hp = each_case(cJSON_GetObjectItemCaseSensitive(v, "hpke"), hpke);

    /* key bundle */
    const cJSON *kb = cJSON_GetObjectItemCaseSensitive(v, "keyBundle");
    const cJSON *recipient = cJSON_GetObjectItemCaseSensitive(kb, "recipient");
    const char *own_id = tu_str(recipient, "id");
    uint8_t sk[32], pk[32];
    tu_hex_into(sk, 32, tu_str(recipient, "agreementSecret"));
    tu_hex_into(pk, 32, tu_str(recipient, "agreementKey"));
    static bundle_memory m;
    const cJSON *doc = cJSON_GetObjectItemCaseSensitive(kb, "document");
    CHECK_ERR(open_bundle(&m, doc, own_id, ks, sk, pk, (int64_t)tu_u64(kb, "now")), SMQTT_OK, "key bundle");
    compare_opened(&m.b, cJSON_GetObjectItemCaseSensitive(kb, "opened"));
    /* the opened bundle as an smqtt_keyring: writer rights */
    CHECK(smqtt_key_bundle_writer_may_publish(&m.b, 7, 1001, (const uint8_t *)"home/hall/thermostat/x", 22) == 1, "allow");
    CHECK(smqtt_key_bundle_writer_may_publish(&m.b, 7, 1001, (const uint8_t *)"home/hall/thermostat/x/firmware", 31) == 0,
          "deny wins");
    CHECK(smqtt_key_bundle_writer_may_publish(&m.b, 7, 1000, (const uint8_t *)"home/hall/thermostat/thermostat-2/t", 35) == 0,
          "another writer's topic");
    /* the opened bundle as the device's keyring: an envelope of writer 1000 (thermostat-1) */
    {
        uint8_t wseed[32], wpk[32], wsk[64], env[256], plain[64];
        tu_hex_into(wseed, 32, tu_str(recipient, "signingSeed"));
        crypto_sign_seed_keypair(wpk, wsk, wseed);
        smqtt_seal_params p;
        memset(&p, 0, sizeof p);
        p.suite = 1, p.group = 7, p.epoch = 300, p.sender = 1000, p.seq = 1, p.sent_at = 1796000000;
        p.epoch_key = m.b.epochs[0].key, p.signing_key = wsk;
        size_t env_len = 0, pl = 0;
        uint32_t revoked_kids[1] = {1000};
        smqtt_revocation_list none = {1, 0, 0, {0}, NULL, 0, 0}, revoking = {2, 0, 0, {0}, revoked_kids, 1, 1};
        smqtt_device_keys device = {&m.b, &none};
        smqtt_keyring ring;
        smqtt_device_keyring(&ring, &device);
        smqtt_open_options o;
        memset(&o, 0, sizeof o);
        o.keys = &ring;
        const char *topics[2] = {"home/hall/thermostat/thermostat-1/temp", "home/hall/thermostat/thermostat-2/temp"};
        smqtt_err want[2] = {SMQTT_OK, SMQTT_ERR_SENDER_NOT_PERMITTED};
        for (int i = 0; i < 2; i++) {
            const uint8_t *t = (const uint8_t *)topics[i];
            CHECK_ERR(smqtt_envelope_seal(env, sizeof env, &env_len, &p, t, strlen(topics[i]), (const uint8_t *)"21.5", 4,
                                          work, sizeof work),
                      SMQTT_OK, "seal with the bundle's key");
            CHECK_ERR(smqtt_envelope_open(plain, sizeof plain, &pl, NULL, env, env_len, t, strlen(topics[i]), &o, work,
                                          sizeof work),
                      want[i], topics[i]);
        }
        device.revocations = &revoking;
        CHECK_ERR(smqtt_envelope_open(plain, sizeof plain, &pl, NULL, env, env_len, (const uint8_t *)topics[1],
                                      strlen(topics[1]), &o, work, sizeof work),
                  SMQTT_ERR_SENDER_REVOKED, "revoked");
    }
    int bundle_cases = 1;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(kb, "boundaries")) {
        CHECK_ERR(open_bundle(&m, doc, own_id, ks, sk, pk, (int64_t)tu_u64(c, "now")), SMQTT_OK, "boundary");
        bundle_cases++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(kb, "negative")) {
        const char *who = tu_str(c, "recipient") != NULL ? tu_str(c, "recipient") : own_id;
        smqtt_err e = open_bundle(&m, cJSON_GetObjectItemCaseSensitive(c, "document"), who, ks, sk, pk,
                                  (int64_t)tu_u64(c, "now"));
        CHECK(strcmp(smqtt_err_code_str((int)e), tu_str(c, "error")) == 0, "%s: got %s, want %s", tu_str(c, "name"),
              smqtt_err_code_str((int)e), tu_str(c, "error"));
        bundle_cases++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(v, "keyBundleAccepted")) {
        smqtt_err e = open_bundle(&m, cJSON_GetObjectItemCaseSensitive(c, "document"), own_id, ks, sk, pk,
                                  (int64_t)tu_u64(kb, "now"));
        const char *want = tu_str(c, "error");
        CHECK((strcmp(want, "ok") == 0 && e == SMQTT_OK) || strcmp(smqtt_err_code_str((int)e), want) == 0, "%s: got %s",
              tu_str(c, "name"), smqtt_err_code_str((int)e));
        bundle_cases++;
    }

    /* revocation list */
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(v, "revocationList");
    uint32_t kids[64];
    smqtt_revocation_list list = {0, 0, 0, {0}, kids, 64, 0};
    int lists = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(rl, "valid")) {
        char *text = document_text(cJSON_GetObjectItemCaseSensitive(c, "document"));
        CHECK_ERR(smqtt_revocation_list_open(&list, text, strlen(text), ks, work, sizeof work), SMQTT_OK, "revocation list");
        CHECK(list.version == tu_u64(c, "version") && list.issued_at == tu_u64(c, "issuedAt") &&
                  list.pruned_before == tu_u64(c, "prunedBefore") &&
                  list.kid_count == (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(c, "entries")),
              "list %u", (unsigned)list.version);
        const cJSON *entry;
        cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(c, "entries"))
            CHECK(smqtt_revocation_list_is_revoked(&list, (uint32_t)tu_u64(entry, "kid")), "revoked kid");
        CHECK(!smqtt_revocation_list_is_revoked(&list, 1000), "not revoked");
        free(text);
        lists++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(rl, "negative")) {
        char *text = document_text(cJSON_GetObjectItemCaseSensitive(c, "document"));
        smqtt_err e = smqtt_revocation_list_open(&list, text, strlen(text), ks, work, sizeof work);
        CHECK(strcmp(smqtt_err_code_str((int)e), tu_str(c, "error")) == 0, "%s: got %s", tu_str(c, "name"),
              smqtt_err_code_str((int)e));
        free(text);
        lists++;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(rl, "sequences")) {
        uint32_t held_kids[64], cand_kids[64];
        smqtt_revocation_list held = {0, 0, 0, {0}, held_kids, 64, 0}, cand = {0, 0, 0, {0}, cand_kids, 64, 0};
        int have = 0, i = 0;
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(c, "documents")) {
            char *text = document_text(d);
            const char *want = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "results"), i++)->valuestring;
            int replace = 0;
            smqtt_err e = smqtt_revocation_list_open(&cand, text, strlen(text), ks, work, sizeof work);
            if (e == SMQTT_OK) e = smqtt_revocation_list_compare(have ? &held : NULL, &cand, &replace);
            const char *got = e != SMQTT_OK ? smqtt_err_code_str((int)e) : replace ? "accepted" : "unchanged";
            CHECK(strcmp(got, want) == 0, "%s step %d: got %s, want %s", tu_str(c, "name"), i, got, want);
            if (e == SMQTT_OK && replace) {
                memcpy(held_kids, cand_kids, cand.kid_count * sizeof *cand_kids);
                uint32_t *keep = held.kids;
                held = cand;
                held.kids = keep;
                have = 1;
            }
            free(text);
        }
        const cJSON *want_held = cJSON_GetObjectItemCaseSensitive(c, "held");
        CHECK(held.version == tu_u64(want_held, "version") && held.pruned_before == tu_u64(want_held, "prunedBefore"),
              "%s: held", tu_str(c, "name"));
        lists++;
    }

    /* CONNECT password */
    const cJSON *cp = cJSON_GetObjectItemCaseSensitive(v, "connectPassword");
    uint8_t seed[32], spk[32], ssk[64], nonce[16];
    tu_hex_into(seed, 32, tu_str(cp, "signingSeed"));
    tu_hex_into(nonce, 16, tu_str(cp, "nonce"));
    crypto_sign_seed_keypair(spk, ssk, seed);
    char password[SMQTT_CONNECT_PASSWORD_MAX_BYTES];
    size_t password_len = 0;
    CHECK_ERR(smqtt_connect_password(password, sizeof password, &password_len, tu_str(cp, "clientId"),
                                     tu_u64(cp, "timestamp"), nonce, ssk),
              SMQTT_OK, "password");
    CHECK(strcmp(password, tu_str(cp, "password")) == 0, "password %s", password);

    /* writer record */
    int records = 0;
    {
        const cJSON *wr = cJSON_GetObjectItemCaseSensitive(v, "writerRecord");
        smqtt_bundle_writer rw[8];
        char pool[2048];
        smqtt_writer_record r = {0, 0, 0, 0, rw, 8, 0, pool, sizeof pool, 0};
        char *text = document_text(cJSON_GetObjectItemCaseSensitive(wr, "document"));
        const char *reader = tu_str(wr, "reader");
        CHECK_ERR(smqtt_writer_record_open(&r, text, strlen(text), ks, reader, (int64_t)tu_u64(wr, "now"), work, sizeof work),
                  SMQTT_OK, "writer record");
        const cJSON *opened = cJSON_GetObjectItemCaseSensitive(wr, "opened");
        const cJSON *w0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(opened, "writers"), 0);
        CHECK(r.group == tu_u64(opened, "group") && r.not_after == tu_u64(opened, "notAfter") &&
                  strcmp(pool + r.filter_offset, tu_str(opened, "filter")) == 0 && r.writer_count == 1 &&
                  rw[0].kid == tu_u64(w0, "kid") && tu_hex_equals(rw[0].signing_key, 32, tu_str(w0, "signingKey")) &&
                  strcmp(pool + rw[0].filters_offset, "home/hall/thermostat/lock-1/#") == 0,
              "writer record content");
        records++;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(wr, "boundaries")) {
            CHECK_ERR(smqtt_writer_record_open(&r, text, strlen(text), ks, reader, (int64_t)tu_u64(c, "now"), work, sizeof work),
                      SMQTT_OK, "writer record boundary");
            records++;
        }
        free(text);
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(wr, "negative")) {
            text = document_text(cJSON_GetObjectItemCaseSensitive(c, "document"));
            smqtt_err e = smqtt_writer_record_open(&r, text, strlen(text), ks, tu_str(c, "reader"), (int64_t)tu_u64(c, "now"),
                                                   work, sizeof work);
            CHECK(strcmp(smqtt_err_code_str((int)e), tu_str(c, "error")) == 0, "%s: got %s", tu_str(c, "name"),
                  smqtt_err_code_str((int)e));
            free(text);
            records++;
        }
    }
    /* principal record */
    {
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(v, "principalRecord");
        smqtt_principal_record r;
        char *text = document_text(cJSON_GetObjectItemCaseSensitive(pr, "document"));
        CHECK_ERR(smqtt_principal_record_open(&r, text, strlen(text), ks, work, sizeof work), SMQTT_OK, "principal record");
        CHECK(strcmp(r.id, own_id) == 0 && r.kid == 1000 && r.kem == SMQTT_KEM_X25519 && memcmp(r.agreement_key, pk, 32) == 0,
              "principal record content");
        free(text);
        records++;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(pr, "negative")) {
            text = document_text(cJSON_GetObjectItemCaseSensitive(c, "document"));
            smqtt_err e = smqtt_principal_record_open(&r, text, strlen(text), ks, work, sizeof work);
            CHECK(strcmp(smqtt_err_code_str((int)e), tu_str(c, "error")) == 0, "%s: got %s", tu_str(c, "name"),
                  smqtt_err_code_str((int)e));
            free(text);
            records++;
        }
        uint8_t zero[32] = {0}, one[32] = {1}, p_minus_1[32];
        memset(p_minus_1, 0xff, 32);
        p_minus_1[0] = 0xec, p_minus_1[31] = 0x7f;
        CHECK(!smqtt_x25519_public_key_is_valid(zero) && !smqtt_x25519_public_key_is_valid(one) &&
                  !smqtt_x25519_public_key_is_valid(p_minus_1) && smqtt_x25519_public_key_is_valid(pk),
              "x25519 key validity");
        /* Ed25519 keys (docs/documents.md): a mixed-order key is valid (TypeScript and the key
         * server accept it; libsodium's subgroup checks would refuse a bundle listing it), a
         * small-order y is not, with or without the sign bit, nor y >= p or a y off the curve. */
        uint8_t mixed[32], small8[32], y_is_p[32], off_curve[32] = {2};
        tu_hex_into(mixed, 32, "da99e28ba529cdde35a25fba9059e78ecaee239f99755b9b1aa4f65df00803e2");
        tu_hex_into(small8, 32, "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05");
        memset(y_is_p, 0xff, 32);
        y_is_p[0] = 0xed, y_is_p[31] = 0x7f;
        CHECK(smqtt_ed25519_public_key_is_valid(mixed), "a mixed-order Ed25519 key is valid");
        CHECK(!smqtt_ed25519_public_key_is_valid(small8), "a small-order Ed25519 key is refused");
        small8[31] |= 0x80;
        CHECK(!smqtt_ed25519_public_key_is_valid(small8), "a small-order Ed25519 key with the sign bit is refused");
        CHECK(!smqtt_ed25519_public_key_is_valid(zero) && !smqtt_ed25519_public_key_is_valid(one),
              "y = 0 and y = 1 are refused");
        CHECK(!smqtt_ed25519_public_key_is_valid(y_is_p), "a non-canonical y (y = p) is refused");
        CHECK(!smqtt_ed25519_public_key_is_valid(off_curve), "a y off the curve is refused");
    }
    /* signed HTTP requests and the enrollment proof */
    int requests = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(v, "requestSignature"), "requests")) {
        uint8_t rseed[32], rpk[32], rsk[64], rnonce[16];
        tu_hex_into(rseed, 32, tu_str(c, "signingSeed"));
        tu_hex_into(rnonce, 16, tu_str(c, "nonce"));
        crypto_sign_seed_keypair(rpk, rsk, rseed);
        const char *body = tu_str(c, "body");
        smqtt_request_headers h;
        CHECK_ERR(smqtt_request_sign(&h, tu_str(c, "method"), tu_str(c, "path"), (const uint8_t *)body, strlen(body),
                                     tu_u64(c, "timestamp"), rnonce, rsk),
                  SMQTT_OK, tu_str(c, "path"));
        const cJSON *headers = cJSON_GetObjectItemCaseSensitive(c, "headers");
        CHECK(strcmp(h.timestamp, tu_str(headers, "smqtt-timestamp")) == 0 && strcmp(h.nonce, tu_str(headers, "smqtt-nonce")) == 0 &&
                  strcmp(h.signature, tu_str(headers, "smqtt-signature")) == 0,
              "request %s %s", tu_str(c, "method"), tu_str(c, "path"));
        requests++;
    }
    {
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(v, "enrollment");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(en, "identity");
        uint8_t eseed[32], epk[32], esk[64], apk[32];
        tu_hex_into(eseed, 32, tu_str(id, "signingSeed"));
        tu_hex_into(apk, 32, tu_str(id, "agreementKey"));
        crypto_sign_seed_keypair(epk, esk, eseed);
        /* the answer */
        cJSON *answer = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(en, "response"), 1);
        char *answer_text = cJSON_PrintUnformatted(answer);
        smqtt_principal_record rec;
        uint8_t pinned[32], other[32] = {1};
        CHECK_ERR(smqtt_enrollment_answer_check(&rec, pinned, answer_text, strlen(answer_text), NULL, tu_str(id, "id"), epk, apk,
                                                work, sizeof work),
                  SMQTT_OK, "enrollment answer");
        CHECK(memcmp(pinned, ks, 32) == 0 && rec.kid == 1000, "pinned key");
        CHECK_ERR(smqtt_enrollment_answer_check(&rec, pinned, answer_text, strlen(answer_text), other, tu_str(id, "id"), epk,
                                                apk, work, sizeof work),
                  SMQTT_ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID, "another pinned key");
        CHECK_ERR(smqtt_enrollment_answer_check(&rec, pinned, answer_text, strlen(answer_text), NULL, "thermostat-2", epk, apk,
                                                work, sizeof work),
                  SMQTT_ERR_IDENTITY_MALFORMED, "another id");
        free(answer_text);
        cJSON_ReplaceItemInObjectCaseSensitive(answer, "kid", cJSON_CreateNumber(1001));
        answer_text = cJSON_PrintUnformatted(answer);
        CHECK_ERR(smqtt_enrollment_answer_check(&rec, pinned, answer_text, strlen(answer_text), NULL, tu_str(id, "id"), epk,
                                                apk, work, sizeof work),
                  SMQTT_ERR_IDENTITY_MALFORMED, "another kid");
        free(answer_text);
        cJSON_Delete(answer);
        char proof[87];
        CHECK_ERR(smqtt_enrollment_proof(proof, tu_str(en, "token"), epk, apk, esk), SMQTT_OK, "enrollment proof");
        CHECK(strcmp(proof, tu_str(en, "proof")) == 0, "enrollment proof %s", proof);
    }
    printf("documents-v1.json: base64url %d, signatures %d, hpke %d, key bundle %d cases, revocation list %d cases, "
           "writer/principal records %d, connect password 1, requests %d, enrollment proof 1\n",
           b64, sigs, hp, bundle_cases, lists, records, requests);
    cJSON_Delete(v);
    return tu_finish("documents");
}
