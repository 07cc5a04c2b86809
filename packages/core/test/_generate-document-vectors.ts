// Generated packages/core/vectors/documents-v1.json once; kept to show how.
// The file is frozen: this script refuses to overwrite it. Run (from the repository root):
//   npx tsx --conditions=smqtt-source packages/core/test/_generate-document-vectors.ts
//
// Everything a device needs besides the envelope (docs/documents.md): signed documents (key
// bundle, revocation list, writer record, principal record), the CONNECT password, signed HTTP
// requests, the enrollment proof, and HPKE as bundles use it. Every key comes from a fixed seed
// and every time is fixed. Randomness is fixed through test-only means that production code
// never takes: HPKE's `unsafeEphemeralSecret`, and a backend whose `randomBytes` returns given
// bytes (for the nonces of the CONNECT password and of request signatures).
import { existsSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { concatBytes, toBase64Url, toHex, utf8 } from '../src/_bytes.js'
import { createConnectPassword, verifyConnectPassword } from '../src/connect-password.js'
import { principalControlTopic } from '../src/control-topics.js'
import { hpkeSeal } from '../src/crypto/hpke.js'
import { sha256 } from '../src/crypto/kdf.js'
import { signedBytes, signWithContext } from '../src/crypto/signature.js'
import { createEnrollmentRequest } from '../src/enrollment-request.js'
import { SmqttError } from '../src/errors.js'
import { type Identity, importIdentity } from '../src/identity.js'
import {
  createKeyBundle,
  type KeyGroupWriter,
  type OpenedKeyBundle,
  openKeyBundle,
  type SealedEpochKey,
} from '../src/key-bundle.js'
import { createPrincipalRecord, openPrincipalRecord } from '../src/principal-record.js'
import { parseRequestSignature, signRequest, verifyRequestSignature } from '../src/request-signature.js'
import { createRevocationList, RevocationList } from '../src/revocation-list.js'
import type { SignedDocument } from '../src/signed-document.js'
import { createWriterRecord, openWriterRecord } from '../src/writer-record.js'
import { fixedRandom, groupKeyInfo, payloadText } from './_document-vectors.js'
import { codeOf, nativeBackend } from './_fixtures.js'

const FILE = fileURLToPath(new URL('../vectors/documents-v1.json', import.meta.url))
if (existsSync(FILE) && !process.argv.includes('--force'))
  throw new Error(`${FILE} exists and is frozen; a format change needs a new version, not new vectors`)

const backend = nativeBackend
/** A 32-byte value named by a label: sha256("smqtt documents-v1 " + label). */
const seed = (label: string) => sha256(utf8(`smqtt documents-v1 ${label}`))

function identity(id: string): Identity {
  return importIdentity(
    {
      type: 'smqtt.identity',
      v: 1,
      id,
      kem: 'x25519',
      signingSeed: toBase64Url(seed(`${id} signing`)),
      agreementSecret: toBase64Url(seed(`${id} agreement`)),
    },
    { backend },
  )
}
const identityJson = (i: Identity) => ({
  id: i.id,
  signingSeed: toHex(i.signingSeed),
  signingKey: toHex(i.signingKey),
  kem: i.kem,
  agreementSecret: toHex(i.agreementSecret),
  agreementKey: toHex(i.agreementKey),
})

const keyServer = { signingSeed: seed('key server'), signingKey: backend.ed25519PublicKey(seed('key server')) }
const otherKeyServer = {
  signingSeed: seed('another key server'),
  signingKey: backend.ed25519PublicKey(seed('another key server')),
}
const device = identity('thermostat-1')
const app = identity('app-1')
const lock = identity('lock-1')

const T = 1_796_000_000 // 2026-11-30T01:33:20Z

interface HpkeCase {
  name: string
  kem: 'x25519'
  recipientSecretKey: string
  recipientPublicKey: string
  ephemeralSecretKey: string
  recipient: string
  group: number
  epoch: number
  suite: number
  info: string
  aad: string
  plaintext: string
  enc: string
  ciphertext: string
}
const hpkeCases: HpkeCase[] = []

/** HPKE-seals `key` to `recipient` for a slot, with an ephemeral key fixed by the slot. */
function hpkeSealSlot(recipient: Identity, group: number, epoch: number, suite: number, key: Uint8Array) {
  const ephemeral = seed(`ephemeral ${recipient.id} ${group} ${epoch}`)
  const info = groupKeyInfo(recipient.id, group, epoch, suite)
  const sealed = hpkeSeal({
    kem: 'x25519',
    recipientPublicKey: recipient.agreementKey,
    info,
    plaintext: key,
    unsafeEphemeralSecret: ephemeral,
    backend,
  })
  return { ephemeral, info, ...sealed }
}

/** The sealed epoch key of a bundle slot. */
function seal(recipient: Identity, group: number, epoch: number, suite: number, key: Uint8Array): SealedEpochKey {
  const { enc, ciphertext } = hpkeSealSlot(recipient, group, epoch, suite, key)
  return {
    recipient: recipient.id,
    group,
    epoch,
    suite,
    kem: 'x25519',
    enc: toBase64Url(enc),
    sealedKey: toBase64Url(ciphertext),
  }
}

/** Records the HPKE case of a slot (the same sealing as `seal`). */
function hpkeCase(name: string, recipient: Identity, group: number, epoch: number, suite: number, key: Uint8Array) {
  const { ephemeral, info, enc, ciphertext } = hpkeSealSlot(recipient, group, epoch, suite, key)
  hpkeCases.push({
    name,
    kem: 'x25519',
    recipientSecretKey: toHex(recipient.agreementSecret),
    recipientPublicKey: toHex(recipient.agreementKey),
    ephemeralSecretKey: toHex(ephemeral),
    recipient: recipient.id,
    group,
    epoch,
    suite,
    info: toHex(info),
    aad: '',
    plaintext: toHex(key),
    enc: toHex(enc),
    ciphertext: toHex(ciphertext),
  })
}

/** A document signed by hand: any payload text under any context (for negative cases). */
function signRaw(context: string, payloadText: string, signer = keyServer): SignedDocument {
  const payload = utf8(payloadText)
  return { payload: toBase64Url(payload), signature: toBase64Url(signWithContext(signer, context, payload, backend)) }
}
/** Re-signs the payload JSON of `doc` after `edit` (the key server's signature stays valid). */
function edited(context: string, doc: SignedDocument, edit: (body: Record<string, unknown>) => void): SignedDocument {
  const body = JSON.parse(payloadText(doc)) as Record<string, unknown>
  edit(body)
  return signRaw(context, JSON.stringify(body))
}

// ---- signature with context --------------------------------------------------------------
const signatureCases = [
  { context: 'smqtt.key-bundle', message: utf8('{"type":"smqtt.key-bundle"}') },
  { context: 'mqtt-connect', message: utf8('thermostat-1\n1796000000\nAAECAwQFBgcICQoLDA0ODw') },
].map(({ context, message }) => ({
  context,
  signingSeed: toHex(keyServer.signingSeed),
  signingKey: toHex(keyServer.signingKey),
  message: toHex(message),
  signedBytes: toHex(signedBytes(context, message)),
  signature: toHex(signWithContext(keyServer, context, message, backend)),
}))

// ---- base64url ---------------------------------------------------------------------------
const base64url = {
  valid: [
    [new Uint8Array(0), ''],
    [Uint8Array.of(0xfb), '-w'],
    [Uint8Array.of(0xfb, 0xff), '-_8'],
    [Uint8Array.of(0xfb, 0xff, 0xbf), '-_-_'],
    [Uint8Array.of(0x00, 0x10, 0x83, 0x10), 'ABCDEA'],
  ].map(([bytes, text]) => {
    if (toBase64Url(bytes as Uint8Array) !== text) throw new Error(`base64url of ${toHex(bytes as Uint8Array)}`)
    return { hex: toHex(bytes as Uint8Array), text: text as string }
  }),
  // Each must be refused: padding, standard alphabet, whitespace, a length of 1 mod 4, and
  // non-zero bits past the last byte (`-x` and `-_9` decode to the same bytes as `-w`, `-_8`).
  invalid: ['-w==', '-w=', '+w', '/w', '-w ', ' -w', 'A', 'ABCDE', '-x', '-_9', 'AB\nCD', 'ABC\u00e9'],
}

// ---- key bundle --------------------------------------------------------------------------
const epochKey = (group: number, epoch: number) => seed(`epoch key ${group} ${epoch}`)
const writers7: KeyGroupWriter[] = [
  {
    kid: 1000,
    principal: device.id,
    signingKey: device.signingKey,
    publish: { allow: ['home/+/thermostat/thermostat-1/#'], deny: [] },
  },
  {
    kid: 1001,
    principal: app.id,
    signingKey: app.signingKey,
    publish: { allow: ['home/+/thermostat/#'], deny: ['home/+/thermostat/+/firmware'] },
  },
]
const writers9: KeyGroupWriter[] = [
  { kid: 1001, principal: app.id, signingKey: app.signingKey, publish: { allow: ['home/+/lock/+/set'], deny: [] } },
]
const bundleGroups = (recipient: Identity) => [
  {
    group: 7,
    name: 'thermostats',
    filter: 'home/+/thermostat/#',
    suite: 1,
    epochs: [
      {
        epoch: 300,
        activatesAt: T - 86_400,
        retiresAt: T + 7200,
        sealed: seal(recipient, 7, 300, 1, epochKey(7, 300)),
      },
      { epoch: 301, activatesAt: T, retiresAt: T + 93_600, sealed: seal(recipient, 7, 301, 1, epochKey(7, 301)) },
    ],
    writers: writers7,
  },
  {
    group: 9,
    name: 'serrures du séjour',
    filter: 'home/+/lock/#',
    suite: 2,
    epochs: [
      { epoch: 1, activatesAt: T - 60, retiresAt: T + 90_000, sealed: seal(recipient, 9, 1, 2, epochKey(9, 1)) },
    ],
    writers: writers9,
  },
]
const validity = { notBefore: T - 60, notAfter: T + 3600 }
const bundle = createKeyBundle({
  recipient: device,
  groups: bundleGroups(device),
  validity,
  issuedAt: T,
  keyServer,
  backend,
})
hpkeCase(
  'epoch key of group 7 epoch 300 for thermostat-1, as sealed in the key bundle',
  device,
  7,
  300,
  1,
  epochKey(7, 300),
)
hpkeCase(
  'a non-ASCII recipient id (UTF-8 in info), group 16909060, epoch 4294967295, suite 2',
  identity('capteur-séjour'),
  0x01020304,
  0xffff_ffff,
  2,
  seed('plaintext'),
)

const openedJson = (b: OpenedKeyBundle) => ({
  principal: b.principal,
  issuedAt: b.issuedAt,
  notBefore: b.notBefore,
  notAfter: b.notAfter,
  groups: b.groups.map((g) => ({
    group: g.group,
    name: g.name,
    filter: g.filter,
    suite: g.suite,
    epochs: g.epochs.map((e) => ({
      epoch: e.epoch,
      activatesAt: e.activatesAt,
      retiresAt: e.retiresAt,
      key: toHex(e.key),
    })),
    writers: [...g.writers].map(([kid, w]) => ({
      kid,
      principal: w.principal,
      signingKey: toHex(w.signingKey),
      publish: w.publish,
    })),
  })),
})
const openBundle = (doc: unknown, now: number, recipient: Identity = device) =>
  openKeyBundle(doc, { keyServerPublicKey: keyServer.signingKey, recipient, now, backend })

type Body = Record<string, unknown>
type GroupJson = { epochs: Body[]; writers: Body[] } & Body
const groupsOf = (b: Body) => b.groups as GroupJson[]
const B = 'smqtt.key-bundle'
const bundleNegative: { name: string; document: unknown; now?: number }[] = [
  { name: 'signature altered (first byte)', document: { ...bundle, signature: alterFirstChar(bundle.signature) } },
  { name: 'signed by another key', document: signRaw(B, payloadText(bundle), otherKeyServer) },
  {
    name: 'signed under another context (smqtt.revocations)',
    document: signRaw('smqtt.revocations', payloadText(bundle)),
  },
  {
    name: 'body type smqtt.revocations, signed under smqtt.key-bundle',
    document: edited(B, bundle, (b) => {
      b.type = 'smqtt.revocations'
    }),
  },
  {
    name: 'sealed key of epoch 300 moved into the slot of epoch 301 (same group)',
    document: edited(B, bundle, (b) => {
      const [e300, e301] = (groupsOf(b)[0] as GroupJson).epochs as [Body, Body]
      e301.enc = e300.enc
      e301.sealedKey = e300.sealedKey
    }),
  },
  {
    name: 'sealed key of group 7 epoch 300 moved to group 9 epoch 1',
    document: edited(B, bundle, (b) => {
      const from = groupsOf(b)[0]?.epochs[0] as Body
      const to = groupsOf(b)[1]?.epochs[0] as Body
      to.enc = from.enc
      to.sealedKey = from.sealedKey
    }),
  },
  {
    name: 'suite of group 9 changed to 1 (the suite is bound in info)',
    document: edited(B, bundle, (b) => {
      ;(groupsOf(b)[1] as Body).suite = 1
    }),
  },
  {
    name: 'an epoch sealed with kem xwing (1120-byte enc) for an x25519 recipient',
    document: edited(B, bundle, (b) => {
      const e = groupsOf(b)[1]?.epochs[0] as Body
      e.kem = 'xwing'
      e.enc = toBase64Url(new Uint8Array(1120).fill(7))
    }),
  },
  { name: 'opened by another recipient (lock-1)', document: bundle },
  {
    name: 'unknown field at top level',
    document: edited(B, bundle, (b) => {
      b.extra = 1
    }),
  },
  {
    name: 'unknown field in an epoch',
    document: edited(B, bundle, (b) => {
      ;(groupsOf(b)[0]?.epochs[0] as Body).note = 'x'
    }),
  },
  {
    name: 'missing field (writers of group 9)',
    document: edited(B, bundle, (b) => {
      delete (groupsOf(b)[1] as Body).writers
    }),
  },
  {
    name: 'enc not canonical base64url (non-zero trailing bits)',
    document: edited(B, bundle, (b) => {
      const e = groupsOf(b)[0]?.epochs[0] as Body
      e.enc = nonCanonical(e.enc as string)
    }),
  },
  {
    name: 'enc with padding',
    document: edited(B, bundle, (b) => {
      const e = groupsOf(b)[0]?.epochs[0] as Body
      e.enc = `${e.enc as string}=`
    }),
  },
  {
    name: 'sealedKey of 47 bytes',
    document: edited(B, bundle, (b) => {
      const e = groupsOf(b)[0]?.epochs[0] as Body
      e.sealedKey = toBase64Url(Buffer.from(e.sealedKey as string, 'base64url').subarray(1))
    }),
  },
  {
    name: 'payload not canonical base64url (padded)',
    document: { payload: `${bundle.payload}=`, signature: bundle.signature },
  },
  { name: 'signature of 63 bytes', document: { payload: bundle.payload, signature: toBase64Url(new Uint8Array(63)) } },
  { name: 'outer object with an unknown field', document: { ...bundle, kid: 1 } },
  {
    name: 'issuedAt 2^32 (not uint32)',
    document: edited(B, bundle, (b) => {
      b.issuedAt = 2 ** 32
    }),
  },
  {
    name: 'issuedAt -1',
    document: edited(B, bundle, (b) => {
      b.issuedAt = -1
    }),
  },
  {
    name: 'notBefore a string',
    document: edited(B, bundle, (b) => {
      b.notBefore = String(b.notBefore)
    }),
  },
  {
    name: 'issuedAt 1796000000.5',
    document: signRaw(B, payloadText(bundle).replace(`"issuedAt":${T}`, `"issuedAt":${T}.5`)),
  },
  {
    name: 'v 1',
    document: edited(B, bundle, (b) => {
      b.v = 1
    }),
  },
  {
    name: 'group name with a control character (U+0007)',
    document: edited(B, bundle, (b) => {
      ;(groupsOf(b)[0] as Body).name = 'thermo\u0007stats'
    }),
  },
  {
    name: 'group name with a lone surrogate (\\ud800 escape)',
    document: signRaw(B, payloadText(bundle).replace('"thermostats"', '"thermo\\ud800stats"')),
  },
  {
    name: 'group name empty',
    document: edited(B, bundle, (b) => {
      ;(groupsOf(b)[0] as Body).name = ''
    }),
  },
  {
    name: 'duplicate epoch in a group',
    document: edited(B, bundle, (b) => {
      const epochs = groupsOf(b)[0]?.epochs as Body[]
      ;(epochs[1] as Body).epoch = (epochs[0] as Body).epoch
    }),
  },
  {
    name: 'writer rights outside the group filter',
    document: edited(B, bundle, (b) => {
      ;(groupsOf(b)[0]?.writers[0] as Body).publish = { allow: ['home/+/lock/#'], deny: [] }
    }),
  },
  {
    name: 'writer with no allow filter',
    document: edited(B, bundle, (b) => {
      ;(groupsOf(b)[0]?.writers[0] as Body).publish = { allow: [], deny: [] }
    }),
  },
  {
    name: 'writer signing key of small order (identity point)',
    document: edited(B, bundle, (b) => {
      ;(groupsOf(b)[0]?.writers[0] as Body).signingKey = toBase64Url(Uint8Array.of(1, ...new Uint8Array(31)))
    }),
  },
  {
    name: 'notBefore after notAfter',
    document: edited(B, bundle, (b) => {
      b.notBefore = (b.notAfter as number) + 1
    }),
  },
  { name: 'payload not UTF-8 (0xff byte)', document: signRawBytes(B, Uint8Array.of(0x7b, 0xff, 0x7d)) },
  { name: 'payload not JSON', document: signRaw(B, '{"type":"smqtt.key-bundle",') },
  { name: 'payload a JSON array', document: signRaw(B, '[]') },
  { name: 'at notAfter: expired', document: bundle, now: validity.notAfter },
  { name: 'one second before notBefore: not yet valid', document: bundle, now: validity.notBefore - 1 },
]
const keyBundle = {
  recipient: identityJson(device),
  now: T,
  document: bundle,
  payloadText: payloadText(bundle),
  opened: openedJson(openBundle(bundle, T)),
  boundaries: [
    { now: validity.notBefore, result: codeOf(() => openBundle(bundle, validity.notBefore)) },
    { now: validity.notAfter - 1, result: codeOf(() => openBundle(bundle, validity.notAfter - 1)) },
  ],
  negative: bundleNegative.map((c) => ({
    name: c.name,
    now: c.now ?? T,
    recipient: c.name.includes('lock-1') ? lock.id : device.id,
    document: c.document,
    error: codeOf(() => openBundle(c.document, c.now ?? T, c.name.includes('lock-1') ? lock : device)),
  })),
}
for (const c of keyBundle.negative) if (c.error === 'ok') throw new Error(`bundle case "${c.name}" opened`)
// Other texts of the same content, which a reader must accept like the key server's own: the
// signature covers the bytes, and the reader compares values, not spellings.
const accepted = [
  {
    name: 'pretty-printed with other key order',
    text: JSON.stringify(reorder(JSON.parse(payloadText(bundle))), null, 2),
  },
  { name: 'issuedAt written 1796000000.0', text: payloadText(bundle).replace(`"issuedAt":${T}`, `"issuedAt":${T}.0`) },
  { name: 'issuedAt written 1.796e9', text: payloadText(bundle).replace(`"issuedAt":${T}`, '"issuedAt":1.796e9') },
  { name: 'a group name with \\u escapes', text: payloadText(bundle).replace('"thermostats"', '"\\u0074hermostats"') },
].map((c) => {
  const document = signRaw(B, c.text)
  const result = codeOf(() => openBundle(document, T))
  if (result !== 'ok') throw new Error(`accepted case ${c.name}: ${result}`)
  return { name: c.name, document, payloadText: c.text, error: result }
})
function reorder(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reorder)
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(
    Object.entries(value)
      .reverse()
      .map(([k, v]) => [k, reorder(v)]),
  )
}

