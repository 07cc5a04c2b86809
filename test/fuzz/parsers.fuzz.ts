// `npm run fuzz` (long: 100,000 cases per parser; FUZZ_RUNS to change, FUZZ_SEED to replay).
// Every parser of untrusted input, fed arbitrary and mutated input: the only acceptable
// failure is an SmqttError. Anything else (TypeError, RangeError, a hang) is a bug.
import {
  createBrokerSnapshot,
  createKeyBundle,
  createRevocationList,
  generateIdentity,
  importIdentity,
  importPublicIdentity,
  openBrokerSnapshot,
  openKeyBundle,
  openPrincipalRecord,
  parseConfigText,
  parseEnvelope,
  parsePolicy,
  parseRequestSignature,
  publicIdentity,
  RevocationList,
  SmqttError,
  verifyConnectPassword,
} from '@smqtt/core'
import fc from 'fast-check'
import { fuzzSettings } from './_campaign.js'

const { runs, seed } = fuzzSettings({ runs: 100_000 })
const keyServer = generateIdentity('keyserver')
const device = generateIdentity('device-1')
const NOW = 1_790_000_000

function onlySmqttErrors(fn: () => unknown): void {
  try {
    fn()
  } catch (err) {
    if (!(err instanceof SmqttError)) throw err
  }
}

/** A real signed document with one byte of its payload or signature changed, or cut short. */
function mutated(document: { payload: string; signature: string }) {
  return fc
    .tuple(fc.constantFrom('payload', 'signature'), fc.nat(), fc.integer({ min: 0, max: 63 }))
    .map(([field, at, c]) => {
      const text = document[field as 'payload' | 'signature']
      const i = at % Math.max(1, text.length)
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
      return { ...document, [field]: text.slice(0, i) + (alphabet[c] ?? 'A') + text.slice(i + 1) }
    })
}

const bundle = createKeyBundle({
  recipient: publicIdentity(device),
  groups: [
    {
      group: 1,
      name: 'g',
      filter: 'a/#',
      suite: 1,
      epochs: [{ epoch: 1, key: new Uint8Array(32).fill(1), activatesAt: NOW, retiresAt: NOW + 60 }],
      writers: [
        {
          kid: 1,
          principal: 'device-1',
          signingKey: device.signingKey,
          publish: { allow: ['a/device-1/#'], deny: [] },
        },
      ],
    },
  ],
  validity: { notBefore: NOW - 60, notAfter: NOW + 3600 },
  keyServer,
})
const revocations = createRevocationList({
  version: 1,
  entries: [{ principal: 'x', kid: 9, revokedAt: NOW }],
  keyServer,
})
const snapshot = createBrokerSnapshot(
  {
    issuedAt: NOW,
    policy: { version: 1, rules: [], groups: [], plaintext: [] },
    principals: [],
    epochs: [],
    revocationListVersion: 0,
  },
  keyServer,
)

const targets: [string, fc.Arbitrary<unknown>, (input: unknown) => unknown][] = [
  ['envelope parser', fc.uint8Array({ maxLength: 512 }), (b) => parseEnvelope(b as Uint8Array)],
  [
    'key bundle (arbitrary JSON)',
    fc.jsonValue(),
    (j) => openKeyBundle(j, { keyServerPublicKey: keyServer.signingKey, recipient: device, now: NOW }),
  ],
  [
    'key bundle (mutated)',
    mutated(bundle),
    (j) => openKeyBundle(j, { keyServerPublicKey: keyServer.signingKey, recipient: device, now: NOW }),
  ],
  [
    'revocation list (arbitrary JSON)',
    fc.jsonValue(),
    (j) => new RevocationList().accept(j, { keyServerPublicKey: keyServer.signingKey }),
  ],
  [
    'revocation list (mutated)',
    mutated(revocations),
    (j) => new RevocationList().accept(j, { keyServerPublicKey: keyServer.signingKey }),
  ],
  ['broker snapshot (mutated)', mutated(snapshot), (j) => openBrokerSnapshot(j, keyServer.signingKey)],
  ['principal record (arbitrary JSON)', fc.jsonValue(), (j) => openPrincipalRecord(j, keyServer.signingKey)],
  ['policy', fc.jsonValue(), (j) => parsePolicy(j)],
  ['identity import', fc.jsonValue(), (j) => importIdentity(j)],
  ['public identity import', fc.jsonValue(), (j) => importPublicIdentity(j)],
  [
    'request signature headers',
    fc.dictionary(
      fc.constantFrom('smqtt-principal', 'smqtt-timestamp', 'smqtt-nonce', 'smqtt-signature', 'x'),
      fc.oneof(fc.string(), fc.array(fc.string())),
    ),
    (h) => parseRequestSignature(h as Record<string, string>),
  ],
  [
    'CONNECT password',
    fc.oneof(
      fc.string(),
      fc.string().map((s) => `smqtt1.${s}`),
    ),
    (p) => verifyConnectPassword(p as string, { clientId: 'device-1', signingKey: device.signingKey, now: NOW }),
  ],
  ['config text', fc.string(), (t) => parseConfigText(t as string)],
]

let failed = false
console.log(`fuzzing ${targets.length} parsers, ${runs.toLocaleString('en-US')} cases each, seed ${seed}\n`)
console.log('| parser | cases | result |\n|---|---:|---|')
for (const [name, arbitrary, parse] of targets) {
  const started = performance.now()
  const result = fc.check(
    fc.property(arbitrary, (input) => onlySmqttErrors(() => parse(input))),
    { numRuns: runs, seed },
  )
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  if (result.failed) {
    failed = true
    console.log(
      `| ${name} | ${result.numRuns} | FAILED: ${String(result.errorInstance)} (counterexample ${JSON.stringify(result.counterexample).slice(0, 200)}) |`,
    )
  } else console.log(`| ${name} | ${result.numRuns} | only SmqttError (${seconds} s) |`)
}
process.exit(failed ? 1 : 0)
