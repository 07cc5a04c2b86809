// Issue 14: a subscriber's heap per sender heard, at N senders. One app (role `app`) reads the
// thermostats' group; N thermostats, each with its own key pair, straight into the key server's
// store. The bundle lists none of them (past `bundleInlineWriters`), so the subscriber learns each
// from a signed writer record on first sight, as it does beside a fleet. Each sender seals one
// envelope on its own topic, handed to the real SecureClient's receive path (mqtt.js 'message'
// events on a client that never connects, as packages/client/bench/receive.bench.ts does), then
// a second one. Value: the subscriber's heap after GC, per sender, after both; note: after the
// first alone, ArrayBuffer growth, and the replay state saved (storage, not heap: left out here).
//
// What is not the subscriber's, kept out of the difference: the senders' identities and topics
// (made before the baseline), their sealing (a fresh EpochKey per batch, dropped), and the key
// server in the same process (its directory is built before the baseline; a record request
// keeps nothing). Warm-up senders, heard before the baseline, take the first-use costs.
//
// What the bytes are and what bounds them (the writer LRU and the replay windows stop at 10,000;
// the epoch key's derived sender keys do not): docs/benchmarks.md, "A subscriber's memory per
// sender". Past about 19,968 senders the run fails: with 10,000 windows and 10,000 floors full,
// the replay window refuses new senders for 30 s (ERR_REPLAY), as that section says.

