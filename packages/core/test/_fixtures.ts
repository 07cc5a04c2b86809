// Shared test fixtures: a deterministic group with writers and a reader-only member, and the
// two ways a test reads an SmqttError (its code, or the error itself for its details).
import type { CryptoBackend } from '../src/crypto/backend.js'
import { createNativeBackend, loadSodium } from '../src/crypto/native.js'
import { nobleBackend } from '../src/crypto/noble.js'
import { EpochKey } from '../src/envelope/epoch-key.js'
import type { EnvelopeKeys } from '../src/envelope/open.js'
import { createEnvelopeSigner } from '../src/envelope/signer.js'
import type { SuiteId } from '../src/envelope/suites.js'

const sodium = loadSodium()
if (!sodium) throw new Error('sodium-native must be installed for the test suite')
export const nativeBackend: CryptoBackend = createNativeBackend(sodium)
export const backends = [nobleBackend, nativeBackend] as const

export function filled(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value)
}

export function payloadOf(length: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (i * 31 + 7) & 0xff
  return out
}

export const TOPIC = 'home/hall/thermostat/temp'

/** Group 7, epoch 300: writers thermostat (kid 1000) and app (kid 1001); reader-only lock (kid 1002). */
export function makeGroup(suite: SuiteId = 1, backend: CryptoBackend = nativeBackend) {
  const epochKey = new EpochKey({ group: 7, epoch: 300, suite, key: filled(32, 0x42) })
  const thermostat = createEnvelopeSigner({ kid: 1000, seed: filled(32, 1) }, backend)
  const app = createEnvelopeSigner({ kid: 1001, seed: filled(32, 2) }, backend)
  const readerOnly = createEnvelopeSigner({ kid: 1002, seed: filled(32, 3) }, backend)
  const writers = new Map([
    [thermostat.kid, thermostat.publicKey],
    [app.kid, app.publicKey],
  ])
  const keys: EnvelopeKeys = {
    epochKey: (group, epoch) => (group === 7 && epoch === 300 ? epochKey : undefined),
    writerKey: (group, kid) => (group === 7 ? writers.get(kid) : undefined),
  }
  return { epochKey, thermostat, app, readerOnly, keys }
}

export { codeOf, thrown } from '@smqtt/test-kit/errors'
