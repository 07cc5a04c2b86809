/*
 * libsmqtt: SMQTT end-to-end security for MQTT, for devices (C99, libsodium).
 *
 * One public header. Every function returns an smqtt_err (SMQTT_OK = 0). Nothing here keeps
 * global mutable state: all state lives in structures the caller owns and passes in.
 *
 * Thread safety, stated per function below, follows one rule: a function is safe to call from
 * several threads at once as long as no two calls share a *mutable* argument (an output buffer,
 * a work buffer, an smqtt_replay, an smqtt_seq_counter). Read-only arguments (keys, envelopes,
 * properties) may be shared. smqtt_init() must have returned before any other call.
 *
 * Memory: no function allocates on the heap. Envelope functions take a caller-owned `work`
 * buffer (the Ed25519 signature covers context || header || topic || bound || ciphertext, which
 * must be contiguous); size it with SMQTT_SEAL_WORK_BYTES / SMQTT_OPEN_WORK_BYTES.
 *
 * The wire format is docs/envelope.md (envelope v1); error codes are docs/errors.md.
 */
#ifndef SMQTT_SMQTT_H
#define SMQTT_SMQTT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SMQTT_VERSION_MAJOR 0
#define SMQTT_VERSION_MINOR 1
#define SMQTT_VERSION_PATCH 0
#define SMQTT_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Errors. SMQTT_ERR_* from 1 to 53 map 1:1, in order, to the SmqttError codes of docs/errors.md
 * (smqtt_err_code_str returns the exact string, e.g. "ERR_ENVELOPE_MALFORMED"). The values are
 * part of the ABI and never change; new codes get new numbers.
 *
 * Two codes are C-only and stand where TypeScript throws TypeError / RangeError (programmer
 * mistakes, never untrusted input): SMQTT_ERR_INVALID_ARGUMENT (a NULL pointer, a length or value
 * out of range) and SMQTT_ERR_BUFFER_TOO_SMALL (an output or work buffer too small). Their
 * strings do not start with "ERR_".
 * ------------------------------------------------------------------------------------------- */
typedef enum smqtt_err {
    SMQTT_OK = 0,
    SMQTT_ERR_ENVELOPE_MALFORMED = 1,
    SMQTT_ERR_ENVELOPE_UNSUPPORTED = 2,
    SMQTT_ERR_ENVELOPE_TOO_LARGE = 3,
    SMQTT_ERR_ENVELOPE_SIGNATURE_INVALID = 4,
    SMQTT_ERR_ENVELOPE_DECRYPTION_FAILED = 5,
    SMQTT_ERR_UNKNOWN_SENDER = 6,
    SMQTT_ERR_UNKNOWN_EPOCH = 7,
    SMQTT_ERR_REPLAY = 8,
    SMQTT_ERR_REPLAY_STATE_INVALID = 9,
    SMQTT_ERR_STALE = 10,
    SMQTT_ERR_SENDER_REVOKED = 11,
    SMQTT_ERR_SENDER_NOT_PERMITTED = 12,
    SMQTT_ERR_SEQUENCE_EXHAUSTED = 13,
    SMQTT_ERR_SEQUENCE_UNAVAILABLE = 14,
    SMQTT_ERR_IDENTITY_IN_USE = 15,
    SMQTT_ERR_KEY_INVALID = 16,
    SMQTT_ERR_HPKE_OPEN_FAILED = 17,
    SMQTT_ERR_BUNDLE_MALFORMED = 18,
    SMQTT_ERR_BUNDLE_SIGNATURE_INVALID = 19,
    SMQTT_ERR_BUNDLE_EXPIRED = 20,
    SMQTT_ERR_BUNDLE_NOT_YET_VALID = 21,
    SMQTT_ERR_BUNDLE_WRONG_RECIPIENT = 22,
    SMQTT_ERR_BUNDLE_ROLLBACK = 23,
    SMQTT_ERR_REVOCATION_LIST_MALFORMED = 24,
    SMQTT_ERR_REVOCATION_LIST_SIGNATURE_INVALID = 25,
    SMQTT_ERR_REVOCATION_LIST_ROLLBACK = 26,
    SMQTT_ERR_IDENTITY_MALFORMED = 27,
    SMQTT_ERR_TOPIC_INVALID = 28,
    SMQTT_ERR_FILTER_INVALID = 29,
    SMQTT_ERR_ACL_SUBSTITUTION_REFUSED = 30,
    SMQTT_ERR_POLICY_INVALID = 31,
    SMQTT_ERR_CERTIFICATE_REQUEST_INVALID = 32,
    SMQTT_ERR_CERTIFICATE_AUTHORITY_INVALID = 33,
    SMQTT_ERR_MASTER_KEY_INVALID = 34,
    SMQTT_ERR_SEALED_SECRET_INVALID = 35,
    SMQTT_ERR_CONFIG_INVALID = 36,
    SMQTT_ERR_REQUEST_SIGNATURE_INVALID = 37,
    SMQTT_ERR_UNAUTHENTICATED = 38,
    SMQTT_ERR_FORBIDDEN = 39,
    SMQTT_ERR_PRINCIPAL_REVOKED = 40,
    SMQTT_ERR_NOT_FOUND = 41,
    SMQTT_ERR_CONFLICT = 42,
    SMQTT_ERR_REQUEST_INVALID = 43,
    SMQTT_ERR_PAYLOAD_TOO_LARGE = 44,
    SMQTT_ERR_RATE_LIMITED = 45,
    SMQTT_ERR_UNSUPPORTED_MEDIA_TYPE = 46,
    SMQTT_ERR_ENROLLMENT_TOKEN_INVALID = 47,
    SMQTT_ERR_INTERNAL = 48,
    SMQTT_ERR_STORE_UNAVAILABLE = 49,
    SMQTT_ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID = 50,
    SMQTT_ERR_SNAPSHOT_MALFORMED = 51,
    SMQTT_ERR_SNAPSHOT_SIGNATURE_INVALID = 52,
    SMQTT_ERR_NO_KEY_GROUP = 53,
    /* C-only: programmer mistakes (TypeError / RangeError in TypeScript). */
    SMQTT_ERR_INVALID_ARGUMENT = 100,
    SMQTT_ERR_BUFFER_TOO_SMALL = 101
} smqtt_err;