function alterFirstChar(text: string): string {
  // Changes the first byte's top bits, keeping the text canonical base64url.
  const first = text[0] === 'A' ? 'B' : 'A'
  return first + text.slice(1)
}
function nonCanonical(text: string): string {
  // 32 bytes: 43 characters, the last carrying 2 unused bits; set one.
  const last = text.charCodeAt(text.length - 1)
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const value = alphabet.indexOf(String.fromCharCode(last))
  return text.slice(0, -1) + alphabet[value | 1]
}
function signRawBytes(context: string, payload: Uint8Array): SignedDocument {
  return {
    payload: toBase64Url(payload),
    signature: toBase64Url(signWithContext(keyServer, context, payload, backend)),
  }
}

// ---- revocation list ----------------------------------------------------------------------
const R = 'smqtt.revocations'
const revocations = createRevocationList({
  version: 42,
  issuedAt: T,
  prunedBefore: T - 86_400,
  entries: [
    { principal: 'old-sensor-3', kid: 977, revokedAt: T - 3600 },
    { principal: 'old-sensor-3', kid: 978, revokedAt: T - 3600 },
  ],
  keyServer,
  backend,
})
const revocationsNoWatermark = createRevocationList({ version: 1, issuedAt: T - 7200, entries: [], keyServer, backend })
const revocationsSameVersion = createRevocationList({
  version: 42,
  issuedAt: T + 1,
  prunedBefore: T - 86_400,
  entries: [],
  keyServer,
  backend,
})
const revocationsNext = createRevocationList({
  version: 43,
  issuedAt: T + 10,
  prunedBefore: T - 80_000,
  entries: [{ principal: 'old-sensor-3', kid: 977, revokedAt: T - 3600 }],
  keyServer,
  backend,
})
const acceptOne = (doc: unknown) =>
  codeOf(() => new RevocationList().accept(doc, { keyServerPublicKey: keyServer.signingKey, backend }))
