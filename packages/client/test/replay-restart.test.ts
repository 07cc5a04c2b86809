// A subscriber's replay protection survives its restart: the receive window is saved in the
// client's storage (a real fileStorage here) before a message is delivered, and loaded before
// anything is handled after a restart. The broker is plain Aedes, so raw replays reach the
// subscriber, as they would through a compromised broker or one that restarted.
import { mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  isSmqttError,
  parseEnvelope,
  ReplayWindow,
  type ReplayWindowOptions,
  type ReplayWindowState,
} from '@smqtt/core'
import { now, type Stack, startStack, tap, waitUntil, within } from '@smqtt/test-kit/client'
import mqtt from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { type Enrollment, fileStorage, type SecureClient, type SecurityErrorEvent, secure } from '../src/index.js'
import type { ClientStorage } from '../src/storage.js'

let stack: Stack
let dir: string
const subscribers: SecureClient[] = []

beforeAll(async () => {
  stack = await startStack()
  dir = mkdtempSync(join(tmpdir(), 'smqtt-replay-restart-'))
})
afterEach(async () => {
  await Promise.all(subscribers.splice(0).map((client) => client.endAsync(true)))
  await stack.closeClients()
})
afterAll(async () => {
  await stack?.close()
  rmSync(dir, { recursive: true, force: true })
})

type Member = Enrollment & { storage: ClientStorage }

/** The file fileStorage keeps the replay state of `id` in (the key percent-encoded). */
const stateFile = (name: string, id: string) => join(dir, name, encodeURIComponent(`replay:${id}`))

/** A subscriber with a persistent session (clean: false) on `member`'s file storage. */
async function startSubscriber(member: Member, replay?: ReplayWindowOptions) {
  const client = secure(
    mqtt.connect(stack.brokerUrl, {
      ca: stack.ca,
      clientId: member.identity.id,
      clean: false,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    }),
    {
      identity: member.identity,
      kid: member.kid,
      keyServer: { url: stack.h.url, ca: stack.ca, keyServerPublicKey: member.keyServerPublicKey },
      storage: member.storage,
      ...(replay ? { replay } : {}),
    },
  )
  subscribers.push(client)
  const messages: string[] = []
  const errors: SecurityErrorEvent[] = []
  const storageErrors: Error[] = []
  client.on('message', (_topic, payload) => messages.push(new TextDecoder().decode(payload)))
  client.on('securityError', (event) => errors.push(event))
  client.on('storageError', (error) => storageErrors.push(error))
  client.on('keyServerError', () => {})
  client.on('error', () => {})
  const connected = new Promise<void>((resolve) => client.once('connect', () => resolve()))
  await within(Promise.all([connected, client.ready]), 10_000, `${member.identity.id} connect + keys`)
  return { client, messages, errors, storageErrors }
}

/** A writer, a reader on a file storage of its own, and a wire tap, for home `name`. */
async function setUp(name: string) {
  const thermostat = await stack.enroll(`thermostat-${name}`, ['thermostat'])
  const app = await stack.enroll(`app-${name}`, ['app'], fileStorage(join(dir, name)))
  const publisher = await stack.client(thermostat)
  const topic = `home/${name}/thermostat/thermostat-${name}/temp`
  const subscriber = await startSubscriber(app)
  await subscriber.client.subscribeAsync(`home/${name}/thermostat/#`, { qos: 1 })
  const wire = await tap(await stack.raw(), topic)
  /** Publishes `text` and returns its envelope as the wire tap saw it. */
  const send = async (text: string) => {
    const seen = wire.length
    await publisher.client.publishAsync(topic, text, { qos: 1 })
    await waitUntil(() => wire.length > seen, `the envelope of ${text} on the wire`)
    return (wire.at(-1) as (typeof wire)[number]).bytes
  }
  /** Publishes raw bytes, as a replaying broker would deliver them. */
  const replay = async (bytes: Uint8Array) => {
    const raw = await stack.raw()
    await raw.publishAsync(topic, Buffer.from(bytes), { qos: 1 })
  }
  return { app, topic, publisher, subscriber, wire, send, replay }
}