/* Number of SmqttError codes (1 .. SMQTT_ERR_CODE_COUNT). */
#define SMQTT_ERR_CODE_COUNT 53

/*
 * The stable string of an error: "OK", "ERR_ENVELOPE_MALFORMED", ..., "INVALID_ARGUMENT",
 * "BUFFER_TOO_SMALL"; NULL for a value that is no smqtt_err. Thread-safe (static strings).
 */
const char *smqtt_err_code_str(int err);

/*
 * Initializes libsodium (sodium_init). Call once before anything else; later calls are harmless.
 * Thread-safe (libsodium makes sodium_init idempotent and safe to race).
 */
smqtt_err smqtt_init(void);

/* The library's version, "MAJOR.MINOR.PATCH". Thread-safe. */
const char *smqtt_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * Sizes
 * ------------------------------------------------------------------------------------------- */
#define SMQTT_ENVELOPE_VERSION 1
#define SMQTT_SUITE_CHACHA20POLY1305_ED25519 1 /* default */
#define SMQTT_SUITE_AES256GCM_ED25519 2
#define SMQTT_EPOCH_KEY_BYTES 32
#define SMQTT_SIGNING_SEED_BYTES 32
#define SMQTT_SIGNING_PUBLIC_KEY_BYTES 32
#define SMQTT_SIGNING_SECRET_KEY_BYTES 64 /* libsodium layout: seed || public key */
#define SMQTT_SIGNATURE_BYTES 64
#define SMQTT_TAG_BYTES 16
#define SMQTT_SENDER_KEY_BYTES 32
#define SMQTT_SENDER_IV_BYTES 12
#define SMQTT_HEADER_MAX_BYTES 31 /* 2 + 5*3 + 8 + 4 + 2 (descriptor) */
#define SMQTT_ENVELOPE_MIN_BYTES (2 + 4 + 4 + SMQTT_TAG_BYTES + SMQTT_SIGNATURE_BYTES) /* 90 */
#define SMQTT_MAX_ID 0xFFFFFFFFu
#define SMQTT_MAX_SEQ 9007199254740991ull /* 2^53 - 1 */
#define SMQTT_MAX_TOPIC_BYTES 65535u
#define SMQTT_DEFAULT_MAX_ENVELOPE_BYTES (4u * 1024u * 1024u + 1024u)
#define SMQTT_DEFAULT_MAX_PAYLOAD_BYTES (4u * 1024u * 1024u)
/* "smqtt/v1 envelope" 0x00 */
#define SMQTT_ENVELOPE_CONTEXT_BYTES 18

/* Bound MQTT 5 properties (docs/envelope.md, "Bound properties"). */
#define SMQTT_BIND_CONTENT_TYPE 0x01
#define SMQTT_BIND_RESPONSE_TOPIC 0x02
#define SMQTT_BIND_CORRELATION_DATA 0x04
#define SMQTT_MAX_BOUND_USER_PROPERTIES 16
#define SMQTT_MAX_BOUND_PROPERTY_BYTES 1024
#define SMQTT_MAX_BOUND_PROPERTIES_BYTES 4096

/* Envelope bytes for a payload: header + payload + tag + signature (at most). */
#define SMQTT_SEALED_MAX_BYTES(payload_len) \
    ((size_t)(payload_len) + SMQTT_HEADER_MAX_BYTES + SMQTT_TAG_BYTES + SMQTT_SIGNATURE_BYTES)
/* Work buffer for seal: context + header + topic length + topic + bound + ciphertext. */
#define SMQTT_SEAL_WORK_BYTES(payload_len, topic_len, bound_len)                                    \
    ((size_t)SMQTT_ENVELOPE_CONTEXT_BYTES + SMQTT_HEADER_MAX_BYTES + 2u + (size_t)(topic_len) +      \
     (size_t)(bound_len) + (size_t)(payload_len) + SMQTT_TAG_BYTES)
/* Work buffer for open/verify: context + topic length + topic + bound + envelope - signature.
 * bound_len: 0 without bound properties; SMQTT_MAX_BOUND_PROPERTIES_BYTES covers every case. */
#define SMQTT_OPEN_WORK_BYTES(envelope_len, topic_len, bound_len)                                   \
    ((size_t)SMQTT_ENVELOPE_CONTEXT_BYTES + 2u + (size_t)(topic_len) + (size_t)(bound_len) +         \
     ((size_t)(envelope_len) > SMQTT_SIGNATURE_BYTES ? (size_t)(envelope_len) - SMQTT_SIGNATURE_BYTES : 0u))

/* ---------------------------------------------------------------------------------------------
 * MQTT 5 properties (caller-owned views; nothing is copied)
 * ------------------------------------------------------------------------------------------- */
typedef struct smqtt_user_property {
    const uint8_t *key; /* UTF-8, exact bytes of the MQTT property */
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
} smqtt_user_property;

/*
 * The properties of a PUBLISH packet. A NULL pointer means "absent" (an empty, non-NULL one is
 * present and empty: "empty is not absent"). User properties in packet order.
 */
typedef struct smqtt_properties {
    const uint8_t *content_type;
    size_t content_type_len;
    const uint8_t *response_topic;
    size_t response_topic_len;
    const uint8_t *correlation_data;
    size_t correlation_data_len;
    const smqtt_user_property *user_properties;
    size_t user_property_count;
} smqtt_properties;

