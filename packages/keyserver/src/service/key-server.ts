// The key server's domain: who is enrolled, which policy holds, which epoch keys exist, who
// is revoked. The HTTP layer and the CLI call this; nothing here knows about HTTP.
import {
  type BrokerSnapshot,
  constantTimeEqual,
  createBrokerSnapshot,
  createBrokerSnapshotNotice,
  createKeyBundle,
  createPrincipalRecord,
  createRevocationList,
  createWriterRecord,
  cryptoBackend,
  DEFAULT_SUITE,
  type EnrollmentRequest,
  exportIdentity,
  generateIdentity,
  type Identity,
  importIdentity,
  importPublicIdentity,
  type KeyGroupWriter,
  MAX_RECORD_WRITERS,
  type PublicIdentity,
  parsePolicy,
  parseRequestSignature,
  RevocationList,
  type SignedDocument,
  SmqttError,
  sha256,
  verifyEnrollmentProof,
  verifyRequestSignature,
} from '@smqtt/core'
import { type Logger, pino } from 'pino'
import type { MasterKey } from '../master-key.js'
import { type CertificateAuthority, certifiesKey } from '../pki/certificate-authority.js'
import type {
  EnrolledPrincipal,
  EnrollmentTokenRecord,
  EpochRecord,
  KeyStore,
  PrincipalRecord,
} from '../store/key-store.js'
import { StoreConflictError } from '../store/key-store.js'
import { AuditLog } from './audit-log.js'
import { CRL_REISSUE_MS, CRL_RETENTION_SECONDS, issueCertificateRevocationList } from './certificate-revocation-list.js'
import { Directory, type DirectorySource, epochLabel } from './directory.js'
import { FailedAuthentications } from './failed-auth.js'
import { NonceCache, REQUEST_WINDOW_SECONDS } from './nonce-cache.js'
import { policyWarnings, principalWarnings } from './policy-review.js'
import { EMPTY_POLICY, PolicyState, principalContext } from './policy-state.js'
import { RateLimiter } from './rate-limit.js'
import { SealedKeyCache } from './sealed-key-cache.js'

export interface KeyServerSettings {
  /** How long a key bundle is valid; clients refresh before (default 3600). */
  readonly bundleTtlSeconds: number
  /**
   * Most writers a bundle lists for one group (default 64). A group with more is listed with
   * none but the recipient itself; readers fetch the others' signed records by key id on first
   * sight (`writerRecordFor`), so a bundle does not grow with the writers.
   */
  readonly bundleInlineWriters: number
  /** How long a writer record is valid (default 300): bounds how late narrowed rights reach readers. */
  readonly writerRecordTtlSeconds: number
  /** How long before activation a scheduled epoch is handed out (default 30). */
  readonly rotationLeadSeconds: number
  /** How long a replaced epoch stays readable, unless the group sets its own (default 300). */
  readonly defaultGraceSeconds: number
  readonly enrollmentTokenTtlSeconds: number
  readonly clientCertificateValidityDays: number
  /**
   * How long after its token was used an enrollment may be repeated, answered as the first
   * time, for a device whose answer was lost (default 86400).
   */
  readonly enrollmentRepeatSeconds: number
  /** Signed requests one principal may make per second, after a burst of principalRequestBurst (default 5). */
  readonly principalRequestsPerSecond: number
  readonly principalRequestBurst: number
  /** Failed authentications one address (IPv6: one /64) may make per minute before 429 (default 30). */
  readonly failedAuthPerAddressPerMinute: number
  /**
   * How long a revocation stays on the signed revocation list (default 86400; at least the
   * bundle lifetime plus 60 s is used). Clients refuse bundles issued before the list's
   * watermark, so an older entry can never be needed (issue 14, cliff 1; docs/decisions.md).
   */
  readonly revocationRetentionSeconds: number
}

export const DEFAULT_SETTINGS: KeyServerSettings = {
  bundleTtlSeconds: 3600,
  bundleInlineWriters: 64,
  writerRecordTtlSeconds: 300,
  rotationLeadSeconds: 30,
  defaultGraceSeconds: 300,
  enrollmentTokenTtlSeconds: 86_400,
  clientCertificateValidityDays: 365,
  enrollmentRepeatSeconds: 86_400,
  principalRequestsPerSecond: 5,
  principalRequestBurst: 50,
  failedAuthPerAddressPerMinute: 30,
  revocationRetentionSeconds: 86_400,
}

export interface KeyServerOptions {
  readonly store: KeyStore
  readonly masterKey: MasterKey
  /** Issues client certificates at enrollment; without it enrollment issues none. */
  readonly certificateAuthority?: CertificateAuthority
  readonly settings?: Partial<KeyServerSettings>
  readonly logger?: Logger
  /** Unix seconds; injectable for tests. */
  readonly now?: () => number
}

/** What a change means to those who hold keys; the push channel listens to these. */
export type KeyServerChange =
  | { readonly kind: 'epochs'; readonly groups: readonly number[] }
  | { readonly kind: 'revoked'; readonly principal: string; readonly kid: number }
  | { readonly kind: 'policy'; readonly version: number }

export type { EnrollmentRequest }

export interface EnrollmentResult {
  readonly principal: SignedDocument
  readonly kid: number
  readonly keyServerPublicKey: string
  readonly certificatePem?: string
}

/** Principal ids are used as MQTT client ids, in topics and in certificates: keep them plain. */
export const PRINCIPAL_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/
const ROLE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/
const IDENTITY_SECRET = 'keyserver.identity'

function fromB64u(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined
  return new Uint8Array(Buffer.from(text, 'base64url'))
}

/**
 * The key server.
 *
 * @example
 * ```ts
 * const keyServer = await KeyServer.open({ store, masterKey, certificateAuthority })
 * const { token } = await keyServer.createEnrollmentToken({ principalId: 'thermostat-1', roles: ['device'] }, 'admin')
 * ```
 */
export class KeyServer {
  readonly settings: KeyServerSettings
  readonly audit: AuditLog
  readonly failedAuth: FailedAuthentications
  readonly #store: KeyStore
  readonly #masterKey: MasterKey
  readonly #ca: CertificateAuthority | undefined
  readonly #logger: Logger
  readonly #now: () => number
  readonly #identity: Identity
  readonly #nonces = new NonceCache()
  readonly #requestRate: RateLimiter
  readonly #listeners = new Set<(change: KeyServerChange) => void>()
  #policy: PolicyState
  #directory: Directory | undefined
  readonly #directorySource: DirectorySource
  #directoryChecks: Promise<unknown> = Promise.resolve()
  #queuedDirectoryCheck: Promise<Directory> | undefined
  #directoryInvalidations = 0
  #generation = 1
  // Signed bundles by principal id, valid until the next change (see bundleFor).
  readonly #bundles = new Map<
    string,
    { readonly document: SignedDocument; readonly builtAt: number; readonly generation: number }
  >()
  // The issuedAt of each principal's last bundle, kept across changes (unlike #bundles): clients
  // keep only strictly newer bundles, so one built after a change in the same second must be later.
  readonly #bundleIssuedAt = new Map<string, number>()
  // Epoch keys sealed to each holder, kept across changes (unlike #bundles): see SealedKeyCache.
  readonly #sealedKeys = new SealedKeyCache()
  // The issuedAt of the last broker snapshot and a digest of its content (see brokerSnapshot).
  #lastSnapshot: { readonly issuedAt: number; readonly fingerprint: string } | undefined
  /** The last snapshot content built, and what it was built from (see #snapshotContent). */
  #snapshotCache:
    | { readonly from: SnapshotSources; readonly validUntil: number; readonly value: SnapshotContent }
    | undefined
  // Bundle tags by principal id, for the directory generation they were computed from (see freshnessFor).
  readonly #tags = new Map<string, { readonly tag: string; readonly generation: number }>()
  // The CA's last CRL (DER) and when it was issued (ms); dropped on every change.
  #crl: Promise<{ readonly der: Uint8Array; readonly issuedAt: number }> | undefined

