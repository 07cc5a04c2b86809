// `npm run bench -w @smqtt/core`: envelope seal / open / broker verify-only on each backend,
// beside the raw primitives they are made of, measured in the same run.
// Targets (issue 2): envelope cost <= 1.15 x raw primitives; native verify-only <= 60 us at 256 B.
import type { CryptoBackend } from '../src/crypto/backend.js'
import { createNativeBackend, loadSodium } from '../src/crypto/native.js'
import { nobleBackend } from '../src/crypto/noble.js'
import { EpochKey, senderNonce } from '../src/envelope/epoch-key.js'
import { openEnvelope } from '../src/envelope/open.js'
import { sealEnvelope } from '../src/envelope/seal.js'
import { createEnvelopeSigner } from '../src/envelope/signer.js'
import { SUITES } from '../src/envelope/suites.js'
import { verifyEnvelope } from '../src/envelope/verify.js'
import { measureTogether } from './_timing.js'

const TOPIC = 'home/hall/thermostat/temp'
const SIZES = [64, 256, 4096]
const quick = process.argv.includes('--quick')

interface Row {
  backend: string
  size: number
  op: string
  us: number
  raw?: number
}

function benchBackend(backend: CryptoBackend, batchMs: number): Row[] {
  const rows: Row[] = []
  const epochKey = new EpochKey({ group: 7, epoch: 300, suite: 1, key: new Uint8Array(32).fill(0x42) })
  const signer = createEnvelopeSigner({ kid: 1000, seed: new Uint8Array(32).fill(1) }, backend)
  const keys = { epochKey: () => epochKey, writerKey: () => signer.publicKey }
  const { key, iv } = epochKey.senderKey(signer.kid)
  const aead = SUITES[1].aead
  let seq = 1
  for (const size of SIZES) {
    const payload = new Uint8Array(size).fill(7)
    const envelope = sealEnvelope({ topic: TOPIC, payload, epochKey, signer, seq: 1 }, { backend })
    // The raw primitives on inputs of the same sizes as inside the envelope.
    const aad = new Uint8Array(14 + 2 + TOPIC.length)
    const signedLength = 18 + aad.length + size + 16
    const signedBytes = new Uint8Array(signedLength)
    const ciphertext = backend.aeadSeal(aead, key, senderNonce(iv, 1), payload, aad)
    const signature = backend.ed25519Sign(signedBytes, new Uint8Array(32).fill(1), signer.publicKey)
    const seed = new Uint8Array(32).fill(1)
    const t = measureTogether(
      {
        rawSign: () => backend.ed25519Sign(signedBytes, seed, signer.publicKey),
        rawVerify: () => backend.ed25519Verify(signature, signedBytes, signer.publicKey),
        rawSeal: () => backend.aeadSeal(aead, key, senderNonce(iv, 1), payload, aad),
        rawOpen: () => backend.aeadOpen(aead, key, senderNonce(iv, 1), ciphertext, aad),
        seal: () => sealEnvelope({ topic: TOPIC, payload, epochKey, signer, seq: seq++ }, { backend }),
        open: () => openEnvelope(envelope, TOPIC, { keys, backend, now: 1 }),
        verify: () => verifyEnvelope(envelope, TOPIC, { writerKey: keys.writerKey, backend }),
      },
      batchMs,
    )
    const { rawSign, rawVerify, rawSeal, rawOpen, seal, open, verify } = t
    rows.push({ backend: backend.name, size, op: 'seal', us: seal, raw: rawSign + rawSeal })
    rows.push({ backend: backend.name, size, op: 'open', us: open, raw: rawVerify + rawOpen })
    rows.push({ backend: backend.name, size, op: 'verify-only', us: verify, raw: rawVerify })
  }
  return rows
}

const sodium = loadSodium()
const results = [
  ...(sodium ? benchBackend(createNativeBackend(sodium), quick ? 50 : 300) : []),
  ...benchBackend(nobleBackend, quick ? 100 : 600),
]

const header = ['backend', 'size', 'operation', 'µs/op', 'ops/s', 'raw µs', 'ratio']
const lines = results.map((r) => [
  r.backend,
  `${r.size} B`,
  r.op,
  r.us.toFixed(1),
  Math.round(1e6 / r.us).toLocaleString('en-US'),
  r.raw === undefined ? '' : r.raw.toFixed(1),
  r.raw === undefined ? '' : `${(r.us / r.raw).toFixed(2)}x`,
])
console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`)
for (const l of lines) console.log(`| ${l.join(' | ')} |`)
console.log(
  `\nNode ${process.version}, ${new Date().toISOString()}. ratio = envelope / (sum of its raw primitives, same run).`,
)
const nativeVerify = results.find((r) => r.backend === 'native' && r.size === 256 && r.op === 'verify-only')
if (nativeVerify) console.log(`native verify-only at 256 B: ${nativeVerify.us.toFixed(1)} µs (target ≤ 60 µs)`)
const worst = Math.max(...results.map((r) => r.us / (r.raw ?? r.us)))
console.log(`worst envelope/raw ratio: ${worst.toFixed(2)}x (target ≤ 1.15x)`)