import { type ClientStorage, enroll, memoryStorage, type SecureClient, secure } from '@smqtt/client'
import {
  createEnvelopeSigner,
  EpochKey,
  generateIdentity,
  type Identity,
  openKeyBundle,
  type SuiteId,
  sealEnvelope,
} from '@smqtt/core'
import { addPrincipals, fleetId, type Harness, SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import mqtt, { type IPublishPacket } from 'mqtt'
import { kib, type ScaleCurve } from './_curve.js'
import { heapAfterGc } from './_heap.js'
import { spendKeepAliveReset, withKeyServer } from './_key-server.js'

const GROUP = 1 // the thermostats' group of SMART_HOME_POLICY
const WARM_UP = 32
/** Envelopes handed over at a time: the client holds at most 256 from unknown senders (its default). */
const BATCH = 256
const PAYLOAD = new Uint8Array(16).fill(0x5a)

interface Sender {
  readonly identity: Identity
  readonly kid: number
  readonly topic: string
}

/** What the heap held before and after, and what the subscriber saved. */
export interface SubscriberHeap {
  readonly baseline: number
  readonly afterFirst: number
  readonly afterSecond: number
  readonly arrayBuffers: number
  readonly savedReplayBytes: number
  /** Key server errors the subscriber reported, and envelopes handed over again after one. */
  readonly keyServerErrors: number
  readonly retried: number
}

const now = () => Math.floor(Date.now() / 1000)

/** `count` thermostats with keys of their own, straight into the store. */
async function addSenders(h: Harness, count: number, prefix: string): Promise<Sender[]> {
  const identities = Array.from({ length: count }, (_, i) => generateIdentity(fleetId(prefix, i)))
  const kids = await addPrincipals(h, count, { prefix, keys: (i) => identities[i] as Identity })
  return identities.map((identity, i) => ({
    identity,
    kid: kids[i] as number,
    topic: `home/h${i % 100}/thermostat/${identity.id}/temp`,
  }))
}

/**
 * Memory storage that keeps the replay state's size only: a subscriber saves it to a file or
 * IndexedDB, not its heap, and memoryStorage would keep the whole text there.
 */
function storageWithoutReplayState(): { storage: ClientStorage; saved: { bytes: number } } {
  const inner = memoryStorage()
  const saved = { bytes: 0 }
  const storage: ClientStorage = {
    get: (key) => inner.get(key),
    set: async (key, value) => {
      if (key.startsWith('replay:')) saved.bytes = value.length
      else await inner.set(key, value)
    },
    lock: (name) => inner.lock?.(name) ?? Promise.resolve(async () => {}),
  }
  return { storage, saved }
}

interface Envelope {
  readonly topic: string
  readonly wire: Buffer
}

/**
 * Hands envelopes to `subscriber` as mqtt.js would; resolves once each is delivered or refused
 * as from an unknown sender (its record request failed: the client then falls back to a bundle
 * refresh, which does not list it), with those refused, to be handed over again.
 */
function deliverer(subscriber: SecureClient, counts: { keyServerErrors: number; retried: number }) {
  let pending = 0
  let refused: Envelope[] = []
  let byTopic = new Map<string, Envelope>()
  let done: ((refused: Envelope[]) => void) | undefined
  let failed: ((err: Error) => void) | undefined
  const settle = () => {
    if (--pending === 0) done?.(refused)
  }
  subscriber.on('message', settle)
  subscriber.on('securityError', (e) => {
    const envelope = byTopic.get(e.topic)
    if (e.code !== 'ERR_UNKNOWN_SENDER' || envelope === undefined)
      failed?.(new Error(`refused: ${e.code} ${e.message}`))
    else {
      refused.push(envelope)
      settle()
    }
  })
  subscriber.on('keyServerError', () => void counts.keyServerErrors++)
  const mqttClient = subscriber.mqttClient as unknown as { emit(e: string, ...a: unknown[]): boolean }
  const once = (envelopes: readonly Envelope[]): Promise<Envelope[]> =>
    new Promise<Envelope[]>((resolve, reject) => {
      pending = envelopes.length
      refused = []
      byTopic = new Map(envelopes.map((envelope) => [envelope.topic, envelope]))
      done = resolve
      failed = reject
      for (const { topic, wire } of envelopes) {
        const packet = { cmd: 'publish', topic, payload: wire, qos: 0, dup: false, retain: false }
        mqttClient.emit('message', topic, wire, packet as IPublishPacket)
      }
    })
  return async (envelopes: readonly Envelope[]): Promise<void> => {
    let left = await once(envelopes)
    for (let retry = 0; left.length > 0; retry++) {
      if (retry === 3) throw new Error(`${left.length} envelopes still refused as from unknown senders`)
      counts.retried += left.length
      left = await once(left)
    }
  }
}

/** The group's current epoch key, as its writers hold it. */
async function groupKey(h: Harness, writer: Identity): Promise<{ epoch: number; suite: SuiteId; key: Uint8Array }> {
  const response = await h.device(writer, 'GET', '/v1/bundle')
  const bundle = openKeyBundle((response.body as { bundle: unknown }).bundle, {
    keyServerPublicKey: h.keyServer.publicKey,
    recipient: writer,
    now: now(),
  })
  const held = bundle.groups.find((g) => g.group === GROUP)
  const epoch = held?.epochs.at(-1)
  if (!held || !epoch) throw new Error(`no key of group ${GROUP}`)
  return { epoch: epoch.epoch, suite: held.suite as SuiteId, key: epoch.key }
}

/**
 * The subscriber's heap before and after hearing `size` senders (two envelopes each).
 * `probe` is called at the baseline and at the end, after GC (e.g. to write heap snapshots).
 */
export async function subscriberHeap(
  size: number,
  probe?: (phase: 'baseline' | 'end') => void,
): Promise<SubscriberHeap> {
  // Record requests come ~2 per batch here, not one per 5 s: past the default 5 a second per principal.
  const settings = { principalRequestsPerSecond: 1_000, principalRequestBurst: 1_000 }
  return withKeyServer({ settings, policy: SMART_HOME_POLICY, followWallClock: true }, async (h) => {
    let subscriber: SecureClient | undefined
    const counts = { keyServerErrors: 0, retried: 0 }
    try {
      const warmUp = await addSenders(h, WARM_UP, 'warm-')
      const senders = await addSenders(h, size, 'sender-')
      await spendKeepAliveReset(h)
      const key = await groupKey(h, (warmUp[0] as Sender).identity)

      const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: 'app-1', roles: ['app'] })
      const { storage, saved } = storageWithoutReplayState()
      const enrolled = await enroll({
        keyServerUrl: h.url,
        ca: h.caPem,
        token: (token.body as { token: string }).token,
        id: 'app-1',
        storage,
      })
      subscriber = secure(mqtt.connect('mqtts://127.0.0.1:1', { manualConnect: true }), {
        identity: enrolled.identity,
        kid: enrolled.kid,
        storage,
        keyServer: { url: h.url, ca: h.caPem, keyServerPublicKey: enrolled.keyServerPublicKey },
        verifyOnWorker: false, // the same state either way; one thread keeps the run simple
        // Not the defaults (5 s, 60 s): one refresh per batch of 256 without waiting, and a sender
        // refused after a failed record request may be tried again at once.
        unknownSenders: { refreshIntervalSeconds: 0.01, quietSeconds: 0.01 },
      })
      await subscriber.ready
      const deliver = deliverer(subscriber, counts)
      /** Each sender's envelope number `seq`, BATCH at a time, each batch delivered before the next. */
      const hear = async (from: readonly Sender[], seq: number) => {
        for (let i = 0; i < from.length; i += BATCH) {
          // A fresh EpochKey per batch: its cache of derived sender keys is the senders', not the subscriber's.
          const epochKey = new EpochKey({ group: GROUP, ...key })
          const envelopes = from.slice(i, i + BATCH).map(({ identity, kid, topic }) => {
            const signer = createEnvelopeSigner({ kid, seed: identity.signingSeed })
            const sealed = sealEnvelope({ topic, payload: PAYLOAD, epochKey, signer, seq, sentAt: now() })
            return { topic, wire: Buffer.from(sealed) }
          })
          await deliver(envelopes)
        }
      }
      await hear(warmUp, 1)
      await hear(warmUp, 2)
      await new Promise((resolve) => setTimeout(resolve, 20)) // the last save
      const baseline = heapAfterGc()
      const arrayBuffersBefore = process.memoryUsage().arrayBuffers
      probe?.('baseline')
      await hear(senders, 1)
      await new Promise((resolve) => setTimeout(resolve, 20))
      const afterFirst = heapAfterGc()
      await hear(senders, 2)
      await new Promise((resolve) => setTimeout(resolve, 20))
      const afterSecond = heapAfterGc()
      const arrayBuffers = process.memoryUsage().arrayBuffers - arrayBuffersBefore
      probe?.('end')
      if (subscriber.stats.delivered !== 2 * (WARM_UP + size))
        throw new Error(`delivered ${subscriber.stats.delivered} of ${2 * (WARM_UP + size)}`)
      return { baseline, afterFirst, afterSecond, arrayBuffers, savedReplayBytes: saved.bytes, ...counts }
    } finally {
      // Stops its timers first; mqtt.js then fails to end a client that never connected.
      await subscriber?.endAsync().catch(() => {})
    }
  })
}

export const clientMemory: ScaleCurve = {
  name: 'client-memory',
  title: 'A subscriber’s heap per sender heard, two envelopes each (after the first alone in the note)',
  unit: 'B/sender',
  axis: { label: 'senders', sizes: [100, 1_000, 10_000], quickSizes: [100, 1_000] },
  async measure(size) {
    const heap = await subscriberHeap(size)
    const perSender = (heap.afterSecond - heap.baseline) / size
    return {
      value: perSender,
      note: `after the first envelope ${((heap.afterFirst - heap.baseline) / size).toFixed(0)} B; ArrayBuffers ${(heap.arrayBuffers / size).toFixed(0)} B; replay state saved ${kib(heap.savedReplayBytes)}${heap.retried > 0 ? `; ${heap.retried} handed over again after ${heap.keyServerErrors} key server errors` : ''}`,
    }
  },
}
