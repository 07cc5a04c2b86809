// Frozen envelope vectors: if these fail, the wire format changed. That needs a new version,
// not new vectors.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { fromHex, toHex } from '../src/_bytes.js'
import { EpochKey } from '../src/envelope/epoch-key.js'
import { openEnvelope } from '../src/envelope/open.js'
import { sealEnvelope } from '../src/envelope/seal.js'
import { createEnvelopeSigner } from '../src/envelope/signer.js'
import type { SuiteId } from '../src/envelope/suites.js'
import { backends } from './_fixtures.js'

interface EnvelopeVector {
  name: string
  suite: SuiteId
  group: number
  epoch: number
  kid: number
  seq: number
  sentAt: number
  retain: boolean
  topic: string
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
