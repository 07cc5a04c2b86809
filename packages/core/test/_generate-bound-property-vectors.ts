// Generated packages/core/vectors/envelope-v1-bound-properties.json once; kept to show how.
// The file is frozen: this script refuses to overwrite it. Run (from the repository root):
//   npx tsx --conditions=smqtt-source packages/core/test/_generate-bound-property-vectors.ts
import { existsSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { toHex } from '../src/_bytes.js'
import { signedBytes, topicBytes } from '../src/envelope/_signed-bytes.js'
import {
  type EnvelopeProperties,
  encodeBoundProperties,
  type PropertyBinding,
} from '../src/envelope/bound-properties.js'
import { EpochKey, senderNonce } from '../src/envelope/epoch-key.js'
import { ENVELOPE_VERSION, encodeHeader } from '../src/envelope/header.js'
import { openEnvelope } from '../src/envelope/open.js'
import { sealEnvelope } from '../src/envelope/seal.js'
import { createEnvelopeSigner } from '../src/envelope/signer.js'
import { SUITES } from '../src/envelope/suites.js'
import { verifyEnvelope } from '../src/envelope/verify.js'
import { SmqttError } from '../src/errors.js'
import { type EnvelopeCase, propertiesToJson } from './_envelope-vectors.js'
import { nativeBackend } from './_fixtures.js'

const FILE = fileURLToPath(new URL('../vectors/envelope-v1-bound-properties.json', import.meta.url))

const bytes = (n: number, step: number, start: number) =>
  Uint8Array.from({ length: n }, (_, i) => (start + i * step) & 0xff)

interface CaseInput extends EnvelopeCase {
  payload: Uint8Array
  properties: EnvelopeProperties
  /** Bind only these (another implementation's sender); default: what sealEnvelope binds. */
  binding?: PropertyBinding
  checks: { name: string; received: EnvelopeProperties | null }[]
}

const TRACE = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
const COMMAND: EnvelopeProperties = {
  contentType: 'application/json',
  responseTopic: 'home/hall/lock/reply/app-1',
  correlationData: bytes(16, 7, 0x30),
  userProperties: [
    ['traceparent', TRACE],
    ['tenant', 'home-1'],
  ],
}
const cmdUsers = COMMAND.userProperties as [string, string][]

const inputs: CaseInput[] = [
  {
    name: 'door-lock command: content type, response topic, correlation data, 2 user properties',
    suite: 1,
    group: 7,
    epoch: 300,
    kid: 1000,
    seq: 100000,
    sentAt: 1790000000,
    retain: false,
    topic: 'home/hall/lock/set',
    payload: new TextEncoder().encode('{"lock":"open"}'),
    properties: COMMAND,
    checks: [
      { name: 'as sent', received: COMMAND },
      { name: 'correlation data altered', received: { ...COMMAND, correlationData: bytes(16, 7, 0x31) } },
      { name: 'response topic altered', received: { ...COMMAND, responseTopic: 'evil/reply' } },
      { name: 'content type stripped', received: { ...without(COMMAND, 'contentType') } },
      { name: 'every property stripped', received: null },
      {
        name: 'bound user property value altered',
        received: { ...COMMAND, userProperties: [cmdUsers[0] as [string, string], ['tenant', 'home-2']] },
      },
      { name: 'bound user properties reordered', received: { ...COMMAND, userProperties: [...cmdUsers].reverse() } },
      { name: 'bound user property stripped', received: { ...COMMAND, userProperties: cmdUsers.slice(0, 1) } },
      {
        name: 'user property injected into the bound set (first)',
        received: { ...COMMAND, userProperties: [['role', 'admin'], ...cmdUsers] },
      },
      {
        name: 'unbound user property appended',
        received: { ...COMMAND, userProperties: [...cmdUsers, ['role', 'admin']] },
      },
    ],
  },
  {
    name: 'AES-256-GCM, retained, one user property; the other kinds bound as absent',
    suite: 2,
    group: 12,
    epoch: 1,
    kid: 5,
    seq: 70,
    sentAt: 1790000100,
    retain: true,
    topic: 'home/hall/thermostat/temp',
    payload: bytes(5, 1, 0),
    properties: { userProperties: [['traceparent', TRACE]] },
    checks: [
      { name: 'as sent', received: { userProperties: [['traceparent', TRACE]] } },
      {
        name: 'response topic injected',
        received: { responseTopic: 'evil/reply', userProperties: [['traceparent', TRACE]] },
      },
      {
        name: 'content type injected',
        received: { contentType: 'text/plain', userProperties: [['traceparent', TRACE]] },
      },
      {
        name: 'unbound user property appended',
        received: {
          userProperties: [
            ['traceparent', TRACE],
            ['x', 'y'],
          ],
        },
      },
    ],
  },
  {
    name: 'empty is not absent: empty content type, empty correlation data, empty user property key and value',
    suite: 1,
    group: 0,
    epoch: 0,
    kid: 0,
    seq: 0,
    sentAt: 0,
    retain: false,
    topic: 'a',
    payload: new Uint8Array(0),
    properties: { contentType: '', correlationData: new Uint8Array(0), userProperties: [['', '']] },
    checks: [
      {
        name: 'as sent',
        received: { contentType: '', correlationData: new Uint8Array(0), userProperties: [['', '']] },
      },
      {
        name: 'empty content type made absent',
        received: { correlationData: new Uint8Array(0), userProperties: [['', '']] },
      },
      { name: 'empty correlation data made absent', received: { contentType: '', userProperties: [['', '']] } },
    ],
  },
  {
    name: 'UTF-8 in properties (lengths count bytes)',
    suite: 1,
    group: 16384,
    epoch: 2,
    kid: 300,
    seq: 2097152,
    sentAt: 1790000200,
    retain: false,
    topic: 'maison/séjour/température',
    payload: new TextEncoder().encode('21,5 °C'),
    properties: {
      contentType: 'text/plain; charset=utf-8',
      userProperties: [
        ['pièce', 'séjour'],
        ['emoji', '🌡️'],
      ],
    },
    checks: [
      {
        name: 'as sent',
        received: {
          contentType: 'text/plain; charset=utf-8',
          userProperties: [
            ['pièce', 'séjour'],
            ['emoji', '🌡️'],
          ],
        },
      },
      {
        name: 'user property value normalized (NFD)',
        received: {
          contentType: 'text/plain; charset=utf-8',
          userProperties: [
            ['pièce', 'séjour'.normalize('NFD')],
            ['emoji', '🌡️'],
          ],
        },
      },
    ],
  },
  {
    name: 'a sender binding only correlation data and 1 user property (mask 0x04)',
    suite: 1,
    group: 7,
    epoch: 300,
    kid: 1001,
    seq: 9,
    sentAt: 1790000300,
    retain: false,
    topic: 'home/hall/lock/reply/app-1',
    payload: new TextEncoder().encode('{"lock":"opened"}'),
    properties: { correlationData: bytes(16, 7, 0x30), userProperties: [['traceparent', TRACE]] },
    binding: { contentType: false, responseTopic: false, correlationData: true, userProperties: 1 },
    checks: [
      { name: 'as sent', received: { correlationData: bytes(16, 7, 0x30), userProperties: [['traceparent', TRACE]] } },
      {
        name: 'unbound content type added',
        received: {
          contentType: 'text/plain',
          correlationData: bytes(16, 7, 0x30),
          userProperties: [['traceparent', TRACE]],
        },
      },
      {
        name: 'unbound user property appended',
        received: {
          correlationData: bytes(16, 7, 0x30),
          userProperties: [
            ['traceparent', TRACE],
            ['x', 'y'],
          ],
        },
      },
      { name: 'correlation data stripped', received: { userProperties: [['traceparent', TRACE]] } },
    ],
  },
]

function without<K extends keyof EnvelopeProperties>(p: EnvelopeProperties, key: K): EnvelopeProperties {
  const copy = { ...p }
  delete copy[key]
  return copy
}

function seal(c: CaseInput, epochKey: EpochKey, signer: ReturnType<typeof createEnvelopeSigner>): Uint8Array {
  if (!c.binding)
    return sealEnvelope(
      {
        topic: c.topic,
        payload: c.payload,
        epochKey,
        signer,
        seq: c.seq,
        sentAt: c.sentAt,
        retain: c.retain,
        properties: c.properties,
      },
      { backend: nativeBackend },
    )
  // A binding sealEnvelope does not make (it binds all three kinds): built from the same parts.
  const header = encodeHeader({
    version: ENVELOPE_VERSION,
    suite: c.suite,
    retain: c.retain,
    group: c.group,
    epoch: c.epoch,
    sender: c.kid,
    seq: c.seq,
    sentAt: c.sentAt,
    properties: c.binding,
  })
  const bound = encodeBoundProperties(c.binding, c.properties) as Uint8Array
  const { key, iv } = epochKey.senderKey(c.kid)
  const { buffer, aad, ciphertextOffset } = signedBytes(header, topicBytes(c.topic), c.payload.length + 16, bound)
  const ciphertext = nativeBackend.aeadSeal(SUITES[c.suite].aead, key, senderNonce(iv, c.seq), c.payload, aad)
  buffer.set(ciphertext, ciphertextOffset)
  const signature = signer.sign(buffer)
  const out = new Uint8Array(header.length + ciphertext.length + 64)
  out.set(header)
  out.set(ciphertext, header.length)
  out.set(signature, header.length + ciphertext.length)
  return out
}

if (existsSync(FILE)) throw new Error(`${FILE} exists and is frozen; delete it only for a new protocol version`)

const cases = inputs.map((c, i) => {
  const epochKeyBytes = bytes(32, 3, 0x80 + i)
  const seed = bytes(32, 5, 0x1a + i)
  const epochKey = new EpochKey({ group: c.group, epoch: c.epoch, suite: c.suite, key: epochKeyBytes })
  const signer = createEnvelopeSigner({ kid: c.kid, seed }, nativeBackend)
  const envelope = seal(c, epochKey, signer)
  const binding = c.binding ?? {
    contentType: true,
    responseTopic: true,
    correlationData: true,
    userProperties: c.properties.userProperties?.length ?? 0,
  }
  const keys = { epochKey: () => epochKey, writerKey: () => signer.publicKey }
  const checks = c.checks.map((check) => {
    const properties = check.received ?? undefined
    const options = properties ? { properties } : {}
    try {
      const opened = openEnvelope(envelope, c.topic, {
        keys,
        now: c.sentAt,
        retained: c.retain,
        backend: nativeBackend,
        ...options,
      })
      verifyEnvelope(envelope, c.topic, { writerKey: keys.writerKey, ...options })
      return {
        name: check.name,
        received: check.received ? propertiesToJson(check.received) : null,
        result: 'opened',
        verified: propertiesToJson(opened.properties.verified),
        unsigned: propertiesToJson(opened.properties.unsigned),
      }
    } catch (err) {
      if (!(err instanceof SmqttError)) throw err
      return { name: check.name, received: check.received ? propertiesToJson(check.received) : null, result: err.code }
    }
  })
  return {
    name: c.name,
    suite: c.suite,
    group: c.group,
    epoch: c.epoch,
    kid: c.kid,
    seq: c.seq,
    sentAt: c.sentAt,
    retain: c.retain,
    topic: c.topic,
    payload: toHex(c.payload),
    properties: propertiesToJson(c.properties),
    binding,
    boundProperties: toHex(encodeBoundProperties(binding, c.properties) as Uint8Array),
    epochKey: toHex(epochKeyBytes),
    signingSeed: toHex(seed),
    signingPublicKey: toHex(signer.publicKey),
    envelope: toHex(envelope),
    checks,
  }
})

writeFileSync(
  FILE,
  `${JSON.stringify(
    {
      description:
        'SMQTT envelope v1 with bound MQTT 5 properties (flag 0x20; docs/envelope.md, "Bound properties"). Frozen: generated once by packages/core/test/_generate-bound-property-vectors.ts. `properties`: what the sender published (correlationData in hex, userProperties in packet order); `binding`: its descriptor; `boundProperties`: the canonical encoding appended to the AAD and signed bytes after the topic. Each check gives the properties a receiver got and the result of opening (and of verifying with no group key): "opened" with the verified and unsigned split, or the error code.',
      cases,
    },
    null,
    2,
  )}\n`,
)
console.log(`wrote ${cases.length} cases to ${FILE}`)
