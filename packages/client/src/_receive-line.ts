// The receive line: every received application message goes through here, and comes out in
// arrival order as a `message` or a refusal, whatever order the verifier answers in. Nothing is
// delivered before the replay state that accepted it is saved, so a crash can never forget a
// delivered message (and accept its replay after a restart). Knows no MQTT client and no key
// server: the secure client feeds it packets and is told what to deliver or refuse.
import {
  beginOpenEnvelope,
  checkEnvelopeSignature,
  finishOpenEnvelopeUnsafe,
  isSmqttError,
  type OpenEnvelopeOptions,
  parseEnvelope,
  type SmqttErrorCode,
  type UnverifiedEnvelope,
} from '@smqtt/core'
import type { IPublishPacket } from 'mqtt'
import { likeWire } from './_bytes.js'
import { receivedProperties, splitProperties } from './_publish-properties.js'
import type { MessageInfo, SecurityErrorEvent } from './secure.js'
import type { SignatureVerifier } from './verifier.js'

/** A received envelope held until its sender is known (or refused). */
export interface HeldMessage {
  readonly topic: string
  readonly payload: Buffer
  readonly packet: IPublishPacket
}

/** What the line needs from its client; see SavedReplayWindow, UnknownSenders, SignatureVerifier. */
export interface ReceiveLineOptions {
  /** Keys, replay window and revocations; each message adds its retain flag, properties and time. */
  readonly openOptions: OpenEnvelopeOptions
  /** The replay window's persistence: marked dirty on each acceptance, saved before delivery. */
  readonly replay: { markDirty(): void; save(): Promise<void> }
  /** Checks signatures off the event loop; undefined: checked here, at once. */
  readonly verifier: SignatureVerifier | undefined
  /** Unix seconds. */
  readonly now: () => number
  /** Whether `topic` travels unencrypted (its payload is delivered as is, in order). */
  readonly isPlaintext: (topic: string) => boolean
  /** The principal id of the (already verified) writer `kid` of `group`. */
  readonly writerPrincipal: (group: number, kid: number) => string | undefined
  /**
   * An envelope under an unknown epoch: a key refresh to wait for before trying it once more,
   * or undefined when none may run now (it is then refused).
   */
  readonly refreshForEpoch: () => Promise<void> | undefined
  /** Envelopes of senders the keys do not list yet, held until a refresh (see _unknown-senders.ts). */
  readonly unknownSenders: {
    holding(group: number, sender: number): boolean
    hold(group: number, sender: number, size: number, message: HeldMessage): boolean
  }
  /** A verified message whose replay state is saved. A throw is rethrown in a microtask. */
  readonly deliver: (topic: string, payload: Buffer, info: MessageInfo) => void
  /** A refused message: it never reaches `deliver`. */
  readonly reject: (event: SecurityErrorEvent) => void
}

/** A received message on its way out: ready once its signature is checked (if it has one). */
interface Received {
  readonly topic: string
  readonly packet: IPublishPacket
  /** Encrypted: waits for `valid`. */
  readonly unverified?: UnverifiedEnvelope
  /** On a plaintext topic. */
  readonly plaintext?: Buffer
  valid?: boolean
}

/**
 * Runs `task` on the next event-loop turn, once the I/O callbacks of this one have run. Browsers
 * have no setImmediate, and nested `setTimeout(0)` is clamped to 4 ms there: a MessageChannel
 * message is the unclamped macrotask.
 */
const nextTurn: (task: () => void) => void =
  typeof setImmediate === 'function'
    ? (task) => setImmediate(task)
    : typeof MessageChannel === 'function'
      ? (() => {
          const tasks: (() => void)[] = []
          const channel = new MessageChannel()
          // The DOM's MessagePort (Node's typings describe Node's own, which has no onmessage).
          ;(channel.port1 as unknown as { onmessage: () => void }).onmessage = () => tasks.shift()?.()
          return (task: () => void) => {
            tasks.push(task)
            channel.port2.postMessage(null)
          }
        })()
      : (task) => setTimeout(task, 0)
