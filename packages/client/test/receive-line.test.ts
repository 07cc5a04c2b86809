// The receive line on its own: no MQTT, no network, no key server. Envelopes are sealed here
// with @smqtt/core; the verifier is a fake whose verdicts the test hands back in any order, and
// the replay state lives in a storage whose saves the test holds, fails or snapshots.
import {
  createEnvelopeSigner,
  type EnvelopeKeys,
  EpochKey,
  ReplayWindow,
  type SmqttErrorCode,
  sealEnvelope,
} from '@smqtt/core'
import type { IPublishPacket } from 'mqtt'
import { describe, expect, test, vi } from 'vitest'
import { type HeldMessage, ReceiveLine } from '../src/_receive-line.js'
import { replayKey, SavedReplayWindow } from '../src/_replay-state.js'
import type { MessageInfo, SecurityErrorEvent } from '../src/secure.js'
import { type ClientStorage, memoryStorage } from '../src/storage.js'
import type { SignatureVerdict, SignatureVerifier } from '../src/verifier.js'

const NOW = 1_790_000_000
const TOPIC = 'home/hall/thermostat/temp'
const PLAIN = 'public/weather'
const GROUP = 7
const EPOCH = 300

const epochKey = new EpochKey({ group: GROUP, epoch: EPOCH, suite: 1, key: new Uint8Array(32).fill(0x42) })
const thermostat = createEnvelopeSigner({ kid: 1000, seed: new Uint8Array(32).fill(1) })
const principals = new Map([[thermostat.kid, 'thermostat-1']])
const keys: EnvelopeKeys = {
  epochKey: (group, epoch) => (group === GROUP && epoch === EPOCH ? epochKey : undefined),
  writerKey: (group, kid) => (group === GROUP && kid === thermostat.kid ? thermostat.publicKey : undefined),
}

/** The envelope the thermostat publishes as its `seq`th message, with `text` inside. */
function sealed(seq: number, text = `m${seq}`): Buffer {
  const envelope = sealEnvelope({
    topic: TOPIC,
    payload: new TextEncoder().encode(text),
    epochKey,
    signer: thermostat,
    seq,
    sentAt: NOW,
  })
  return Buffer.from(envelope)
}

function packet(topic: string, payload: Buffer): IPublishPacket {
  return { cmd: 'publish', topic, payload, qos: 0, dup: false, retain: false }
}

/** A verifier whose verdicts the test gives, one by one, in any order. */
class HeldVerifier implements SignatureVerifier {
  readonly pending: ((verdict: SignatureVerdict) => void)[] = []
  verify(_key: Uint8Array, _topic: string, _envelope: Uint8Array, done: (verdict: SignatureVerdict) => void): void {
    this.pending.push(done)
  }
  answer(index: number, verdict: SignatureVerdict): void {
    const done = this.pending[index]
    if (!done) throw new Error(`no envelope ${index} at the verifier`)
    done(verdict)
  }
  release(): void {}
}

interface LineUnderTest {
  readonly line: ReceiveLine
  readonly replay: SavedReplayWindow
  /** Payload texts delivered, in order (plaintext ones as is). */
  readonly delivered: string[]
  readonly infos: MessageInfo[]
  readonly rejected: SecurityErrorEvent[]
  readonly storageErrors: Error[]
  /** What happened, in order: `save` when a save reached storage, `deliver <text>` for each delivery. */
  readonly events: string[]
  receive(topic: string, payload: Buffer): void
}

