// SmqttError.details in the client (issue 16): the keyring's refusals to seal name the topic
// (and group), and a refused message's `securityError` event passes core's details on.
import {
  createEnvelopeSigner,
  createKeyBundle,
  type EnvelopeKeys,
  EpochKey,
  generateIdentity,
  openKeyBundle,
  ReplayWindow,
  sealEnvelope,
} from '@smqtt/core'
import { thrown } from '@smqtt/test-kit/errors'
import type { IPublishPacket } from 'mqtt'
import { describe, expect, test } from 'vitest'
import { ReceiveLine } from '../src/_receive-line.js'
import { replayKey, SavedReplayWindow } from '../src/_replay-state.js'
import { Keyring } from '../src/keyring.js'
import type { SecurityErrorEvent } from '../src/secure.js'
import { memoryStorage } from '../src/storage.js'

const NOW = 1_790_000_000

describe('keyring: sealing refusals', () => {
  const keyServer = generateIdentity('keyserver')
  const device = generateIdentity('app-1')
  const signed = createKeyBundle({
    recipient: device,
    groups: [
      {
        group: 4,
        name: 'home',
        filter: 'home/#',
        suite: 1,
        epochs: [{ epoch: 2, key: new Uint8Array(32).fill(9), activatesAt: NOW - 60, retiresAt: NOW + 3600 }],
        writers: [
          { kid: 1000, principal: 'app-1', signingKey: device.signingKey, publish: { allow: ['home/#'], deny: [] } },
        ],
      },
    ],
    validity: { notBefore: NOW - 60, notAfter: NOW + 3600 },
    issuedAt: NOW,
    keyServer,
  })
  const bundle = openKeyBundle(signed, { keyServerPublicKey: keyServer.signingKey, recipient: device, now: NOW })

  test('ERR_NO_KEY_GROUP names the topic', () => {
    const keyring = new Keyring(() => NOW)
    keyring.apply(bundle)
    expect(thrown('ERR_NO_KEY_GROUP', () => keyring.sealingKey('garden/tap', 1000)).details).toEqual({
      topic: 'garden/tap',
    })
  })

  test('ERR_UNKNOWN_EPOCH (every epoch held has retired) names the group and the topic', () => {
    let now = NOW
    const keyring = new Keyring(() => now)
    keyring.apply(bundle)
    expect(keyring.sealingKey('home/hall', 1000).group.group).toBe(4)
    now = NOW + 7200
    expect(thrown('ERR_UNKNOWN_EPOCH', () => keyring.sealingKey('home/hall', 1000)).details).toEqual({
      group: 4,
      topic: 'home/hall',
    })
  })
})

describe('receive line: securityError events carry the details', () => {
  const TOPIC = 'home/hall/thermostat/temp'
  const epochKey = new EpochKey({ group: 7, epoch: 300, suite: 1, key: new Uint8Array(32).fill(0x42) })
  const thermostat = createEnvelopeSigner({ kid: 1000, seed: new Uint8Array(32).fill(1) })
  const keys: EnvelopeKeys = {
    epochKey: (group, epoch) => (group === 7 && epoch === 300 ? epochKey : undefined),
    writerKey: (group, kid) => (group === 7 && kid === thermostat.kid ? thermostat.publicKey : undefined),
  }
  const envelope = (seq: number, key = epochKey): Buffer =>
    Buffer.from(
      sealEnvelope({ topic: TOPIC, payload: new Uint8Array([1]), epochKey: key, signer: thermostat, seq, sentAt: NOW }),
    )
  const packet = (payload: Buffer): IPublishPacket => ({
    cmd: 'publish',
    topic: TOPIC,
    payload,
    qos: 0,
    dup: false,
    retain: false,
  })

  /** A receive line; `receive` feeds it envelopes in order and waits until it has handled them. */
  function line(): {
    receive: (...envelopes: Buffer[]) => Promise<void>
    rejected: SecurityErrorEvent[]
    delivered: number[]
  } {
    const replay = new SavedReplayWindow(new ReplayWindow(), {
      storage: memoryStorage(),
      key: replayKey('reader-1'),
      keep: () => true,
      onError: (err) => {
        throw err
      },
    })
    const rejected: SecurityErrorEvent[] = []
    const delivered: number[] = []
    const receiveLine = new ReceiveLine({
      openOptions: { keys, replay: replay.window },
      replay,
      verifier: undefined,
      now: () => NOW,
      isPlaintext: () => false,
      writerPrincipal: () => 'thermostat-1',
      refreshForEpoch: () => undefined,
      unknownSenders: { holding: () => false, hold: () => false },
      deliver: (_topic, payload) => delivered.push(payload.length),
      reject: (event) => rejected.push(event),
    })
    const receive = async (...envelopes: Buffer[]) => {
      for (const envelope of envelopes) receiveLine.receive(TOPIC, envelope, packet(envelope))
      await receiveLine.verifiedAll()
      while (receiveLine.delivering) await receiveLine.delivering
    }
    return { receive, rejected, delivered }
  }

  test('a replay: code, topic and { group, epoch, kid }', async () => {
    const t = line()
    const once = envelope(5)
    await t.receive(once, once)
    expect(t.delivered).toEqual([1])
    expect(t.rejected).toEqual([
      { code: 'ERR_REPLAY', topic: TOPIC, message: expect.any(String), details: { group: 7, epoch: 300, kid: 1000 } },
    ])
  })

  test('an unknown epoch (no refresh may run): { group, epoch }', async () => {
    const t = line()
    const other = new EpochKey({ group: 7, epoch: 301, suite: 1, key: new Uint8Array(32).fill(0x43) })
    await t.receive(envelope(6, other))
    expect(t.rejected).toEqual([
      { code: 'ERR_UNKNOWN_EPOCH', topic: TOPIC, message: expect.any(String), details: { group: 7, epoch: 301 } },
    ])
  })

  test('a decryption failure: no details', async () => {
    const t = line()
    const wrong = new EpochKey({ group: 7, epoch: 300, suite: 1, key: new Uint8Array(32).fill(0x44) })
    await t.receive(envelope(7, wrong))
    expect(t.rejected).toHaveLength(1)
    expect(t.rejected[0]?.code).toBe('ERR_ENVELOPE_DECRYPTION_FAILED')
    expect(t.rejected[0]).not.toHaveProperty('details')
  })
})
