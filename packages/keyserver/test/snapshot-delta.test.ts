// Snapshot deltas (issue 14, cliff 2): a broker that holds one of the last few contents is
// answered what changed since, signed, instead of the whole snapshot (17 MiB at 100,000
// principals). Whatever changed (enrollments, revocations, disables, rotations, the policy), the
// delta applied to the content it names must make exactly the current content.
import {
  applyBrokerSnapshotDelta,
  type BrokerSnapshot,
  openBrokerSnapshot,
  openBrokerSnapshotDelta,
  type SignedDocument,
} from '@smqtt/core'
import { addPrincipals, type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import fc from 'fast-check'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { contentPieces, MAX_DELTA_JSON_BYTES } from '../src/service/broker-snapshots.js'
import { contentJson, digestJson, digestPieces } from '../src/service/content-digest.js'

let h: Harness
beforeEach(async () => {
  h = await startHarness()
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  await h.enroll('thermostat-1', ['thermostat'])
  await h.enroll('app-1', ['app'])
})
afterEach(async () => {
  await h.close()
})

const current = async () => openBrokerSnapshot(await h.keyServer.brokerSnapshot(), h.keyServer.publicKey)

/** A snapshot's content in one order (a delta appends what it adds), issuedAt aside. */
const content = (s: BrokerSnapshot) => ({
  tag: s.tag,
  policy: s.policy,
  principals: [...s.principals].sort((a, b) => a.id.localeCompare(b.id)),
  epochs: [...s.epochs].sort((a, b) => a.group - b.group || a.epoch - b.epoch),
  revocationListVersion: s.revocationListVersion,
})

/** What the key server answers a broker holding `held` that takes deltas. */
async function answerTo(held: BrokerSnapshot) {
  const answer = await h.keyServer.brokerSnapshotUnless(held.tag, { deltas: true })
  if ('notice' in answer) throw new Error('expected a change')
  return answer
}

/** `held` brought up to date by the delta the key server answers; fails on a whole snapshot. */
async function viaDelta(held: BrokerSnapshot) {
  const answer = await answerTo(held)
  if (!('delta' in answer)) throw new Error('expected a delta')
  return { next: applyBrokerSnapshotDelta(held, openBrokerSnapshotDelta(answer.delta, h.keyServer.publicKey)), answer }
}

const bytes = (doc: SignedDocument) => JSON.stringify(doc).length

let policyChanges = 0
let enrolled = 0
const changes = {
  enroll: async () => void (await h.enroll(`thermostat-${++enrolled + 1}`, ['thermostat'])),
  revoke: async () => void (await h.keyServer.revokePrincipal('thermostat-1', 'test')),
  disable: async () => void (await h.keyServer.disablePrincipal('app-1', 'test')),
  rotate: async (n: number) =>
    void (await h.keyServer.rotateGroup((n % 3) + 1, { immediate: n % 2 === 0, actor: 'test', reason: 'test' })),
  policy: async () => {
    const extra = { id: 10 + ++policyChanges, name: `extra-${policyChanges}`, filter: `extra/${policyChanges}/#` }
    const policy = { ...SMART_HOME_POLICY, groups: [...SMART_HOME_POLICY.groups, extra] }
    const put = await h.admin('PUT', '/v1/admin/policy', { policy })
    if (put.status !== 200) throw new Error(`policy: ${put.text}`)
  },
}

test('a broker holding a recent content is sent what changed since, which makes exactly the current content', async () => {
  // A fleet large enough that even a policy change is smaller than the whole (else it is sent whole).
  await addPrincipals(h, 30, { prefix: 'fleet', roles: ['thermostat'] })
  const held = [await current()]
  for (const change of [
    () => changes.enroll(),
    () => changes.revoke(),
    () => changes.rotate(0),
    () => changes.disable(),
    () => changes.policy(),
  ]) {
    await change()
    held.push(await current())
  }
  const now = held.at(-1) as BrokerSnapshot
  const whole = await h.keyServer.brokerSnapshot()
  // The last four contents are kept as bases: each is brought to the current content.
  for (const base of held.slice(-5, -1)) {
    const { next, answer } = await viaDelta(base)
    expect(content(next)).toEqual(content(now))
    expect(answer.tag).toBe(now.tag)
    if ('delta' in answer) expect(bytes(answer.delta)).toBeLessThan(bytes(whole))
  }
  // One further behind gets the whole snapshot.
  expect('snapshot' in (await answerTo(held[0] as BrokerSnapshot))).toBe(true)
})

test('deltas only to a broker that takes them, and only from a content the key server built', async () => {
  const held = await current()
  await changes.enroll()
  expect('snapshot' in (await h.keyServer.brokerSnapshotUnless(held.tag))).toBe(true)
  expect('snapshot' in (await h.keyServer.brokerSnapshotUnless('made-up-tag', { deltas: true }))).toBe(true)
  expect('snapshot' in (await h.keyServer.brokerSnapshotUnless(undefined, { deltas: true }))).toBe(true)
  expect('delta' in (await answerTo(held))).toBe(true)
})

test('a change too large to open at once on a broker is sent whole', async () => {
  const held = await current()
  const count = Math.ceil(MAX_DELTA_JSON_BYTES / 100) // a principal is ~130 bytes of JSON
  await addPrincipals(h, count, { prefix: 'fleet', roles: ['thermostat'] })
  expect('snapshot' in (await answerTo(held))).toBe(true)
  // From there on, small changes are deltas again.
  const after = await current()
  await addPrincipals(h, 10, { prefix: 'more', roles: ['thermostat'] })
  expect('delta' in (await answerTo(after))).toBe(true)
}, 60_000)

test('a delta is stamped after everything signed for its base, like the snapshot it stands for', async () => {
  const held = await current()
  await changes.revoke()
  const { next } = await viaDelta(held)
  expect(next.issuedAt).toBeGreaterThan(held.issuedAt)
  expect(next.issuedAt).toBe((await current()).issuedAt)
})

test('property: any run of changes, from any kept base, the delta makes the current content', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.constantFrom(...(Object.keys(changes) as (keyof typeof changes)[])), { minLength: 1, maxLength: 5 }),
      fc.nat({ max: 3 }),
      async (run, back) => {
        const held = [await current()]
        for (const [i, change] of run.entries()) {
          await changes[change](held.length * 10 + i)
          held.push(await current())
        }
        const base = held[Math.max(0, held.length - 2 - back)] as BrokerSnapshot
        const now = held.at(-1) as BrokerSnapshot
        if (base.tag === now.tag) return
        const { next } = await viaDelta(base)
        expect(content(next)).toEqual(content(now))
      },
    ),
    { numRuns: 12 },
  )
}, 120_000)

test("the tag is the digest of the content's JSON, though assembled from pieces kept per principal", () => {
  const principal = (id: string, username?: string) => ({
    id,
    kid: id.length,
    roles: ['thermostat', 'été'],
    signingKey: new Uint8Array(32).fill(id.length),
    status: 'active' as const,
    ...(username === undefined ? {} : { username }),
  })
  const content = {
    policy: SMART_HOME_POLICY as unknown as BrokerSnapshot['policy'],
    principals: [principal('a'), principal('bé', 'ünïcode'), principal('c')],
    epochs: [{ group: 1, epoch: 2, activatesAt: 3, retiresAt: 4 }],
    revocationListVersion: 7,
  }
  const json = contentJson(content)
  expect(digestPieces(contentPieces(content, contentJson(content.policy), contentJson))).toEqual({
    digest: digestJson(json),
    bytes: Buffer.byteLength(json),
  })
  const empty = { ...content, principals: [] }
  expect(digestPieces(contentPieces(empty, contentJson(content.policy), contentJson)).digest).toBe(
    digestJson(contentJson(empty)),
  )
})