function makeLine(
  options: {
    verifier?: SignatureVerifier
    storage?: ClientStorage
    refreshForEpoch?: () => Promise<void> | undefined
  } = {},
): LineUnderTest {
  const storage = options.storage ?? memoryStorage()
  const events: string[] = []
  const storageErrors: Error[] = []
  const watched: ClientStorage = {
    ...storage,
    get: (key) => storage.get(key),
    set: (key, value) => {
      events.push('save')
      return storage.set(key, value)
    },
  }
  const replay = new SavedReplayWindow(new ReplayWindow(), {
    storage: watched,
    key: replayKey('reader-1'),
    keep: () => true,
    onError: (err) => storageErrors.push(err),
  })
  const delivered: string[] = []
  const infos: MessageInfo[] = []
  const rejected: SecurityErrorEvent[] = []
  const line = new ReceiveLine({
    openOptions: { keys, replay: replay.window },
    replay,
    verifier: options.verifier,
    now: () => NOW,
    isPlaintext: (topic) => topic === PLAIN,
    writerPrincipal: (_group, kid) => principals.get(kid),
    refreshForEpoch: options.refreshForEpoch ?? (() => undefined),
    unknownSenders: { holding: () => false, hold: () => false },
    deliver: (_topic, payload, info) => {
      const text = payload.toString()
      events.push(`deliver ${text}`)
      delivered.push(text)
      infos.push(info)
    },
    reject: (event) => rejected.push(event),
  })
  return {
    line,
    replay,
    delivered,
    infos,
    rejected,
    storageErrors,
    events,
    receive: (topic, payload) => line.receive(topic, payload, packet(topic, payload)),
  }
}

/** A few event-loop turns: enough for any delivery that is not held to go out. */
async function turns(count = 5): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** Everything received so far verified, saved and delivered. */
async function drained(line: ReceiveLine): Promise<void> {
  await line.verifiedAll()
  while (line.delivering) await line.delivering
}

function permutations(items: readonly number[]): number[][] {
  if (items.length <= 1) return [[...items]]
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  )
}

/** A storage whose saves wait until the test lets them go (or fail). */
function heldStorage() {
  const inner = memoryStorage()
  const saves: { resolve: () => void; reject: (err: Error) => void }[] = []
  const storage: ClientStorage = {
    ...inner,
    set: (key, value) =>
      new Promise<void>((resolve, reject) => {
        saves.push({
          resolve: () => void inner.set(key, value).then(resolve),
          reject,
        })
      }),
  }
  return { storage, saves }
}

describe('ReceiveLine: arrival order', () => {
  test('messages are delivered in arrival order, for every order the verdicts come back in', async () => {
    const count = 4
    for (const order of permutations([0, 1, 2, 3])) {
      const verifier = new HeldVerifier()
      const t = makeLine({ verifier })
      for (let seq = 1; seq <= count; seq++) t.receive(TOPIC, sealed(seq))
      expect(verifier.pending).toHaveLength(count)
      for (const index of order) {
        verifier.answer(index, 'valid')
        await turns()
        // Only the run of answered messages at the head of the line may have gone out.
        const answered = new Set(order.slice(0, order.indexOf(index) + 1))
        let head = 0
        while (answered.has(head)) head++
        expect(t.delivered, `verdicts in order ${order}`).toEqual(Array.from({ length: head }, (_, i) => `m${i + 1}`))
      }
      await drained(t.line)
      expect(t.delivered).toEqual(['m1', 'm2', 'm3', 'm4'])
      expect(t.infos.map((info) => (info.encrypted ? [info.sender, info.kid, info.seq] : []))).toEqual([
        ['thermostat-1', 1000, 1],
        ['thermostat-1', 1000, 2],
        ['thermostat-1', 1000, 3],
        ['thermostat-1', 1000, 4],
      ])
      expect(t.rejected).toEqual([])
    }
  })

  test('without a verifier, signatures are checked at once and order is kept', async () => {
    const t = makeLine()
    for (let seq = 1; seq <= 40; seq++) t.receive(TOPIC, sealed(seq))
    await drained(t.line)
    expect(t.delivered).toEqual(Array.from({ length: 40 }, (_, i) => `m${i + 1}`))
  })

  test('plaintext topics pass through in order with encrypted ones, never ahead of them', async () => {
    const verifier = new HeldVerifier()
    const t = makeLine({ verifier })
    t.receive(TOPIC, sealed(1))
    t.receive(PLAIN, Buffer.from('sunny'))
    t.receive(TOPIC, sealed(2))
    t.receive(PLAIN, Buffer.from('rain'))
    await turns()
    expect(t.delivered).toEqual([]) // the plaintext waits behind the envelope ahead of it
    verifier.answer(1, 'valid')
    await turns()
    expect(t.delivered).toEqual([])
    verifier.answer(0, 'valid')
    await drained(t.line)
    expect(t.delivered).toEqual(['m1', 'sunny', 'm2', 'rain'])
    expect(t.infos.map((info) => info.encrypted)).toEqual([true, false, true, false])
    expect(t.infos[1]?.sender).toBeUndefined()
  })

  test('messages received while a task is queued wait for it, then go in arrival order', async () => {
    const t = makeLine()
    let loaded!: () => void
    t.line.enqueue(() => new Promise<void>((resolve) => (loaded = resolve)))
    t.receive(TOPIC, sealed(1))
    t.receive(PLAIN, Buffer.from('sunny'))
    await turns()
    expect(t.delivered).toEqual([])
    loaded()
    await turns()
    await drained(t.line)
    expect(t.delivered).toEqual(['m1', 'sunny'])
  })
})

