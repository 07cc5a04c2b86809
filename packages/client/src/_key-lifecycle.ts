// The keys a secure client holds, and how they stay current: the key bundle and revocation list
// (stored, fetched, pushed), scheduled refreshes with back-off, refreshes for unknown epochs and
// unknown writers, and the freshness poll. Knows no MQTT client: the secure client hands it
// pushed documents and is told when keys change or the key server fails.
import {
  type Identity,
  MAX_RECORD_WRITERS,
  type NonExtractableIdentity,
  type OpenedKeyBundle,
  openKeyBundle,
  openKeyBundleWithAgreement,
  openWriterRecord,
  RevocationList,
  SmqttError,
} from '@smqtt/core'
import { type FreshnessEvent, FreshnessMonitor, type FreshnessStats } from './_freshness.js'
import type { KeyServerClient } from './key-server-client.js'
import { Keyring } from './keyring.js'
import type { ClientStorage } from './storage.js'

/** Where a bundle in use came from. */
export type KeySource = 'fetch' | 'push' | 'storage'

/** What {@link KeyLifecycle} needs from its client. */
export interface KeyLifecycleOptions {
  readonly identity: Identity | NonExtractableIdentity
  /** The key server's Ed25519 key, pinned at enrollment. */
  readonly keyServerPublicKey: Uint8Array
  readonly keyServer: KeyServerClient
  readonly storage: ClientStorage
  /** Unix seconds. */
  readonly now: () => number
  /** SecureOptions.freshnessIntervalSeconds and maxStalenessSeconds. */
  readonly freshnessIntervalSeconds?: number
  readonly maxStalenessSeconds?: number
  /** Updated by the freshness poll. */
  readonly freshnessStats: FreshnessStats
  readonly onKeysUpdated: (info: { issuedAt: number; notAfter: number; source: KeySource }) => void
  readonly onKeyServerError: (error: Error) => void
  readonly onFreshness: (event: FreshnessEvent) => void
}

/** A message under an unknown epoch triggers a key refresh at most this often. */
const EPOCH_REFRESH_INTERVAL_MS = 5_000
const MAX_TIMER_MS = 2 ** 31 - 1
const MAX_RETRY_MS = 60_000
/** Freshness poll defaults (SecureOptions.freshnessIntervalSeconds, maxStalenessSeconds) and their upper limit. */
const DEFAULT_FRESHNESS_INTERVAL_SECONDS = 30 // maxStalenessSeconds defaults to twice it: 60 s
export const MAX_FRESHNESS_SECONDS = 86_400

const bundleKey = (id: string) => `bundle:${id}`
const revocationsKey = (id: string) => `revocations:${id}`

/** The key bundle and revocation list in use, kept current. */
export class KeyLifecycle {
  readonly keyring: Keyring
  readonly #o: KeyLifecycleOptions
  readonly #revocations = new RevocationList()
  /** Bundles are opened and applied one after another, in arrival order (opening may be async). */
  #applying: Promise<unknown> = Promise.resolve()
  #refreshing: Promise<void> | undefined
  #refreshTimer: ReturnType<typeof setTimeout> | undefined
  #retryMs = 1_000
  #lastEpochRefresh = Number.NEGATIVE_INFINITY
  #stopped = false
  // Polls the key server over HTTPS (never through the broker) so that a revocation, or a re-key
  // that leaves a revoked principal behind, reaches this client within the poll interval even
  // when the broker drops every push; says so when it cannot. See _freshness.ts, and SECURITY.md
  // "Revocation freshness" for the bound.
  readonly freshness: FreshnessMonitor
  /** Tag of the bundle held, as the key server named it with the bundle; undefined when unknown (stored, pushed). */
  #bundleTag: string | undefined
  /** ETag of the last freshness answer that what is held matched, sent back as If-None-Match. */
  #freshEtag: string | undefined