const revocationNegative = [
  { name: 'signature altered', document: { ...revocations, signature: alterFirstChar(revocations.signature) } },
  { name: 'signed under context smqtt.key-bundle', document: signRaw(B, payloadText(revocations)) },
  { name: 'duplicate kid', document: edited(R, revocations, (b) => (((b.entries as Body[])[1] as Body).kid = 977)) },
  {
    name: 'unknown field in an entry',
    document: edited(R, revocations, (b) => (((b.entries as Body[])[0] as Body).reason = 'lost')),
  },
  { name: 'prunedBefore null', document: edited(R, revocations, (b) => (b.prunedBefore = null)) },
  { name: 'version 2^32', document: edited(R, revocations, (b) => (b.version = 2 ** 32)) },
  { name: 'v 2', document: edited(R, revocations, (b) => (b.v = 2)) },
  { name: 'entries missing', document: edited(R, revocations, (b) => delete b.entries) },
].map((c) => ({ ...c, error: acceptOne(c.document) }))
// Sequences of documents given to one holder, in order: the result of each accept.
function sequence(name: string, docs: SignedDocument[]) {
  const list = new RevocationList()
  const results = docs.map((d) => {
    try {
      return list.accept(d, { keyServerPublicKey: keyServer.signingKey, backend }) ? 'accepted' : 'unchanged'
    } catch (err) {
      if (err instanceof SmqttError) return err.code
      throw err
    }
  })
  return { name, documents: docs, results, held: { version: list.version, prunedBefore: list.prunedBefore } }
}
const revocationList = {
  valid: [revocations, revocationsNoWatermark].map((document) => {
    const list = new RevocationList()
    list.accept(document, { keyServerPublicKey: keyServer.signingKey, backend })
    return {
      document,
      payloadText: payloadText(document),
      version: list.version,
      issuedAt: list.issuedAt,
      prunedBefore: list.prunedBefore,
      entries: list.entries,
    }
  }),
  negative: revocationNegative,
  sequences: [
    sequence('newer version replaces; older is a rollback', [revocations, revocationsNext, revocations]),
    sequence('same version, same payload: unchanged; same version, other payload: rollback', [
      revocations,
      revocations,
      revocationsSameVersion,
    ]),
    sequence('version 1 then 42', [revocationsNoWatermark, revocations]),
  ],
}

