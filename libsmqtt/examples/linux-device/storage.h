/*
 * The device's storage: one directory of small files, each replaced atomically (write a temporary
 * file, fsync, rename, fsync the directory), so a power cut leaves the old or the new content,
 * never half of either. On a microcontroller these are NVS keys (PORTING.md).
 *
 *   identity.json     id, kid and the two secret seeds (mode 0600)
 *   key-server.key    the key server's Ed25519 key, pinned at enrollment (base64url)
 *   sequence          the sequence high-water mark: numbers below it may have been used
 *   replay.bin        the replay window (smqtt_replay_export), so a restart refuses old commands
 *   held.json         the newest key bundle and revocation list accepted: no rollback across restarts
 */
#ifndef LINUX_DEVICE_STORAGE_H
#define LINUX_DEVICE_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include <smqtt/smqtt.h>

typedef struct device_identity {
    char id[129];                                      /* the principal id (client id and username) */
    uint32_t kid;                                      /* from the enrollment answer */
    uint8_t signing_key[SMQTT_SIGNING_SECRET_KEY_BYTES]; /* seed || public key (libsodium layout) */
    uint8_t agreement_secret[SMQTT_HPKE_SECRET_KEY_BYTES];
    uint8_t agreement_public[SMQTT_HPKE_PUBLIC_KEY_BYTES];
} device_identity;

/* Writes `len` bytes to dir/name atomically and durably; 0 on success, -1 on failure. */
int storage_write(const char *dir, const char *name, const void *data, size_t len, int mode);
/* Reads dir/name (dir NULL: the path `name`) into buf (at most cap bytes); 0 and *len, 1 when the file does not exist, -1 on error. */
int storage_read(const char *dir, const char *name, void *buf, size_t cap, size_t *len);

/* identity.json: 0 loaded, 1 not enrolled yet, -1 unreadable. */
int storage_load_identity(const char *dir, device_identity *identity);
int storage_save_identity(const char *dir, const device_identity *identity);

/* key-server.key: 0 loaded, 1 none pinned, -1 unreadable. */
int storage_load_key_server_key(const char *dir, uint8_t key[32]);
int storage_save_key_server_key(const char *dir, const uint8_t key[32]);

/* What the device held last (documents.md §4.4 and §5, kept across restarts). */
typedef struct device_held {
    uint32_t bundle_issued_at; /* 0: no bundle yet */
    int has_revocations;       /* 0: no revocation list yet */
    uint32_t revocations_version;
    uint8_t revocations_hash[32]; /* smqtt_revocation_list.payload_hash */
} device_held;

/* held.json: 0 loaded, 1 nothing held yet, -1 unreadable. */
int storage_load_held(const char *dir, device_held *held);
int storage_save_held(const char *dir, const device_held *held);

/* The sequence high-water mark, as an smqtt_seq_flash (ctx = the directory path). */
void storage_sequence_flash(smqtt_seq_flash *flash, const char *dir);

#endif