/* ---------------------------------------------------------------------------------------------
 * Envelope header
 * ------------------------------------------------------------------------------------------- */
typedef struct smqtt_envelope_header {
    uint8_t version;
    uint8_t suite;
    uint8_t retain;        /* 1 when the sender set the retain flag (0x10) */
    uint8_t has_binding;   /* 1 when flag 0x20 is set: bind_mask / bind_user_count are valid */
    uint8_t bind_mask;     /* SMQTT_BIND_* bits */
    uint8_t bind_user_count; /* the first N user properties of the packet are bound */
    uint32_t group;
    uint32_t epoch;
    uint32_t sender;
    uint64_t seq;
    uint32_t sent_at;      /* unix seconds, sender's clock */
    uint8_t header_len;    /* bytes of the header on the wire */
} smqtt_envelope_header;

/*
 * Parses the structure only (no keys, no crypto): version, suite, flags, minimal varints, the
 * bound-property descriptor, room for tag and signature. The envelope size limit is the
 * caller's (smqtt_envelope_open/verify check it first).
 * Errors: ENVELOPE_UNSUPPORTED (version, suite), ENVELOPE_MALFORMED (everything else).
 * Thread-safe.
 */
smqtt_err smqtt_envelope_parse(smqtt_envelope_header *header, const uint8_t *envelope, size_t envelope_len);

/*
 * Derives one sender's AEAD key and nonce base in an epoch (docs/envelope.md, "Keys and
 * nonces"). Exposed for tests and for callers that cache per-sender keys. Thread-safe.
 */
smqtt_err smqtt_sender_key(uint8_t key[SMQTT_SENDER_KEY_BYTES], uint8_t iv[SMQTT_SENDER_IV_BYTES],
                           const uint8_t epoch_key[SMQTT_EPOCH_KEY_BYTES], uint8_t suite, uint32_t group,
                           uint32_t epoch, uint32_t sender);

/* Whether this build and CPU can use a suite (suite 2: libsodium's AES-256-GCM, x86 AES-NI in 1.0.18). */
int smqtt_suite_available(uint8_t suite);

/* ---------------------------------------------------------------------------------------------
 * Seal
 * ------------------------------------------------------------------------------------------- */
typedef struct smqtt_seal_params {
    uint8_t suite;   /* the group's suite, from its key bundle */
    uint8_t retain;  /* 1 when published with the MQTT retain flag */
    uint32_t group;
    uint32_t epoch;
    uint32_t sender; /* this device's kid */
    uint64_t seq;    /* from smqtt_seq_next: never twice */
    uint32_t sent_at; /* unix seconds */
    const uint8_t *epoch_key;     /* SMQTT_EPOCH_KEY_BYTES */
    const uint8_t *signing_key;   /* SMQTT_SIGNING_SECRET_KEY_BYTES (seed || public key) */
    /*
     * MQTT 5 properties to bind, NULL to bind nothing (then the envelope is v1 as before the
     * flag). The caller publishes exactly these, bound user properties first, in this order.
     */
    const smqtt_properties *properties;
    /*
     * With properties: 0 binds what SMQTT's own sealer binds (all three kinds, present or
     * absent, and every user property given); otherwise SMQTT_BIND_* bits to bind exactly
     * those kinds and `bind_user_count` user properties.
     */
    uint8_t bind_mask;
    uint8_t bind_user_count;
} smqtt_seal_params;

/*
 * Encrypts and signs `payload` for `topic` (exact UTF-8 bytes of the MQTT topic name).
 * out: at least SMQTT_SEALED_MAX_BYTES(payload_len); work: SMQTT_SEAL_WORK_BYTES(payload_len,
 * topic_len, bound_len) where bound_len is 0 without properties (at most 4096 with).
 * Errors: TOPIC_INVALID (empty, wildcard, NUL, > 65535 bytes), ENVELOPE_TOO_LARGE (payload
 * above SMQTT_DEFAULT_MAX_PAYLOAD_BYTES, properties over the limits), ENVELOPE_UNSUPPORTED
 * (suite 2 without AES-GCM here), INVALID_ARGUMENT, BUFFER_TOO_SMALL.
 * Thread-safe as long as out and work are not shared.
 */
smqtt_err smqtt_envelope_seal(uint8_t *out, size_t out_cap, size_t *out_len, const smqtt_seal_params *params,
                              const uint8_t *topic, size_t topic_len, const uint8_t *payload, size_t payload_len,
                              uint8_t *work, size_t work_cap);

/* ---------------------------------------------------------------------------------------------
 * Open and verify
 * ------------------------------------------------------------------------------------------- */

/*
 * What a receiver holds, through callbacks it implements (from its key bundles, writer records
 * and revocation list). `ctx` is passed back to each. The callbacks must not call back into the
 * same smqtt_replay.
 */
typedef struct smqtt_keyring {
    /* Writes the epoch key and the group's suite; returns 0, or -1 when no key is held. */
    int (*epoch_key)(void *ctx, uint32_t group, uint32_t epoch, uint8_t key[SMQTT_EPOCH_KEY_BYTES],
                     uint8_t *suite);
    /* Writes the Ed25519 public key of writer `sender` of `group`; returns 0, or -1 when not listed. */
    int (*writer_key)(void *ctx, uint32_t group, uint32_t sender, uint8_t public_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES]);
    /* Optional (NULL: skipped): 1 when `sender` may publish on `topic` in `group`, else 0. */
    int (*writer_may_publish)(void *ctx, uint32_t group, uint32_t sender, const uint8_t *topic, size_t topic_len);
    /* Optional (NULL: nobody is revoked): 1 when `sender` is on the revocation list, else 0. */
    int (*is_revoked)(void *ctx, uint32_t sender);
    void *ctx;
} smqtt_keyring;