describe('ReceiveLine: refused messages', () => {
  test('an invalid verdict is refused with ERR_ENVELOPE_SIGNATURE_INVALID; later valid ones still go, in order', async () => {
    const verifier = new HeldVerifier()
    const t = makeLine({ verifier })
    for (let seq = 1; seq <= 4; seq++) t.receive(TOPIC, sealed(seq))
    verifier.answer(3, 'valid')
    verifier.answer(2, 'valid')
    verifier.answer(1, 'invalid')
    await turns()
    expect(t.delivered).toEqual([])
    expect(t.rejected).toEqual([]) // refused in its turn, not before the message ahead of it
    verifier.answer(0, 'valid')
    await drained(t.line)
    expect(t.delivered).toEqual(['m1', 'm3', 'm4'])
    expect(t.rejected).toEqual([
      { code: 'ERR_ENVELOPE_SIGNATURE_INVALID' satisfies SmqttErrorCode, topic: TOPIC, message: expect.any(String) },
    ])
    // A refused envelope is not recorded: its genuine copy is still accepted.
    t.receive(TOPIC, sealed(2))
    verifier.answer(4, 'valid')
    await drained(t.line)
    expect(t.delivered).toEqual(['m1', 'm3', 'm4', 'm2'])
  })

  test("'unavailable' verdicts are checked on the event loop: the genuine delivered, the forged refused, none dropped", async () => {
    const verifier = new HeldVerifier()
    const t = makeLine({ verifier })
    const forged = sealed(2)
    forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1 // the signature's last byte
    t.receive(TOPIC, sealed(1))
    t.receive(TOPIC, forged)
    t.receive(TOPIC, sealed(3))
    verifier.answer(2, 'unavailable')
    verifier.answer(1, 'unavailable')
    verifier.answer(0, 'unavailable')
    await drained(t.line)
    expect(t.delivered).toEqual(['m1', 'm3'])
    expect(t.rejected.map((e) => e.code)).toEqual(['ERR_ENVELOPE_SIGNATURE_INVALID'])
  })

  test('a replay is refused with ERR_REPLAY, in its place in the line', async () => {
    const t = makeLine()
    t.receive(TOPIC, sealed(1))
    t.receive(TOPIC, sealed(1))
    t.receive(TOPIC, sealed(2))
    await drained(t.line)
    expect(t.delivered).toEqual(['m1', 'm2'])
    expect(t.rejected.map((e) => e.code)).toEqual(['ERR_REPLAY'])
  })

  test('an unknown epoch waits for the refresh it asks for, and messages behind it wait too', async () => {
    let refreshed!: () => void
    let asked = 0
    const t = makeLine({
      refreshForEpoch: () => {
        asked++
        return new Promise<void>((resolve) => (refreshed = resolve))
      },
    })
    const unknownEpoch = Buffer.from(
      sealEnvelope({
        topic: TOPIC,
        payload: new TextEncoder().encode('next epoch'),
        epochKey: new EpochKey({ group: GROUP, epoch: EPOCH + 1, suite: 1, key: new Uint8Array(32).fill(7) }),
        signer: thermostat,
        seq: 1,
        sentAt: NOW,
      }),
    )
    t.receive(TOPIC, unknownEpoch)
    t.receive(TOPIC, sealed(5))
    await turns()
    expect(asked).toBe(1)
    expect(t.delivered).toEqual([])
    refreshed() // the refresh brought nothing: refused, and the next one goes
    await turns()
    await drained(t.line)
    expect(asked).toBe(1) // tried once more after the refresh, without asking again
    expect(t.rejected.map((e) => e.code)).toEqual(['ERR_UNKNOWN_EPOCH'])
    expect(t.delivered).toEqual(['m5'])
  })
})