// ---- writer record -------------------------------------------------------------------------
const W = 'smqtt.writer-record'
const record = createWriterRecord({
  reader: app.id,
  group: 7,
  filter: 'home/+/thermostat/#',
  writers: [
    {
      kid: 1002,
      principal: lock.id,
      signingKey: lock.signingKey,
      publish: { allow: ['home/hall/thermostat/lock-1/#'], deny: [] },
    },
  ],
  issuedAt: T,
  notAfter: T + 300,
  keyServer,
  backend,
})
const openRecord = (doc: unknown, now: number, reader = app.id) =>
  openWriterRecord(doc, { keyServerPublicKey: keyServer.signingKey, reader, now, backend })
const opened = openRecord(record, T)
const writerRecord = {
  reader: app.id,
  now: T,
  document: record,
  payloadText: payloadText(record),
  opened: {
    reader: opened.reader,
    group: opened.group,
    filter: opened.filter,
    issuedAt: opened.issuedAt,
    notAfter: opened.notAfter,
    writers: [...opened.writers].map(([kid, w]) => ({
      kid,
      principal: w.principal,
      signingKey: toHex(w.signingKey),
      publish: w.publish,
    })),
  },
  boundaries: [T - 60, T + 299].map((now) => ({ now, result: codeOf(() => openRecord(record, now)) })),
  negative: [
    {
      name: 'writer rights outside the record filter',
      document: edited(
        W,
        record,
        (b) => (((b.writers as Body[])[0] as Body).publish = { allow: ['home/#'], deny: [] }),
      ),
    },
    { name: 'filter not a valid topic filter', document: edited(W, record, (b) => (b.filter = 'home/#/x')) },
    { name: 'signed under context smqtt.key-bundle', document: signRaw(B, payloadText(record)) },
    { name: 'opened by another reader (thermostat-1)', document: record, reader: device.id },
    { name: 'more than 60 s before issuedAt: not yet valid', document: record, now: T - 61 },
    { name: 'at notAfter: expired', document: record, now: T + 300 },
  ].map((c) => ({
    name: c.name,
    now: c.now ?? T,
    reader: c.reader ?? app.id,
    document: c.document,
    error: codeOf(() => openRecord(c.document, c.now ?? T, c.reader ?? app.id)),
  })),
}