struct smqtt_replay;

typedef struct smqtt_open_options {
    const smqtt_keyring *keys;      /* required */
    struct smqtt_replay *replay;    /* optional (NULL: no replay or freshness check) */
    int64_t now;                    /* unix seconds, the local clock (used with replay) */
    uint8_t retained;               /* 1 when the delivery carried the MQTT retain flag */
    size_t max_envelope_bytes;      /* 0: SMQTT_DEFAULT_MAX_ENVELOPE_BYTES */
    /*
     * The MQTT 5 properties the PUBLISH carried (user properties in packet order); NULL for none.
     * Checked when the envelope binds properties. Which of them are verified: the kinds in
     * header.bind_mask and the first header.bind_user_count user properties; the rest is unsigned.
     */
    const smqtt_properties *properties;
} smqtt_open_options;

/*
 * Verifies, checks for replay and decrypts, in the order of docs/envelope.md ("Opening: order of
 * checks"): size (ENVELOPE_TOO_LARGE), structure (ENVELOPE_MALFORMED / ENVELOPE_UNSUPPORTED),
 * revocation (SENDER_REVOKED), replay and freshness read-only (REPLAY, STALE), epoch key
 * (UNKNOWN_EPOCH), group suite (ENVELOPE_UNSUPPORTED), writer (UNKNOWN_SENDER), signature over
 * the bound properties as received (ENVELOPE_SIGNATURE_INVALID), publish right
 * (SENDER_NOT_PERMITTED), decryption (ENVELOPE_DECRYPTION_FAILED, one code for every cause), and
 * only then records the sequence number in the replay window.
 * plaintext: at least envelope_len - header_len - 80 bytes (envelope_len is always enough);
 * work: SMQTT_OPEN_WORK_BYTES(envelope_len, topic_len, bound_len).
 * On any error, the plaintext buffer is wiped. header may be NULL.
 * Thread-safe as long as plaintext, work and options->replay are not shared.
 */
smqtt_err smqtt_envelope_open(uint8_t *plaintext, size_t plaintext_cap, size_t *plaintext_len,
                              smqtt_envelope_header *header, const uint8_t *envelope, size_t envelope_len,
                              const uint8_t *topic, size_t topic_len, const smqtt_open_options *options,
                              uint8_t *work, size_t work_cap);

/*
 * What a broker can check without any group key: size, structure, the sender is a listed writer
 * (options->keys->writer_key only), and its signature over header, topic, bound properties and
 * ciphertext. options->replay and the other callbacks are not used. header may be NULL.
 * Thread-safe as long as work is not shared.
 */
smqtt_err smqtt_envelope_verify(smqtt_envelope_header *header, const uint8_t *envelope, size_t envelope_len,
                                const uint8_t *topic, size_t topic_len, const smqtt_open_options *options,
                                uint8_t *work, size_t work_cap);

/*
 * The canonical encoding of the bound properties (docs/envelope.md, "Encoding of the bound
 * properties") for a descriptor and the properties given. Returns ENVELOPE_SIGNATURE_INVALID
 * when the properties cannot match (fewer user properties than bound, a property over 1024
 * bytes, more than 4096 bytes in all), BUFFER_TOO_SMALL. Thread-safe.
 */
smqtt_err smqtt_bound_properties_encode(uint8_t *out, size_t out_cap, size_t *out_len, uint8_t mask,
                                        uint8_t user_count, const smqtt_properties *properties);

/* ---------------------------------------------------------------------------------------------
 * Replay window (per sender: group, epoch, sender), the rules of packages/core/src/replay-window.ts
 * ------------------------------------------------------------------------------------------- */

/* Sequence numbers remembered below the highest seen, per sender (compile-time; multiple of 32). */
#ifndef SMQTT_REPLAY_WINDOW_BITS
#define SMQTT_REPLAY_WINDOW_BITS 32
#endif
#define SMQTT_REPLAY_WINDOW_WORDS ((SMQTT_REPLAY_WINDOW_BITS + 31) / 32)

/* One sender's window: RAM per entry is sizeof(smqtt_replay_entry) (40 bytes with 32 bits). */
typedef struct smqtt_replay_entry {
    uint64_t highest;     /* highest sequence number seen */
    int64_t not_before;   /* send times at or below are refused (INT64_MIN: none) */
    uint32_t group;
    uint32_t epoch;
    uint32_t sender;
    uint32_t last_used;   /* LRU clock */
    uint32_t seen[SMQTT_REPLAY_WINDOW_WORDS]; /* bit k: highest - k was seen */
    uint8_t in_use;
    uint8_t has_highest;
} smqtt_replay_entry;

/* What an evicted window leaves behind (everything at or below `highest` counts as seen). */
typedef struct smqtt_replay_floor {
    uint64_t highest;
    int64_t not_before;
    int64_t evicted_at;
    uint32_t group;
    uint32_t epoch;
    uint32_t sender;
    uint32_t order;       /* age: the smallest is dropped first */
    uint8_t in_use;
} smqtt_replay_floor;

/* Tuning; NULL options give every default (window SMQTT_REPLAY_WINDOW_BITS, 300 s, 30 s, 7 days). */
typedef struct smqtt_replay_options {
    uint32_t window_size;              /* 1 .. SMQTT_REPLAY_WINDOW_BITS; 0: SMQTT_REPLAY_WINDOW_BITS */
    uint32_t max_age_seconds;          /* freshness; 0: 300 */
    uint32_t max_future_skew_seconds;  /* taken as given (0 is a valid skew): set 30 for the default */
    uint32_t retained_max_age_seconds; /* freshness of retained deliveries; 0: 7 days */
} smqtt_replay_options;

