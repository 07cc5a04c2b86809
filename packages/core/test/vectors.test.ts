// Frozen envelope vectors: if these fail, the wire format changed. That needs a new version,
// not new vectors.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { fromHex, toHex } from '../src/_bytes.js'
import { encodeBoundProperties, type PropertyBinding } from '../src/envelope/bound-properties.js'
import { EpochKey } from '../src/envelope/epoch-key.js'
import { parseEnvelope } from '../src/envelope/header.js'
import { openEnvelope } from '../src/envelope/open.js'
import { sealEnvelope } from '../src/envelope/seal.js'
import { createEnvelopeSigner } from '../src/envelope/signer.js'
import { verifyEnvelope } from '../src/envelope/verify.js'
import { SmqttError } from '../src/errors.js'
import { type EnvelopeCase, type PropertiesJson, propertiesFromJson } from './_envelope-vectors.js'
import { backends } from './_fixtures.js'

interface EnvelopeVector extends EnvelopeCase {
  payload: string
  epochKey: string
  signingSeed: string
  signingPublicKey: string
  senderKey: string
  senderIv: string
  envelope: string
}

const file = fileURLToPath(new URL('../vectors/envelope-v1.json', import.meta.url))
const { cases } = JSON.parse(readFileSync(file, 'utf8')) as { cases: EnvelopeVector[] }

describe('envelope v1 vectors', () => {
  test('there are vectors', () => expect(cases.length).toBe(4))
  for (const backend of backends)
    for (const v of cases)
      test(`${backend.name}: ${v.name}`, () => {
        const epochKey = new EpochKey({ group: v.group, epoch: v.epoch, suite: v.suite, key: fromHex(v.epochKey) })
        const signer = createEnvelopeSigner({ kid: v.kid, seed: fromHex(v.signingSeed) }, backend)
        expect(toHex(signer.publicKey)).toBe(v.signingPublicKey)
        const derived = epochKey.senderKey(v.kid)
        expect([toHex(derived.key), toHex(derived.iv)]).toEqual([v.senderKey, v.senderIv])
        const input = {
          topic: v.topic,
          payload: fromHex(v.payload),
          epochKey,
          signer,
          seq: v.seq,
          sentAt: v.sentAt,
          retain: v.retain,
        }
        expect(toHex(sealEnvelope(input, { backend }))).toBe(v.envelope)
        const keys = { epochKey: () => epochKey, writerKey: () => signer.publicKey }
        const opened = openEnvelope(fromHex(v.envelope), v.topic, { keys, backend, now: v.sentAt })
        expect(toHex(opened.payload)).toBe(v.payload)
        expect(opened.header).toMatchObject({
          suite: v.suite,
          group: v.group,
          epoch: v.epoch,
          sender: v.kid,
          seq: v.seq,
          retain: v.retain,
        })
      })
})

/** An envelope-v1 vector (no derived sender key) that binds properties, and what receivers make of them. */
interface BoundPropertyVector extends Omit<EnvelopeVector, 'senderKey' | 'senderIv'> {
  properties: PropertiesJson
  binding: PropertyBinding
  boundProperties: string
  checks: {
    name: string
    received: PropertiesJson | null
    result: string
    verified?: PropertiesJson
    unsigned?: PropertiesJson
  }[]
}

const boundFile = fileURLToPath(new URL('../vectors/envelope-v1-bound-properties.json', import.meta.url))
const bound = JSON.parse(readFileSync(boundFile, 'utf8')) as { cases: BoundPropertyVector[] }

describe('envelope v1 vectors with bound MQTT 5 properties (flag 0x20)', () => {
  test('there are vectors, with negative checks', () => {
    expect(bound.cases.length).toBe(5)
    expect(bound.cases.flatMap((c) => c.checks).filter((c) => c.result !== 'opened').length).toBe(14)
  })
  for (const backend of backends)
    for (const v of bound.cases)
      test(`${backend.name}: ${v.name}`, () => {
        const epochKey = new EpochKey({ group: v.group, epoch: v.epoch, suite: v.suite, key: fromHex(v.epochKey) })
        const signer = createEnvelopeSigner({ kid: v.kid, seed: fromHex(v.signingSeed) }, backend)
        expect(toHex(signer.publicKey)).toBe(v.signingPublicKey)
        const sent = propertiesFromJson(v.properties)
        const envelope = fromHex(v.envelope)
        expect(parseEnvelope(envelope).header.properties).toEqual(v.binding)
        expect(toHex(encodeBoundProperties(v.binding, sent) as Uint8Array)).toBe(v.boundProperties)
        const sealerBinds = v.binding.contentType && v.binding.responseTopic && v.binding.correlationData
        if (sealerBinds) {
          const input = { topic: v.topic, payload: fromHex(v.payload), epochKey, signer, seq: v.seq, sentAt: v.sentAt }
          expect(toHex(sealEnvelope({ ...input, retain: v.retain, properties: sent }, { backend }))).toBe(v.envelope)
        }
        const keys = { epochKey: () => epochKey, writerKey: () => signer.publicKey }
        for (const check of v.checks) {
          const options = check.received ? { properties: propertiesFromJson(check.received) } : {}
          let result = 'opened'
          let brokerResult = 'opened'
          try {
            const opened = openEnvelope(envelope, v.topic, {
              keys,
              backend,
              now: v.sentAt,
              retained: v.retain,
              ...options,
            })
            expect(toHex(opened.payload), check.name).toBe(v.payload)
            expect(opened.properties, check.name).toEqual({
              verified: propertiesFromJson(check.verified ?? {}),
              unsigned: propertiesFromJson(check.unsigned ?? {}),
            })
          } catch (err) {
            if (!(err instanceof SmqttError)) throw err
            result = err.code
          }
          try {
            verifyEnvelope(envelope, v.topic, { writerKey: keys.writerKey, backend, ...options })
          } catch (err) {
            if (!(err instanceof SmqttError)) throw err
            brokerResult = err.code
          }
          expect([check.name, result, brokerResult]).toEqual([check.name, check.result, check.result])
        }
      })
})