  private constructor(options: KeyServerOptions, identity: Identity, policy: PolicyState) {
    this.settings = { ...DEFAULT_SETTINGS, ...options.settings }
    this.#store = options.store
    this.#masterKey = options.masterKey
    this.#ca = options.certificateAuthority
    this.#logger = options.logger ?? pino({ level: 'silent' })
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000))
    this.audit = new AuditLog(this.#store, this.#logger, this.#now)
    this.failedAuth = new FailedAuthentications(this.audit, {
      perAddressPerMinute: this.settings.failedAuthPerAddressPerMinute,
      now: this.#now,
    })
    this.#requestRate = new RateLimiter({
      perSecond: this.settings.principalRequestsPerSecond,
      burst: this.settings.principalRequestBurst,
    })
    this.#identity = identity
    this.#policy = policy
    this.#directorySource = {
      store: this.#store,
      masterKey: this.#masterKey,
      logger: this.#logger,
      policy: () => this.#policy,
      reloadPolicy: async () => {
        await this.reloadPolicy()
        return this.#policy
      },
      nextGeneration: () => this.#generation++,
    }
  }

  /** Loads (or on first start creates) the key server's signing identity and the policy. */
  static async open(options: KeyServerOptions): Promise<KeyServer> {
    const { store, masterKey } = options
    let sealed = await store.getSecret(IDENTITY_SECRET)
    if (!sealed) {
      const created = generateIdentity('keyserver')
      const json = new TextEncoder().encode(JSON.stringify(exportIdentity(created)))
      await store.insertSecret(IDENTITY_SECRET, masterKey.seal(IDENTITY_SECRET, json))
      sealed = await store.getSecret(IDENTITY_SECRET) // another process may have won the race
      if (!sealed) throw new Error('the key server identity could not be stored')
    }
    const identity = importIdentity(JSON.parse(new TextDecoder().decode(masterKey.open(IDENTITY_SECRET, sealed))))
    const stored = await store.getPolicy()
    const policy = stored ? PolicyState.fromDocument(stored.version, stored.document) : new PolicyState(0, EMPTY_POLICY)
    const server = new KeyServer(options, identity, policy)
    await server.ensureEpochs()
    return server
  }

  /** The key server's Ed25519 public key, which clients pin at enrollment. */
  get publicKey(): Uint8Array {
    return this.#identity.signingKey
  }

  get policy(): PolicyState {
    return this.#policy
  }

  /** Subscribes to changes (for push delivery); returns the unsubscribe function. */
  onChange(listener: (change: KeyServerChange) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #emit(change: KeyServerChange): void {
    this.#forgetDerivedState()
    for (const listener of this.#listeners) {
      try {
        listener(change)
      } catch (err) {
        this.#logger.error({ err, change: change.kind }, 'change listener failed')
      }
    }
  }

  // ---- enrollment -------------------------------------------------------------------------

  /** Issues a one-time enrollment token bound to an id and roles. The token is shown once. */
  async createEnrollmentToken(
    request: { principalId: string; roles: readonly string[]; ttlSeconds?: number },
    actor: string,
  ): Promise<{ token: string; expiresAt: number }> {
    const { principalId, roles } = request
    if (!PRINCIPAL_ID_PATTERN.test(principalId))
      throw new SmqttError('ERR_REQUEST_INVALID', `principal id must match ${PRINCIPAL_ID_PATTERN}`)
    const badRole = roles.find((role) => !ROLE_PATTERN.test(role))
    if (badRole !== undefined)
      throw new SmqttError('ERR_REQUEST_INVALID', `role ${JSON.stringify(badRole)} must match ${ROLE_PATTERN}`)
    if (await this.#store.getPrincipal(principalId))
      throw new SmqttError('ERR_CONFLICT', `principal ${principalId} is already enrolled`)
    const now = this.#now()
    const ttl = request.ttlSeconds ?? this.settings.enrollmentTokenTtlSeconds
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 30 * 86_400)
      throw new SmqttError('ERR_REQUEST_INVALID', 'ttlSeconds must be an integer in [1, 2592000]')
    const token = Buffer.from(cryptoBackend.randomBytes(32)).toString('base64url')
    await this.#store.insertEnrollmentToken({
      tokenHash: sha256(new TextEncoder().encode(token)),
      principalId,
      roles: [...roles],
      createdAt: now,
      expiresAt: now + ttl,
      usedAt: undefined,
    })
    await this.audit.record({
      actor,
      action: 'enrollment-token.create',
      subject: principalId,
      outcome: 'ok',
      details: { roles, expiresAt: now + ttl },
    })
    return { token, expiresAt: now + ttl }
  }

  /**
   * Enrolls a device: checks its proof of possession and the token, issues a client certificate
   * if asked, then redeems the token, records the principal with the token's roles and audits
   * it in one store transaction (all or nothing: a failed enrollment can be retried).
   *
   * A used token is accepted once more only as a repeat of the enrollment it made (the device
   * never got the answer): see #repeatEnrollment. Anything else with it is refused as before.
   */
  async enroll(request: EnrollmentRequest, remoteAddress: string): Promise<EnrollmentResult> {
    const refuse = async (
      reason: string,
      code: 'ERR_ENROLLMENT_TOKEN_INVALID' | 'ERR_REQUEST_SIGNATURE_INVALID' = 'ERR_ENROLLMENT_TOKEN_INVALID',
    ) =>
      this.failedAuth.failed(
        remoteAddress,
        { action: 'enroll', subject: String(request.identity?.id ?? '?'), reason },
        new SmqttError(code),
      )
    const identity = importPublicIdentity(request.identity)
    const tokenHash = sha256(new TextEncoder().encode(request.token))
    if (!verifyEnrollmentProof(request.token, identity, request.proof))
      throw await refuse('proof of possession does not verify', 'ERR_REQUEST_SIGNATURE_INVALID')
    const tlsKey = request.tlsPublicKey === undefined ? undefined : fromB64u(request.tlsPublicKey)
    if (request.tlsPublicKey !== undefined && (!tlsKey || !this.#ca))
      throw new SmqttError(
        'ERR_REQUEST_INVALID',
        this.#ca ? 'tlsPublicKey is not base64url' : 'this key server issues no certificates',
      )

    const now = this.#now()
    const token = await this.#store.getEnrollmentToken(tokenHash)
    if (token?.usedAt !== undefined) {
      const repeated = await this.#repeatEnrollment(token, identity, request.roles, tlsKey, now, remoteAddress)
      if (typeof repeated === 'string') throw await refuse(`token unknown, used or expired (${repeated})`)
      return repeated
    }
    if (!token || token.expiresAt <= now) throw await refuse('token unknown, used or expired')
    const mismatch =
      token.principalId !== identity.id
        ? `token is bound to ${token.principalId}`
        : request.roles && !sameSet(request.roles, token.roles)
          ? 'roles differ from the token'
          : undefined
    if (mismatch) {
      await this.#store.consumeEnrollmentToken(tokenHash, now) // burnt: a leaked token gets no retries
      throw await refuse(mismatch)
    }

    const certificate =
      tlsKey && this.#ca
        ? await this.#ca.issueClientCertificate({
            principalId: identity.id,
            publicKeySpki: tlsKey,
            validityDays: this.settings.clientCertificateValidityDays,
          })
        : undefined
    // Token, principal and audit entry in one transaction: a failure (503) leaves the token
    // unused, so the device retries with it.
    let enrolled: EnrolledPrincipal | undefined
    try {
      enrolled = await this.#store.enrollPrincipal({
        tokenHash,
        now,
        certificatePem: certificate?.certificatePem,
        principal: {
          id: identity.id,
          roles: token.roles,
          username: undefined,
          signingKey: identity.signingKey,
          agreementKey: identity.agreementKey,
          kem: identity.kem,
          createdAt: now,
          certificateSerial: certificate?.serialNumber,
        },
        audit: (principal) =>
          this.audit.entry({
            actor: `principal:${principal.id}`,
            action: 'enroll',
            subject: principal.id,
            outcome: 'ok',
            details: {
              kid: principal.kid,
              roles: principal.roles,
              remoteAddress,
              certificate: certificate?.serialNumber ?? null,
            },
          }),
      })
    } catch (err) {
      if (err instanceof StoreConflictError) throw await refuse('principal already enrolled')
      throw err
    }
    if (!enrolled) {
      // A concurrent request redeemed it: if that was this device's first try, answer as it was answered.
      const redeemed = await this.#store.getEnrollmentToken(tokenHash)
      const repeated =
        redeemed?.usedAt === undefined
          ? 'token unknown or expired'
          : await this.#repeatEnrollment(redeemed, identity, request.roles, tlsKey, now, remoteAddress)
      if (typeof repeated === 'string') throw await refuse(`token unknown, used or expired (${repeated})`)
      return repeated
    }
    this.audit.log(enrolled.audit)
    const { principal } = enrolled
    this.#emit({ kind: 'policy', version: this.#policy.version }) // readers/writers may have changed
    return {
      principal: this.signedPrincipalRecord(principal),
      kid: principal.kid,
      keyServerPublicKey: Buffer.from(this.publicKey).toString('base64url'),
      ...(certificate ? { certificatePem: certificate.certificatePem } : {}),
    }
  }

  /**
   * Answers a used token as its enrollment was answered, when this request is a repeat of it:
   * the token enrolled this very principal, still active, with the same signing key, agreement
   * key and KEM (the request's proof, already verified, shows possession of that signing key for
   * this token), the same roles and the same TLS key, within enrollmentRepeatSeconds of the
   * token's use. The answer is the same kid, a freshly signed record of the same principal and
   * the same certificate, byte for byte. Otherwise returns why not (for the refusal's audit).
   */
  async #repeatEnrollment(
    token: EnrollmentTokenRecord,
    identity: PublicIdentity,
    roles: readonly string[] | undefined,
    tlsKey: Uint8Array | undefined,
    now: number,
    remoteAddress: string,
  ): Promise<EnrollmentResult | string> {
    if (token.principalId !== identity.id) return `token is bound to ${token.principalId}`
    if (token.usedAt === undefined || now >= token.usedAt + this.settings.enrollmentRepeatSeconds)
      return 'too late to repeat the enrollment'
    const enrolled = await this.#store.getTokenEnrollment(token.tokenHash)
    if (!enrolled) return 'token enrolled nobody'
    const { principal, certificatePem } = enrolled
    if (principal.status !== 'active') return `principal is ${principal.status}`
    if (
      principal.kem !== identity.kem ||
      !constantTimeEqual(principal.signingKey, identity.signingKey) ||
      !constantTimeEqual(principal.agreementKey, identity.agreementKey)
    )
      return 'keys differ from the enrollment'
    if (roles && !sameSet(roles, token.roles)) return 'roles differ from the token'
    const sameTlsKey =
      tlsKey === undefined || certificatePem === undefined
        ? tlsKey === undefined && certificatePem === undefined
        : await certifiesKey(certificatePem, tlsKey)
    if (!sameTlsKey) return 'TLS key differs from the enrollment'
    await this.audit.record({
      actor: `principal:${principal.id}`,
      action: 'enroll.repeat',
      subject: principal.id,
      outcome: 'ok',
      details: { kid: principal.kid, remoteAddress, certificate: principal.certificateSerial ?? null },
    })
    return {
      principal: this.signedPrincipalRecord(principal),
      kid: principal.kid,
      keyServerPublicKey: Buffer.from(this.publicKey).toString('base64url'),
      ...(certificatePem ? { certificatePem } : {}),
    }
  }

  signedPrincipalRecord(principal: PrincipalRecord): SignedDocument {
    return createPrincipalRecord(
      {
        id: principal.id,
        kid: principal.kid,
        roles: principal.roles,
        signingKey: principal.signingKey,
        agreementKey: principal.agreementKey,
        kem: principal.kem,
        issuedAt: this.#now(),
      },
      this.#identity,
    )
  }

  // ---- device authentication ----------------------------------------------------------------

  /**
   * Authenticates a signed request (proof of possession): known, active principal, fresh
   * timestamp, unused nonce, valid signature. Each principal has its own request rate and nonce
   * quota, spent only once its signature verified: one principal's flood is refused
   * (ERR_RATE_LIMITED) without touching the others'. Failures are audited through failedAuth
   * (bounded per address and minute).
   */
  async authenticateRequest(
    headers: Readonly<Record<string, string | string[] | undefined>>,
    request: { method: string; path: string; body: Uint8Array },
    remoteAddress: string,
  ): Promise<PrincipalRecord> {
    let claimed = '?'
    try {
      const parsed = parseRequestSignature(headers)
      claimed = parsed.principal
      const principal = await this.#store.getPrincipal(parsed.principal)
      if (!principal) throw new SmqttError('ERR_UNAUTHENTICATED', 'unknown principal')
      const now = this.#now()
      verifyRequestSignature(parsed, principal.signingKey, request, { now, maxSkewSeconds: REQUEST_WINDOW_SECONDS })
      if (!this.#requestRate.take(principal.id, performance.now() / 1000)) throw principalRateLimited()
      const refused = this.#nonces.useOnce(principal.id, parsed.nonce, parsed.timestamp + REQUEST_WINDOW_SECONDS, now)
      if (refused === 'full') throw principalRateLimited()
      if (refused === 'replay')
        throw new SmqttError('ERR_REQUEST_SIGNATURE_INVALID', 'request signature invalid: nonce already used')
      if (principal.status !== 'active')
        throw new SmqttError('ERR_PRINCIPAL_REVOKED', `principal is ${principal.status}`)
      return principal
    } catch (err) {
      // A principal over its own quota is not a failed authentication: it costs its address nothing.
      if (err instanceof SmqttError && err.code !== 'ERR_RATE_LIMITED')
        throw await this.failedAuth.failed(
          remoteAddress,
          { action: 'auth.failed', subject: claimed, reason: err.code, message: err.message },
          err,
        )
      throw err
    }
  }

  // ---- policy ---------------------------------------------------------------------------

  /**
   * Replaces the policy (optimistically: `expectedVersion` must be the current version when
   * given). Groups that lose a member (reader or writer) are re-keyed at once. Returns the warnings
   * of policy-review.ts: about the policy alone, and about the active principals under it.
   */
  async setPolicy(
    document: unknown,
    actor: string,
    expectedVersion?: number,
  ): Promise<{ version: number; warnings: string[] }> {
    const policy = parsePolicy(document)
    const current = this.#policy
    if (expectedVersion !== undefined && expectedVersion !== current.version)
      throw new SmqttError('ERR_CONFLICT', `policy is at version ${current.version}, not ${expectedVersion}`)
    const next = new PolicyState(current.version + 1, policy)
    const active = await this.#activePrincipals()
    if (!(await this.#store.putPolicy(JSON.stringify(policy), current.version, this.#now())))
      throw new SmqttError('ERR_CONFLICT', 'the policy changed concurrently; re-read and retry')
    this.#policy = next
    // A member that loses a group's key (reading or writing: a writer's key opens the group's
    // traffic too) must not hold the next epoch's.
    const lostMember = current.policy.groups
      .filter((g) => next.policy.groups.some((n) => n.id === g.id))
      .filter((g) => active.some((p) => current.keyedGroups(p).has(g.id) && !next.keyedGroups(p).has(g.id)))
      .map((g) => g.id)
    const warnings = [...policyWarnings(policy), ...principalWarnings(next.evaluator, active.map(principalContext))]
    await this.audit.record({
      actor,
      action: 'policy.update',
      subject: `policy:${next.version}`,
      outcome: 'ok',
      details: { rekeyed: lostMember, warnings },
    })
    await this.ensureEpochs()
    for (const group of lostMember)
      await this.rotateGroup(group, { immediate: true, actor: 'system', reason: 'member removed' })
    this.#emit({ kind: 'policy', version: next.version })
    return { version: next.version, warnings }
  }

  /** Reloads the policy from the store (another key server process may have changed it). */
  async reloadPolicy(): Promise<void> {
    const stored = await this.#store.getPolicy()
    if (stored && stored.version !== this.#policy.version)
      this.#policy = PolicyState.fromDocument(stored.version, stored.document)
  }

  // ---- epochs and rotation -----------------------------------------------------------------

  /**
   * Gives every group of the policy a live epoch, active now, and retires at once the epochs of
   * groups no longer in it: a group re-created later (same id or same filter) starts on a fresh
   * key no former member holds, under a number never used before (the store keeps each group's
   * newest epoch, see deleteRetiredEpochs).
   */
  async ensureEpochs(): Promise<void> {
    const now = this.#now()
    const epochs = await this.#store.listEpochs()
    const live = (e: EpochRecord) => e.retiresAt === undefined || e.retiresAt > now
    const inPolicy = new Set(this.#policy.policy.groups.map((g) => g.id))
    for (const e of epochs)
      if (!inPolicy.has(e.group) && live(e)) await this.#store.setEpochRetirement(e.group, e.epoch, now)
    for (const group of this.#policy.policy.groups)
      if (!epochs.some((e) => e.group === group.id && live(e)))
        await this.rotateGroup(group.id, { immediate: true, actor: 'system', reason: 'new group' })
  }

  /**
   * Creates the group's next epoch. Scheduled: it activates `rotationLeadSeconds` from now, so
   * every member holds it before anyone seals with it. Immediate (revocation, reader removed):
   * it activates now, and any epoch scheduled but not yet active is withdrawn, because the
   * departed reader may already hold it. The previous epochs stay readable for the grace period.
   */
  async rotateGroup(
    group: number,
    options: { immediate: boolean; actor: string; reason: string },
  ): Promise<EpochRecord> {
    const policyGroup = this.#policy.policy.groups.find((g) => g.id === group)
    if (!policyGroup) throw new SmqttError('ERR_NOT_FOUND', `no key group ${group} in the policy`)
    const grace = policyGroup.graceSeconds ?? this.settings.defaultGraceSeconds
    for (let attempt = 0; attempt < 10; attempt++) {
      const now = this.#now()
      const epochs = await this.#store.listEpochs(group)
      const number = (epochs.at(-1)?.epoch ?? 0) + 1
      const activatesAt = options.immediate ? now : now + this.settings.rotationLeadSeconds
      const key = cryptoBackend.randomBytes(32)
      const record: EpochRecord = {
        group,
        epoch: number,
        suite: DEFAULT_SUITE,
        sealedKey: this.#masterKey.seal(epochLabel(group, number), key),
        createdAt: now,
        activatesAt,
        retiresAt: undefined,
      }
      if (!(await this.#store.insertEpoch(record))) continue // a concurrent rotation took the number
      for (const previous of epochs) {
        if (previous.retiresAt !== undefined && previous.retiresAt <= activatesAt + grace) continue
        // A withdrawn future epoch retires now; the others after the grace period.
        const retiresAt = options.immediate && previous.activatesAt > now ? now : activatesAt + grace
        await this.#store.setEpochRetirement(group, previous.epoch, retiresAt)
      }
      await this.audit.record({
        actor: options.actor,
        action: 'rotate',
        subject: `group:${group}`,
        outcome: 'ok',
        details: { epoch: number, activatesAt, immediate: options.immediate, reason: options.reason },
      })
      this.#emit({ kind: 'epochs', groups: [group] })
      return record
    }
    throw new SmqttError('ERR_CONFLICT', `could not rotate group ${group}: too many concurrent rotations`)
  }

  /**
   * The periodic job: scheduled rotations, deletion of epochs past their grace period, and of
   * directory changes no process needs one by one any more (see Directory).
   */
  async tick(): Promise<void> {
    await this.reloadPolicy()
    const now = this.#now()
    const epochs = await this.#store.listEpochs()
    for (const group of this.#policy.policy.groups) {
      if (!group.rotateEverySeconds) continue
      const own = epochs.filter((e) => e.group === group.id && (e.retiresAt === undefined || e.retiresAt > now))
      if (own.some((e) => e.activatesAt > now)) continue // the next one is already scheduled
      const current = own.at(-1)
      if (!current || current.activatesAt + group.rotateEverySeconds - this.settings.rotationLeadSeconds <= now)
        await this.rotateGroup(group.id, { immediate: false, actor: 'system', reason: 'schedule' })
    }
    const deleted = await this.#store.deleteRetiredEpochs(now)
    if (deleted > 0) this.#logger.info({ deleted }, 'deleted epochs past their grace period')
    await this.#store.pruneDirectoryChanges(DIRECTORY_CHANGES_KEPT)
    await this.failedAuth.flush()
  }

  // ---- bundles ----------------------------------------------------------------------------

  /**
   * The signed key bundle of a principal: every group it may read or write, live epochs only.
   * A bundle built since the last change is served again for up to BUNDLE_REUSE_SECONDS: its
   * content would be the same, and sealing every epoch afresh for each request is what would
   * limit the key server when a fleet reconnects at once.
   */
  async bundleFor(principal: PrincipalRecord): Promise<SignedDocument> {
    if (principal.status !== 'active') throw new SmqttError('ERR_PRINCIPAL_REVOKED')
    const now = this.#now()
    const directory = await this.#currentDirectory(now)
    const cached = this.#bundles.get(principal.id)
    if (cached && cached.generation === directory.generation && now - cached.builtAt < BUNDLE_REUSE_SECONDS)
      return cached.document
    const issuedAt = Math.max(now, (this.#bundleIssuedAt.get(principal.id) ?? -1) + 1)
    const document = this.#buildBundle(principal, directory, now, issuedAt)
    if (this.#bundleIssuedAt.size >= MAX_BUNDLE_ISSUED_AT) this.#bundleIssuedAt.clear()
    this.#bundleIssuedAt.set(principal.id, issuedAt)
    if (this.#bundles.size >= MAX_CACHED_BUNDLES) this.#bundles.clear()
    this.#bundles.set(principal.id, { document, builtAt: now, generation: directory.generation })
    return document
  }

  #buildBundle(principal: PrincipalRecord, directory: Directory, now: number, issuedAt: number): SignedDocument {
    const notAfter = now + this.settings.bundleTtlSeconds
    const groups = this.#policy.keyedGroups(principal)
    const recipient = {
      id: principal.id,
      kid: principal.kid,
      signingKey: principal.signingKey,
      agreementKey: principal.agreementKey,
      kem: principal.kem,
    }
    const bundleGroups = this.#policy.policy.groups
      .filter((g) => groups.has(g.id))
      .map((g) => ({
        group: g.id,
        name: g.name,
        filter: g.filter,
        suite: DEFAULT_SUITE,
        epochs: (directory.epochs.get(g.id) ?? [])
          .filter((e) => e.retiresAt === undefined || e.retiresAt > now)
          .map((e) => ({
            epoch: e.epoch,
            activatesAt: e.activatesAt,
            retiresAt: e.retiresAt ?? notAfter + (g.graceSeconds ?? this.settings.defaultGraceSeconds),
            sealed: this.#sealedKeys.sealed(recipient, { group: g.id, epoch: e.epoch, suite: DEFAULT_SUITE }, e.key),
          })),
        writers: this.#inlineWriters(g.id, principal, directory),
      }))
    return createKeyBundle({
      recipient,
      groups: bundleGroups,
      validity: { notBefore: now - 60, notAfter },
      issuedAt,
      keyServer: this.#identity,
    })
  }

  /** Whether bundles list all of `group`'s writers (few enough), or only the recipient's own entry. */
  #listsAllWriters(group: number, directory: Directory): boolean {
    return directory.writerCount(group) <= this.settings.bundleInlineWriters
  }

  /** The writers `principal`'s bundle lists for `group`: all of them, or past the bound only itself. */
  #inlineWriters(group: number, principal: PrincipalRecord, directory: Directory): readonly KeyGroupWriter[] {
    if (this.#listsAllWriters(group, directory)) return directory.writers(group)
    const own = directory.writer(group, principal.kid)
    return own && own.principal === principal.id ? [own] : []
  }

  /**
   * A signed record of the writers among `kids` of `group` (`POST /v1/writers`), for `reader` to
   * check envelopes from writers its bundle does not list: the same entries a bundle would carry
   * (the same directory, so revoked, disabled and deleted principals are never in it), bound to
   * the reader, the group and its filter, valid for writerRecordTtlSeconds. Ids that are not
   * writers of the group are left out. Only a principal that holds the group's key may ask.
   */
  async writerRecordFor(reader: PrincipalRecord, group: number, kids: readonly number[]): Promise<SignedDocument> {
    if (reader.status !== 'active') throw new SmqttError('ERR_PRINCIPAL_REVOKED')
    if (kids.length > MAX_RECORD_WRITERS)
      throw new SmqttError('ERR_REQUEST_INVALID', `at most ${MAX_RECORD_WRITERS} key ids per request`)
    const now = this.#now()
    const directory = await this.#currentDirectory(now)
    const keyed = this.#policy.policy.groups.find((g) => g.id === group)
    if (!keyed || !this.#policy.keyedGroups(reader).has(group))
      throw new SmqttError('ERR_FORBIDDEN', `not a member of key group ${group}`)
    const writers = [...new Set(kids)].flatMap((kid) => {
      const writer = directory.writer(group, kid)
      return writer ? [writer] : []
    })
    return createWriterRecord({
      reader: reader.id,
      group,
      filter: keyed.filter,
      writers,
      issuedAt: now,
      notAfter: now + this.settings.writerRecordTtlSeconds,
      keyServer: this.#identity,
    })
  }

  // ---- freshness ----------------------------------------------------------------------------

  /**
   * What a client polls (`GET /v1/freshness`, answered 304 while nothing changed) to learn from
   * the key server itself, not through a broker that may drop pushes, that its revocation list
   * or its key bundle is out of date: the revocation list's version (0 when none) and the tag of
   * the bundle this principal would get now. Cheap: the tag is cached per principal until the
   * directory's content changes, the version is read with the directory (at most every
   * DIRECTORY_TTL_SECONDS, and after every change this process makes).
   */
  async freshnessFor(principal: PrincipalRecord): Promise<{ revocations: number; bundle: string }> {
    if (principal.status !== 'active') throw new SmqttError('ERR_PRINCIPAL_REVOKED')
    const directory = await this.#currentDirectory(this.#now())
    return { revocations: directory.revocations, bundle: this.#bundleTag(principal, directory) }
  }

  /**
   * The bundle with its tag. The tag is taken first: a change in between makes the bundle newer
   * than its tag, so the client's next poll sees another tag and fetches once more; it can never
   * hold a tag newer than its bundle and miss the change.
   */
  async bundleWithTag(principal: PrincipalRecord): Promise<{ bundle: SignedDocument; tag: string }> {
    const { bundle: tag } = await this.freshnessFor(principal)
    return { bundle: await this.bundleFor(principal), tag }
  }

  /**
   * A short hash of everything that decides this principal's bundle apart from its sealing
   * randomness and times: for each group it gets, the group (id, name, filter, suite), its open
   * epochs (not yet retiring: what a member seals with now or next) and its writers (kid,
   * principal, publish rights, signing key). Retiring epochs are left out on purpose: an epoch
   * starts retiring only in a rotation, which opens another one (the tag changes then), and its
   * later deletion changes nothing a member needs, so it costs the fleet no refetch.
   */
  #bundleTag(principal: PrincipalRecord, directory: Directory): string {
    const cached = this.#tags.get(principal.id)
    if (cached && cached.generation === directory.generation) return cached.tag
    const groups = this.#policy.keyedGroups(principal)
    const parts = this.#policy.policy.groups
      .filter((g) => groups.has(g.id))
      .map((g) => {
        let part = directory.groupTags.get(g.id)
        if (part === undefined) {
          part = digest([
            g.id,
            g.name,
            g.filter,
            DEFAULT_SUITE,
            (directory.epochs.get(g.id) ?? [])
              .filter((e) => e.retiresAt === undefined)
              .map((e) => [e.epoch, e.activatesAt]),
            this.#listsAllWriters(g.id, directory)
              ? directory.writers(g.id).map((w) => [w.kid, w.principal, w.publish, w.signingKey])
              : 'records',
          ])
          directory.groupTags.set(g.id, part)
        }
        if (this.#listsAllWriters(g.id, directory)) return part
        // Only the recipient's own entry is listed: its share of the tag is its own.
        const own = directory.writer(g.id, principal.kid)
        return own ? digest([part, own.principal, own.publish, own.signingKey]) : part
      })
    const tag = digest(parts)
    if (this.#tags.size >= MAX_CACHED_BUNDLES) this.#tags.clear()
    this.#tags.set(principal.id, { tag, generation: directory.generation })
    return tag
  }

  /**
   * The directory bundles, tags and writer records are built from (see Directory), checked
   * against the store's change log at most every DIRECTORY_TTL_SECONDS, so changes made by
   * other key server processes sharing the store are picked up, and at the next use after any
   * change this process makes. Checks run one after another, and a caller joins only a check
   * queued after it asked, never one already reading the store (which may predate its change).
   */
  #currentDirectory(now: number): Promise<Directory> {
    const current = this.#directory
    if (current && now - current.checkedAt < DIRECTORY_TTL_SECONDS) return Promise.resolve(current)
    if (!this.#queuedDirectoryCheck) {
      const queued: Promise<Directory> = this.#directoryChecks.then(() => {
        this.#queuedDirectoryCheck = undefined
        return this.#checkDirectory(now)
      })
      this.#queuedDirectoryCheck = queued
      this.#directoryChecks = queued.catch(() => undefined)
    }
    return this.#queuedDirectoryCheck
  }

  /** The directory once it has followed the store's log now (one small query), whatever its age. */
  #freshDirectory(): Promise<Directory> {
    if (this.#directory) this.#directory.checkedAt = Number.NEGATIVE_INFINITY
    return this.#currentDirectory(this.#now())
  }

  async #checkDirectory(now: number): Promise<Directory> {
    const invalidations = this.#directoryInvalidations
    const source = this.#directorySource
    const current = this.#directory
    let directory = current
    if (!directory || !(await directory.follow(source, now))) directory = await Directory.build(source, now)
    // A change this process made meanwhile may have been written after the log was read.
    if (invalidations !== this.#directoryInvalidations) directory.checkedAt = Number.NEGATIVE_INFINITY
    this.#sealedKeys.keepOnly(
      [...directory.epochs].flatMap(([group, list]) => list.map((e) => ({ group, epoch: e.epoch }))),
    )
    this.#directory = directory
    return directory
  }

  /** After any change: what was derived from the old state must be built again. */
  #forgetDerivedState(): void {
    this.#crl = undefined
    this.#directoryInvalidations++
    if (this.#directory) this.#directory.checkedAt = Number.NEGATIVE_INFINITY // follow the log at the next use
    this.#bundles.clear()
    this.#tags.clear()
  }

  // ---- service principals -------------------------------------------------------------------

  /**
   * The identity of one of the key server's own principals (e.g. the push client, role
   * `keyserver`): created on first use, its private keys sealed in the store, so every key
   * server process of a deployment uses the same one.
   */
  async servicePrincipal(
    id: string,
    roles: readonly string[],
  ): Promise<{ identity: Identity; principal: PrincipalRecord }> {
    const secretName = `service-principal:${id}`
    if (!(await this.#store.getSecret(secretName))) {
      const created = generateIdentity(id)
      const json = new TextEncoder().encode(JSON.stringify(exportIdentity(created)))
      await this.#store.insertSecret(secretName, this.#masterKey.seal(secretName, json))
    }
    const sealed = await this.#store.getSecret(secretName)
    if (!sealed) throw new Error(`service principal ${id} could not be stored`)
    const identity = importIdentity(JSON.parse(new TextDecoder().decode(this.#masterKey.open(secretName, sealed))))
    let principal = await this.#store.getPrincipal(id)
    if (!principal) {
      try {
        principal = await this.#store.createPrincipal({
          id,
          roles,
          username: undefined,
          signingKey: identity.signingKey,
          agreementKey: identity.agreementKey,
          kem: identity.kem,
          createdAt: this.#now(),
          certificateSerial: undefined,
        })
        await this.audit.record({
          actor: 'system',
          action: 'service-principal.create',
          subject: id,
          outcome: 'ok',
          details: { kid: principal.kid, roles },
        })
      } catch (err) {
        if (!(err instanceof StoreConflictError)) throw err
        principal = await this.getPrincipal(id) // another process created it first
      }
    }
    return { identity, principal }
  }

  /**
   * Active principals whose key groups include any of `groups` (all active ones when omitted).
   * With `groups`, those that only read them come first: a writer seals under a new epoch as
   * soon as it holds it, so after a re-key the readers should hold it before the writers do.
   * Found through the directory's index of holders, so a home's re-key costs about the same at
   * 100,000 principals as at 100 (issue 14); the directory follows the store's log first (one
   * small query), so what another process changed is seen as a fresh read of the fleet would see it.
   */
  async principalsHoldingKeys(groups?: readonly number[]): Promise<PrincipalRecord[]> {
    if (!groups) return this.#activePrincipals()
    const directory = await this.#freshDirectory()
    const kids = directory.holders(groups)
    // A few holders (a home) are read one by one; for many (a fleet-wide group) one read of the
    // fleet is cheaper. Either way the store's current record: one revoked since is left out.
    const wanted = new Set(kids)
    const records =
      kids.length > FEW_HOLDERS
        ? (await this.#store.listPrincipals()).filter((p) => wanted.has(p.kid))
        : await Promise.all(kids.map((kid) => this.#store.getPrincipalByKid(kid)))
    const holders = records.filter((p): p is PrincipalRecord => p?.status === 'active')
    const writes = (p: PrincipalRecord) => groups.some((g) => directory.writer(g, p.kid) !== undefined)
    return [...holders.filter((p) => !writes(p)), ...holders.filter(writes)]
  }

  // ---- brokers -----------------------------------------------------------------------------

  /** The signed snapshot broker plugins enforce from: policy, directory, live epochs (no keys). */
  async brokerSnapshot(): Promise<SignedDocument> {
    return this.#signSnapshot(await this.#snapshotContent(), 'snapshot')
  }

  /**
   * {@link brokerSnapshot} with its entity tag (a digest of its content, issuedAt aside, signed
   * into the snapshot too), or, when the tag equals `knownTag`, a signed notice instead: "this
   * content is still current at issuedAt". A broker asking whether anything changed
   * (`If-None-Match`) gets ~200 bytes instead of the whole snapshot (17 MiB at 100,000
   * principals), and the notice counts for its snapshot's age as a new snapshot would.
   */
  async brokerSnapshotUnless(
    knownTag: string | undefined,
  ): Promise<{ tag: string } & ({ snapshot: SignedDocument } | { notice: SignedDocument })> {
    const current = await this.#snapshotContent()
    const tag = current.fingerprint
    if (tag === knownTag) return { tag, notice: this.#signSnapshot(current, 'notice') }
    return { tag, snapshot: this.#signSnapshot(current, 'snapshot') }
  }

  /**
   * What to push to brokers over MQTT after a change: the signed snapshot itself while its
   * payload stays under `maxInlineBytes`, else a signed notice (issuedAt and ETag, ~200 bytes)
   * on which brokers pull it over HTTPS. A pull made after the notice returns a snapshot of the
   * notice's issuedAt or later (issue 14: a snapshot grows ~190 bytes per principal, and MQTT
   * brokers refuse packets over 256 KiB).
   */
  async brokerSnapshotPush(
    maxInlineBytes: number,
  ): Promise<{ readonly snapshot: SignedDocument } | { readonly notice: SignedDocument }> {
    const current = await this.#snapshotContent()
    // The payload is the content's JSON plus a few fields, sent base64url (4/3).
    if (((current.jsonBytes + 160) * 4) / 3 <= maxInlineBytes)
      return { snapshot: this.#signSnapshot(current, 'snapshot') }
    return { notice: this.#signSnapshot(current, 'notice') }
  }

  /** The current content stamped and signed as a snapshot, or as a notice naming its tag. */
  #signSnapshot({ content, fingerprint }: SnapshotContent, as: 'snapshot' | 'notice'): SignedDocument {
    const issuedAt = this.#stampSnapshot(fingerprint)
    return as === 'notice'
      ? createBrokerSnapshotNotice({ issuedAt, tag: fingerprint }, this.#identity)
      : createBrokerSnapshot({ issuedAt, ...content, tag: fingerprint }, this.#identity)
  }

  /** The broker snapshot's content (issuedAt aside), its digest, and its JSON's length. */
  async #snapshotContent(): Promise<SnapshotContent> {
    const now = this.#now()
    // Built again only when the directory moved (the store's change log: principals, epochs,
    // policy, revocation list, from any process) or time made an epoch retire or a revocation
    // age out: an unchanged pull at 100,000 principals then costs one small query, not a read
    // of the fleet, its JSON and its digest.
    const directory = await this.#freshDirectory()
    const from: SnapshotSources = { directory, generation: directory.generation, revocations: directory.revocations }
    const cached = this.#snapshotCache
    if (cached && sameSources(cached.from, from) && now < cached.validUntil) return cached.value
    // Revoked principals stay listed (so brokers close their sessions and forget their
    // persistent ones) for as long as the revocation list keeps them; after that a broker refuses
    // them as unknown, and the snapshot does not grow with lifetime revocations.
    const listedFor = this.#revocationRetention() + REVOCATION_SLACK_SECONDS
    const principals = await this.#store.listPrincipals({ revokedSince: Math.max(0, now - listedFor) })
    const epochs = (await this.#store.listEpochs()).filter((e) => e.retiresAt === undefined || e.retiresAt > now)
    const revocations = await this.#store.getRevocationList()
    const content = {
      policy: this.#policy.policy,
      principals: principals.map((p) => ({
        id: p.id,
        kid: p.kid,
        roles: p.roles,
        signingKey: p.signingKey,
        status: p.status,
        ...(p.username === undefined ? {} : { username: p.username }),
        ...(p.certificateSerial === undefined ? {} : { certificateSerial: p.certificateSerial }),
      })),
      epochs: epochs.map((e) => ({
        group: e.group,
        epoch: e.epoch,
        activatesAt: e.activatesAt,
        ...(e.retiresAt === undefined ? {} : { retiresAt: e.retiresAt }),
      })),
      revocationListVersion: revocations?.version ?? 0,
    }
    const json = contentJson(content)
    const value = { content, fingerprint: digestJson(json), jsonBytes: Buffer.byteLength(json) }
    const validUntil = snapshotChangesByTimeAt(epochs, principals, listedFor)
    this.#snapshotCache = { from, validUntil, value }
    return value
  }

  /**
   * The issuedAt of a snapshot (or notice) of content `fingerprint`. Brokers keep a snapshot of
   * the same second only if it is the same one (a replayed other one of that second could undo
   * a change), so a changed snapshot is stamped after the last one; never earlier than the last.
   */
  #stampSnapshot(fingerprint: string): number {
    const now = this.#now()
    const last = this.#lastSnapshot
    const issuedAt = last ? Math.max(now, last.issuedAt + (last.fingerprint === fingerprint ? 0 : 1)) : now
    this.#lastSnapshot = { issuedAt, fingerprint }
    return issuedAt
  }

  // ---- principals and revocation --------------------------------------------------------------

  listPrincipals(): Promise<PrincipalRecord[]> {
    return this.#store.listPrincipals()
  }

  async getPrincipal(id: string): Promise<PrincipalRecord> {
    const principal = await this.#store.getPrincipal(id)
    if (!principal) throw new SmqttError('ERR_NOT_FOUND', `no principal ${id}`)
    return principal
  }

  /** Disables a principal (reversible by an operator in the store; not published as revoked). */
  async disablePrincipal(id: string, actor: string): Promise<void> {
    const principal = await this.getPrincipal(id)
    if (principal.status === 'revoked') throw new SmqttError('ERR_CONFLICT', `${id} is revoked`)
    await this.#store.setPrincipalStatus(id, 'disabled', this.#now())
    this.#forgetDerivedState()
    await this.audit.record({ actor, action: 'principal.disable', subject: id, outcome: 'ok', details: {} })
    await this.#rekeyKeyedGroups(principal, 'principal disabled')
  }

  /**
   * Revokes a principal: records it, publishes a new signed revocation list, re-keys every
   * group whose key it held, and tells listeners (brokers close its sessions). Safe to repeat:
   * revoking a revoked principal does it all again (a new list only if the last one misses it),
   * so a revocation the store cut short after the status was written is finished by a retry.
   * Repeating re-keys its groups once more, which costs a refetch and never weakens anything;
   * telling whether the first run got that far would need sub-second ordering the store lacks.
   */
  async revokePrincipal(id: string, actor: string): Promise<SignedDocument> {
    const principal = await this.getPrincipal(id)
    const repeated = principal.status === 'revoked'
    if (!repeated) await this.#store.setPrincipalStatus(id, 'revoked', this.#now())
    this.#forgetDerivedState()
    const published = repeated ? await this.revocationList() : undefined
    const list = published && this.#names(published, principal.kid) ? published : await this.#publishRevocationList()
    await this.audit.record({
      actor,
      action: 'revoke',
      subject: id,
      outcome: 'ok',
      details: { kid: principal.kid, ...(repeated ? { repeated } : {}) },
    })
    this.#emit({ kind: 'revoked', principal: id, kid: principal.kid })
    await this.#rekeyKeyedGroups(principal, 'principal revoked')
    return list
  }

  /** Whether a revocation list this key server signed names `kid`. */
  #names(published: SignedDocument, kid: number): boolean {
    return this.#opened(published).isRevokedKid(kid)
  }

  #opened(published: unknown): RevocationList {
    const list = new RevocationList()
    list.accept(published, { keyServerPublicKey: this.publicKey })
    return list
  }

  /** The retention in force: never shorter than a bundle's life, so no valid bundle is cut short by it. */
  #revocationRetention(): number {
    return Math.max(this.settings.revocationRetentionSeconds, this.settings.bundleTtlSeconds + REVOCATION_SLACK_SECONDS)
  }

  /**
   * What the next revocation list carries: its watermark and every revocation made at or after
   * the watermark minus REVOCATION_SLACK_SECONDS. The watermark is now minus the retention, never
   * below the last list's; past MAX_LISTED_REVOCATION_BYTES of entries it moves up past the
   * newest entry left out (clients then refetch bundles issued before it), so the list stays
   * under the clients' 1 MiB limit whatever happens within one retention window.
   */
  async #listedRevocations(
    now: number,
    floor: number,
  ): Promise<{ entries: { principal: string; kid: number; revokedAt: number }[]; prunedBefore: number }> {
    let prunedBefore = Math.max(floor, now - this.#revocationRetention(), 0)
    const newestFirst = await this.#store.listRevokedPrincipals({
      since: Math.max(0, prunedBefore - REVOCATION_SLACK_SECONDS),
      limit: MAX_LISTED_REVOCATIONS_FETCHED,
    })
    const entries: { principal: string; kid: number; revokedAt: number }[] = []
    let bytes = 0
    for (const p of newestFirst) {
      const entry = { principal: p.id, kid: p.kid, revokedAt: p.statusChangedAt ?? now }
      bytes += Buffer.byteLength(JSON.stringify(entry)) + 1
      if (bytes > MAX_LISTED_REVOCATION_BYTES) {
        // Everything revoked after this one's second is listed; the slack keeps the rule
        // "listed from prunedBefore - slack" true for the new watermark.
        prunedBefore = Math.max(prunedBefore, entry.revokedAt + 1 + REVOCATION_SLACK_SECONDS)
        const cut = entry.revokedAt
        return { entries: sortByKid(entries.filter((e) => e.revokedAt > cut)), prunedBefore }
      }
      entries.push(entry)
    }
    return { entries: sortByKid(entries), prunedBefore }
  }

  /**
   * Reserves the next `size` envelope sequence numbers for a run of `principal`: above `atLeast`
   * (the highest the device remembers being given) and above every range handed out before,
   * whatever the device's storage says. A second copy of the device, or one restored from an old
   * backup, therefore never reuses a nonce.
   */
  async reserveSequence(
    principal: PrincipalRecord,
    atLeast: number,
    size: number,
  ): Promise<{ start: number; end: number }> {
    if (principal.status !== 'active') throw new SmqttError('ERR_PRINCIPAL_REVOKED')
    const start = await this.#store.reserveSequence(principal.id, atLeast, size)
    if (start === undefined)
      throw new SmqttError('ERR_SEQUENCE_EXHAUSTED', `${principal.id} has no sequence numbers left (or is not active)`)
    return { start, end: start + size }
  }

  /**
   * The deployment CA's CRL (DER), or undefined when this key server has no CA. Re-issued after
   * every change made through this process and at least every CRL_REISSUE_MS (concurrent callers
   * share one issuance); nextUpdate is 7 days after issue.
   */
  async certificateRevocationList(): Promise<Uint8Array | undefined> {
    const ca = this.#ca
    if (!ca) return undefined
    const cached = this.#crl
    if (cached) {
      const crl = await cached.catch(() => undefined)
      if (crl && Date.now() - crl.issuedAt < CRL_REISSUE_MS) return crl.der
      if (this.#crl !== cached) return this.certificateRevocationList() // a change meanwhile
    }
    const issuing = (async () => {
      const issuedAt = Date.now()
      const principals = await this.#store.listPrincipals({ revokedSince: this.#now() - CRL_RETENTION_SECONDS })
      return { der: await issueCertificateRevocationList(ca, principals), issuedAt }
    })()
    this.#crl = issuing
    try {
      return (await issuing).der
    } catch (err) {
      if (this.#crl === issuing) this.#crl = undefined
      throw err
    }
  }

  /** The latest signed revocation list, if any principal was ever revoked. */
  async revocationList(): Promise<SignedDocument | undefined> {
    const stored = await this.#store.getRevocationList()
    return stored ? (JSON.parse(stored.document) as SignedDocument) : undefined
  }

  async #publishRevocationList(): Promise<SignedDocument> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const current = await this.#store.getRevocationList()
      const version = (current?.version ?? 0) + 1
      const now = this.#now()
      const floor = current ? this.#opened(JSON.parse(current.document)).prunedBefore : 0
      const { entries, prunedBefore } = await this.#listedRevocations(now, floor)
      const document = createRevocationList({
        version,
        entries,
        prunedBefore,
        issuedAt: now,
        keyServer: this.#identity,
      })
      if (await this.#store.putRevocationList(version, JSON.stringify(document), current?.version ?? 0, this.#now()))
        return document
    }
    throw new SmqttError('ERR_CONFLICT', 'could not publish the revocation list: too many concurrent changes')
  }

  /** Every group whose key it held, written-only ones too: a writer's epoch key opens the group's traffic. */
  async #rekeyKeyedGroups(principal: PrincipalRecord, reason: string): Promise<void> {
    for (const group of this.#policy.keyedGroups(principal))
      await this.rotateGroup(group, { immediate: true, actor: 'system', reason })
  }

  async #activePrincipals(): Promise<PrincipalRecord[]> {
    return (await this.#store.listPrincipals()).filter((p) => p.status === 'active')
  }
}

/**
 * 16 bytes of SHA-256 over the JSON of `value` (byte arrays as base64url), base64url: a bundle
 * tag, or what tells one broker snapshot's content from the last (KeyServer.brokerSnapshot).
 */
function digest(value: unknown): string {
  return digestJson(contentJson(value))
}

/** The JSON that {@link digest} hashes. */
/**
 * The first second at which a snapshot's reads would answer otherwise with no change logged: an
 * epoch retires, or a revocation ages out of the `listedFor` seconds revoked principals stay
 * listed. A loop, not `Math.min(...)`: a fleet may have revoked more principals in that window
 * than a call takes arguments.
 */
export function snapshotChangesByTimeAt(
  epochs: readonly Pick<EpochRecord, 'retiresAt'>[],
  principals: readonly Pick<PrincipalRecord, 'status' | 'statusChangedAt'>[],
  listedFor: number,
): number {
  let at = Number.POSITIVE_INFINITY
  for (const e of epochs) if (e.retiresAt !== undefined) at = Math.min(at, e.retiresAt)
  for (const p of principals)
    if (p.status === 'revoked' && p.statusChangedAt !== undefined) at = Math.min(at, p.statusChangedAt + listedFor + 1)
  return at
}

/** What a snapshot's content was built from: the same directory, not moved since. */
interface SnapshotSources {
  readonly directory: Directory
  readonly generation: number
  readonly revocations: number
}

const sameSources = (a: SnapshotSources, b: SnapshotSources) =>
  a.directory === b.directory && a.generation === b.generation && a.revocations === b.revocations

/** The broker snapshot's content (issuedAt and tag aside), its digest (the tag), and its JSON's length. */
interface SnapshotContent {
  readonly content: Omit<BrokerSnapshot, 'issuedAt' | 'tag'>
  readonly fingerprint: string
  readonly jsonBytes: number
}

function contentJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    item instanceof Uint8Array ? Buffer.from(item).toString('base64url') : item,
  )
}

function digestJson(json: string): string {
  return Buffer.from(sha256(new TextEncoder().encode(json)).subarray(0, 16)).toString('base64url')
}

/**
 * Revocations this much older than a list's watermark are still listed: a bundle a process built
 * from a directory up to DIRECTORY_TTL_SECONDS old, or stamped by a process whose clock is a
 * little ahead of the revoking one's, may list a writer revoked slightly before its issuedAt.
 */
const REVOCATION_SLACK_SECONDS = 60
/** Most JSON bytes of entries in one revocation list: ~680 KiB signed and base64url, under the clients' 1 MiB. */
const MAX_LISTED_REVOCATION_BYTES = 512 * 1024
/** Enough rows to fill MAX_LISTED_REVOCATION_BYTES with the shortest entries (41 bytes), and one more. */
const MAX_LISTED_REVOCATIONS_FETCHED = Math.ceil(MAX_LISTED_REVOCATION_BYTES / 41) + 1

function sortByKid<T extends { kid: number }>(entries: T[]): T[] {
  return entries.sort((a, b) => a.kid - b.kid)
}

/** See KeyServer.#currentDirectory. */
const DIRECTORY_TTL_SECONDS = 2
/** A process further behind than this rebuilds its directory whole anyway (see Directory.follow). */
const DIRECTORY_CHANGES_KEPT = 10_000
/** Most holders KeyServer.principalsHoldingKeys reads one by one; past it, the whole fleet in one read. */
const FEW_HOLDERS = 1_000
/** See KeyServer.bundleFor. */
const BUNDLE_REUSE_SECONDS = 60
const MAX_CACHED_BUNDLES = 10_000
const MAX_BUNDLE_ISSUED_AT = 100_000

function principalRateLimited(): SmqttError {
  return new SmqttError('ERR_RATE_LIMITED', 'too many requests from this principal; retry in a few seconds')
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x))
}
