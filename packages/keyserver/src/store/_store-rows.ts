// Rows as both SQL backends return them (same snake_case columns), the mapping to the records
// of key-store.ts, and the argument checks both backends share. Internal to src/store.
//
// Both backends check arguments the same way so that a caller's mistake (a fractional time, a
// Buffer-less key) fails identically on SQLite, which would store almost anything, and on
// PostgreSQL, which would refuse it with a driver error.

import type {
  AuditEntry,
  DirectoryChange,
  DirectoryChanges,
  EnrollmentTokenRecord,
  EpochRecord,
  NewAuditEntry,
  NewPrincipal,
  PrincipalRecord,
  PrincipalStatus,
  StoredPolicy,
  TokenEnrollment,
} from './key-store.js'

export interface PrincipalRow {
  kid: number
  id: string
  roles: string
  username: string | null
  signing_key: Uint8Array
  agreement_key: Uint8Array
  kem: string
  status: string
  created_at: number
  status_changed_at: number | null
  certificate_serial: string | null
}

export interface EnrollmentTokenRow {
  token_hash: Uint8Array
  principal_id: string
  roles: string
  created_at: number
  expires_at: number
  used_at: number | null
}

/** A token row with what its redemption enrolled (columns added by migration 2). */
export interface RedeemedTokenRow extends EnrollmentTokenRow {
  enrolled_kid: number
  certificate_pem: string | null
}

export interface EpochRow {
  group_id: number
  epoch: number
  suite: number
  sealed_key: Uint8Array
  created_at: number
  activates_at: number
  retires_at: number | null
}

export interface DocumentRow {
  version: number
  document: string
  updated_at: number
}

/** An audit entry as stored: outcome as text, details as JSON text. */
export interface AuditRow extends Omit<AuditEntry, 'outcome' | 'details'> {
  outcome: string
  details: string
}

/**
 * A row of the directory-changes read: the counter's value as `latest` on every row, joined to
 * one change after `afterSeq` (seq, kind, kid and key_group null on the single row when there
 * is none; key_group added by migration 6).
 */
export interface DirectoryChangeRow {
  latest: number
  seq: number | null
  kind: string | null
  kid: number | null
  key_group: number | null
}

const STATUSES: readonly PrincipalStatus[] = ['active', 'disabled', 'revoked']
const KEMS: readonly PrincipalRecord['kem'][] = ['x25519', 'xwing']
const OUTCOMES: readonly AuditEntry['outcome'][] = ['ok', 'refused', 'error']
const CHANGE_KINDS: readonly DirectoryChange['kind'][] = ['principal', 'epochs', 'policy', 'revocations']

/** Drivers hand back Buffer (a Uint8Array subclass); callers get a plain, unshared copy. */
export function toBytes(value: Uint8Array): Uint8Array {
  return new Uint8Array(value)
}

function oneOf<T extends string>(allowed: readonly T[], value: string, column: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`store holds an unexpected ${column}: ${value}`)
  return value as T
}

function parseRoles(text: string): string[] {
  const roles: unknown = JSON.parse(text)
  if (!Array.isArray(roles) || !roles.every((role) => typeof role === 'string'))
    throw new Error('store holds roles that are not a JSON array of strings')
  return roles
}

export function toPrincipal(row: PrincipalRow): PrincipalRecord {
  return {
    id: row.id,
    kid: row.kid,
    roles: parseRoles(row.roles),
    username: row.username ?? undefined,
    signingKey: toBytes(row.signing_key),
    agreementKey: toBytes(row.agreement_key),
    kem: oneOf(KEMS, row.kem, 'kem'),
    status: oneOf(STATUSES, row.status, 'status'),
    createdAt: row.created_at,
    statusChangedAt: row.status_changed_at ?? undefined,
    certificateSerial: row.certificate_serial ?? undefined,
  }
}

export function toEnrollmentToken(row: EnrollmentTokenRow): EnrollmentTokenRecord {
  return {
    tokenHash: toBytes(row.token_hash),
    principalId: row.principal_id,
    roles: parseRoles(row.roles),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    usedAt: row.used_at ?? undefined,
  }
}

export function toTokenEnrollment(row: RedeemedTokenRow, principal: PrincipalRecord): TokenEnrollment {
  return { token: toEnrollmentToken(row), principal, certificatePem: row.certificate_pem ?? undefined }
}

export function toEpoch(row: EpochRow): EpochRecord {
  return {
    group: row.group_id,
    epoch: row.epoch,
    suite: row.suite,
    sealedKey: toBytes(row.sealed_key),
    createdAt: row.created_at,
    activatesAt: row.activates_at,
    retiresAt: row.retires_at ?? undefined,
  }
}

/** For both the policy and the revocation list, which are stored the same way. */
export function toStoredDocument(row: DocumentRow): StoredPolicy {
  return { version: row.version, document: row.document, updatedAt: row.updated_at }
}