typedef struct smqtt_replay {
    smqtt_replay_entry *entries;   /* caller-owned, `capacity` of them (maxSenders) */
    size_t capacity;
    smqtt_replay_floor *floors;    /* caller-owned, may be NULL with floor_capacity 0 */
    size_t floor_capacity;
    int64_t not_before;            /* INT64_MIN: none */
    int64_t latest_now;
    uint32_t clock;
    uint32_t window_size;
    uint32_t max_age;
    uint32_t max_skew;
    uint32_t retained_max_age;
} smqtt_replay;

/*
 * Initializes a window over caller-owned arrays (zeroed here). options may be NULL (defaults:
 * window 32, max age 300 s, future skew 30 s, retained max age 7 days). Not thread-safe for `r`.
 */
smqtt_err smqtt_replay_init(smqtt_replay *r, smqtt_replay_entry *entries, size_t capacity, smqtt_replay_floor *floors,
                            size_t floor_capacity, const smqtt_replay_options *options);
/* Whether a message would be accepted (REPLAY, STALE); records nothing. Not thread-safe for `r`. */
smqtt_err smqtt_replay_check(const smqtt_replay *r, uint32_t group, uint32_t epoch, uint32_t sender, uint64_t seq,
                             uint32_t sent_at, int64_t now, int retained);
/* check, then records `seq` for the sender. Not thread-safe for `r`. */
smqtt_err smqtt_replay_accept(smqtt_replay *r, uint32_t group, uint32_t epoch, uint32_t sender, uint64_t seq,
                              uint32_t sent_at, int64_t now, int retained);
/*
 * After the saved window state was lost: forgets every window and refuses every envelope that
 * could have been accepted before `now` (send times up to now + max future skew).
 */
void smqtt_replay_reset_after_loss(smqtt_replay *r, int64_t now);

/*
 * The window's memory as bytes, to keep across restarts (flash, NVS): little-endian, versioned,
 * with a BLAKE2b-128 checksum against corrupt storage (not against an attacker who can write
 * the storage). Size: SMQTT_REPLAY_STATE_BYTES(capacity, floor_capacity).
 */
#define SMQTT_REPLAY_STATE_BYTES(capacity, floor_capacity)                                              \
    (4u + 2u + 8u + 4u + (size_t)(capacity) * (12u + 8u + 8u + 4u * SMQTT_REPLAY_WINDOW_WORDS) + 4u +      \
     (size_t)(floor_capacity) * (12u + 8u + 8u + 8u) + 16u)
smqtt_err smqtt_replay_export(const smqtt_replay *r, uint8_t *out, size_t out_cap, size_t *out_len);
/*
 * Replaces the window's memory with an exported state, all or nothing: REPLAY_STATE_INVALID for
 * bytes that are not a well-formed state (the window is then unchanged; use
 * smqtt_replay_reset_after_loss). A state saved with another SMQTT_REPLAY_WINDOW_BITS comes back
 * as floors; what does not fit the arrays is dropped the safe way (not_before rises to now + skew).
 */
smqtt_err smqtt_replay_import(smqtt_replay *r, const uint8_t *state, size_t len, int64_t now);

/* ---------------------------------------------------------------------------------------------
 * Sequence counter persisted ahead
 * ------------------------------------------------------------------------------------------- */

/*
 * Durable storage the integrator provides (flash, NVS), or the key server's POST /v1/sequence.
 * `reserve` must return a range [start, end) that is disjoint from, and above, every range it
 * ever returned before for this identity, and return 0 only once that is durable (for flash:
 * the new high-water mark is written and committed before returning). Return -1 on failure.
 * smqtt_seq_storage_flash() below builds it from load/store of a high-water mark.
 */
typedef struct smqtt_seq_source {
    int (*reserve)(void *ctx, uint64_t wanted, uint64_t *start, uint64_t *end);
    void *ctx;
} smqtt_seq_source;

typedef struct smqtt_seq_counter {
    uint64_t next;
    uint64_t end;     /* numbers below this were reserved durably */
    uint64_t run_step; /* size of the next range asked for */
    smqtt_seq_source source;
} smqtt_seq_counter;

/*
 * A run's first range asks for 4096 numbers, each further one twice the last (at most 65536),
 * as docs/envelope.md "Overhead" describes. Nothing is reserved until the first smqtt_seq_next.
 */
smqtt_err smqtt_seq_init(smqtt_seq_counter *counter, const smqtt_seq_source *source);
/*
 * The next unused sequence number. SEQUENCE_UNAVAILABLE when a range is needed and the source
 * fails (publishing may resume later), SEQUENCE_EXHAUSTED past 2^53 - 1, STORE_UNAVAILABLE never.
 * Not thread-safe for `counter` (one counter per identity, guarded by the caller).
 */
smqtt_err smqtt_seq_next(smqtt_seq_counter *counter, uint64_t *seq);

/*
 * A range source over a persisted high-water mark, for devices that keep their own counter:
 * load() reads it (0 when never written), store() writes it durably (returns 0 only once
 * committed). Each reservation stores start + wanted before handing out anything from it, so a
 * crash or restart never reuses a number. (It cannot protect against a storage restored from an
 * old backup or two devices with one identity: the key server's ranges do; see README.)
 */
typedef struct smqtt_seq_flash {
    int (*load)(void *ctx, uint64_t *high_water);
    int (*store)(void *ctx, uint64_t high_water);
    void *ctx;
} smqtt_seq_flash;
/* Fills `source` so that it reserves through `flash` (which must outlive the counter). */
void smqtt_seq_source_flash(smqtt_seq_source *source, smqtt_seq_flash *flash);