  /** Validates the freshness options (RangeError) before anything is started. */
  constructor(options: KeyLifecycleOptions) {
    this.#o = options
    this.keyring = new Keyring(options.now, (issuedAt) => this.#revocations.coversBundleIssuedAt(issuedAt))
    this.freshness = this.#freshnessMonitor(options)
  }

  // Asked when an envelope is begun and again when it is finished. A bundle issued before the
  // revocation list's watermark may list a writer revoked and since pruned from the list: its
  // keys are not used until a newer bundle comes (issue 14, cliff 1).
  readonly isRevoked = (kid: number): boolean => {
    const issuedAt = this.keyring.issuedAt
    if (issuedAt >= 0 && !this.#revocations.coversBundleIssuedAt(issuedAt))
      throw new SmqttError('ERR_BUNDLE_EXPIRED', 'the key bundle held predates the revocation list; fetching a new one')
    return this.#revocations.isRevokedKid(kid)
  }

  /** Whether envelopes of (group, epoch) can still be opened; everything while no bundle is loaded yet. */
  holds(group: number, epoch: number): boolean {
    return this.keyring.issuedAt < 0 || this.keyring.epochKey(group, epoch) !== undefined
  }

  /** Fetches the key bundle and revocation list now (coalesced with a refresh in flight). */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#fetchKeys().finally(() => {
      this.#refreshing = undefined
    })
    return this.#refreshing
  }

  /**
   * Loads the stored revocation list and bundle (an expired or unreadable one is not used);
   * true when a bundle was stored, i.e. this client ran before.
   */
  async loadStored(): Promise<boolean> {
    let bundle: string | undefined
    try {
      const revocations = await this.#o.storage.get(revocationsKey(this.#o.identity.id))
      if (revocations)
        this.#revocations.accept(JSON.parse(revocations), { keyServerPublicKey: this.#o.keyServerPublicKey })
      bundle = await this.#o.storage.get(bundleKey(this.#o.identity.id))
      if (bundle) await this.applyBundle(JSON.parse(bundle), 'storage')
    } catch {
      // An expired or unreadable stored bundle is simply not used.
    }
    return bundle !== undefined
  }

  /**
   * The first fetch: retried with back-off until it succeeds, then `fetched` runs. With a stored
   * bundle to work from, the first failure ends the wait and refreshes go on in the background.
   */
  async fetchUntilLoaded(fetched: () => Promise<void>): Promise<void> {
    for (;;) {
      try {
        await this.refresh()
        await fetched()
        return
      } catch (err) {
        this.failed(err)
        if (this.#stopped) return
        if (this.keyring.issuedAt >= 0) {
          // Work from the stored bundle while the key server is down, and keep trying.
          this.#scheduleRefresh(this.#retryMs)
          return
        }
        await new Promise((resolve) => this.#timer(this.#retryMs, resolve))
        this.#retryMs = Math.min(this.#retryMs * 2, MAX_RETRY_MS)
      }
    }
  }

  /** Applies a signed revocation list if newer; throws on one that is not the key server's. */
  applyRevocations(signed: unknown): void {
    if (!this.#revocations.accept(signed, { keyServerPublicKey: this.#o.keyServerPublicKey })) return
    this.#persist(revocationsKey(this.#o.identity.id), signed)
    // The bundle held predates the new watermark: it is refused until a newer one is fetched.
    if (this.keyring.issuedAt >= 0 && !this.#revocations.coversBundleIssuedAt(this.keyring.issuedAt))
      this.refresh().catch((err: unknown) => this.failed(err))
  }

  /**
   * Verifies a signed bundle under the pinned key and makes it current if strictly newer.
   * Rejects with `ERR_BUNDLE_ROLLBACK` for an older one, or another one of the same second
   * (Keyring.apply). Bundles are applied in the order they arrived, even when opening one takes
   * WebCrypto's promises: a fetched bundle cannot overtake a newer push and be refused.
   */
  applyBundle(signed: unknown, source: KeySource): Promise<void> {
    const applying = this.#applying.then(async () => this.#useBundle(await this.#openBundle(signed), signed, source))
    this.#applying = applying.catch(() => {})
    return applying
  }

  /**
   * Learns writers the bundle does not list: their signed records, by key id (a bundle lists a
   * bounded number of writers per group); a key server without them (or one that refused) gets
   * the usual bundle refresh. See _unknown-senders.ts.
   */
  async learnWriters(wanted: readonly { group: number; sender: number }[]): Promise<void> {
    try {
      await this.#fetchWriters(wanted)
    } catch {
      // One already in flight may have asked before the new writer was added: this one asks after it.
      await this.#refreshing?.catch(() => {})
      await this.refresh().catch((err: unknown) => {
        this.failed(err)
        throw err
      })
    }
  }

  /** One refresh for an unknown epoch per interval: a flood of bogus epochs cannot hammer the key server. */
  mayRefreshForEpoch(): boolean {
    if (Date.now() - this.#lastEpochRefresh < EPOCH_REFRESH_INTERVAL_MS) return false
    this.#lastEpochRefresh = Date.now()
    return true
  }

  /** Reports a key server failure; the keys held stay in use. */
  failed(err: unknown): void {
    this.#o.onKeyServerError(err instanceof Error ? err : new Error(String(err)))
  }

  /** No more refreshes or polls. */
  stop(): void {
    this.#stopped = true
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer)
    this.freshness.stop()
  }

  async #fetchKeys(): Promise<void> {
    const [{ bundle, tag }, revocations] = await Promise.all([
      this.#o.keyServer.bundleWithTag(),
      this.#o.keyServer.revocations(),
    ])
    // The bundle first: the new list's watermark may refuse the bundle held, never the new one.
    await this.applyBundle(bundle, 'fetch')
    if (revocations !== null && revocations !== undefined) this.applyRevocations(revocations)
    this.#bundleTag = tag // only once applied (or the same as held): never a tag newer than the keys
    this.#retryMs = 1_000
  }

  #openBundle(signed: unknown): OpenedKeyBundle | Promise<OpenedKeyBundle> {
    const options = { keyServerPublicKey: this.#o.keyServerPublicKey, now: this.#o.now() }
    const recipient = this.#o.identity
    return 'signingSeed' in recipient
      ? openKeyBundle(signed, { ...options, recipient })
      : openKeyBundleWithAgreement(signed, { ...options, recipient })
  }

  #useBundle(bundle: OpenedKeyBundle, signed: unknown, source: KeySource): void {
    // Issued before the revocation list's watermark: it may list a writer revoked and pruned since.
    if (!this.#revocations.coversBundleIssuedAt(bundle.issuedAt))
      throw new SmqttError('ERR_BUNDLE_EXPIRED', 'the key bundle was issued before the revocation list’s watermark')
    const applied = this.keyring.apply(bundle)
    if (applied && source !== 'storage') this.#persist(bundleKey(this.#o.identity.id), signed)
    if (applied && source !== 'fetch') this.#bundleTag = undefined // tag unknown: the next poll fetches
    // Refresh when three quarters of the bundle's life has passed; also when the bundle held was
    // fetched again, so a refresh that found nothing new still schedules the next one.
    if (applied || source === 'fetch') {
      const remaining = bundle.notAfter - this.#o.now()
      this.#scheduleRefresh(Math.max(1, Math.floor(remaining - (bundle.notAfter - bundle.issuedAt) / 4)) * 1000)
    }
    if (applied) this.#o.onKeysUpdated({ issuedAt: bundle.issuedAt, notAfter: bundle.notAfter, source })
  }

  #persist(key: string, signed: unknown): void {
    this.#o.storage.set(key, JSON.stringify(signed)).catch((err: unknown) => this.failed(err))
  }

  #scheduleRefresh(delayMs: number): void {
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer)
    this.#refreshTimer = this.#timer(delayMs, () => {
      this.refresh().catch((err: unknown) => {
        this.failed(err)
        this.#retryMs = Math.min(this.#retryMs * 2, MAX_RETRY_MS)
        this.#scheduleRefresh(this.#retryMs)
      })
    })
  }

  #timer(delayMs: number, run: (value?: unknown) => void): ReturnType<typeof setTimeout> | undefined {
    if (this.#stopped) return undefined
    const timer = setTimeout(run, Math.min(delayMs, MAX_TIMER_MS))
    // Key refreshes alone must not keep a Node process alive.
    ;(timer as { unref?: () => void }).unref?.()
    return timer
  }

  /** Fetches, verifies and adds the records of `wanted` writers (by group, up to MAX_RECORD_WRITERS per request). */
  async #fetchWriters(wanted: readonly { group: number; sender: number }[]): Promise<void> {
    const byGroup = new Map<number, number[]>()
    for (const { group, sender } of wanted) byGroup.set(group, [...(byGroup.get(group) ?? []), sender])
    for (const [group, kids] of byGroup)
      for (let i = 0; i < kids.length; i += MAX_RECORD_WRITERS) {
        const signed = await this.#o.keyServer.writers(group, kids.slice(i, i + MAX_RECORD_WRITERS))
        const record = openWriterRecord(signed, {
          keyServerPublicKey: this.#o.keyServerPublicKey,
          reader: this.#o.identity.id,
          now: this.#o.now(),
        })
        if (record.group === group) this.keyring.addWriters(record)
      }
  }

  #freshnessMonitor(options: KeyLifecycleOptions): FreshnessMonitor {
    const interval = options.freshnessIntervalSeconds ?? DEFAULT_FRESHNESS_INTERVAL_SECONDS
    const maxStaleness = options.maxStalenessSeconds ?? 2 * interval
    if (!(interval > 0 && interval <= MAX_FRESHNESS_SECONDS))
      throw new RangeError(`freshnessIntervalSeconds must be in (0, ${MAX_FRESHNESS_SECONDS}]`)
    if (!(maxStaleness >= interval && maxStaleness <= MAX_FRESHNESS_SECONDS))
      throw new RangeError(`maxStalenessSeconds must be in [freshnessIntervalSeconds, ${MAX_FRESHNESS_SECONDS}]`)
    return new FreshnessMonitor({
      intervalMs: interval * 1000,
      maxStalenessMs: maxStaleness * 1000,
      now: options.now,
      stats: options.freshnessStats,
      check: () => this.#checkFreshness(),
      onEvent: (event) => options.onFreshness(event),
      onError: (err) => this.failed(err),
    })
  }

  /**
   * One poll. A 304 confirms what is held. Otherwise a changed bundle tag fetches keys and
   * revocations (writers then seal under the newest epoch: Keyring.sealingKey), a newer
   * revocation list version only the list; confirmed once what is held matches the answer.
   */
  async #checkFreshness(): Promise<boolean> {
    // A bundle pushed or loaded since (tag unknown) is compared afresh: no If-None-Match.
    const answer = await this.#o.keyServer.freshness(this.#bundleTag === undefined ? undefined : this.#freshEtag)
    if (answer === undefined) return true
    if (answer.bundle !== this.#bundleTag) await this.refresh()
    else if (answer.revocations > (this.#revocations.version ?? 0)) {
      const signed = await this.#o.keyServer.revocations()
      if (signed !== null && signed !== undefined) this.applyRevocations(signed)
    }
    const current = answer.bundle === this.#bundleTag && answer.revocations <= (this.#revocations.version ?? 0)
    // Behind after all (the key server moved on meanwhile): no ETag, so the next poll compares again.
    this.#freshEtag = current ? answer.etag : undefined
    return current
  }
}
