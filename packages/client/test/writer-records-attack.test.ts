// Issue 14, cliff 4, the attack side: a bundle no longer lists every writer of a large group, so a
// subscriber learns writers from signed writer records it fetches by key id (`POST /v1/writers`).
// A record must give no more than a bundle's entry would: it cannot widen a writer's rights, move
// a writer into another group, serve another reader, outlive its few minutes, or bring back a
// revoked writer. Against the real key server over HTTPS (bundles listing no other writer:
// `bundleInlineWriters: 0`), with the client's own keyring and envelope checks; the broker is
// left out on purpose, as one beside a third-party broker (or a compromised one) would let these
// envelopes through.
import {
  createEnvelopeSigner,
  createWriterRecord,
  EpochKey,
  generateIdentity,
  type Identity,
  openEnvelope,
  openKeyBundle,
  openWriterRecord,
  RevocationList,
  type SuiteId,
  sealEnvelope,
} from '@smqtt/core'
import { codeOf } from '@smqtt/test-kit/errors'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { Keyring } from '../src/keyring.js'

type Member = { identity: Identity; kid: number }

let h: Harness
let thermostat: Member
let thermostat2: Member
let app: Member
let locksmith: Member
beforeAll(async () => {
  h = await startHarness({ settings: { bundleInlineWriters: 0 } })
  expect((await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })).status).toBe(200)
  thermostat = await h.enroll('thermostat-1', ['thermostat'])
  thermostat2 = await h.enroll('thermostat-2', ['thermostat'])
  app = await h.enroll('app-1', ['app'])
  locksmith = await h.enroll('app-2', ['app']) // writes lock commands (group 2), reads temperatures
}, 30_000)
afterAll(async () => {
  await h?.close()
})

async function bundleOf(member: Member) {
  const response = await h.device(member.identity, 'GET', '/v1/bundle')
  expect(response.status, response.text).toBe(200)
  const signed = (response.body as { bundle: unknown }).bundle
  return openKeyBundle(signed, {
    keyServerPublicKey: h.keyServer.publicKey,
    recipient: member.identity,
    now: h.clock.now,
  })
}

async function keyringOf(member: Member): Promise<Keyring> {
  const keyring = new Keyring(() => h.clock.now)
  keyring.apply(await bundleOf(member))
  return keyring
}

async function recordFor(reader: Member, group: number, kids: number[]): Promise<unknown> {
  const response = await h.device(reader.identity, 'POST', '/v1/writers', { group, kids })
  expect(response.status, response.text).toBe(200)
  return (response.body as { record: unknown }).record
}

const open = (signed: unknown, reader = 'app-1') =>
  openWriterRecord(signed, { keyServerPublicKey: h.keyServer.publicKey, reader, now: h.clock.now })

let seq = 1
/** An envelope honestly signed by `member` under `group`'s current epoch, which it holds. */
async function envelopeBy(member: Member, group: number, topic: string): Promise<Uint8Array> {
  const held = (await bundleOf(member)).groups.find((g) => g.group === group)
  const epoch = held?.epochs.at(-1)
  if (!held || !epoch) throw new Error(`${member.identity.id} holds no key of group ${group}`)
  return sealEnvelope({
    topic,
    payload: new TextEncoder().encode('21.5'),
    epochKey: new EpochKey({ group, epoch: epoch.epoch, suite: held.suite as SuiteId, key: epoch.key }),
    signer: createEnvelopeSigner({ kid: member.kid, seed: member.identity.signingSeed }),
    seq: seq++,
  })
}

