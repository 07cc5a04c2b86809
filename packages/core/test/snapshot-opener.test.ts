// Broker snapshots opened on a worker thread (issue 14, cliff 3): the same snapshot and the same
// refusals as openBrokerSnapshot, answered in parts, and a worker that dies refuses what it held.
import { afterEach, expect, test } from 'vitest'
import type { Policy } from '../src/acl.js'
import { createBrokerSnapshot, openBrokerSnapshot, type SnapshotPrincipal } from '../src/broker-snapshot.js'
import { isSmqttError } from '../src/errors.js'
import { generateIdentity } from '../src/identity.js'
import { PRINCIPALS_PER_PART, SnapshotOpener } from '../src/node/snapshot-opener.js'

const keyServer = generateIdentity('smqtt-keyserver')
const policy: Policy = { version: 1, rules: [], groups: [{ id: 1, name: 'all', filter: 'home/#' }], plaintext: [] }

function signedSnapshot(count: number, issuedAt = 1_800_000_000, tag?: string) {
  const principals: SnapshotPrincipal[] = Array.from({ length: count }, (_, i) => ({
    id: `device-${i}`,
    kid: i + 1,
    roles: ['device'],
    signingKey: keyServer.signingKey,
    status: i % 7 === 0 ? 'revoked' : 'active',
  }))
  const epochs = [{ group: 1, epoch: 3, activatesAt: issuedAt - 60 }]
  const snapshot = { issuedAt, policy, principals, epochs, revocationListVersion: 4 }
  return createBrokerSnapshot(tag === undefined ? snapshot : { ...snapshot, tag }, keyServer)
}

let opener: SnapshotOpener | undefined
afterEach(async () => {
  await opener?.close()
  opener = undefined
})

test('opens a snapshot of several parts to exactly what openBrokerSnapshot opens', async () => {
  opener = new SnapshotOpener(keyServer.signingKey)
  const signed = signedSnapshot(PRINCIPALS_PER_PART * 2 + 17)
  expect(await opener.open(signed)).toEqual(openBrokerSnapshot(signed, keyServer.signingKey))
})

test('the content tag is signed with the snapshot and read back, on the worker too; a malformed one is refused', async () => {
  opener = new SnapshotOpener(keyServer.signingKey)
  const signed = signedSnapshot(PRINCIPALS_PER_PART + 1, 1_800_000_000, 'qLm3_Zx-9w')
  expect(openBrokerSnapshot(signed, keyServer.signingKey).tag).toBe('qLm3_Zx-9w')
  expect((await opener.open(signed)).tag).toBe('qLm3_Zx-9w')
  expect(openBrokerSnapshot(signedSnapshot(1), keyServer.signingKey).tag).toBeUndefined()
  for (const tag of ['', 'not base64url!', 'x'.repeat(65)])
    expect(() => openBrokerSnapshot(signedSnapshot(1, 1_800_000_000, tag), keyServer.signingKey)).toThrow(
      expect.objectContaining({ code: 'ERR_SNAPSHOT_MALFORMED' }),
    )
})

test('refuses what openBrokerSnapshot refuses, with the same codes; two at once each get their own answer', async () => {
  opener = new SnapshotOpener(keyServer.signingKey)
  const signed = signedSnapshot(10)
  const edited = { ...signed, payload: `${signed.payload.slice(0, -4)}AAAA` }
  const codeOf = (promise: Promise<unknown>) =>
    promise.then(
      () => 'opened',
      (err: unknown) => (isSmqttError(err) ? err.code : 'other'),
    )
  // 'Ł' is U+0141: a lossy byte conversion would read it as 'A' (0x41), which base64url has.
  const nonAscii = { ...signed, payload: `Ł${signed.payload.slice(1)}` }
  const inline = await codeOf(Promise.resolve().then(() => openBrokerSnapshot(nonAscii, keyServer.signingKey)))
  const [forged, malformed, widened, fine] = await Promise.all([
    codeOf(opener.open(edited)),
    codeOf(opener.open({ payload: 42 })),
    codeOf(opener.open(nonAscii)),
    codeOf(opener.open(signed)),
  ])
  expect([forged, malformed, widened, fine]).toEqual([
    'ERR_SNAPSHOT_SIGNATURE_INVALID',
    'ERR_SNAPSHOT_MALFORMED',
    inline,
    'opened',
  ])
  expect(inline).toBe('ERR_SNAPSHOT_MALFORMED')
  const otherKeyServer = new SnapshotOpener(generateIdentity('another-keyserver').signingKey)
  expect(await codeOf(otherKeyServer.open(signed))).toBe('ERR_SNAPSHOT_SIGNATURE_INVALID')
  await otherKeyServer.close()
})

test('a worker that dies refuses the snapshot it held; the next one starts a new worker', async () => {
  opener = new SnapshotOpener(keyServer.signingKey)
  const held = opener.open(signedSnapshot(20_000))
  while (opener.pending === 0) await new Promise((resolve) => setImmediate(resolve)) // handed over
  await opener.worker?.terminate()
  await expect(held).rejects.toThrow(/snapshot worker/)
  const signed = signedSnapshot(3)
  expect((await opener.open(signed)).principals.length).toBe(3)
})