// ---- principal record ---------------------------------------------------------------------
const principal = createPrincipalRecord(
  {
    id: device.id,
    kid: 1000,
    roles: ['device'],
    signingKey: device.signingKey,
    agreementKey: device.agreementKey,
    kem: 'x25519',
    issuedAt: T,
  },
  keyServer,
  backend,
)
const P = 'smqtt.principal'
const openPrincipal = (doc: unknown) => codeOf(() => openPrincipalRecord(doc, keyServer.signingKey, backend))
const principalRecord = {
  document: principal,
  payloadText: payloadText(principal),
  result: openPrincipal(principal),
  negative: [
    { name: 'signed by another key', document: signRaw(P, payloadText(principal), otherKeyServer) },
    {
      name: 'agreementKey of 31 bytes',
      document: edited(P, principal, (b) => (b.agreementKey = toBase64Url(new Uint8Array(31).fill(9)))),
    },
    { name: 'unknown field', document: edited(P, principal, (b) => (b.status = 'active')) },
  ].map((c) => ({ ...c, error: openPrincipal(c.document) })),
}

// ---- CONNECT password ---------------------------------------------------------------------
const connectNonce = Uint8Array.from({ length: 16 }, (_, i) => i)
const password = createConnectPassword(device, device.id, { now: T, backend: fixedRandom(backend, connectNonce) })
const nonceText = toBase64Url(connectNonce)
const verifyPassword = (pw: string, clientId: string, now: number) =>
  codeOf(() => verifyConnectPassword(pw, { clientId, signingKey: device.signingKey, now, backend }))
