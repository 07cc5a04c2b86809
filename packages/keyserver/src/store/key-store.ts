// The key server's persistent state, behind one interface with two implementations
// (SQLite by default, PostgreSQL for scale-out) that pass one conformance suite
// (test/store-conformance.ts). The store holds no plaintext secret: epoch keys and the key
// server's own private keys arrive already sealed under the master key.

/** Unix seconds. */
export type UnixSeconds = number

export type PrincipalStatus = 'active' | 'disabled' | 'revoked'

export interface PrincipalRecord {
  readonly id: string
  /** Short sender key id used in envelopes; assigned by the store, unique, never reused. */
  readonly kid: number
  readonly roles: readonly string[]
  readonly username: string | undefined
  /** Ed25519 public key. */
  readonly signingKey: Uint8Array
  /** X25519 or X-Wing public key, per `kem`. */
  readonly agreementKey: Uint8Array
  readonly kem: 'x25519' | 'xwing'
  readonly status: PrincipalStatus
  readonly createdAt: UnixSeconds
  /** When the status last changed away from active, if it did. */
  readonly statusChangedAt: UnixSeconds | undefined
  /** Serial number (hex) of the client certificate issued at enrollment, if any. */
  readonly certificateSerial: string | undefined
}

export type NewPrincipal = Omit<PrincipalRecord, 'kid' | 'status' | 'statusChangedAt'>

export interface EnrollmentTokenRecord {
  /** SHA-256 of the token; the token itself is never stored. */
  readonly tokenHash: Uint8Array
  readonly principalId: string
  readonly roles: readonly string[]
  readonly createdAt: UnixSeconds
  readonly expiresAt: UnixSeconds
  readonly usedAt: UnixSeconds | undefined
}

export interface StoredPolicy {
  /** 1 for the first policy, +1 on each change. */
  readonly version: number
  /** The policy document as JSON text (validated by the service, stored verbatim). */
  readonly document: string
  readonly updatedAt: UnixSeconds
}

export interface EpochRecord {
  readonly group: number
  readonly epoch: number
  readonly suite: number
  /** The epoch key sealed under the master key (the store never sees it in clear). */
  readonly sealedKey: Uint8Array
  readonly createdAt: UnixSeconds
  readonly activatesAt: UnixSeconds
  /** End of the grace period once a newer epoch is active; undefined while current. */
  readonly retiresAt: UnixSeconds | undefined
}

export interface StoredRevocationList {
  readonly version: number
  /** The signed revocation list document (JSON text). */
  readonly document: string
  readonly updatedAt: UnixSeconds
}

export interface AuditEntry {
  readonly id: number
  readonly at: UnixSeconds
  /** Who acted: `admin`, `principal:<id>`, `system`, or `anonymous` (with the address in details). */
  readonly actor: string
  /** What happened, e.g. `enroll`, `auth.failed`, `rotate`, `revoke`, `policy.update`. */
  readonly action: string
  /** What it happened to, e.g. a principal id or `group:7`. */
  readonly subject: string
  readonly outcome: 'ok' | 'refused' | 'error'
  /** Small JSON object with the details (reason codes, addresses, epochs). */
  readonly details: Readonly<Record<string, unknown>>
}

export type NewAuditEntry = Omit<AuditEntry, 'id'>

/**
 * One change to what the key server's directory is built from, recorded by the store itself
 * (database triggers) in commit order, numbered 1, 2, 3, … without gaps. An epochs change names
 * the key group whose epochs changed; one logged before store migration 6 names none, and then
 * means any group may have changed.
 */
export type DirectoryChange =
  | { readonly seq: number; readonly kind: 'principal'; readonly kid: number }
  | { readonly seq: number; readonly kind: 'epochs'; readonly group?: number }
  | { readonly seq: number; readonly kind: 'policy' }
  | { readonly seq: number; readonly kind: 'revocations' }