/** A save covers at most about this many messages before they go out: bounds the wait of the first. */
const DELIVERY_BATCH = 32

/** The ordered, save-before-deliver path from a received PUBLISH to `deliver` or `reject`. */
export class ReceiveLine {
  readonly #o: ReceiveLineOptions
  /** Received messages wait here while keys load or a refresh for an unknown epoch runs, in order. */
  #queue: Promise<void> | undefined
  #queued = 0
  /** Received messages whose signature is being checked, in arrival order (they finish in it). */
  readonly #verifying: Received[] = []
  /** Called once `#verifying` is empty (ending waits for it). */
  readonly #whenVerified: (() => void)[] = []
  /** Opened messages wait here until the replay state that accepted them is saved, in order. */
  readonly #accepted: { topic: string; payload: Buffer; info: MessageInfo }[] = []
  #delivering: Promise<void> | undefined
  /** Ends the wait for more messages to share the next save, once a batch is full. */
  #batchFull: (() => void) | undefined

  constructor(options: ReceiveLineOptions) {
    this.#o = options
  }

  /** A received application message (control topics are the client's): behind the queue, if any. */
  receive(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (this.#queue) this.enqueue(() => this.#process(topic, payload, packet, true))
    else {
      const pending = this.#process(topic, payload, packet, true)
      if (pending) this.enqueue(() => pending)
    }
  }

  /** An envelope that was held for its unknown sender: opened now, with no further refresh. */
  release({ topic, payload, packet }: HeldMessage): void {
    void this.#process(topic, payload, packet, false)
  }

  /** Messages received after this call wait for `task` (a key load, a bundle being applied). */
  enqueue(task: () => Promise<void> | undefined): void {
    this.#queued++
    const run = async () => {
      try {
        await task()
      } catch (err) {
        // A throwing listener: surface it like a throwing listener of a plain mqtt.js client.
        queueMicrotask(() => {
          throw err
        })
      } finally {
        if (--this.#queued === 0) this.#queue = undefined
      }
    }
    this.#queue = (this.#queue ?? Promise.resolve()).then(run)
  }

  /** Resolves once every message received so far has its signature checked. */
  verifiedAll(): Promise<void> {
    if (this.#verifying.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.#whenVerified.push(resolve))
  }

  /** The delivery in progress (its save, then its messages), if any. */
  get delivering(): Promise<void> | undefined {
    return this.#delivering
  }

  /**
   * Checks one message and hands its signature to the verifier; returns a promise only when it
   * waits for a key refresh. Messages finish (and are delivered) in arrival order.
   */
  #process(topic: string, payload: Buffer, packet: IPublishPacket, mayRefresh: boolean): Promise<void> | undefined {
    if (this.#o.isPlaintext(topic)) {
      this.#enterLine({ topic, packet, plaintext: payload })
      return undefined
    }
    let unverified: UnverifiedEnvelope
    try {
      const properties = receivedProperties(packet.properties)
      unverified = beginOpenEnvelope(payload, topic, {
        ...this.#o.openOptions,
        retained: packet.retain,
        now: this.#o.now(),
        ...(properties ? { properties } : {}),
      })
    } catch (err) {
      if (mayRefresh && isSmqttError(err, 'ERR_UNKNOWN_EPOCH')) {
        const refreshing = this.#o.refreshForEpoch()
        if (refreshing) return refreshing.then(() => void this.#process(topic, payload, packet, false))
      }
      if (mayRefresh && isSmqttError(err, 'ERR_UNKNOWN_SENDER')) {
        const { group, sender } = parseEnvelope(payload).header
        if (this.#o.unknownSenders.hold(group, sender, payload.length, { topic, payload, packet })) return undefined
      }
      this.#reject(topic, err)
      return undefined
    }
    // A sender with envelopes held (it was unknown, and a push or poll taught it since): this one
    // waits behind them, so its messages stay in order.
    const { group, sender } = unverified.header
    const unknown = this.#o.unknownSenders
    if (
      mayRefresh &&
      unknown.holding(group, sender) &&
      unknown.hold(group, sender, payload.length, { topic, payload, packet })
    )
      return undefined
    const received: Received = { topic, packet, unverified }
    this.#enterLine(received)
    const verifier = this.#o.verifier
    if (verifier)
      verifier.verify(
        unverified.signingKey,
        topic,
        payload,
        (verdict) => {
          // Not checked (the worker failed, or the client ended): check it here instead.
          received.valid = verdict === 'unavailable' ? checkEnvelopeSignature(unverified) : verdict === 'valid'
          this.#finishInOrder()
        },
        // Only an envelope that binds properties needs them (they cross to the worker by copy).
        unverified.header.properties ? unverified.properties : undefined,
      )
    else {
      received.valid = checkEnvelopeSignature(unverified)
      this.#finishInOrder()
    }
    return undefined
  }

  #enterLine(received: Received): void {
    this.#verifying.push(received)
    if (received.unverified === undefined) this.#finishInOrder()
  }

  /** Opens the messages at the head of the line whose signature is checked. */
  #finishInOrder(): void {
    const line = this.#verifying
    while (line.length > 0) {
      const received = line[0] as Received
      const { topic, packet, unverified } = received
      if (unverified !== undefined && received.valid === undefined) return
      line.shift()
      if (unverified === undefined) {
        const plaintext = received.plaintext as Buffer
        this.#accept(topic, plaintext, {
          encrypted: false,
          sender: undefined,
          kid: undefined,
          retained: packet.retain,
          ...splitProperties(packet.properties, undefined),
          packet,
        })
        continue
      }
      try {
        const { header, payload, properties } = finishOpenEnvelopeUnsafe(
          unverified,
          received.valid === true,
          this.#o.openOptions, // the retain flag and the clock were taken when it arrived
        )
        if (!packet.retain) this.#o.replay.markDirty()
        this.#accept(topic, likeWire(packet.payload, payload), {
          encrypted: true,
          sender: this.#o.writerPrincipal(header.group, header.sender) as string,
          kid: header.sender,
          retained: header.retain && packet.retain,
          group: header.group,
          epoch: header.epoch,
          seq: header.seq,
          sentAt: header.sentAt,
          ...splitProperties(packet.properties, properties),
          packet,
        })
      } catch (err) {
        this.#reject(topic, err)
      }
    }
    for (const resolve of this.#whenVerified.splice(0)) resolve()
  }

  #accept(topic: string, payload: Buffer, info: MessageInfo): void {
    this.#accepted.push({ topic, payload, info })
    this.#delivering ??= this.#deliver()
    if (this.#accepted.length >= DELIVERY_BATCH) this.#batchFull?.()
  }

  /**
   * Delivers accepted messages once their replay state is durable, so a crash can never forget a
   * delivered message. A save waits for the rest of the event-loop turn (a busy TLS socket yields
   * many records per read) or a full batch, so those messages share it instead of each paying
   * for its own; everything accepted while a save runs goes out after the next one.
   */
  async #deliver(): Promise<void> {
    while (this.#accepted.length > 0) {
      if (this.#accepted.length < DELIVERY_BATCH)
        await new Promise<void>((resolve) => {
          this.#batchFull = resolve
          nextTurn(resolve)
        })
      this.#batchFull = undefined
      const batch = this.#accepted.splice(0)
      await this.#o.replay.save()
      for (const { topic, payload, info } of batch) {
        try {
          this.#o.deliver(topic, payload, info)
        } catch (err) {
          // A throwing listener must not drop the rest of the batch; surface it as before.
          queueMicrotask(() => {
            throw err
          })
        }
      }
    }
    this.#delivering = undefined
  }

  #reject(topic: string, err: unknown): void {
    const code: SmqttErrorCode = isSmqttError(err) ? err.code : 'ERR_INTERNAL'
    const details = isSmqttError(err) ? err.details : undefined
    this.#o.reject({
      code,
      topic,
      message: err instanceof Error ? err.message : String(err),
      ...(details === undefined ? {} : { details }),
    })
  }
}