const [, , , signatureText] = password.split('.') as [string, string, string, string]
const connectPassword = {
  signingSeed: toHex(device.signingSeed),
  signingKey: toHex(device.signingKey),
  username: device.id,
  clientId: device.id,
  timestamp: T,
  nonce: toHex(connectNonce),
  nonceText,
  signedMessage: `${device.id}\n${T}\n${nonceText}`,
  signedBytes: toHex(signedBytes('mqtt-connect', utf8(`${device.id}\n${T}\n${nonceText}`))),
  password,
  checks: [
    { name: 'as made, now = timestamp', password, clientId: device.id, now: T },
    { name: 'now = timestamp + 60 (edge of the window)', password, clientId: device.id, now: T + 60 },
    { name: 'now = timestamp - 60 (edge of the window)', password, clientId: device.id, now: T - 60 },
    { name: 'now = timestamp + 61', password, clientId: device.id, now: T + 61 },
    { name: 'another client id', password, clientId: 'thermostat-2', now: T },
    {
      name: 'signature altered',
      password: password.replace(signatureText, alterFirstChar(signatureText)),
      clientId: device.id,
      now: T,
    },
    {
      name: 'timestamp with a leading zero (the signed text uses the number)',
      password: password.replace(`.${T}.`, `.0${T}.`),
      clientId: device.id,
      now: T,
    },
    {
      name: 'nonce of 15 bytes (20 characters)',
      password: `smqtt1.${T}.${nonceText.slice(0, 20)}.${signatureText}`,
      clientId: device.id,
      now: T,
    },
    { name: 'prefix smqtt2', password: password.replace('smqtt1.', 'smqtt2.'), clientId: device.id, now: T },
    { name: 'padded signature', password: `${password}==`, clientId: device.id, now: T },
  ].map((c) => ({ ...c, result: verifyPassword(c.password, c.clientId, c.now) })),
}

