// `npm start` until the key server and broker land: a thermostat seals readings for an app,
// and an attacker on the path tries what a compromised broker could. Exits non-zero if any
// defence fails.
import {
  createEnvelopeSigner,
  EpochKey,
  generateIdentity,
  memorySequenceSource,
  openEnvelope,
  parseEnvelope,
  ReplayWindow,
  SequenceCounter,
  SmqttError,
  sealEnvelope,
} from '@smqtt/core'

const TOPIC = 'home/hall/thermostat/temp'
const thermostat = generateIdentity('thermostat-1')
const lockApp = generateIdentity('door-lock-1') // reads the group, may not write it
const signer = createEnvelopeSigner({ kid: 1, seed: thermostat.signingSeed })
const epochKey = new EpochKey({ group: 1, epoch: 1, suite: 1, key: crypto.getRandomValues(new Uint8Array(32)) })
const writers = new Map([[signer.kid, signer.publicKey]])
const keys = {
  epochKey: (g: number, e: number) => (g === 1 && e === 1 ? epochKey : undefined),
  writerKey: (_g: number, kid: number) => writers.get(kid),
}
const replay = new ReplayWindow()
const counter = new SequenceCounter(memorySequenceSource())

let failures = 0
function line(ok: boolean, text: string): void {
  if (!ok) failures++
  console.log(`${ok ? '✔' : '✘'} ${text}`)
}
function refused(attempt: () => unknown): string | undefined {
  try {
    attempt()
  } catch (err) {
    if (err instanceof SmqttError) return err.code
    throw err
  }
  return undefined
}

const reading = new TextEncoder().encode(JSON.stringify({ celsius: 21.5 }))
const envelope = sealEnvelope({ topic: TOPIC, payload: reading, epochKey, signer, seq: await counter.next() })
const { header } = parseEnvelope(envelope)
console.log(
  `thermostat sealed ${reading.length} B into a ${envelope.length} B envelope (group ${header.group}, epoch ${header.epoch}, seq ${header.seq})`,
)
line(!Buffer.from(envelope).includes(Buffer.from('21.5')), 'on the wire the reading is ciphertext')

const opened = openEnvelope(envelope, TOPIC, { keys, replay })
line(
  new TextDecoder().decode(opened.payload) === '{"celsius":21.5}',
  `the app opened it: ${new TextDecoder().decode(opened.payload)} from sender ${opened.header.sender}`,
)

const replayCode = refused(() => openEnvelope(envelope, TOPIC, { keys, replay }))
line(replayCode === 'ERR_REPLAY', `replaying it is refused (${replayCode})`)

// Each attack below intercepts a fresh message, so the replay window cannot be what stops it.
const fresh = async () => sealEnvelope({ topic: TOPIC, payload: reading, epochKey, signer, seq: await counter.next() })
const moved = await fresh()
const movedCode = refused(() => openEnvelope(moved, 'home/hall/lock/cmd', { keys, replay }))
line(movedCode === 'ERR_ENVELOPE_SIGNATURE_INVALID', `moving it to another topic is refused (${movedCode})`)

const tampered = await fresh()
tampered[20] = (tampered[20] as number) ^ 1
const tamperCode = refused(() => openEnvelope(tampered, TOPIC, { keys, replay }))
line(tamperCode === 'ERR_ENVELOPE_SIGNATURE_INVALID', `flipping one bit is refused (${tamperCode})`)

// The lock holds the group key (it reads the group) and claims to be the thermostat.
const forger = createEnvelopeSigner({ kid: signer.kid, seed: lockApp.signingSeed })
const forged = sealEnvelope({ topic: TOPIC, payload: reading, epochKey, signer: forger, seq: 99 })
const forgeCode = refused(() => openEnvelope(forged, TOPIC, { keys, replay }))
line(forgeCode === 'ERR_ENVELOPE_SIGNATURE_INVALID', `a reader forging as the thermostat is refused (${forgeCode})`)

console.log(failures === 0 ? '\nevery defence held' : `\n${failures} defence(s) FAILED`)
process.exit(failures === 0 ? 0 : 1)
