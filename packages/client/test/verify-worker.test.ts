// Signatures checked on the shared worker thread (Node's default on >= 2 cores): a burst is
// verified there, attacks inside the burst are still refused with their codes, delivery keeps
// arrival order, and a worker that dies loses nothing (its envelopes are checked on the event
// loop instead). Real broker over TLS, real key server, real worker thread.
import { createEnvelopeSigner, sealEnvelope } from '@smqtt/core'
import { currentGroupKey, waitUntil } from '@smqtt/test-kit/client'
import { useStack } from '@smqtt/test-kit/use-stack'
import { expect, onTestFinished, test } from 'vitest'
import { sharedVerifyPool } from '../src/default-verifier.node.js'

const stack = useStack()
const text = (s: string) => new TextEncoder().encode(s)

/** A writer's envelopes sealed ahead, to be fired by a raw client in one burst. */
async function burstSetup(name: string) {
  const thermostat = await stack.enroll(`thermostat-${name}`, ['thermostat'])
  const app = await stack.enroll(`app-${name}`, ['app'])
  const subscriber = await stack.client(app)
  const topic = `home/${name}/thermostat/thermostat-${name}/temp`
  await subscriber.client.subscribeAsync(`home/${name}/thermostat/#`, { qos: 0 })
  const epochKey = await currentGroupKey(stack, thermostat.identity, 1)
  const signer = createEnvelopeSigner({ kid: thermostat.kid, seed: thermostat.identity.signingSeed })
  const seal = (seq: number) => sealEnvelope({ topic, payload: text(`m${seq}`), epochKey, signer, seq })
  const raw = await stack.raw()
  /** Writes every envelope without waiting, so they reach the subscriber in a few TLS reads. */
  const fire = (envelopes: Uint8Array[]) => {
    for (const envelope of envelopes) raw.publish(topic, Buffer.from(envelope), { qos: 0 })
  }
  return { subscriber, seal, fire }
}

/**
 * A subscriber whose first 40 messages went through (starting the worker if no test did yet),
 * and the shared pool, set to hand every envelope to the worker until the test ends.
 */
async function withWorkerOnly(name: string) {
  const setup = await burstSetup(name)
  setup.fire(Array.from({ length: 40 }, (_, i) => setup.seal(i + 1)))
  await setup.subscriber.waitForMessages(40, 15_000)
  const pool = sharedVerifyPool()
  if (!pool) throw new Error('no shared verification pool')
  await waitUntil(() => pool.workers.length === 1, 'the worker thread')
  pool.shareWithMainThread = false
  onTestFinished(() => {
    pool.shareWithMainThread = true
  })
  return { ...setup, pool }
}

test('a burst is verified on the worker, in order, and attacks inside it are refused', async () => {
  const { subscriber, seal, fire } = await burstSetup('burst')
  const envelopes: Uint8Array[] = []
  const expected: string[] = []
  for (let seq = 1; seq <= 300; seq++) {
    const envelope = seal(seq)
    if (seq % 50 === 7) {
      const forged = Uint8Array.from(envelope)
      forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1 // signature broken
      envelopes.push(forged)
    }
    envelopes.push(envelope)
    expected.push(`m${seq}`)
    if (seq % 50 === 20) envelopes.push(envelope) // the same envelope twice within the burst
  }
  fire(envelopes)
  await subscriber.waitForMessages(300, 15_000)
  await subscriber.waitForErrors(12, 5_000)
  expect(subscriber.messages.map((m) => m.text)).toEqual(expected)
  expect(subscriber.client.stats.rejected).toEqual({ ERR_ENVELOPE_SIGNATURE_INVALID: 6, ERR_REPLAY: 6 })
  expect(sharedVerifyPool()?.workers).toHaveLength(1) // the burst started the thread
})

test('a worker killed with envelopes in flight loses none: they are checked on the event loop', async () => {
  const { subscriber, seal, fire, pool } = await withWorkerOnly('killed')
  const [worker] = pool.workers
  pool.pause(10_000) // the worker holds what it gets
  fire(Array.from({ length: 200 }, (_, i) => seal(1_000 + i)))
  await waitUntil(() => pool.pending > 0, 'envelopes at the worker')
  await worker?.terminate()
  await subscriber.waitForMessages(240, 15_000)
  expect(subscriber.messages.slice(40).map((m) => m.text)).toEqual(
    Array.from({ length: 200 }, (_, i) => `m${1_000 + i}`),
  )
  expect(subscriber.client.stats.rejected).toEqual({})
})

test('endAsync waits for the envelopes still at the worker: every message that arrived is delivered', async () => {
  const { subscriber, seal, fire, pool } = await withWorkerOnly('ending')
  pool.pause(500) // the next burst waits at the worker
  fire(Array.from({ length: 100 }, (_, i) => seal(1_000 + i)))
  await waitUntil(() => subscriber.client.stats.received === 140, 'the burst to arrive')
  expect(subscriber.messages).toHaveLength(40) // still being verified
  await subscriber.client.endAsync()
  expect(subscriber.messages).toHaveLength(140)
  expect(subscriber.client.stats.rejected).toEqual({})
})