describe('ReceiveLine: save before deliver', () => {
  test('nothing is delivered before the replay state recording it is saved; a slow save holds delivery', async () => {
    const { storage, saves } = heldStorage()
    const t = makeLine({ storage })
    t.receive(TOPIC, sealed(1))
    t.receive(TOPIC, sealed(2))
    await turns(10)
    expect(saves).toHaveLength(1)
    expect(t.delivered).toEqual([])
    t.receive(TOPIC, sealed(3)) // accepted while the save runs: goes out after the next one
    await turns(10)
    saves[0]?.resolve()
    await turns(10)
    expect(t.delivered).toEqual(['m1', 'm2'])
    expect(saves).toHaveLength(2)
    saves[1]?.resolve()
    await drained(t.line)
    expect(t.delivered).toEqual(['m1', 'm2', 'm3'])
    expect(t.events).toEqual(['save', 'deliver m1', 'deliver m2', 'save', 'deliver m3'])
  })

  test('a failed save holds delivery until it settles, is reported, and the next save writes the state', async () => {
    const { storage, saves } = heldStorage()
    const t = makeLine({ storage })
    t.receive(TOPIC, sealed(1))
    await turns(10)
    expect(t.delivered).toEqual([])
    saves[0]?.reject(new Error('disk full'))
    await drained(t.line)
    // As documented in SecureClientEvents.storageError: reported, the message still delivered.
    expect(t.storageErrors.map((e) => e.message)).toEqual(['disk full'])
    expect(t.delivered).toEqual(['m1'])
    const saving = t.replay.save() // still dirty: this save writes m1's record
    await turns()
    expect(saves).toHaveLength(2)
    saves[1]?.resolve()
    await saving
    const text = await storage.get(replayKey('reader-1'))
    const restarted = new ReplayWindow()
    restarted.restoreState(JSON.parse(text as string), NOW)
    expect(() => restarted.check({ group: GROUP, epoch: EPOCH, sender: 1000, seq: 1, sentAt: NOW, now: NOW })).toThrow(
      expect.objectContaining({ code: 'ERR_REPLAY' }),
    )
  })

  test('a crash after the save and before delivery never lets the replay in after the restart', async () => {
    // Storage as it stands when the process dies: right after the first save, before any delivery.
    const disk = memoryStorage()
    let crashed: Promise<void> | undefined
    const storage: ClientStorage = {
      ...disk,
      set: (key, value) => {
        crashed ??= disk.set(key, value)
        return new Promise<void>(() => {}) // the process dies before this save is seen to finish
      },
    }
    const before = makeLine({ storage })
    for (let seq = 1; seq <= 3; seq++) before.receive(TOPIC, sealed(seq))
    await turns(10)
    await crashed
    expect(before.delivered).toEqual([])

    // The restart: the saved state loaded, the broker replays all three.
    const after = makeLine({ storage: disk })
    await after.replay.load(NOW, true)
    expect(after.storageErrors).toEqual([])
    for (let seq = 1; seq <= 3; seq++) after.receive(TOPIC, sealed(seq))
    after.receive(TOPIC, sealed(4))
    await drained(after.line)
    expect(after.rejected.map((e) => e.code)).toEqual(['ERR_REPLAY', 'ERR_REPLAY', 'ERR_REPLAY'])
    expect(after.delivered).toEqual(['m4'])
  })

  test('a delivery that throws does not drop the rest of the batch; the error is rethrown in a microtask', async () => {
    const rethrown: (() => void)[] = []
    const spy = vi.spyOn(globalThis, 'queueMicrotask').mockImplementation((task) => void rethrown.push(task))
    const delivered: string[] = []
    try {
      const line = new ReceiveLine({
        openOptions: { keys, replay: new ReplayWindow() },
        replay: { markDirty: () => {}, save: async () => {} },
        verifier: undefined,
        now: () => NOW,
        isPlaintext: () => false,
        writerPrincipal: (_group, kid) => principals.get(kid),
        refreshForEpoch: () => undefined,
        unknownSenders: { holding: () => false, hold: () => false },
        deliver: (_topic, payload) => {
          delivered.push(payload.toString())
          if (payload.toString() === 'm1') throw new Error('listener failed')
        },
        reject: () => {},
      })
      line.receive(TOPIC, sealed(1), packet(TOPIC, sealed(1)))
      line.receive(TOPIC, sealed(2), packet(TOPIC, sealed(2)))
      await drained(line)
    } finally {
      spy.mockRestore()
    }
    expect(delivered).toEqual(['m1', 'm2'])
    expect(rethrown).toHaveLength(1)
    expect(() => rethrown[0]?.()).toThrow('listener failed')
  })
})