/* ---------------------------------------------------------------------------------------------
 * HPKE base mode (RFC 9180): DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305
 * ------------------------------------------------------------------------------------------- */
#define SMQTT_HPKE_ENC_BYTES 32
#define SMQTT_HPKE_PUBLIC_KEY_BYTES 32
#define SMQTT_HPKE_SECRET_KEY_BYTES 32

typedef struct smqtt_hpke_context {
    uint8_t key[32];
    uint8_t base_nonce[12];
    uint8_t exporter_secret[32];
    uint64_t seq;
} smqtt_hpke_context;

/*
 * SetupBaseR: the receiver's context from the sender's `enc` and the recipient's X25519 key
 * pair. HPKE_OPEN_FAILED when the shared secret is all zero (small-order `enc`). Thread-safe.
 */
smqtt_err smqtt_hpke_setup_base_r(smqtt_hpke_context *ctx, const uint8_t enc[SMQTT_HPKE_ENC_BYTES],
                                  const uint8_t secret_key[SMQTT_HPKE_SECRET_KEY_BYTES],
                                  const uint8_t public_key[SMQTT_HPKE_PUBLIC_KEY_BYTES], const uint8_t *info,
                                  size_t info_len);
/* Open with the context's next sequence number (then incremented). HPKE_OPEN_FAILED. */
smqtt_err smqtt_hpke_context_open(smqtt_hpke_context *ctx, uint8_t *plaintext, size_t plaintext_cap,
                                  size_t *plaintext_len, const uint8_t *ciphertext, size_t ciphertext_len,
                                  const uint8_t *aad, size_t aad_len);
/* Single-shot base-mode open (sequence 0). Thread-safe. */
smqtt_err smqtt_hpke_open_base(uint8_t *plaintext, size_t plaintext_cap, size_t *plaintext_len,
                               const uint8_t enc[SMQTT_HPKE_ENC_BYTES],
                               const uint8_t secret_key[SMQTT_HPKE_SECRET_KEY_BYTES],
                               const uint8_t public_key[SMQTT_HPKE_PUBLIC_KEY_BYTES], const uint8_t *info,
                               size_t info_len, const uint8_t *aad, size_t aad_len, const uint8_t *ciphertext,
                               size_t ciphertext_len);
/*
 * SetupBaseS with a given ephemeral secret key (deterministic: for tests and vectors; a device
 * that seals passes 32 fresh random bytes). Thread-safe.
 */
smqtt_err smqtt_hpke_setup_base_s(smqtt_hpke_context *ctx, uint8_t enc[SMQTT_HPKE_ENC_BYTES],
                                  const uint8_t ephemeral_secret_key[SMQTT_HPKE_SECRET_KEY_BYTES],
                                  const uint8_t recipient_public_key[SMQTT_HPKE_PUBLIC_KEY_BYTES],
                                  const uint8_t *info, size_t info_len);
/* Seal with the context's next sequence number. out: plaintext_len + 16. */
smqtt_err smqtt_hpke_context_seal(smqtt_hpke_context *ctx, uint8_t *out, size_t out_cap, size_t *out_len,
                                  const uint8_t *plaintext, size_t plaintext_len, const uint8_t *aad, size_t aad_len);

/* HKDF-SHA256 (RFC 5869), built on HMAC-SHA256 (libsodium 1.0.18 has no HKDF). okm_len <= 8160. */
smqtt_err smqtt_hkdf_sha256(uint8_t *okm, size_t okm_len, const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
                            size_t salt_len, const uint8_t *info, size_t info_len);

/* ---------------------------------------------------------------------------------------------
 * Context signatures: Ed25519 over "smqtt/v1 " context 0x00 || message (key bundles, revocation
 * lists, principal records). Strict verification (libsodium's rule).
 * ------------------------------------------------------------------------------------------- */
/* 1 when valid. work: 10 + strlen(context) + message_len bytes. Thread-safe. */
int smqtt_verify_with_context(const uint8_t signature[SMQTT_SIGNATURE_BYTES], const char *context,
                              const uint8_t *message, size_t message_len,
                              const uint8_t public_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES], uint8_t *work, size_t work_cap);

/* ---------------------------------------------------------------------------------------------
 * base64url (RFC 4648 §5, no padding, canonical only: docs/documents.md §1)
 * ------------------------------------------------------------------------------------------- */
/* Decodes canonical base64url; -1 (nothing written) for anything else or when out is too small. */
int smqtt_base64url_decode(uint8_t *out, size_t out_cap, size_t *out_len, const char *text, size_t text_len);
/* Encodes without padding and NUL-terminates; -1 when out is too small (needs 4*ceil(n/3)+1). */
int smqtt_base64url_encode(char *out, size_t out_cap, size_t *out_len, const uint8_t *bytes, size_t len);

/* Whether a 32-byte Ed25519 public key is a canonical encoding of a point not of small order. */
int smqtt_ed25519_public_key_is_valid(const uint8_t public_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES]);

/* ---------------------------------------------------------------------------------------------
 * Signed documents (docs/documents.md §3): key bundle (§4) and revocation list (§5).
 * Reading a document parses JSON with cJSON, which allocates (cJSON_InitHooks lets the
 * integrator choose the allocator); everything the caller gets lives in caller-owned memory.
 * `work` holds the decoded payload and the signed bytes: SMQTT_DOCUMENT_WORK_BYTES(text_len).
 * ------------------------------------------------------------------------------------------- */
#define SMQTT_DOCUMENT_MAX_PAYLOAD_BYTES (1024u * 1024u)
#define SMQTT_DOCUMENT_WORK_BYTES(document_len) ((size_t)(document_len) + 64u)