describe('replay protection across a subscriber restart', () => {
  test('an envelope accepted before the restart is refused after it -> ERR_REPLAY, not delivered', async () => {
    const { app, subscriber, send, replay } = await setUp('rr1')
    const envelope = await send('20.1')
    await waitUntil(() => subscriber.messages.length === 1, 'the first delivery')
    await subscriber.client.endAsync()

    const restarted = await startSubscriber(app)
    await replay(envelope)
    await waitUntil(() => restarted.errors.length === 1, 'the replay to be refused')
    expect(restarted.errors[0]?.code).toBe('ERR_REPLAY')
    await send('20.2') // newer messages still pass
    await waitUntil(() => restarted.messages.length === 1, 'the new message')
    expect(restarted.messages).toEqual(['20.2'])
    expect(restarted.storageErrors).toEqual([])
  })

  test('a delivered message is already saved: a crash right after delivery cannot forget it', async () => {
    const { app, subscriber, send } = await setUp('rr2')
    const savedAtDelivery: ReplayWindowState[] = []
    // Read the file synchronously inside the handler: this is what a crash at that instant leaves.
    subscriber.client.on('message', () =>
      savedAtDelivery.push(JSON.parse(readFileSync(stateFile('rr2', app.identity.id), 'utf8'))),
    )
    const envelopes = [await send('1'), await send('2'), await send('3')]
    await waitUntil(() => savedAtDelivery.length === 3, 'three deliveries')
    envelopes.forEach((bytes, i) => {
      const { header } = parseEnvelope(bytes)
      const window = new ReplayWindow()
      window.restoreState(savedAtDelivery[i], now())
      expect(() => window.check({ ...header, now: now() })).toThrow(/already seen/)
    })
  })

  test('a burst shares saves, yet each message is saved before it is delivered, in order', async () => {
    const { app, topic, publisher, subscriber, wire } = await setUp('rrburst')
    const delivered: { text: string; state: ReplayWindowState }[] = []
    subscriber.client.on('message', (_topic, payload) =>
      delivered.push({
        text: new TextDecoder().decode(payload),
        state: JSON.parse(readFileSync(stateFile('rrburst', app.identity.id), 'utf8')),
      }),
    )
    // More than one delivery batch, published without waiting, so messages arrive back to back.
    const texts = Array.from({ length: 100 }, (_, i) => `burst ${i}`)
    await Promise.all(texts.map((text) => publisher.client.publishAsync(topic, text, { qos: 0 })))
    await waitUntil(() => delivered.length === texts.length && wire.length >= texts.length, 'the burst', 15_000)
    expect(delivered.map((d) => d.text)).toEqual(texts)
    // Sealed in publish order: the i-th smallest sequence number is the i-th message.
    const headers = wire.map((w) => parseEnvelope(w.bytes).header).sort((a, b) => a.seq - b.seq)
    headers.forEach((header, i) => {
      const window = new ReplayWindow()
      window.restoreState((delivered[i] as (typeof delivered)[number]).state, now())
      expect(() => window.check({ ...header, now: now() })).toThrow(/already seen/)
    })
  })

  test('QoS 1 messages queued for the persistent session while it was down are still delivered, in order', async () => {
    const { app, subscriber, send, replay } = await setUp('rr3')
    const before = await send('before')
    await waitUntil(() => subscriber.messages.length === 1, 'the first delivery')
    await subscriber.client.endAsync()

    const queued = [await send('queued 1'), await send('queued 2'), await send('queued 3')]
    const restarted = await startSubscriber(app)
    await waitUntil(() => restarted.messages.length === 3, 'the queued messages', 10_000)
    expect(restarted.messages).toEqual(['queued 1', 'queued 2', 'queued 3'])
    expect(restarted.errors).toEqual([])
    // Both what was accepted before and after the restart stay refused.
    await replay(before)
    await replay(queued[1] as Uint8Array)
    await waitUntil(() => restarted.errors.length === 2, 'both replays refused')
    expect(restarted.errors.map((e) => e.code)).toEqual(['ERR_REPLAY', 'ERR_REPLAY'])
    expect(restarted.messages).toHaveLength(3)
  })

  test.each([
    ['corrupt', 'rr4'],
    ['missing', 'rr5'],
  ])(
    'a %s saved state fails safe: ERR_REPLAY_STATE_INVALID, everything sent before the restart refused, later messages pass',
    async (kind, name) => {
      const { app, subscriber, send, replay } = await setUp(name)
      const envelope = await send('old')
      await waitUntil(() => subscriber.messages.length === 1, 'the first delivery')
      await subscriber.client.endAsync()
      if (kind === 'corrupt') await app.storage.set(`replay:${app.identity.id}`, '{"v":1,"windows":[[1,1,1,"x"')
      else unlinkSync(stateFile(name, app.identity.id))
      const whileDown = await send('sent while down')

      // No skew allowed, so that the floor is the restart second itself and the test need not wait 30 s.
      const restarted = await startSubscriber(app, { maxFutureSkewSeconds: 0 })
      expect(restarted.storageErrors).toHaveLength(1)
      expect(isSmqttError(restarted.storageErrors[0], 'ERR_REPLAY_STATE_INVALID')).toBe(true)
      await waitUntil(() => restarted.errors.length === 1, 'the queued message refused')
      await replay(envelope)
      await waitUntil(() => restarted.errors.length === 2, 'the replay refused')
      expect(restarted.errors.map((e) => e.code)).toEqual(['ERR_REPLAY', 'ERR_REPLAY'])
      expect(parseEnvelope(whileDown).header.seq).toBeGreaterThan(parseEnvelope(envelope).header.seq)

      const floor = now()
      await waitUntil(() => now() > floor, 'the next second', 3_000)
      await send('fresh')
      await waitUntil(() => restarted.messages.length === 1, 'the fresh message')
      expect(restarted.messages).toEqual(['fresh'])
      // The state was written again, well formed.
      const saved = JSON.parse(readFileSync(stateFile(name, app.identity.id), 'utf8'))
      expect(() => new ReplayWindow().restoreState(saved, now())).not.toThrow()
    },
  )

  // Last: it rotates group 1, which every home here uses.
  test('the stored state stays bounded: at most maxSenders windows, retired epochs left out', async () => {
    const app = await stack.enroll('app-rr6', ['app'], fileStorage(join(dir, 'rr6')))
    const thermostats = await Promise.all(
      ['a', 'b', 'c'].map((x) => stack.enroll(`thermostat-rr6${x}`, ['thermostat'])),
    )
    const subscriber = await startSubscriber(app, { maxSenders: 2 })
    await subscriber.client.subscribeAsync('home/rr6/thermostat/#', { qos: 1 })
    const publishers = await Promise.all(thermostats.map((t) => stack.client(t)))
    /** `text` from the first `count` thermostats, delivered. */
    const sendFrom = async (count: number, text: string) => {
      const before = subscriber.messages.length
      for (const [i, publisher] of publishers.slice(0, count).entries())
        await publisher.client.publishAsync(`home/rr6/thermostat/${thermostats[i]?.identity.id}/temp`, text, { qos: 1 })
      await waitUntil(() => subscriber.messages.length === before + count, `${text} from ${count}`)
    }
    const saved = async (): Promise<ReplayWindowState> =>
      JSON.parse((await app.storage.get(`replay:${app.identity.id}`)) ?? '')

    await sendFrom(3, 'epoch 1')
    const first = await saved()
    expect(first.windows).toHaveLength(2) // the third sender's window was evicted to a floor
    expect(first.windows.length + first.floors.length).toBe(3)
    const oldEpoch = first.windows[0]?.[1]

    // Rotate "an hour ago": the old epoch is past its grace period, its envelopes no longer open.
    stack.h.clock.now = now() - 3_600
    await stack.h.keyServer.rotateGroup(1, { immediate: true, actor: 'test', reason: 'replay state bound' })
    stack.syncClock()
    await Promise.all([app, ...thermostats].map((m) => stack.push(m.identity)))
    await waitUntil(
      () => publishers.every((p) => p.client.keys.groups[0]?.epochs.at(-1) !== oldEpoch),
      'the publishers on the new epoch',
    )
    await sendFrom(1, 'epoch 2')
    const second = await saved()
    // In memory: the new window, one old window, two floors; saved: only the new window.
    expect(second.windows.map((entry) => entry[1])).not.toContain(oldEpoch)
    expect(second.windows).toHaveLength(1)
    expect(second.floors).toEqual([])
    expect(subscriber.errors).toEqual([])
  })
})
