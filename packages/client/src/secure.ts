import {
  type AsyncEnvelopeSigner,
  createAsyncEnvelopeSigner,
  createEnvelopeSigner,
  type EnvelopeSigner,
  type Identity,
  isControlTopic,
  isSmqttError,
  type NonExtractableIdentity,
  principalControlTopic,
  ReplayWindow,
  type ReplayWindowOptions,
  type SequenceCounter,
  type SmqttErrorCode,
  type SmqttErrorDetails,
  sealEnvelope,
  sealEnvelopeAsync,
  topicMatches,
} from '@smqtt/core'
import type {
  ClientSubscribeCallback,
  IClientPublishOptions,
  IClientSubscribeOptions,
  IClientSubscribeProperties,
  IClientUnsubscribeProperties,
  IConnackPacket,
  IDisconnectPacket,
  IPublishPacket,
  ISubscriptionGrant,
  ISubscriptionMap,
  MqttClient,
  Packet,
  PacketCallback,
} from 'mqtt'
import { acquireVerifier } from '#default-verifier'
import { fromUtf8, toWire, utf8 } from './_bytes.js'
import { manageLogin } from './_connect-login.js'
import { TypedEmitter } from './_emitter.js'
import type { FreshnessEvent, FreshnessStats } from './_freshness.js'
import { holdIdentity } from './_identity-lock.js'
import { KeyLifecycle, type KeySource, MAX_FRESHNESS_SECONDS } from './_key-lifecycle.js'
import { type PublishProperties, propertiesToBind } from './_publish-properties.js'
import { type HeldMessage, ReceiveLine } from './_receive-line.js'
import { replayKey, SavedReplayWindow } from './_replay-state.js'
import { sequenceCounterFor } from './_sequence.js'
import { UnknownSenders } from './_unknown-senders.js'
import { KeyServerClient, type KeyServerConnection } from './key-server-client.js'
import type { Keyring } from './keyring.js'
import type { ClientStorage } from './storage.js'
import type { SignatureVerifier } from './verifier.js'

/** Options of {@link secure}. */
export interface SecureOptions {
  /**
   * This principal's identity (from {@link enroll} / {@link loadEnrollment}): raw keys, or
   * non-extractable WebCrypto keys (signing and opening bundles then take a promise each).
   */
  readonly identity: Identity | NonExtractableIdentity
  /** The envelope key id the key server assigned at enrollment. */
  readonly kid: number
  /** The key server, and its Ed25519 key pinned at enrollment. */
  readonly keyServer: KeyServerConnection & { readonly keyServerPublicKey: Uint8Array }
  /** Keeps sequence reservations, the last bundle and the receive replay window across restarts. */
  readonly storage: ClientStorage
  /** Topic filters whose payloads travel unencrypted (default none). A key group always wins. */
  readonly plaintextTopics?: readonly string[]
  /** Replay window and freshness limits for received envelopes (`maxSenders` defaults to 10,000 here). */
  readonly replay?: ReplayWindowOptions
  /**
   * Check signatures on a worker thread shared by the process's clients (Node only; default true
   * on a machine with two or more cores). Bursts are verified there, a message here and there on
   * the event loop; delivery order is kept either way.
   */
  readonly verifyOnWorker?: boolean
  /** Unix seconds; injectable for tests. */
  readonly now?: () => number
  /**
   * Seconds between polls of the key server's `GET /v1/freshness` (default 30; each wait is
   * 80 to 100 % of it). A changed revocation list or key bundle is fetched at once: with the
   * request timeout, this bounds how long a revoked sender stays accepted, and how long this
   * client seals under an epoch a revoked principal held, even if the broker drops every push.
   */
  readonly freshnessIntervalSeconds?: number
  /**
   * Past this many seconds without a poll that confirmed the keys held (default twice the
   * interval: 60), the `freshness` event fires with `fresh: false` and `stats.freshness.stale`
   * turns true.
   */
  readonly maxStalenessSeconds?: number
  /**
   * Log in to an SMQTT broker with a CONNECT password that proves this principal's key
   * (username = client id = principal id), a fresh one for every connection attempt, when the
   * mqtt.js client has no username, password or client certificate of its own (default true).
   * Call secure() in the tick mqtt.connect() returned in, as `secure(mqtt.connect(…), …)` does:
   * the first attempt, built by mqtt.js without credentials, is then restarted before anything
   * is sent. false: leave the login to the mqtt.js options (e.g. a broker that is not SMQTT's).
   */
  readonly connectPassword?: boolean
  /**
   * Learning writers enrolled after the keys were loaded, over any broker (beside a third-party
   * broker nothing pushes a new bundle), and writers of groups too large for a bundle to list.
   * An envelope whose sender the bundle does not list is held while the sender's signed writer
   * record is fetched by key id, then opened; still unknown: `ERR_UNKNOWN_SENDER`.
   * Forged sender ids cost the key server at most one request per `refreshIntervalSeconds`.
   */
  readonly unknownSenders?: {
    /** At most one refresh for unknown senders per this many seconds (default 5). */
    readonly refreshIntervalSeconds?: number
    /** A sender still unknown after a refresh triggers none for this many seconds (default 60); refused at once meanwhile. */
    readonly quietSeconds?: number
    /** Envelopes held at most while a refresh is awaited (default 256, and 16 MiB); beyond it, refused at once. */
    readonly maxHeld?: number
  }
}