typedef struct smqtt_bundle_group {
    uint32_t group;
    uint32_t suite;          /* 1, 2; another value: the group's envelopes fail closed */
    uint32_t filter_offset;  /* into the bundle's string pool (NUL-terminated) */
} smqtt_bundle_group;

typedef struct smqtt_bundle_epoch {
    uint32_t group;
    uint32_t epoch;
    uint32_t activates_at;
    uint32_t retires_at;
    uint8_t key[SMQTT_EPOCH_KEY_BYTES]; /* opened with HPKE */
} smqtt_bundle_epoch;

typedef struct smqtt_bundle_writer {
    uint32_t group;
    uint32_t kid;
    uint8_t signing_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES];
    uint16_t allow_count;
    uint16_t deny_count;
    uint32_t filters_offset; /* allow filters then deny filters, each NUL-terminated, in the pool */
} smqtt_bundle_writer;

/* An opened key bundle over caller-owned arrays: set the pointers and capacities, then open. */
typedef struct smqtt_key_bundle {
    uint32_t issued_at;
    uint32_t not_before;
    uint32_t not_after;
    smqtt_bundle_group *groups;
    size_t group_cap, group_count;
    smqtt_bundle_epoch *epochs;
    size_t epoch_cap, epoch_count;
    smqtt_bundle_writer *writers;
    size_t writer_cap, writer_count;
    char *strings; /* filters */
    size_t strings_cap, strings_len;
} smqtt_key_bundle;

/*
 * Reads a key bundle (the JSON text {"payload","signature"} as received) in the order of
 * docs/documents.md §3.2 and §4.2: BUNDLE_MALFORMED, BUNDLE_SIGNATURE_INVALID (under the pinned
 * key-server key), BUNDLE_WRONG_RECIPIENT (principal != own_id), BUNDLE_NOT_YET_VALID,
 * BUNDLE_EXPIRED, HPKE_OPEN_FAILED (every epoch must open with the device's X25519 key pair);
 * BUFFER_TOO_SMALL when the caller's arrays cannot hold it. Rollback (issuedAt) is the caller's
 * rule (§4.4). On error, epoch keys written so far are wiped. Thread-safe for distinct `out`/`work`.
 */
smqtt_err smqtt_key_bundle_open(smqtt_key_bundle *out, const char *document, size_t document_len,
                                const uint8_t key_server_public_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES], const char *own_id,
                                const uint8_t agreement_secret_key[SMQTT_HPKE_SECRET_KEY_BYTES],
                                const uint8_t agreement_public_key[SMQTT_HPKE_PUBLIC_KEY_BYTES], int64_t now,
                                uint8_t *work, size_t work_cap);

/* smqtt_keyring callbacks over an opened bundle (ctx = the smqtt_key_bundle). */
int smqtt_key_bundle_epoch_key(void *bundle, uint32_t group, uint32_t epoch, uint8_t key[SMQTT_EPOCH_KEY_BYTES],
                               uint8_t *suite);
int smqtt_key_bundle_writer_key(void *bundle, uint32_t group, uint32_t sender,
                                uint8_t public_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES]);
/* The writer's publish rights: some allow filter matches `topic` and no deny filter does. */
int smqtt_key_bundle_writer_may_publish(void *bundle, uint32_t group, uint32_t sender, const uint8_t *topic,
                                        size_t topic_len);

/* MQTT topic matching with exact MQTT semantics ('+', '#', '$' topics). Both must be valid. */
int smqtt_topic_matches(const char *filter, const uint8_t *topic, size_t topic_len);

typedef struct smqtt_revocation_list {
    uint32_t version;
    uint32_t issued_at;
    uint32_t pruned_before;
    uint8_t payload_hash[32]; /* SHA-256 of the payload's base64url text: "the same payload" */
    uint32_t *kids;           /* caller-owned, sorted ascending once opened */
    size_t kid_cap, kid_count;
} smqtt_revocation_list;

/*
 * Reads a revocation list: REVOCATION_LIST_MALFORMED, REVOCATION_LIST_SIGNATURE_INVALID,
 * BUFFER_TOO_SMALL (more entries than kid_cap). Thread-safe for distinct `out`/`work`.
 */
smqtt_err smqtt_revocation_list_open(smqtt_revocation_list *out, const char *document, size_t document_len,
                                     const uint8_t key_server_public_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES],
                                     uint8_t *work, size_t work_cap);
/*
 * The holding rule (§5): *replace = 1 when `candidate` should replace `held` (held NULL: the
 * first list), 0 when it is the same list; REVOCATION_LIST_ROLLBACK for a lower version or the
 * same version with another payload.
 */
smqtt_err smqtt_revocation_list_compare(const smqtt_revocation_list *held, const smqtt_revocation_list *candidate,
                                        int *replace);
/* smqtt_keyring.is_revoked over an opened list (ctx = the smqtt_revocation_list). */
int smqtt_revocation_list_is_revoked(void *list, uint32_t sender);

/* A writer record (§6): writers a bundle does not list, for one group, bound to this reader. */
typedef struct smqtt_writer_record {
    uint32_t group;
    uint32_t issued_at;
    uint32_t not_after;
    uint32_t filter_offset; /* the record's group filter, in the pool */
    smqtt_bundle_writer *writers;
    size_t writer_cap, writer_count;
    char *strings;
    size_t strings_cap, strings_len;
} smqtt_writer_record;

/*
 * Reads a writer record: BUNDLE_MALFORMED, BUNDLE_SIGNATURE_INVALID, BUNDLE_WRONG_RECIPIENT
 * (reader != own_id), BUNDLE_NOT_YET_VALID (now + 60 < issuedAt), BUNDLE_EXPIRED (now >=
 * notAfter), BUFFER_TOO_SMALL. Using it only for a group held with exactly the same filter and
 * only while issuedAt >= the revocation list's prunedBefore is the caller's rule (§6).
 */