describe('ReceiveLine: unknown senders', () => {
  test('an envelope from a sender the keys do not list is offered to the hold, and released into the line', async () => {
    const held: HeldMessage[] = []
    const stranger = createEnvelopeSigner({ kid: 2000, seed: new Uint8Array(32).fill(9) })
    const strangerKeys = new Map<number, Uint8Array>()
    const line = new ReceiveLine({
      openOptions: {
        keys: { ...keys, writerKey: (group, kid) => keys.writerKey(group, kid) ?? strangerKeys.get(kid) },
        replay: new ReplayWindow(),
      },
      replay: { markDirty: () => {}, save: async () => {} },
      verifier: undefined,
      now: () => NOW,
      isPlaintext: () => false,
      writerPrincipal: (_group, kid) => (kid === stranger.kid ? 'newcomer' : principals.get(kid)),
      refreshForEpoch: () => undefined,
      unknownSenders: {
        holding: () => held.length > 0,
        hold: (_group, _sender, _size, message) => {
          held.push(message)
          return true
        },
      },
      deliver: (_topic, payload, info) => delivered.push(`${info.sender}:${payload.toString()}`),
      reject: (event) => rejected.push(event.code),
    })
    const delivered: string[] = []
    const rejected: string[] = []
    const envelope = Buffer.from(
      sealEnvelope({
        topic: TOPIC,
        payload: new TextEncoder().encode('hello'),
        epochKey,
        signer: stranger,
        seq: 1,
        sentAt: NOW,
      }),
    )
    line.receive(TOPIC, envelope, packet(TOPIC, envelope))
    expect(held).toHaveLength(1)
    strangerKeys.set(stranger.kid, stranger.publicKey) // the refresh taught the sender
    line.release(held[0] as HeldMessage)
    await drained(line)
    expect(rejected).toEqual([])
    expect(delivered).toEqual(['newcomer:hello'])
  })
})