/** Options of `publish` and {@link SecureClient.publishAsync}: mqtt.js's, plus SMQTT's. */
export interface SecurePublishOptions extends IClientPublishOptions {
  /**
   * Bind the MQTT 5 properties in `properties` into the envelope's signature: content type,
   * response topic and correlation data (each bound as absent when not given, so nobody can add
   * one) and every user property given. They travel as ordinary MQTT 5 properties, in clear;
   * receivers get them in `info.verifiedProperties`, and a broker that alters, strips, reorders
   * or injects among them gets the message refused. Needs an mqtt.js client connected with
   * `protocolVersion: 5` (else a TypeError). Default false: nothing bound, all unsigned.
   */
  readonly bindProperties?: boolean
}

export type { PublishProperties }

/** What a verified message carries besides its plaintext. */
export type MessageInfo =
  | {
      readonly encrypted: true
      /** The verified sender's principal id. */
      readonly sender: string
      /** The sender's envelope key id. */
      readonly kid: number
      /** Delivered from the broker's retained store, and marked retained by the sender itself. */
      readonly retained: boolean
      readonly group: number
      readonly epoch: number
      readonly seq: number
      /** The sender's clock at sending, unix seconds. */
      readonly sentAt: number
      /**
       * The MQTT 5 properties the sender bound (`bindProperties`), verified like the payload;
       * `{}` when it bound none. Among these, the response topic and correlation data of a
       * command can be trusted.
       */
      readonly verifiedProperties: PublishProperties
      /** Every other property of the packet: nobody vouches for these (the broker may have set them). */
      readonly unsignedProperties: PublishProperties
      readonly packet: IPublishPacket
    }
  | {
      /** A message on a `plaintextTopics` topic: nobody vouches for its sender or content. */
      readonly encrypted: false
      readonly sender: undefined
      readonly kid: undefined
      readonly retained: boolean
      /** Always `{}`: nothing on a plaintext topic is verified. */
      readonly verifiedProperties: PublishProperties
      readonly unsignedProperties: PublishProperties
      readonly packet: IPublishPacket
    }

/** A message refused by the client: it never reached `message`. */
export interface SecurityErrorEvent {
  readonly code: SmqttErrorCode
  readonly topic: string
  readonly message: string
  /** The error's `details` (group, epoch, sender key id), for the codes that carry them (docs/errors.md). */
  readonly details?: SmqttErrorDetails
}

/** Counters, for metrics. */
export interface SecureClientStats {
  /** Application messages received from the broker (control messages excluded). */
  received: number
  delivered: number
  rejected: Partial<Record<SmqttErrorCode, number>>
  /** Control-topic messages: bundles and revocation lists applied, anything else ignored. */
  control: { applied: number; ignored: number }
  /** The freshness poll: last confirmation, whether it is overdue, polls answered and failed. */
  freshness: FreshnessStats
}