test('a writer record cannot widen a writer’s rights or resurrect a revoked writer', async () => {
  const own = 'home/h1/thermostat/thermostat-1/temp'
  const others = 'home/h1/thermostat/thermostat-2/temp'
  const keyring = await keyringOf(app)
  const fromThermostat = await envelopeBy(thermostat, 1, own)
  // Its bundle lists no writer of group 1: the sender is unknown until its record is fetched.
  expect(codeOf(() => openEnvelope(fromThermostat, own, { keys: keyring, now: h.clock.now }))).toBe(
    'ERR_UNKNOWN_SENDER',
  )
  const genuine = await recordFor(app, 1, [thermostat.kid, thermostat2.kid])
  expect(keyring.addWriters(open(genuine))).toBe(2)
  expect(codeOf(() => openEnvelope(fromThermostat, own, { keys: keyring, now: h.clock.now }))).toBe('ok')

  // 1. Widened rights: a record giving thermostat-1 every thermostat's topics, signed by anyone
  //    but the key server, or the genuine record with its rights edited: refused unsigned.
  const attacker = generateIdentity('attacker')
  const widened = createWriterRecord({
    reader: 'app-1',
    group: 1,
    filter: 'home/+/thermostat/#',
    writers: [
      {
        kid: thermostat.kid,
        principal: 'thermostat-1',
        signingKey: thermostat.identity.signingKey,
        publish: { allow: ['home/+/thermostat/#'], deny: [] },
      },
    ],
    issuedAt: h.clock.now + 1,
    notAfter: h.clock.now + 3_600,
    keyServer: attacker,
  })
  expect(codeOf(() => open(widened))).toBe('ERR_BUNDLE_SIGNATURE_INVALID')
  const edited = structuredClone(genuine) as { payload: string }
  const body = JSON.parse(Buffer.from(edited.payload, 'base64url').toString('utf8'))
  body.writers[0].publish.allow = ['home/+/thermostat/#']
  edited.payload = Buffer.from(JSON.stringify(body)).toString('base64url')
  expect(codeOf(() => open(edited))).toBe('ERR_BUNDLE_SIGNATURE_INVALID')
  // Its own rights still hold: on thermostat-2's topic, refused.
  const misplaced = await envelopeBy(thermostat, 1, others)
  expect(codeOf(() => openEnvelope(misplaced, others, { keys: keyring, now: h.clock.now }))).toBe(
    'ERR_SENDER_NOT_PERMITTED',
  )

  // 2. A record of another group: app-2 writes lock commands (group 2); a genuine record of it
  //    there makes it no writer of group 1, and relabelling the group breaks the signature.
  const lockRecord = await recordFor(app, 2, [locksmith.kid])
  expect(open(lockRecord).writers.has(locksmith.kid)).toBe(true)
  keyring.addWriters(open(lockRecord))
  const fromLocksmith = await envelopeBy(locksmith, 1, own) // it reads group 1, so it holds the key
  expect(codeOf(() => openEnvelope(fromLocksmith, own, { keys: keyring, now: h.clock.now }))).toBe('ERR_UNKNOWN_SENDER')
  const relabelled = structuredClone(lockRecord) as { payload: string }
  const lockBody = JSON.parse(Buffer.from(relabelled.payload, 'base64url').toString('utf8'))
  lockBody.group = 1
  relabelled.payload = Buffer.from(JSON.stringify(lockBody)).toString('base64url')
  expect(codeOf(() => open(relabelled))).toBe('ERR_BUNDLE_SIGNATURE_INVALID')
  // The key server does not list it as a writer of group 1 either.
  expect(open(await recordFor(app, 1, [locksmith.kid])).writers.size).toBe(0)

  // 3. Another reader's record: bound to the reader it was asked for.
  const othersRecord = await recordFor(locksmith, 1, [thermostat.kid])
  expect(codeOf(() => open(othersRecord))).toBe('ERR_BUNDLE_WRONG_RECIPIENT')

  // 4. A revoked writer: what it keeps sealing under the epoch it held (readable for the grace
  //    period) is refused through the revocation list by a subscriber still holding a record
  //    issued before; and it is in no record issued after.
  const fromRevoked = await envelopeBy(thermostat2, 1, others)
  expect(codeOf(() => openEnvelope(fromRevoked, others, { keys: keyring, now: h.clock.now }))).toBe('ok')
  expect((await h.admin('POST', '/v1/admin/principals/thermostat-2/revoke')).status).toBe(200)
  h.clock.now += 5
  expect(open(await recordFor(app, 1, [thermostat2.kid, thermostat.kid])).writers.has(thermostat2.kid)).toBe(false)
  const revocations = new RevocationList()
  const listed = await h.device(app.identity, 'GET', '/v1/revocations')
  revocations.accept((listed.body as { revocations: unknown }).revocations, {
    keyServerPublicKey: h.keyServer.publicKey,
  })
  expect(
    codeOf(() =>
      openEnvelope(fromRevoked, others, {
        keys: keyring, // the old epoch and the record of before the revocation
        now: h.clock.now,
        isRevoked: (kid) => revocations.isRevokedKid(kid),
      }),
    ),
  ).toBe('ERR_SENDER_REVOKED')

  // 5. A record outlives nothing: past its notAfter (300 s) the writer is unknown again.
  const later = await keyringOf(app)
  later.addWriters(open(await recordFor(app, 1, [thermostat.kid])))
  const current = await envelopeBy(thermostat, 1, own) // under the epoch the revocation opened
  expect(codeOf(() => openEnvelope(current, own, { keys: later, now: h.clock.now }))).toBe('ok')
  h.clock.now += 301
  expect(later.writerKey(1, thermostat.kid)).toBeUndefined()
  expect(codeOf(() => openEnvelope(current, own, { keys: later, now: h.clock.now }))).toBe('ERR_UNKNOWN_SENDER')
})
