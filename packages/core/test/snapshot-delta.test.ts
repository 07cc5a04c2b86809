// Snapshot deltas (issue 14): what changed from one broker snapshot's content to the next, signed
// by the key server under its own context. A delta must open only as a delta, say one thing
// whatever order it is applied in, and apply only to the content it names.
import { expect, test } from 'vitest'
import type { Policy } from '../src/acl.js'
import {
  applyBrokerSnapshotDelta,
  type BrokerSnapshot,
  type BrokerSnapshotDelta,
  createBrokerSnapshot,
  createBrokerSnapshotDelta,
  createBrokerSnapshotNotice,
  openBrokerSnapshot,
  openBrokerSnapshotDelta,
  openBrokerSnapshotNotice,
  type SnapshotPrincipal,
} from '../src/broker-snapshot.js'
import { generateIdentity } from '../src/identity.js'
import { signDocument } from '../src/signed-document.js'
import { codeOf } from './_fixtures.js'

const keyServer = generateIdentity('smqtt-keyserver')
const policy: Policy = { version: 1, rules: [], groups: [{ id: 1, name: 'all', filter: 'home/#' }], plaintext: [] }

const principal = (i: number, status: SnapshotPrincipal['status'] = 'active'): SnapshotPrincipal => ({
  id: `device-${i}`,
  kid: i,
  roles: ['device'],
  signingKey: keyServer.signingKey,
  status,
})

const base: BrokerSnapshot = {
  issuedAt: 1_800_000_000,
  policy,
  principals: [principal(1), principal(2), principal(3)],
  epochs: [
    { group: 1, epoch: 3, activatesAt: 1_799_999_000 },
    { group: 2, epoch: 9, activatesAt: 1_799_999_000 },
  ],
  revocationListVersion: 4,
  tag: 'base-tag',
}

const delta: BrokerSnapshotDelta = {
  issuedAt: 1_800_000_060,
  baseTag: 'base-tag',
  tag: 'next-tag',
  principals: [principal(2, 'revoked'), principal(4)],
  removedPrincipals: ['device-3'],
  epochGroups: [1],
  epochs: [
    { group: 1, epoch: 3, activatesAt: 1_799_999_000, retiresAt: 1_800_000_300 },
    { group: 1, epoch: 4, activatesAt: 1_800_000_060 },
  ],
  revocationListVersion: 5,
}

test('a delta signs and opens to itself, and applies to the content it names', () => {
  const opened = openBrokerSnapshotDelta(createBrokerSnapshotDelta(delta, keyServer), keyServer.signingKey)
  expect(opened).toEqual(delta)
  const next = applyBrokerSnapshotDelta(base, opened)
  expect(next).toEqual({
    issuedAt: 1_800_000_060,
    policy,
    principals: [principal(1), principal(2, 'revoked'), principal(4)],
    epochs: [base.epochs[1], ...delta.epochs],
    revocationListVersion: 5,
    tag: 'next-tag',
  })
  const newPolicy: Policy = { ...policy, groups: [...policy.groups, { id: 2, name: 'garden', filter: 'garden/#' }] }
  expect(applyBrokerSnapshotDelta(base, { ...delta, policy: newPolicy }).policy).toEqual(newPolicy)
})

test('delta for other content: applying it to a snapshot of another tag is refused', () => {
  expect(codeOf(() => applyBrokerSnapshotDelta({ ...base, tag: 'other-tag' }, delta))).toBe('ERR_SNAPSHOT_MALFORMED')
  const { tag: _untagged, ...untagged } = base
  expect(codeOf(() => applyBrokerSnapshotDelta(untagged, delta))).toBe('ERR_SNAPSHOT_MALFORMED')
})

test('document confusion: a delta opens only as a delta, a snapshot or notice never as one', () => {
  const signedDelta = createBrokerSnapshotDelta(delta, keyServer)
  expect(codeOf(() => openBrokerSnapshot(signedDelta, keyServer.signingKey))).toBe('ERR_SNAPSHOT_SIGNATURE_INVALID')
  expect(codeOf(() => openBrokerSnapshotNotice(signedDelta, keyServer.signingKey))).toBe(
    'ERR_SNAPSHOT_SIGNATURE_INVALID',
  )
  const signedSnapshot = createBrokerSnapshot(base, keyServer)
  const signedNotice = createBrokerSnapshotNotice({ issuedAt: 1_800_000_000, tag: 'base-tag' }, keyServer)
  for (const other of [signedSnapshot, signedNotice])
    expect(codeOf(() => openBrokerSnapshotDelta(other, keyServer.signingKey))).toBe('ERR_SNAPSHOT_SIGNATURE_INVALID')
})

test('forged delta: one signed by any key but the pinned one is refused', () => {
  const forger = generateIdentity('smqtt-keyserver')
  expect(codeOf(() => openBrokerSnapshotDelta(createBrokerSnapshotDelta(delta, forger), keyServer.signingKey))).toBe(
    'ERR_SNAPSHOT_SIGNATURE_INVALID',
  )
})

/** The delta's body as the key server would sign it, with `change` made to it. */
function signedBody(change: (body: Record<string, unknown>) => void) {
  const body = JSON.parse(
    Buffer.from((createBrokerSnapshotDelta(delta, keyServer) as { payload: string }).payload, 'base64url').toString(),
  ) as Record<string, unknown>
  change(body)
  return signDocument('smqtt.broker-snapshot-delta', body as { type: string }, keyServer)
}

test('ambiguous delta: a principal or group named twice, or an epoch outside the groups it replaces, is refused', () => {
  const cases: [string, (body: Record<string, unknown>) => void][] = [
    ['changed and removed', (b) => (b.removedPrincipals = ['device-3', 'device-2'])],
    ['changed twice', (b) => (b.principals = [...(b.principals as unknown[]), (b.principals as unknown[])[0]])],
    ['removed twice', (b) => (b.removedPrincipals = ['device-3', 'device-3'])],
    ['group twice', (b) => (b.epochGroups = [1, 1])],
    ['epoch of another group', (b) => (b.epochGroups = [2])],
    ['unknown field', (b) => (b.extra = 1)],
    ['no base', (b) => delete b.baseTag],
    ['tag not base64url', (b) => (b.tag = 'not a tag')],
    ['bad policy', (b) => (b.policy = { version: 1 })],
  ]
  expect(
    openBrokerSnapshotDelta(
      signedBody(() => {}),
      keyServer.signingKey,
    ),
  ).toEqual(delta)
  for (const [name, change] of cases)
    expect([name, codeOf(() => openBrokerSnapshotDelta(signedBody(change), keyServer.signingKey))]).toEqual([
      name,
      'ERR_SNAPSHOT_MALFORMED',
    ])
})