/** The events of a {@link SecureClient}: mqtt.js's, with plaintext messages, plus SMQTT's own. */
export interface SecureClientEvents {
  connect: (packet: IConnackPacket) => void
  /**
   * A verified message. `payload` is what mqtt.js delivers: a `Buffer` on Node (so
   * `payload.toString()` is the UTF-8 text), mqtt.js's bundled Buffer polyfill in browsers; both
   * are `Uint8Array`s.
   */
  message: (topic: string, payload: Buffer, info: MessageInfo) => void
  securityError: (event: SecurityErrorEvent) => void
  /** A new key bundle is in use. */
  keysUpdated: (info: { readonly issuedAt: number; readonly notAfter: number; readonly source: KeySource }) => void
  /** The key server could not be reached or refused; the client keeps working from its keys. */
  keyServerError: (error: Error) => void
  /**
   * The client could not confirm with the key server, for longer than `maxStalenessSeconds`,
   * that its revocation list and keys are current (`fresh: false`; a revoked sender may still
   * be accepted), or it could again (`fresh: true`). Fires on each change only.
   */
  freshness: (event: FreshnessEvent) => void
  /**
   * The replay window could not be saved (messages are still delivered; the next save retries),
   * or its saved state was corrupt or missing: `ERR_REPLAY_STATE_INVALID`, and every envelope
   * sent before the restart (plus the allowed clock skew) is then refused as a replay.
   */
  storageError: (error: Error) => void
  error: (error: Error) => void
  close: () => void
  end: () => void
  reconnect: () => void
  offline: () => void
  disconnect: (packet: IDisconnectPacket) => void
}

/** Called once a publish is done: mqtt.js's callback, with the packet sent or the error. */
export type PublishCallback = PacketCallback

const FORWARDED = ['connect', 'close', 'end', 'reconnect', 'offline', 'disconnect', 'error'] as const
/**
 * What a connection being ended reports on its way down: the broker's reset (Aedes destroys the
 * socket on DISCONNECT, so our TLS close_notify meets a reset) and mqtt.js acknowledging, after
 * end(), a message that was already on its way (our control topic's pushes are QoS 1).
 */
const ENDING_NOISE = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_WRITE_AFTER_END', 'ERR_STREAM_DESTROYED'])
const isEndingNoise = (err: unknown) => ENDING_NOISE.has((err as { code?: string } | undefined)?.code ?? '')
/** Windows kept (and saved) for received envelopes, by default; beyond it, the oldest are evicted. */
const MAX_SENDERS = 10_000
/** SecureOptions.unknownSenders defaults, and the bytes held at most. */
const UNKNOWN_SENDER_INTERVAL_SECONDS = 5
const UNKNOWN_SENDER_QUIET_SECONDS = 60
const UNKNOWN_SENDER_MAX_HELD = 256
const UNKNOWN_SENDER_MAX_HELD_BYTES = 16 * 1024 * 1024

/**
 * An mqtt.js client whose payloads are sealed on publish and verified and opened on receipt.
 * Same methods and events as mqtt.js; `message` gets plaintext and the verified sender, and
 * anything that fails verification goes to `securityError` instead. Made by {@link secure}.
 *
 * @example
 * ```ts
 * const client = secure(mqtt.connect(url, { ca }), options)
 * await client.ready
 * console.log(client.stats.rejected, client.keys.groups)
 * ```
 */
export class SecureClient extends TypedEmitter<SecureClientEvents> {
  /** Resolves once keys are loaded (fetched, or from storage while the key server is down). */
  readonly ready: Promise<void>
  readonly stats: SecureClientStats = {
    received: 0,
    delivered: 0,
    rejected: {},
    control: { applied: 0, ignored: 0 },
    freshness: { confirmedAt: null, stale: false, checks: 0, failures: 0 },
  }

  readonly #mqtt: MqttClient
  readonly #identity: Identity | NonExtractableIdentity
  readonly #kid: number
  readonly #keyServerPublicKey: Uint8Array
  readonly #storage: ClientStorage
  readonly #plaintext: readonly string[]
  readonly #now: () => number
  readonly #keyServer: KeyServerClient
  /** The bundle and revocation list held, and their refreshes (_key-lifecycle.ts). */
  readonly #keys: KeyLifecycle
  readonly #keyring: Keyring
  readonly #replay: SavedReplayWindow
  /** Raw keys sign synchronously (the fast path); otherwise #asyncSigner, a WebCrypto key. */
  readonly #signer: EnvelopeSigner | undefined
  readonly #asyncSigner: AsyncEnvelopeSigner | undefined
  readonly #controlTopic: string
  #counter: SequenceCounter | undefined
  /** Lets go of this identity's storage lock (see holdIdentity); set once it is held. */
  #releaseIdentity: (() => Promise<void>) | undefined
  #ended = false
  readonly #verifier: SignatureVerifier | undefined
  /** Envelopes from senders the bundle does not list, waiting for a refresh. */
  readonly #unknownSenders: UnknownSenders<HeldMessage>
  /** Received messages, from packet to `message` or `securityError`, in order (_receive-line.ts). */
  readonly #line: ReceiveLine
  /** Seals run one after another so sequence numbers follow publish order. */
  #sealing: Promise<unknown> = Promise.resolve()