export function toAuditEntry(row: AuditRow): AuditEntry {
  const details: unknown = JSON.parse(row.details)
  if (typeof details !== 'object' || details === null || Array.isArray(details))
    throw new Error(`store holds audit details that are not a JSON object (entry ${row.id})`)
  return {
    id: row.id,
    at: row.at,
    actor: row.actor,
    action: row.action,
    subject: row.subject,
    outcome: oneOf(OUTCOMES, row.outcome, 'audit outcome'),
    details: details as Record<string, unknown>,
  }
}

/**
 * Seqs have no gaps and pruning deletes the oldest, so the changes asked for are all there iff
 * the first one is `afterSeq + 1` (or none were asked for). A store whose `latest` is behind
 * `afterSeq` was restored from an older backup: the caller's directory is ahead of it.
 */
export function toDirectoryChanges(
  rows: readonly DirectoryChangeRow[],
  afterSeq: number,
  limit: number,
): DirectoryChanges {
  const latest = rows[0]?.latest
  if (latest === undefined) throw new Error('store has no directory change counter: was it migrated?')
  const changes = rows.filter((row) => row.seq !== null).map(toDirectoryChange)
  const wanted = Math.min(latest, afterSeq + limit) - afterSeq
  const complete = afterSeq <= latest && (wanted === 0 || changes[0]?.seq === afterSeq + 1)
  return { changes, latest, complete }
}

function toDirectoryChange(row: DirectoryChangeRow): DirectoryChange {
  const seq = row.seq as number
  const kind = oneOf(CHANGE_KINDS, row.kind ?? '', 'directory change kind')
  if (kind === 'epochs') return row.key_group === null ? { seq, kind } : { seq, kind, group: row.key_group }
  if (kind !== 'principal') return { seq, kind }
  if (row.kid === null) throw new Error(`store holds a principal change without a kid (seq ${seq})`)
  return { seq, kind, kid: row.kid }
}

/** Throws TypeError unless `value` is an integer, RangeError unless it is in [0, 2^53 - 1]. */
export function checkCount(value: unknown, label: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError(`${label} must be an integer`)
  if (value < 0 || value > Number.MAX_SAFE_INTEGER) throw new RangeError(`${label} must be a non-negative safe integer`)
}

export function checkBytes(value: unknown, label: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${label} must be a Uint8Array`)
}

export function checkStringList(value: unknown, label: string): asserts value is readonly string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string'))
    throw new TypeError(`${label} must be an array of strings`)
}

/**
 * A new principal's column values, in the order both backends' inserts list them: id, roles,
 * username, signing_key, agreement_key, kem, created_at, certificate_serial.
 */
export function principalValues(principal: NewPrincipal): unknown[] {
  return [
    principal.id,
    JSON.stringify(principal.roles),
    principal.username ?? null,
    principal.signingKey,
    principal.agreementKey,
    principal.kem,
    principal.createdAt,
    principal.certificateSerial ?? null,
  ]
}

/**
 * Checks an audit entry before either backend writes it, and answers its column values in the
 * order both backends' inserts list them: at, actor, action, subject, outcome, details.
 */
export function checkedAuditValues(entry: NewAuditEntry): unknown[] {
  checkCount(entry.at, 'at')
  checkOutcome(entry.outcome)
  return [entry.at, entry.actor, entry.action, entry.subject, entry.outcome, JSON.stringify(entry.details)]
}

/** Checks a new principal before either backend writes it. */
export function checkNewPrincipal(principal: NewPrincipal): void {
  checkStringList(principal.roles, 'roles')
  checkBytes(principal.signingKey, 'signingKey')
  checkBytes(principal.agreementKey, 'agreementKey')
  oneOfArgument(KEMS, principal.kem, 'kem')
  checkCount(principal.createdAt, 'createdAt')
}

export function checkStatus(status: PrincipalStatus): void {
  oneOfArgument(STATUSES, status, 'status')
}

export function checkOutcome(outcome: AuditEntry['outcome']): void {
  oneOfArgument(OUTCOMES, outcome, 'outcome')
}

function oneOfArgument(allowed: readonly string[], value: unknown, label: string): void {
  if (typeof value !== 'string' || !allowed.includes(value))
    throw new TypeError(`${label} must be one of ${allowed.join(', ')}, got ${String(value)}`)
}

/** The revocation list carries its own version in the signed document, so it must be the next one. */
export function checkNextVersion(version: number, expectedVersion: number): void {
  checkCount(version, 'version')
  checkCount(expectedVersion, 'expectedVersion')
  if (version !== expectedVersion + 1)
    throw new RangeError(`version must be expectedVersion + 1 (${expectedVersion + 1}), got ${version}`)
}