smqtt_err smqtt_writer_record_open(smqtt_writer_record *out, const char *document, size_t document_len,
                                   const uint8_t key_server_public_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES],
                                   const char *own_id, int64_t now, uint8_t *work, size_t work_cap);

#define SMQTT_KEM_X25519 1
#define SMQTT_KEM_XWING 2
/* A principal record (§7), e.g. the one the enrollment answer carries. */
typedef struct smqtt_principal_record {
    char id[769];           /* text(256): at most 768 UTF-8 bytes, NUL-terminated */
    uint32_t kid;
    uint32_t issued_at;
    uint8_t kem;            /* SMQTT_KEM_* */
    uint8_t signing_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES];
    uint8_t agreement_key[32]; /* x25519: the key; xwing: its X25519 part (the last 32 bytes) */
} smqtt_principal_record;

/* Reads a principal record: IDENTITY_MALFORMED, PRINCIPAL_RECORD_SIGNATURE_INVALID. */
smqtt_err smqtt_principal_record_open(smqtt_principal_record *out, const char *document, size_t document_len,
                                      const uint8_t key_server_public_key[SMQTT_SIGNING_PUBLIC_KEY_BYTES], uint8_t *work,
                                      size_t work_cap);

/* Whether a 32-byte X25519 public key is canonical (u < 2^255 - 19) and not of small order. */
int smqtt_x25519_public_key_is_valid(const uint8_t public_key[32]);

/*
 * What a device receives with: its opened bundle and (optionally) revocation list, as one
 * smqtt_keyring. Both must outlive the keyring; replacing either in place is the caller's to
 * guard against concurrent opens.
 */
typedef struct smqtt_device_keys {
    smqtt_key_bundle *bundle;            /* required */
    smqtt_revocation_list *revocations;  /* NULL: no list held yet */
} smqtt_device_keys;
/* Fills `ring` with callbacks over `keys` (epoch keys, writers, publish rights, revocation). */
void smqtt_device_keyring(smqtt_keyring *ring, smqtt_device_keys *keys);

/* ---------------------------------------------------------------------------------------------
 * MQTT CONNECT password (docs/documents.md §8)
 * ------------------------------------------------------------------------------------------- */
#define SMQTT_CONNECT_PASSWORD_MAX_BYTES (7 + 12 + 1 + 22 + 1 + 86 + 1) /* with its NUL */
#define SMQTT_CONNECT_CLIENT_ID_MAX_BYTES 1024

/*
 * "smqtt1.<timestamp>.<nonce>.<signature>" for a CONNECT with `client_id` (= the principal id,
 * also the username). nonce: 16 fresh random bytes per CONNECT (the integrator's entropy);
 * timestamp: unix seconds now. out: SMQTT_CONNECT_PASSWORD_MAX_BYTES. Thread-safe.
 */
smqtt_err smqtt_connect_password(char *out, size_t out_cap, size_t *out_len, const char *client_id,
                                 uint64_t timestamp, const uint8_t nonce[16],
                                 const uint8_t signing_key[SMQTT_SIGNING_SECRET_KEY_BYTES]);

/* ---------------------------------------------------------------------------------------------
 * Signed HTTP requests (docs/documents.md §9) and the enrollment proof (§10)
 * ------------------------------------------------------------------------------------------- */
#define SMQTT_REQUEST_MAX_METHOD_BYTES 16
#define SMQTT_REQUEST_MAX_PATH_BYTES 2048

/* The four header values, NUL-terminated (smqtt-principal is the principal id itself). */
typedef struct smqtt_request_headers {
    char timestamp[13]; /* smqtt-timestamp */
    char nonce[23];     /* smqtt-nonce */
    char signature[87]; /* smqtt-signature */
} smqtt_request_headers;

/*
 * Signs a request to the key server: method (upper-cased here), path as sent (with its query),
 * the exact body bytes (NULL/0 for GET), unix seconds now, 16 fresh random nonce bytes.
 * INVALID_ARGUMENT for a method over 16 or a path over 2048 bytes. Thread-safe.
 */
smqtt_err smqtt_request_sign(smqtt_request_headers *out, const char *method, const char *path, const uint8_t *body,
                             size_t body_len, uint64_t timestamp, const uint8_t nonce[16],
                             const uint8_t signing_key[SMQTT_SIGNING_SECRET_KEY_BYTES]);

/*
 * The enrollment proof of possession, base64url (86 characters + NUL): Ed25519 with context
 * "enrollment" over SHA-256(token) || signing public key || X25519 agreement public key.
 */
smqtt_err smqtt_enrollment_proof(char out[87], const char *token, const uint8_t signing_public_key[32],
                                 const uint8_t agreement_public_key[32],
                                 const uint8_t signing_key[SMQTT_SIGNING_SECRET_KEY_BYTES]);

/*
 * Checks the answer of POST /v1/enroll (§10): keyServerPublicKey is 32 bytes and equals
 * `pinned_key` when one is given (else PRINCIPAL_RECORD_SIGNATURE_INVALID); the principal record
 * opens under it (§7); its id, signing key and agreement key are the device's own and its kid the
 * answer's kid (else IDENTITY_MALFORMED, also for an answer that is not the documented JSON).
 * On success the key to pin is in key_server_key and the record in `record`.
 */
smqtt_err smqtt_enrollment_answer_check(smqtt_principal_record *record, uint8_t key_server_key[32], const char *answer,
                                        size_t answer_len, const uint8_t *pinned_key, const char *own_id,
                                        const uint8_t signing_public_key[32], const uint8_t agreement_public_key[32],
                                        uint8_t *work, size_t work_cap);

#ifdef __cplusplus
}
#endif

#endif /* SMQTT_SMQTT_H */