// ---- signed HTTP requests -----------------------------------------------------------------
const requests = [
  { method: 'GET', path: '/v1/bundle', body: '' },
  { method: 'GET', path: '/v1/freshness', body: '' },
  { method: 'POST', path: '/v1/writers', body: '{"group":7,"kids":[1002]}' },
  { method: 'POST', path: '/v1/sequence', body: '{"atLeast":0,"size":4096}' },
  { method: 'get', path: '/v1/bundle?since=3', body: '' },
].map((r, i) => {
  const nonce = Uint8Array.from({ length: 16 }, (_, j) => 0xa0 + i + j)
  const body = utf8(r.body)
  const headers = signRequest(
    device.id,
    device,
    { method: r.method, path: r.path, body },
    { now: T, backend: fixedRandom(backend, nonce) },
  )
  const message = `${r.method.toUpperCase()}\n${r.path}\n${T}\n${toBase64Url(nonce)}\n${toBase64Url(sha256(body))}`
  const verified = codeOf(() =>
    verifyRequestSignature(
      parseRequestSignature(headers),
      device.signingKey,
      { method: r.method, path: r.path, body },
      { now: T, backend },
    ),
  )
  if (verified !== 'ok') throw new Error('request signature does not verify')
  return {
    principal: device.id,
    signingSeed: toHex(device.signingSeed),
    method: r.method,
    path: r.path,
    body: r.body,
    timestamp: T,
    nonce: toHex(nonce),
    signedMessage: message,
    signedBytes: toHex(signedBytes('http-request', utf8(message))),
    headers,
  }
})
const first = requests[2] as (typeof requests)[number]
const verifyRequest = (headers: Record<string, string>, body: string, now: number) =>
  codeOf(() =>
    verifyRequestSignature(
      parseRequestSignature(headers),
      device.signingKey,
      { method: first.method, path: first.path, body: utf8(body) },
      { now, backend },
    ),
  )