  constructor(mqttClient: MqttClient, options: SecureOptions) {
    super()
    const { identity, kid, keyServer, storage } = options
    const raw = identity && 'signingSeed' in identity
    if (!identity || !(raw ? identity.signingSeed instanceof Uint8Array : typeof identity.sign === 'function'))
      throw new TypeError('identity must be an Identity or a NonExtractableIdentity')
    if (!Number.isInteger(kid) || kid < 0 || kid > 0xffff_ffff) throw new RangeError('kid must be a uint32')
    if (!(keyServer?.keyServerPublicKey instanceof Uint8Array) || keyServer.keyServerPublicKey.length !== 32)
      throw new TypeError('keyServer.keyServerPublicKey must be 32 bytes')
    if (typeof storage?.get !== 'function' || typeof storage.set !== 'function')
      throw new TypeError('storage must be a ClientStorage')
    this.#mqtt = mqttClient
    this.#identity = identity
    this.#kid = kid
    this.#keyServerPublicKey = keyServer.keyServerPublicKey.slice()
    this.#storage = storage
    this.#plaintext = [...(options.plaintextTopics ?? [])]
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000))
    this.#keyServer = new KeyServerClient(keyServer, identity)
    // Validates the freshness options before anything is acquired.
    this.#keys = new KeyLifecycle({
      identity,
      keyServerPublicKey: this.#keyServerPublicKey,
      keyServer: this.#keyServer,
      storage,
      now: this.#now,
      ...(options.freshnessIntervalSeconds !== undefined
        ? { freshnessIntervalSeconds: options.freshnessIntervalSeconds }
        : {}),
      ...(options.maxStalenessSeconds !== undefined ? { maxStalenessSeconds: options.maxStalenessSeconds } : {}),
      freshnessStats: this.stats.freshness,
      onKeysUpdated: (info) => this.emit('keysUpdated', info),
      onKeyServerError: (error) => this.emit('keyServerError', error),
      onFreshness: (event) => this.emit('freshness', event),
    })
    this.#keyring = this.#keys.keyring
    this.#replay = new SavedReplayWindow(new ReplayWindow({ maxSenders: MAX_SENDERS, ...options.replay }), {
      storage,
      key: replayKey(identity.id),
      keep: (group, epoch) => this.#keys.holds(group, epoch),
      onError: (err) => this.emit('storageError', err),
    })
    this.#signer = raw ? createEnvelopeSigner({ kid, seed: identity.signingSeed }) : undefined
    this.#asyncSigner = raw ? undefined : createAsyncEnvelopeSigner({ kid, key: identity })
    this.#controlTopic = principalControlTopic(identity.id)
    this.#verifier = options.verifyOnWorker === false ? undefined : acquireVerifier()
    this.#unknownSenders = this.#unknownSenderHold(options)
    this.#line = this.#receiveLine()

    // Received messages queue behind the first key load.
    this.ready = this.#start()
    // Only a second running copy of the identity rejects `ready`; callers see it through `ready`
    // and every publish, so it must not also surface as an unhandled rejection.
    this.ready.catch(() => {})
    this.#line.enqueue(() => this.ready.catch(() => {}))
    this.#keys.freshness.watch()
    this.ready.then(
      () => this.#keys.freshness.start(),
      () => {},
    ) // polls compare with the keys held

    this.#listen('message', this.#onMessage)
    this.#listen('connect', this.#onConnect)
    for (const event of FORWARDED)
      if (event !== 'connect')
        this.#listen(event, (...args: unknown[]) => {
          // Once ending, these are how a connection ends, not errors for a caller who asked for it.
          if (event === 'error' && this.#ended && isEndingNoise(args[0])) return
          ;(this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args)
        })
    if (mqttClient.connected) this.#prepareConnection()

    // Login: key-proof CONNECT passwords, the first attempt held until the identity's lock is.
    manageLogin(mqttClient, options)
  }

  /** The wrapped mqtt.js client (publishing on it directly bypasses SMQTT). */
  get mqttClient(): MqttClient {
    return this.#mqtt
  }

  get connected(): boolean {
    return this.#mqtt.connected
  }

  /** The key groups and epochs held now, for inspection and tests. */
  get keys(): { issuedAt: number; notAfter: number; groups: { group: number; filter: string; epochs: number[] }[] } {
    return {
      issuedAt: this.#keyring.issuedAt,
      notAfter: this.#keyring.notAfter,
      groups: this.#keyring.groups.map((g) => ({
        group: g.group,
        filter: g.filter,
        epochs: g.epochs.map((e) => e.epoch),
      })),
    }
  }

  /**
   * Seals and publishes. Once keys are loaded, a topic outside every key group (and not
   * plaintext) throws `SmqttError('ERR_NO_KEY_GROUP')` right here, and a group this principal
   * may not write `ERR_FORBIDDEN`; other failures go to `callback`, or to `error` without one.
   */
  publish(topic: string, message: string | Uint8Array, callback?: PublishCallback): this
  publish(topic: string, message: string | Uint8Array, opts?: SecurePublishOptions, callback?: PublishCallback): this
  publish(
    topic: string,
    message: string | Uint8Array,
    optsOrCallback?: SecurePublishOptions | PublishCallback,
    callback?: PublishCallback,
  ): this {
    const opts = typeof optsOrCallback === 'function' ? undefined : optsOrCallback
    const done = typeof optsOrCallback === 'function' ? optsOrCallback : callback
    if (this.#keyring.issuedAt >= 0 && !this.#isPlaintext(topic)) {
      try {
        this.#keyring.sealingKey(topic, this.#kid)
      } catch (err) {
        // No epoch active may be cured by a refresh (publishAsync tries one); the rest cannot.
        if (!isSmqttError(err, 'ERR_UNKNOWN_EPOCH')) throw err
      }
    }
    this.publishAsync(topic, message, opts).then(
      (packet) => done?.(undefined, packet),
      (err: Error) => (done ? done(err) : this.emit('error', err)),
    )
    return this
  }

  /**
   * Seals and publishes; resolves when mqtt.js does (QoS 1/2: once acknowledged).
   *
   * @example
   * ```ts
   * // A command whose answer must go where the sender said: bind response topic and correlation data.
   * await client.publishAsync('home/hall/lock/set', '{"lock":"open"}', {
   *   qos: 1,
   *   bindProperties: true,
   *   properties: { responseTopic: 'home/hall/lock/reply/app-1', correlationData: Buffer.from('c0ffee', 'hex') },
   * })
   * ```
   */
  publishAsync(topic: string, message: string | Uint8Array, opts?: SecurePublishOptions): Promise<Packet | undefined> {
    const payload = typeof message === 'string' ? utf8(message) : message
    if (!(payload instanceof Uint8Array)) throw new TypeError('message must be a string or a Uint8Array')
    let mqttOptions: IClientPublishOptions = opts ?? {}
    if (opts?.bindProperties !== undefined) {
      const { bindProperties, ...rest } = opts
      mqttOptions = rest
      // MQTT 3.1.1 has no properties: binding them there would bind absent ones, silently.
      if (bindProperties === true && this.#mqtt.options.protocolVersion !== 5)
        throw new TypeError('bindProperties needs an MQTT 5 connection (mqtt.js option protocolVersion: 5)')
    }
    const sent = this.#sealing.then(() => this.#seal(topic, payload, opts, true))
    this.#sealing = sent.catch(() => {})
    // Only sealing is serialized; waiting for the broker's acknowledgement is not.
    return sent.then((wire) => this.#mqtt.publishAsync(topic, wire, mqttOptions))
  }

  subscribe(topic: string | string[] | ISubscriptionMap, callback?: ClientSubscribeCallback): this
  subscribe(
    topic: string | string[] | ISubscriptionMap,
    opts?: IClientSubscribeOptions | IClientSubscribeProperties,
    callback?: ClientSubscribeCallback,
  ): this
  subscribe(
    topic: string | string[] | ISubscriptionMap,
    optsOrCallback?: IClientSubscribeOptions | IClientSubscribeProperties | ClientSubscribeCallback,
    callback?: ClientSubscribeCallback,
  ): this {
    if (typeof optsOrCallback === 'function') this.#mqtt.subscribe(topic, optsOrCallback)
    else this.#mqtt.subscribe(topic, optsOrCallback as IClientSubscribeOptions, callback)
    return this
  }

  subscribeAsync(
    topic: string | string[] | ISubscriptionMap,
    opts?: IClientSubscribeOptions | IClientSubscribeProperties,
  ): Promise<ISubscriptionGrant[]> {
    return this.#mqtt.subscribeAsync(topic, opts)
  }

  unsubscribe(topic: string | string[], callback?: PacketCallback): this
  unsubscribe(topic: string | string[], opts?: IClientUnsubscribeProperties, callback?: PacketCallback): this
  unsubscribe(
    topic: string | string[],
    optsOrCallback?: IClientUnsubscribeProperties | PacketCallback,
    callback?: PacketCallback,
  ): this {
    if (typeof optsOrCallback === 'function') this.#mqtt.unsubscribe(topic, optsOrCallback)
    else this.#mqtt.unsubscribe(topic, optsOrCallback, callback)
    return this
  }

  unsubscribeAsync(topic: string | string[], opts?: IClientUnsubscribeProperties): Promise<Packet | undefined> {
    return this.#mqtt.unsubscribeAsync(topic, opts)
  }

  /** Stops key refreshes and ends the mqtt.js client (same arguments as mqtt.js). */
  end(force?: boolean, opts?: Partial<IDisconnectPacket>, callback?: () => void): this {
    this.#stop()
    this.#mqtt.end(force, opts, callback)
    void this.#replay.save().finally(() => this.#letGo())
    return this
  }

  /** Like mqtt.js's, and resolves once the replay state of every delivered message is saved. */
  async endAsync(force?: boolean, opts?: Partial<IDisconnectPacket>): Promise<void> {
    this.#stop()
    await this.#mqtt.endAsync(force, opts)
    await this.#unknownSenders.stop() // a refresh in flight opens what it held
    await this.#line.verifiedAll()
    await this.#line.delivering
    await this.#replay.save()
    await this.#letGo()
  }

  /**
   * Fetches the key bundle and revocation list now (coalesced with a refresh in flight).
   * Rejects when the key server is unreachable or refuses; the keys held stay in use.
   *
   * @example
   * ```ts
   * await client.refreshKeys() // e.g. right after an operator revoked a device
   * ```
   */
  refreshKeys(): Promise<void> {
    return this.#keys.refresh()
  }

  // ---- keys ---------------------------------------------------------------------------------

  async #start(): Promise<void> {
    try {
      this.#releaseIdentity = await holdIdentity(this.#storage, this.#identity.id)
    } catch (err) {
      // Another process or tab runs this identity: stop before this connection takes over its
      // broker session (the client id is the principal's).
      this.#stop()
      this.#mqtt.end(true)
      throw err
    }
    if (this.#ended) return this.#letGo()
    const ranBefore = await this.#keys.loadStored()
    // A stored bundle means this client ran before, so its replay state must be there too.
    await this.#replay.load(this.#now(), ranBefore)
    await this.#keys.fetchUntilLoaded(() => this.#reserveSequenceAhead())
  }

  /**
   * A writer reserves its first sequence numbers while the key server answers, so it can seal
   * through a key server outage that begins later (up to its range; see SequenceCounter).
   */
  async #reserveSequenceAhead(): Promise<void> {
    if (!this.#keyring.groups.some((group) => group.writers.has(this.#kid))) return
    this.#counter ??= sequenceCounterFor(this.#storage, this.#identity.id, this.#keyServer)
    await this.#counter.prepare().catch((err: unknown) => this.#keyServerFailed(err))
  }

  #keyServerFailed(err: unknown): void {
    this.#keys.failed(err)
  }

  /** See SecureOptions.unknownSenders and _unknown-senders.ts. */
  #unknownSenderHold(options: SecureOptions): UnknownSenders<HeldMessage> {
    const interval = options.unknownSenders?.refreshIntervalSeconds ?? UNKNOWN_SENDER_INTERVAL_SECONDS
    const quiet = options.unknownSenders?.quietSeconds ?? UNKNOWN_SENDER_QUIET_SECONDS
    const maxHeld = options.unknownSenders?.maxHeld ?? UNKNOWN_SENDER_MAX_HELD
    if (!(interval > 0 && interval <= MAX_FRESHNESS_SECONDS))
      throw new RangeError(`unknownSenders.refreshIntervalSeconds must be in (0, ${MAX_FRESHNESS_SECONDS}]`)
    if (!(quiet >= interval && quiet <= MAX_FRESHNESS_SECONDS))
      throw new RangeError(`unknownSenders.quietSeconds must be in [refreshIntervalSeconds, ${MAX_FRESHNESS_SECONDS}]`)
    if (!(Number.isInteger(maxHeld) && maxHeld >= 0 && maxHeld <= 65_536))
      throw new RangeError('unknownSenders.maxHeld must be an integer in [0, 65536]')
    return new UnknownSenders({
      intervalMs: interval * 1000,
      quietMs: quiet * 1000,
      maxHeld,
      maxHeldBytes: UNKNOWN_SENDER_MAX_HELD_BYTES,
      refresh: (wanted) => this.#keys.learnWriters(wanted),
      isKnown: (group, sender) => this.#keyring.writerKey(group, sender) !== undefined,
      // Opened now, in arrival order (keys are loaded: they were held after their epoch was
      // found); the replay window is checked here, at opening, as for any envelope.
      release: (held) => this.#line.release(held),
    })
  }

  // ---- publishing ---------------------------------------------------------------------------

  #isPlaintext(topic: string): boolean {
    return this.#plaintext.some((filter) => topicMatches(filter, topic)) && this.#keyring.groupOf(topic) === undefined
  }

  async #seal(
    topic: string,
    payload: Uint8Array,
    opts: SecurePublishOptions | undefined,
    mayRefresh: boolean,
  ): Promise<Buffer> {
    await this.ready
    const bind = opts?.bindProperties === true
    if (this.#isPlaintext(topic)) {
      if (bind) throw new TypeError(`bindProperties on plaintext topic ${topic}: there is no envelope to bind them`)
      return toWire(payload)
    }
    let key: ReturnType<Keyring['sealingKey']>
    try {
      key = this.#keyring.sealingKey(topic, this.#kid)
    } catch (err) {
      // Every epoch held has retired (e.g. after a long key-server outage): try one refresh.
      if (!mayRefresh || !isSmqttError(err, 'ERR_UNKNOWN_EPOCH') || !this.#keys.mayRefreshForEpoch()) throw err
      await this.refreshKeys().catch((e: unknown) => this.#keyServerFailed(e))
      return this.#seal(topic, payload, opts, false)
    }
    this.#counter ??= sequenceCounterFor(this.#storage, this.#identity.id, this.#keyServer)
    const seq = await this.#counter.next()
    const input = {
      topic,
      payload,
      epochKey: key.epochKey,
      seq,
      sentAt: this.#now(),
      retain: opts?.retain === true,
      ...(bind ? { properties: propertiesToBind(opts?.properties) } : {}),
    }
    const envelope = this.#signer
      ? sealEnvelope({ ...input, signer: this.#signer })
      : await sealEnvelopeAsync({ ...input, signer: this.#asyncSigner as AsyncEnvelopeSigner })
    return toWire(envelope)
  }

  // ---- receiving ----------------------------------------------------------------------------

  #onConnect = (packet: IConnackPacket): void => {
    this.#prepareConnection()
    this.emit('connect', packet)
  }

  /** On every (re)connection: a new socket, and possibly a new session without our subscription. */
  #prepareConnection(): void {
    // Nagle's algorithm holds small writes until the previous one is acknowledged, and the
    // peer's delayed ACK waits up to ~40 ms: every small publish then waits (measured ~35 ms ->
    // ~0.3 ms p50 on loopback at 5k msgs/s). Browsers' WebSocket streams have no such method.
    ;(this.#mqtt.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true)
    this.#subscribeControl()
  }

  #subscribeControl(): void {
    this.#mqtt.subscribe(this.#controlTopic, { qos: 1 }, (err) => {
      if (err) this.#keyServerFailed(new Error(`cannot subscribe to the control topic: ${err.message}`))
    })
  }

  #onMessage = (topic: string, payload: Buffer, packet: IPublishPacket): void => {
    if (isControlTopic(topic)) {
      if (topic === this.#controlTopic) this.#onControl(payload)
      else this.stats.control.ignored++
      return
    }
    this.stats.received++
    this.#line.receive(topic, payload, packet)
  }

  #onControl(payload: Uint8Array): void {
    try {
      const message = JSON.parse(fromUtf8(payload)) as { type?: unknown; bundle?: unknown; revocations?: unknown }
      if (message?.type === 'bundle') {
        const applying = this.#keys.applyBundle(message.bundle, 'push').then(
          () => void this.stats.control.applied++,
          () => void this.stats.control.ignored++,
        )
        // Applied at once (even while the first keys load); messages received after it wait for
        // it, as they may be under the epoch it brings.
        this.#line.enqueue(() => applying)
        return
      }
      if (message?.type !== 'revocations') throw new TypeError('unknown control message')
      this.#keys.applyRevocations(message.revocations)
      this.stats.control.applied++
    } catch {
      // Anyone may publish here on a plain broker; only documents signed by the key server count.
      this.stats.control.ignored++
    }
  }

  /** The receive line, wired to this client's keys, replay state, verifier and events. */
  #receiveLine(): ReceiveLine {
    return new ReceiveLine({
      openOptions: { keys: this.#keyring, replay: this.#replay.window, isRevoked: this.#keys.isRevoked },
      replay: this.#replay,
      verifier: this.#verifier,
      now: this.#now,
      isPlaintext: (topic) => this.#isPlaintext(topic),
      writerPrincipal: (group, kid) => this.#keyring.writerPrincipal(group, kid),
      refreshForEpoch: () =>
        this.#keys.mayRefreshForEpoch()
          ? this.refreshKeys().catch((e: unknown) => this.#keyServerFailed(e))
          : undefined,
      unknownSenders: this.#unknownSenders,
      deliver: (topic, payload, info) => {
        this.stats.delivered++
        this.emit('message', topic, payload, info)
      },
      reject: (event) => {
        this.stats.rejected[event.code] = (this.stats.rejected[event.code] ?? 0) + 1
        this.emit('securityError', event)
      },
    })
  }

  #listen(event: string, listener: (...args: never[]) => void): void {
    ;(this.#mqtt as unknown as { on(e: string, l: (...a: never[]) => void): void }).on(event, listener)
  }

  #stop(): void {
    // Envelopes held for a refresh go into the line first (refused unless one is in flight).
    void this.#unknownSenders.stop()
    // Envelopes still at the verifier come back `unavailable` once nobody uses it, and are then
    // checked here: ending never drops a message that arrived.
    if (!this.#ended) void this.#line.verifiedAll().then(() => this.#verifier?.release())
    this.#ended = true
    this.#keys.stop()
  }

  /** Once the last replay save is done, another process may run this identity. */
  async #letGo(): Promise<void> {
    await this.#releaseIdentity?.().catch(() => {}) // a lock file that cannot be removed goes stale by itself
  }
}

/**
 * Wraps an mqtt.js client so every payload is sealed (encrypted and signed) on publish and
 * verified, replay-checked and opened on receipt. Keys come from the key server and stay fresh
 * by themselves. Works with any MQTT broker: SMQTT lives only in the payload.
 *
 * @example
 * ```ts
 * import mqtt from 'mqtt'
 * import { loadEnrollment, fileStorage, secure } from '@smqtt/client'
 *
 * const storage = fileStorage('./smqtt')
 * const { identity, kid, keyServerPublicKey } = await loadEnrollment(storage)
 * const client = secure(mqtt.connect('mqtts://broker:8883', { ca }), {
 *   identity, kid, storage, keyServer: { url: 'https://keys:8443', ca, keyServerPublicKey },
 * })
 * client.on('message', (topic, payload, info) => console.log(info.sender, payload.toString()))
 * client.on('securityError', (e) => console.warn(e.code, e.topic))
 * await client.publishAsync('home/hall/thermostat/thermostat-1/temp', '21.5', { qos: 1 })
 * ```
 */
export function secure(mqttClient: MqttClient, options: SecureOptions): SecureClient {
  return new SecureClient(mqttClient, options)
}
