// The attack catalogue, issue 13: a broker that asks the key server about principals its snapshot
// does not know (so a device can connect the moment it enrolled) must not become a lever on the
// key server. An attacker floods CONNECTs naming random unknown client ids, each with a
// well-formed CONNECT password: the broker pulls at most once a second, conditionally (the key
// server answers 304 while nothing changed), every CONNECT is refused `unknown-principal`, and a
// device enrolled in the middle of the flood still connects at its first try.
import { randomUUID } from 'node:crypto'
import { createConnectPassword, generateIdentity } from '@smqtt/core'
import { enrollThrough } from '@smqtt/test-kit/client'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type AttackStack, startAttackStack } from './_stack.js'

let s: AttackStack

beforeAll(async () => {
  // No scheduled pull during the test: every snapshot request comes from the flood.
  s = await startAttackStack({}, { pullIntervalSeconds: 3_600 })
}, 60_000)
afterAll(async () => {
  await s?.close()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

test('unknown-principal flood cannot make the broker hammer the key server', async () => {
  const keyServer = s.h.keyServer
  const answer = keyServer.brokerSnapshotUnless.bind(keyServer)
  const requests: { at: number; changed: boolean }[] = []
  keyServer.brokerSnapshotUnless = async (known) => {
    const result = await answer(known)
    requests.push({ at: Date.now(), changed: 'snapshot' in result })
    return result
  }
  s.takeAudit()
  try {
    const started = Date.now()
    const outcomes: Promise<string | number>[] = []
    let newcomer: Promise<string | number> | undefined
    // 80 CONNECTs over 4 s, each naming a fresh random id with a password signed by a fresh key.
    for (let wave = 0; wave < 20; wave++) {
      for (let i = 0; i < 4; i++) {
        const id = `ghost-${randomUUID()}`
        const password = createConnectPassword(generateIdentity(id), id)
        outcomes.push(
          s.raw({ clientId: id, username: id, password }).then(
            (client) => {
              client.end(true)
              return 'accepted'
            },
            (err: { code?: number }) => err.code ?? 'dropped',
          ),
        )
      }
      if (wave === 10) {
        // A real device enrolls mid-flood and connects at once.
        const member = await enrollThrough(s.h, 'thermostat-9', ['thermostat'])
        newcomer = s.rawAs(member).then(
          (client) => {
            client.end(true)
            return 'accepted'
          },
          (err: { code?: number }) => err.code ?? 'dropped',
        )
      }
      await sleep(200)
    }
    const results = await Promise.all(outcomes)
    const seconds = (Date.now() - started) / 1000

    expect(await newcomer).toBe('accepted')
    // Every flooding CONNECT: CONNACK 4, audited `unknown-principal` (the same answer as a wrong password).
    expect(results.filter((r) => r !== 4)).toEqual([])
    const refusals = s.takeAudit().filter((e) => e.event === 'refused' && e.hook === 'connect')
    expect(refusals.length).toBe(80)
    expect(new Set(refusals.map((e) => e.reason))).toEqual(new Set(['unknown-principal']))
    // At most one snapshot request a second reached the key server, and only the one after the
    // enrollment carried a snapshot: the others were answered 304 (ETag unchanged).
    expect(requests.length).toBeGreaterThanOrEqual(2)
    expect(requests.length).toBeLessThanOrEqual(Math.ceil(seconds) + 1)
    for (let i = 1; i < requests.length; i++)
      expect((requests[i] as { at: number }).at - (requests[i - 1] as { at: number }).at).toBeGreaterThanOrEqual(900)
    expect(requests.filter((r) => r.changed).length).toBe(1)
    // The broker counts them, by result.
    const metric = await s.broker.plugin.metrics.onDemandPulls.get()
    const count = (result: string) => metric.values.find((v) => v.labels.result === result)?.value ?? 0
    expect(count('applied')).toBe(1)
    expect(count('current')).toBe(requests.length - 1)
    expect(count('failed')).toBe(0)
  } finally {
    keyServer.brokerSnapshotUnless = answer
  }
}, 60_000)
