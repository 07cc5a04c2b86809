// `npx tsx --conditions=smqtt-source packages/client/bench/receive.bench.ts [--chunk=N]`: what the
// SecureClient's publish path costs beyond sealEnvelope (mqtt.js's publish stubbed out), and its
// receive path beyond openEnvelope (signatures on the event loop), with no network. Receive: pre-sealed envelopes
// (distinct sequence numbers, from a real secure publisher) are handed to the subscriber's
// mqtt.js client as 'message' events, N per event-loop turn (default 32: the client bench's
// subscriber, flat out, reads ~40 messages per turn; 1 is a trickle), and the time until all are
// delivered is set against openEnvelope alone on envelopes of the same shape, fed the same way.
// Keys come from the real key server (test harness).
import { createEnvelopeSigner, cryptoBackend, EpochKey, openEnvelope, ReplayWindow, sealEnvelope } from '@smqtt/core'
import { enrollThrough } from '@smqtt/test-kit/client'
import { SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import mqtt, { type IPublishPacket } from 'mqtt'
import { type SecureClient, secure } from '../src/index.js'

const TOPIC = 'home/hall/thermostat/thermostat-1/temp'
const N = 4_000
/** Rounds alternate both measurements; the fastest round of each counts (load only adds time). */
const ROUNDS = 12
const CHUNK = Number(process.argv.find((a) => a.startsWith('--chunk='))?.slice(8) ?? 32)

const h = await startHarness()
h.clock.now = Math.floor(Date.now() / 1000)
const put = await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
if (put.status !== 200) throw new Error(`policy: ${put.text}`)

/** A secure client on an mqtt.js client that never connects: keys from the key server only. */
async function offline(id: string, roles: string[], verifyOnWorker = false): Promise<SecureClient> {
  const { storage, ...e } = await enrollThrough(h, id, roles)
  const client = secure(mqtt.connect('mqtts://127.0.0.1:1', { manualConnect: true }), {
    identity: e.identity,
    kid: e.kid,
    storage,
    keyServer: { url: h.url, ca: h.caPem, keyServerPublicKey: e.keyServerPublicKey },
    verifyOnWorker, // off: the wrapper's own cost, on one thread
  })
  await client.ready
  return client
}

const publisher = await offline('thermostat-1', ['thermostat'])
const subscriber = await offline('app-1', ['app'])
// The same subscriber's identity again, with signatures verified on the worker thread: how many
// messages a subscriber with a second core to itself takes per second.
const withWorker = await offline('app-2', ['app'], true)
const sealed: Buffer[] = []
publisher.mqttClient.publishAsync = (async (_topic: string, wire: Buffer) => {
  sealed.push(wire)
  return undefined
}) as typeof publisher.mqttClient.publishAsync
const payload = new Uint8Array(256).fill(0x5a)

// openEnvelope alone on envelopes of the same shape, with a replay window, as the client runs it.
const epochKey = new EpochKey({ group: 1, epoch: 1, suite: 1, key: cryptoBackend.randomBytes(32) })
const signer = createEnvelopeSigner({ kid: 1, seed: cryptoBackend.randomBytes(32) })
const keys = { epochKey: () => epochKey, writerKey: () => signer.publicKey }
const now = Math.floor(Date.now() / 1000)
const bare = Array.from({ length: N }, (_, i) =>
  sealEnvelope({ topic: TOPIC, payload, epochKey, signer, seq: i + 1, sentAt: now }),
)

let delivered = 0
let done: (() => void) | undefined
for (const client of [subscriber, withWorker])
  client.on('message', () => {
    if (++delivered === N) done?.()
  })
const emitterOf = (client: SecureClient) =>
  client.mqttClient as unknown as { emit(e: string, ...a: unknown[]): boolean }

let bestOpen = Number.POSITIVE_INFINITY
let bestClient = Number.POSITIVE_INFINITY
let bestWorker = Number.POSITIVE_INFINITY
/**
 * Hands `count` messages to `handle`, CHUNK per event-loop turn, each in its own callback with
 * the microtask queue drained after it: how Node delivers the TLS records of one busy socket read
 * (immediates queued together run in one phase, microtasks between them).
 */
async function feed(count: number, handle: (i: number) => void): Promise<void> {
  for (let i = 0; i < count; i += CHUNK)
    await new Promise<void>((resolve) => {
      for (let k = i; k < Math.min(count, i + CHUNK); k++) setImmediate(() => handle(k))
      setImmediate(resolve)
    })
}

let bestSeal = Number.POSITIVE_INFINITY
let bestPublish = Number.POSITIVE_INFINITY
for (let round = 0; round < ROUNDS; round++) {
  let start = performance.now()
  for (let i = 0; i < N; i++) sealEnvelope({ topic: TOPIC, payload, epochKey, signer, seq: i + 1, sentAt: now })
  bestSeal = Math.min(bestSeal, ((performance.now() - start) * 1000) / N)
  sealed.length = 0
  start = performance.now()
  await Promise.all(Array.from({ length: N }, () => publisher.publishAsync(TOPIC, payload)))
  bestPublish = Math.min(bestPublish, ((performance.now() - start) * 1000) / N)
  const replay = new ReplayWindow()
  start = performance.now()
  await feed(N, (i) => openEnvelope(bare[i] as Uint8Array, TOPIC, { keys, replay, now }))
  const openUs = ((performance.now() - start) * 1000) / N

  bestOpen = Math.min(bestOpen, openUs)
  bestClient = Math.min(bestClient, await receive(subscriber))
  bestWorker = Math.min(bestWorker, await receive(withWorker))
}

/** Wall µs per message until `client` delivered all N sealed envelopes. */
async function receive(client: SecureClient): Promise<number> {
  delivered = 0
  const all = new Promise<void>((resolve) => {
    done = resolve
  })
  const start = performance.now()
  await feed(N, (i) => {
    const wire = sealed[i] as Buffer
    const packet = { cmd: 'publish', topic: TOPIC, payload: wire, qos: 0, dup: false, retain: false }
    emitterOf(client).emit('message', TOPIC, wire, packet as IPublishPacket)
  })
  await all
  return ((performance.now() - start) * 1000) / N
}
console.log(
  `sealEnvelope ${bestSeal.toFixed(1)} µs/msg, SecureClient publishAsync ${bestPublish.toFixed(1)} µs/msg, ` +
    `wrapper ${(bestPublish - bestSeal).toFixed(1)} µs/msg`,
)
console.log(
  `openEnvelope ${bestOpen.toFixed(1)} µs/msg, SecureClient receive ${bestClient.toFixed(1)} µs/msg, ` +
    `wrapper ${(bestClient - bestOpen).toFixed(1)} µs/msg (rejected ${JSON.stringify(subscriber.stats.rejected)})`,
)
console.log(
  `SecureClient receive, signatures on the worker thread: ${bestWorker.toFixed(1)} µs/msg wall = ` +
    `${(bestOpen / bestWorker).toFixed(2)} × the openEnvelope rate (rejected ${JSON.stringify(withWorker.stats.rejected)})`,
)
await h.close()
process.exit(0)