/** What {@link KeyStore.listDirectoryChanges} answers. */
export interface DirectoryChanges {
  /** The changes after `afterSeq`, oldest first, at most `limit`. */
  readonly changes: readonly DirectoryChange[]
  /** The newest seq recorded so far (0 when none), read consistently with `changes`. */
  readonly latest: number
  /** False when changes after `afterSeq` were pruned: the caller must rebuild from scratch. */
  readonly complete: boolean
}

/** What {@link KeyStore.enrollPrincipal} writes in one transaction. */
export interface Enrollment {
  /** The token to redeem: it must exist, be unused, have `now < expiresAt` and be bound to `principal.id`. */
  readonly tokenHash: Uint8Array
  readonly now: UnixSeconds
  readonly principal: NewPrincipal
  /** The `enroll` audit entry, built from the created record (which carries the kid). */
  readonly audit: (principal: PrincipalRecord) => NewAuditEntry
  /** The client certificate issued with it, kept with the token to answer a repeated enrollment. */
  readonly certificatePem: string | undefined
}

export interface EnrolledPrincipal {
  readonly principal: PrincipalRecord
  readonly audit: AuditEntry
}

/** What a redeemed token enrolled, read back to answer a device whose first answer was lost. */
export interface TokenEnrollment {
  readonly token: EnrollmentTokenRecord
  /** The principal the token enrolled, as it is now (its status may have changed since). */
  readonly principal: PrincipalRecord
  /** The client certificate that enrollment issued, if any, byte for byte. */
  readonly certificatePem: string | undefined
}

/**
 * Raised by a store when a uniqueness rule refuses a write (duplicate principal id, epoch
 * number taken). The service turns it into the right API error; it never reaches a client raw.
 */
export class StoreConflictError extends Error {
  override readonly name = 'StoreConflictError'
}

/**
 * Raised by a store that cannot serve now: database connection lost or refused, disk full,
 * file read-only or unreadable. The failed statement wrote nothing; the API answers 503
 * ERR_STORE_UNAVAILABLE.
 */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError'
}

export interface KeyStore {
  readonly kind: 'sqlite' | 'postgres'
  /** Creates or upgrades the schema; safe to call on every start. */
  migrate(): Promise<void>
  close(): Promise<void>

  /** A sealed secret by name (CA key, key-server signing key, admin token hash). */
  getSecret(name: string): Promise<Uint8Array | undefined>
  /** Inserts a secret; returns false, changing nothing, if the name exists (secrets are never overwritten). */
  insertSecret(name: string, sealed: Uint8Array): Promise<boolean>

  /** Assigns the next kid (1, 2, …, never reused even after deletion). StoreConflictError on a duplicate id. */
  createPrincipal(principal: NewPrincipal): Promise<PrincipalRecord>
  getPrincipal(id: string): Promise<PrincipalRecord | undefined>
  getPrincipalByKid(kid: number): Promise<PrincipalRecord | undefined>
  /**
   * All principals, ordered by kid; with `revokedSince`, a revoked one only if it was revoked at
   * or after that time (what a broker snapshot lists: it does not grow with lifetime revocations).
   */
  listPrincipals(options?: { readonly revokedSince?: UnixSeconds }): Promise<PrincipalRecord[]>
  /**
   * The revoked principals revoked at or after `since`, newest first (statusChangedAt, then kid,
   * descending), at most `limit`: what the revocation list is built from (an index serves it).
   */
  listRevokedPrincipals(options: { readonly since: UnixSeconds; readonly limit: number }): Promise<PrincipalRecord[]>
  /** Returns false if there is no such principal. A revoked principal stays revoked: false, unchanged. */
  setPrincipalStatus(id: string, status: PrincipalStatus, at: UnixSeconds): Promise<boolean>
  /**
   * Reserves `size` envelope sequence numbers for an active principal, above `atLeast` and above
   * every number reserved for it before, in one atomic write: returns the first (the range ends
   * at start + size), or undefined when the principal is not active or the range would pass
   * 2^53 - 1. Two callers never get overlapping ranges, so no (key, nonce) pair can repeat.
   */
  reserveSequence(id: string, atLeast: number, size: number): Promise<number | undefined>

