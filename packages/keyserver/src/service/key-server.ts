// The key server's domain: who is enrolled, which policy holds, which epoch keys exist, who
// is revoked. The HTTP layer and the CLI call this; nothing here knows about HTTP.
//
// KeyServer is a façade: each job lives in its own module (enrollment, request
// authentication, policy updates, rotation, bundles, broker snapshots, revocation, service
// principals), and they share one KeyServerContext (store, master key, identity, clock, policy,
// directory, change listeners).
import type { EnrollmentRequest, Identity, SignedDocument } from '@smqtt/core'
import { type Logger, pino } from 'pino'
import type { MasterKey } from '../master-key.js'
import type { CertificateAuthority } from '../pki/certificate-authority.js'
import type { EpochRecord, KeyStore, PrincipalRecord } from '../store/key-store.js'
import { AuditLog } from './audit-log.js'
import { BrokerSnapshots } from './broker-snapshots.js'
import { Bundles } from './bundles.js'
import { type KeyServerChange, KeyServerContext } from './context.js'
import { Enrollment, type EnrollmentResult } from './enrollment.js'
import { FailedAuthentications } from './failed-auth.js'
import { EMPTY_POLICY, PolicyState } from './policy-state.js'
import { PolicyUpdates } from './policy-updates.js'
import { getPrincipal, principalsHoldingKeys, reserveSequence } from './principals.js'
import { RequestAuthentication } from './request-authentication.js'
import { Revocation } from './revocation.js'
import { Rotation } from './rotation.js'
import { sealedIdentity } from './sealed-identity.js'
import { ServicePrincipals } from './service-principals.js'
import { DEFAULT_SETTINGS, type KeyServerSettings } from './settings.js'

export { snapshotChangesByTimeAt } from './broker-snapshots.js'
export type { KeyServerChange } from './context.js'
export { type EnrollmentResult, PRINCIPAL_ID_PATTERN } from './enrollment.js'
export { DEFAULT_SETTINGS, type KeyServerSettings } from './settings.js'
export type { EnrollmentRequest }

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