// Every check is of `requests[2]`'s method and path (named in each, so no reader has to guess).
const requestChecks = [
  { name: 'as signed', headers: first.headers, body: first.body, now: T },
  { name: 'now = timestamp + 60', headers: first.headers, body: first.body, now: T + 60 },
  { name: 'now = timestamp + 61', headers: first.headers, body: first.body, now: T + 61 },
  { name: 'body altered', headers: first.headers, body: '{"group":7,"kids":[1003]}', now: T },
  {
    name: 'nonce of 15 bytes',
    headers: { ...first.headers, 'smqtt-nonce': toBase64Url(new Uint8Array(15)) },
    body: first.body,
    now: T,
  },
  {
    name: 'timestamp with a leading zero (the signed text uses the number)',
    headers: { ...first.headers, 'smqtt-timestamp': `0${T}` },
    body: first.body,
    now: T,
  },
  {
    name: 'timestamp with a leading +',
    headers: { ...first.headers, 'smqtt-timestamp': `+${T}` },
    body: first.body,
    now: T,
  },
].map((c) => ({
  name: c.name,
  method: first.method,
  path: first.path,
  headers: c.headers,
  body: c.body,
  now: c.now,
  result: verifyRequest(c.headers, c.body, c.now),
}))

// ---- enrollment ---------------------------------------------------------------------------
const token = 'q0rVnNUn5vD6LxR2bL6G0A2w1u9lP0Yx4m8cZrT3hQk'
const enrollRequest = createEnrollmentRequest(device, token, { roles: ['device'], backend })
const enrollment = {
  identity: identityJson(device),
  token,
  tokenHash: toHex(sha256(utf8(token))),
  provenBytes: toHex(concatBytes(sha256(utf8(token)), device.signingKey, device.agreementKey)),
  signedBytes: toHex(
    signedBytes('enrollment', concatBytes(sha256(utf8(token)), device.signingKey, device.agreementKey)),
  ),
  proof: enrollRequest.proof,
  request: enrollRequest,
  requestBody: JSON.stringify(enrollRequest),
  response: {
    principal,
    kid: 1000,
    keyServerPublicKey: toBase64Url(keyServer.signingKey),
  },
}

// ---- push ---------------------------------------------------------------------------------
const push = {
  topic: principalControlTopic(device.id),
  message: JSON.stringify({ type: 'bundle', bundle }),
}

const out = {
  description:
    'SMQTT documents v1 (docs/documents.md): signed documents (key bundle, revocation list, writer record, principal record), the CONNECT password, signed HTTP requests, the enrollment proof, HPKE as key bundles use it, and the push message. Frozen: generated once by packages/core/test/_generate-document-vectors.ts; checked by document-vectors.test.ts. Bytes are hex unless a field says base64url or text; documents are as they travel (base64url). Seeds: sha256("smqtt documents-v1 " + label). `error` is the SmqttError code a reader must raise ("ok": accepted).',
  keyServer: { signingSeed: toHex(keyServer.signingSeed), signingKey: toHex(keyServer.signingKey) },
  otherKeyServer: { signingSeed: toHex(otherKeyServer.signingSeed), signingKey: toHex(otherKeyServer.signingKey) },
  principals: [device, app, lock].map(identityJson),
  signatureWithContext: signatureCases,
  base64url,
  hpke: hpkeCases,
  keyBundle,
  keyBundleAccepted: accepted,
  revocationList,
  writerRecord,
  principalRecord,
  connectPassword,
  requestSignature: { requests, checks: requestChecks },
  enrollment,
  push,
}
writeFileSync(FILE, `${JSON.stringify(out, null, 2)}\n`)
console.log(`wrote ${FILE}`)