  insertEnrollmentToken(token: EnrollmentTokenRecord): Promise<void>
  /** The token with this hash, used or expired ones included. */
  getEnrollmentToken(tokenHash: Uint8Array): Promise<EnrollmentTokenRecord | undefined>
  /**
   * Atomically marks the token used and returns it, if it exists, is unused and
   * `now < expiresAt`; otherwise returns undefined and changes nothing. Two concurrent calls
   * with the same hash: exactly one gets the record. (Burns a token without enrolling: a
   * refused redemption. Enrollment is {@link KeyStore.enrollPrincipal}.)
   */
  consumeEnrollmentToken(tokenHash: Uint8Array, now: UnixSeconds): Promise<EnrollmentTokenRecord | undefined>
  /** Tokens not yet used, ordered by creation. */
  listPendingEnrollmentTokens(now: UnixSeconds): Promise<EnrollmentTokenRecord[]>
  /**
   * Enrolls in one transaction: redeems the token, creates the principal (next kid), records
   * on the token what it enrolled (see {@link KeyStore.getTokenEnrollment}), appends the audit entry.
   * All or nothing: if any step fails (connection lost, disk full, duplicate id as
   * StoreConflictError) nothing is written, the token stays unused and the kid is not taken,
   * so the device can retry with the same token. Returns undefined, changing nothing,
   * if the token is not redeemable for `principal.id` at `now`; of several concurrent calls
   * with one token, at most one enrolls.
   */
  enrollPrincipal(enrollment: Enrollment): Promise<EnrolledPrincipal | undefined>
  /**
   * The enrollment that redeemed this token (recorded by {@link KeyStore.enrollPrincipal} in its
   * transaction), or undefined if the token is unknown, unused, or was burnt by
   * {@link KeyStore.consumeEnrollmentToken} without enrolling anyone.
   */
  getTokenEnrollment(tokenHash: Uint8Array): Promise<TokenEnrollment | undefined>

  getPolicy(): Promise<StoredPolicy | undefined>
  /**
   * Stores `document` as version `expectedVersion + 1` if the stored version is
   * `expectedVersion` (0 when there is none yet); returns false, changing nothing, otherwise.
   */
  putPolicy(document: string, expectedVersion: number, at: UnixSeconds): Promise<boolean>

  /** Epochs of one group (or all groups), ordered by group then epoch. */
  listEpochs(group?: number): Promise<EpochRecord[]>
  /** Inserts an epoch; returns false, changing nothing, if (group, epoch) exists. */
  insertEpoch(epoch: EpochRecord): Promise<boolean>
  /** Sets the end of an epoch's grace period. Returns false if there is no such epoch. */
  setEpochRetirement(group: number, epoch: number, retiresAt: UnixSeconds): Promise<boolean>
  /**
   * Deletes epochs whose grace period ended before `now`, except each group's newest (a removed
   * group's last epoch stays, retired, so a group re-created under its id never reuses a number);
   * returns how many.
   */
  deleteRetiredEpochs(now: UnixSeconds): Promise<number>

  getRevocationList(): Promise<StoredRevocationList | undefined>
  /** Same optimistic rule as putPolicy, with `version` = the new version (must be expectedVersion + 1). */
  putRevocationList(version: number, document: string, expectedVersion: number, at: UnixSeconds): Promise<boolean>

  /**
   * The directory changes recorded after `afterSeq` (see DirectoryChange). `complete` is false
   * when some of those changes were pruned, and when `afterSeq` is past `latest` (a store
   * restored from an older backup): either way the caller must rebuild from scratch.
   */
  listDirectoryChanges(afterSeq: number, limit: number): Promise<DirectoryChanges>
  /** Deletes all but the newest `keep` directory changes; returns how many it deleted. */
  pruneDirectoryChanges(keep: number): Promise<number>

  /** Append-only: there is no update or delete. */
  appendAudit(entry: NewAuditEntry): Promise<AuditEntry>
  /** Entries with id > afterId (default 0), oldest first, at most `limit`. */
  listAudit(options: { afterId?: number; limit: number }): Promise<AuditEntry[]>
}