const IDENTITY_SECRET = 'keyserver.identity'

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
  readonly #ctx: KeyServerContext
  readonly #enrollment: Enrollment
  readonly #requests: RequestAuthentication
  readonly #policyUpdates: PolicyUpdates
  readonly #rotation: Rotation
  readonly #bundles: Bundles
  readonly #snapshots: BrokerSnapshots
  readonly #revocation: Revocation
  readonly #servicePrincipals: ServicePrincipals

  private constructor(options: KeyServerOptions, identity: Identity, policy: PolicyState) {
    this.settings = { ...DEFAULT_SETTINGS, ...options.settings }
    const logger = options.logger ?? pino({ level: 'silent' })
    const now = options.now ?? (() => Math.floor(Date.now() / 1000))
    this.audit = new AuditLog(options.store, logger, now)
    this.failedAuth = new FailedAuthentications(this.audit, {
      perAddressPerMinute: this.settings.failedAuthPerAddressPerMinute,
      now,
    })
    this.#ctx = new KeyServerContext({
      settings: this.settings,
      store: options.store,
      masterKey: options.masterKey,
      ca: options.certificateAuthority,
      logger,
      now,
      identity,
      audit: this.audit,
      failedAuth: this.failedAuth,
      policy,
    })
    this.#enrollment = new Enrollment(this.#ctx)
    this.#requests = new RequestAuthentication(this.#ctx)
    this.#rotation = new Rotation(this.#ctx)
    this.#policyUpdates = new PolicyUpdates(this.#ctx, this.#rotation)
    this.#bundles = new Bundles(this.#ctx)
    this.#snapshots = new BrokerSnapshots(this.#ctx)
    this.#revocation = new Revocation(this.#ctx, this.#rotation)
    this.#servicePrincipals = new ServicePrincipals(this.#ctx)
  }

  /** Loads (or on first start creates) the key server's signing identity and the policy. */
  static async open(options: KeyServerOptions): Promise<KeyServer> {
    const { store, masterKey } = options
    const identity = await sealedIdentity(store, masterKey, IDENTITY_SECRET, 'keyserver')
    const stored = await store.getPolicy()
    const policy = stored ? PolicyState.fromDocument(stored.version, stored.document) : new PolicyState(0, EMPTY_POLICY)
    const server = new KeyServer(options, identity, policy)
    await server.ensureEpochs()
    return server
  }

  /** The key server's Ed25519 public key, which clients pin at enrollment. */
  get publicKey(): Uint8Array {
    return this.#ctx.identity.signingKey
  }

  get policy(): PolicyState {
    return this.#ctx.policy
  }

  /** Subscribes to changes (for push delivery); returns the unsubscribe function. */
  onChange(listener: (change: KeyServerChange) => void): () => void {
    return this.#ctx.onChange(listener)
  }

  // ---- enrollment (enrollment.ts) ------------------------------------------------------------

  /** Issues a one-time enrollment token bound to an id and roles. The token is shown once. */
  createEnrollmentToken(
    request: { principalId: string; roles: readonly string[]; ttlSeconds?: number },
    actor: string,
  ): Promise<{ token: string; expiresAt: number }> {
    return this.#enrollment.createEnrollmentToken(request, actor)
  }

  /** Enrolls a device (see Enrollment.enroll: proof, token, certificate, one store transaction). */
  enroll(request: EnrollmentRequest, remoteAddress: string): Promise<EnrollmentResult> {
    return this.#enrollment.enroll(request, remoteAddress)
  }

  signedPrincipalRecord(principal: PrincipalRecord): SignedDocument {
    return this.#enrollment.signedPrincipalRecord(principal)
  }

  // ---- device authentication (request-authentication.ts) -------------------------------------

  /** Authenticates a signed request (see RequestAuthentication.authenticateRequest). */
  authenticateRequest(
    headers: Readonly<Record<string, string | string[] | undefined>>,
    request: { method: string; path: string; body: Uint8Array },
    remoteAddress: string,
  ): Promise<PrincipalRecord> {
    return this.#requests.authenticateRequest(headers, request, remoteAddress)
  }

  // ---- policy (policy-updates.ts) --------------------------------------------------------------

  /** Replaces the policy, re-keying groups that lose a member (see PolicyUpdates.setPolicy). */
  setPolicy(
    document: unknown,
    actor: string,
    expectedVersion?: number,
  ): Promise<{ version: number; warnings: string[] }> {
    return this.#policyUpdates.setPolicy(document, actor, expectedVersion)
  }

  /** Reloads the policy from the store (another key server process may have changed it). */
  reloadPolicy(): Promise<void> {
    return this.#ctx.reloadPolicy()
  }

  // ---- epochs and rotation (rotation.ts) -----------------------------------------------------

  /** Gives every group of the policy a live epoch; retires those of groups no longer in it. */
  ensureEpochs(): Promise<void> {
    return this.#rotation.ensureEpochs()
  }

  /** Creates the group's next epoch, scheduled or immediate (see Rotation.rotateGroup). */
  rotateGroup(group: number, options: { immediate: boolean; actor: string; reason: string }): Promise<EpochRecord> {
    return this.#rotation.rotateGroup(group, options)
  }

  /** The periodic job: scheduled rotations and deletion of what no one needs any more. */
  tick(): Promise<void> {
    return this.#rotation.tick()
  }

  // ---- bundles, freshness and writer records (bundles.ts) ------------------------------------

  /** The signed key bundle of a principal (see Bundles.bundleFor). */
  bundleFor(principal: PrincipalRecord): Promise<SignedDocument> {
    return this.#bundles.bundleFor(principal)
  }

  /** A signed record of some writers of `group`, for `reader` (see Bundles.writerRecordFor). */
  writerRecordFor(reader: PrincipalRecord, group: number, kids: readonly number[]): Promise<SignedDocument> {
    return this.#bundles.writerRecordFor(reader, group, kids)
  }

  /** The revocation list's version and this principal's bundle tag (see Bundles.freshnessFor). */
  freshnessFor(principal: PrincipalRecord): Promise<{ revocations: number; bundle: string }> {
    return this.#bundles.freshnessFor(principal)
  }

  /** The bundle with its tag, the tag taken first (see Bundles.bundleWithTag). */
  bundleWithTag(principal: PrincipalRecord): Promise<{ bundle: SignedDocument; tag: string }> {
    return this.#bundles.bundleWithTag(principal)
  }

  // ---- principals (principals.ts, service-principals.ts) -------------------------------------

  /** The identity of one of the key server's own principals, created on first use. */
  servicePrincipal(id: string, roles: readonly string[]): Promise<{ identity: Identity; principal: PrincipalRecord }> {
    return this.#servicePrincipals.servicePrincipal(id, roles)
  }

  /** Active principals holding keys of any of `groups`, readers first (see principals.ts). */
  principalsHoldingKeys(groups?: readonly number[]): Promise<PrincipalRecord[]> {
    return principalsHoldingKeys(this.#ctx, groups)
  }

  listPrincipals(): Promise<PrincipalRecord[]> {
    return this.#ctx.store.listPrincipals()
  }

  getPrincipal(id: string): Promise<PrincipalRecord> {
    return getPrincipal(this.#ctx.store, id)
  }

  /** Reserves the next `size` envelope sequence numbers for a run of `principal` (see principals.ts). */
  reserveSequence(principal: PrincipalRecord, atLeast: number, size: number): Promise<{ start: number; end: number }> {
    return reserveSequence(this.#ctx.store, principal, atLeast, size)
  }

  // ---- brokers (broker-snapshots.ts) -----------------------------------------------------------

  /** The signed snapshot broker plugins enforce from: policy, directory, live epochs (no keys). */
  brokerSnapshot(): Promise<SignedDocument> {
    return this.#snapshots.brokerSnapshot()
  }

  /**
   * The snapshot with its tag; a signed notice when the tag is `knownTag`; with `deltas`, a
   * signed delta from `knownTag` when that content is recent and the change small.
   */
  brokerSnapshotUnless(
    knownTag: string | undefined,
    options: { readonly deltas?: boolean } = {},
  ): Promise<
    { tag: string } & ({ snapshot: SignedDocument } | { notice: SignedDocument } | { delta: SignedDocument })
  > {
    return this.#snapshots.brokerSnapshotUnless(knownTag, options)
  }

  /** What to push to brokers after a change: the snapshot while small enough, else a notice. */
  brokerSnapshotPush(
    maxInlineBytes: number,
  ): Promise<{ readonly snapshot: SignedDocument } | { readonly notice: SignedDocument }> {
    return this.#snapshots.brokerSnapshotPush(maxInlineBytes)
  }

  // ---- revocation (revocation.ts) ------------------------------------------------------------

  /** Disables a principal (reversible by an operator in the store; not published as revoked). */
  disablePrincipal(id: string, actor: string): Promise<void> {
    return this.#revocation.disablePrincipal(id, actor)
  }

  /** Revokes a principal, publishes the list and re-keys its groups; safe to repeat (see Revocation). */
  revokePrincipal(id: string, actor: string): Promise<SignedDocument> {
    return this.#revocation.revokePrincipal(id, actor)
  }

  /** The deployment CA's CRL (DER), or undefined when this key server has no CA. */
  certificateRevocationList(): Promise<Uint8Array | undefined> {
    return this.#revocation.certificateRevocationList()
  }

  /** The latest signed revocation list, if any principal was ever revoked. */
  revocationList(): Promise<SignedDocument | undefined> {
    return this.#revocation.revocationList()
  }
}
