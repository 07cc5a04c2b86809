// Raw MQTT over TLS against the real `smqtt-broker` process: a fixed-seed sample of hostile
// packets (test/fuzz/_mqtt-packets.ts) and the 62 mqtt-packet malformed vectors, each on its own
// connection. The long run is `test/fuzz/mqtt-wire.fuzz.ts`.
import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type HostileInput, hostileInput } from './_mqtt-packets.js'
import { type BrokerProcess, runCampaign, startBrokerProcess } from './_wire-harness.js'

const SEED = 20261124
const WORKERS = 8
const WAITS = { mustCloseMs: 5_000, settleMs: 300 }

let broker: BrokerProcess
beforeAll(async () => {
  broker = await startBrokerProcess(WORKERS)
}, 60_000)
afterAll(async () => {
  await broker?.close()
})

test('300 hostile packets over TLS: every one that must close does, the process survives, clients still round-trip', async () => {
  const batches = [0, 1, 2].map((i) => fc.sample(hostileInput, { numRuns: 100, seed: SEED + i }))
  const report = await runCampaign(broker, batches, { ...WAITS, concurrency: WORKERS })
  expect(report.inputs).toBe(300)
  expect(report.roundTrips).toBe(3)
  expect(Object.fromEntries(report.notClosed)).toEqual({})
  const outcomes = (kind: string) => Object.fromEntries(report.byKind.get(kind) ?? [])
  // Determinate kinds end the way MQTT 3.1.1 says, not merely "somehow".
  expect(Object.keys(outcomes('5-byte remaining length'))).toEqual(['closed'])
  expect(Object.keys(outcomes('packet before CONNECT'))).toEqual(['closed'])
  expect(Object.keys(outcomes('second CONNECT'))).toEqual(['closed'])
  expect(Object.keys(outcomes('PUBLISH with QoS 3'))).toEqual(['closed'])
  expect(Object.keys(outcomes('SUBSCRIBE with zero filters'))).toEqual(['closed'])
  // Bounded memory: 300 connections must not leave tens of MiB behind.
  const [first, last] = [report.memory[0], report.memory.at(-1)]
  expect((last?.rss ?? Number.NaN) - (first?.rss ?? Number.NaN)).toBeLessThan(100 * 1024 * 1024)
}, 120_000)

test('the 62 mqtt-packet malformed vectors over TLS: every connection is closed, the process survives', async () => {
  const vectors = JSON.parse(
    readFileSync(
      new URL('../../packages/broker-plugin/test/vectors/mqtt-packet-malformed.json', import.meta.url),
      'utf8',
    ),
  ) as { name: string; hex: string }[]
  expect(vectors).toHaveLength(62)
  const inputs: HostileInput[] = vectors.map((vector) => ({
    kind: 'mqtt-packet malformed vector',
    afterConnect: false,
    bytes: Buffer.from(vector.hex, 'hex'),
    mustClose: true, // each is malformed in its first packet (limits.test.ts only checks the broker survives)
  }))
  const report = await runCampaign(broker, [inputs], { ...WAITS, concurrency: WORKERS })
  expect(Object.fromEntries(report.notClosed)).toEqual({})
  expect(Object.fromEntries(report.byKind.get('mqtt-packet malformed vector') ?? [])).toEqual({ closed: 62 })
  expect(report.roundTrips).toBe(1)
}, 120_000)
