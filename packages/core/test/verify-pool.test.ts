// The signature verification worker pool on its own, with real worker threads started from the
// TypeScript sources. Its use by the broker plugin and the client is tested in those packages.
import { afterEach, describe, expect, test } from 'vitest'
import { sealEnvelope } from '../src/envelope/seal.js'
import { type Verdict, VerifyPool } from '../src/node/verify-pool.js'
import { makeGroup, payloadOf, TOPIC } from './_fixtures.js'

const { epochKey, thermostat } = makeGroup()
const seal = (seq: number) =>
  sealEnvelope({ topic: TOPIC, payload: payloadOf(256), epochKey, signer: thermostat, seq, sentAt: 1_700_000_000 })
const signingKey = thermostat.publicKey

const pools: VerifyPool[] = []
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()))
})
function pool(options: ConstructorParameters<typeof VerifyPool>[0]): VerifyPool {
  const made = new VerifyPool(options)
  pools.push(made)
  return made
}

function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  if (!condition()) throw new Error(`timed out waiting for ${what}`)
}

const verdictOf = (p: VerifyPool, envelope: Uint8Array, key = signingKey) =>
  within(new Promise<Verdict>((resolve) => p.verify(key, TOPIC, envelope, resolve)), 'a verdict')

describe('VerifyPool', () => {
  test('a batch split between the event loop and the worker gets each verdict right', async () => {
    const envelopes = Array.from({ length: 20 }, (_, i) => seal(i + 1))
    const tampered = new Set([0, 3, 7, 19]) // in both shares: the event loop takes the first 5 of 20
    for (const i of tampered) {
      const e = envelopes[i] as Uint8Array
      e[e.length - 1] = (e[e.length - 1] as number) ^ 1
    }
    const p = pool({ workers: 1 })
    // Queued in one turn: one batch, split.
    const verdicts = envelopes.map((e) => new Promise<Verdict>((resolve) => p.verify(signingKey, TOPIC, e, resolve)))
    expect(await within(Promise.all(verdicts), 'the verdicts')).toEqual(
      envelopes.map((_, i) => (tampered.has(i) ? 'invalid' : 'valid')),
    )
  })

  test('envelopes binding MQTT 5 properties: checked with the properties they came with, on the worker and the event loop', async () => {
    const properties = { contentType: 'application/json', userProperties: [['traceparent', '00-ab-cd-01'] as const] }
    const altered = { ...properties, contentType: 'text/plain' }
    const sealBound = (seq: number) =>
      sealEnvelope({
        topic: TOPIC,
        payload: payloadOf(64),
        epochKey,
        signer: thermostat,
        seq,
        sentAt: 1_700_000_000,
        properties,
      })
    // 20 in one turn: a share on the event loop, the rest on the worker; mixed with envelopes
    // that bind nothing (no properties in the batch for those).
    const jobs = Array.from({ length: 20 }, (_, i) => {
      if (i % 4 === 3) return { envelope: seal(i + 1), received: undefined, expected: 'valid' }
      const received = i % 4 === 0 ? altered : i % 4 === 1 ? undefined : properties
      return { envelope: sealBound(i + 1), received, expected: received === properties ? 'valid' : 'invalid' }
    })
    for (const share of [true, false]) {
      const p = pool({ workers: 1 })
      p.shareWithMainThread = share
      const verdicts = jobs.map(
        (job) => new Promise<Verdict>((resolve) => p.verify(signingKey, TOPIC, job.envelope, resolve, job.received)),
      )
      expect(await within(Promise.all(verdicts), 'the verdicts')).toEqual(jobs.map((job) => job.expected))
    }
  })

  test('the wrong key, the wrong topic and a bad key length are invalid', async () => {
    const p = pool({ workers: 1 })
    p.shareWithMainThread = false
    const envelope = seal(1)
    expect(await verdictOf(p, envelope, makeGroup().app.publicKey)).toBe('invalid')
    expect(await within(new Promise((r) => p.verify(signingKey, `${TOPIC}x`, envelope, r)), 'a verdict')).toBe(
      'invalid',
    )
    expect(await verdictOf(p, envelope, signingKey.subarray(0, 31))).toBe('invalid')
    expect(await verdictOf(p, envelope)).toBe('valid')
  })

  test('lazy: no thread until a batch is worth handing off', async () => {
    const p = pool({ workers: 1, lazy: true })
    for (let i = 0; i < 5; i++) expect(await verdictOf(p, seal(i + 1))).toBe('valid')
    expect(p.workers).toHaveLength(0) // small batches stay on the event loop
    const burst = Array.from({ length: 32 }, (_, i) => seal(100 + i))
    const verdicts = burst.map((e) => new Promise<Verdict>((resolve) => p.verify(signingKey, TOPIC, e, resolve)))
    expect(p.workers).toHaveLength(0) // the batch is flushed on the next turn
    expect(new Set(await within(Promise.all(verdicts), 'the burst'))).toEqual(new Set(['valid']))
    expect(p.workers).toHaveLength(1)
  })

  test('a worker that stops answering is replaced after the timeout; its envelopes are unavailable', async () => {
    const failures: string[] = []
    const p = pool({ workers: 1, timeoutMs: 300, onFailure: (reason) => failures.push(reason) })
    p.shareWithMainThread = false
    const envelope = seal(1)
    expect(await verdictOf(p, envelope)).toBe('valid')
    const [stuck] = p.workers
    p.pause(5_000)
    expect(await verdictOf(p, envelope)).toBe('unavailable')
    expect(failures).toEqual(['timeout'])
    await until(() => p.workers.length === 1 && p.workers[0] !== stuck, 'a new worker')
    const tampered = Uint8Array.from(envelope)
    tampered[5] = (tampered[5] as number) ^ 0x40
    expect(await verdictOf(p, tampered)).toBe('invalid')
    expect(await verdictOf(p, envelope)).toBe('valid')
    await p.close()
    expect(p.workers).toHaveLength(0)
    expect(await verdictOf(p, envelope)).toBe('unavailable') // closed: nothing is verified any more
  })
})
