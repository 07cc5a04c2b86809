// Issue 17: libsmqtt (the C library for devices, libsmqtt/) and @smqtt/core speak envelope v1 byte
// for byte. TypeScript seals and the C tool `smqtt-c` opens, and the reverse, asserting the
// plaintext, the sender and the refusal of a tampered envelope in each direction; then the same
// envelopes travel through the Mosquitto on 127.0.0.1:1883 (no SMQTT plugin: bytes unchanged),
// and through smqtt-broker in full verification mode, where the C library opens the device's
// real key bundle from the key server and makes the CONNECT password the broker accepts.
// Without a C build the test is skipped with the reason, except under CI, where it builds the
// library and fails if that fails.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  createEnvelopeSigner,
  type EnvelopeProperties,
  EpochKey,
  isSmqttError,
  openEnvelope,
  parseEnvelope,
  sealEnvelope,
  verifyConnectPassword,
} from '@smqtt/core'
import mqtt from 'mqtt'
import { describe, expect, test } from 'vitest'
import { type Enrolled, PRINCIPALS, TEMPERATURE_TOPIC, useInteropStack } from './_broker.js'

const LIBRARY = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'libsmqtt')
const BUILD = join(LIBRARY, 'build')
const CLI = join(BUILD, 'smqtt-c')
const MOSQUITTO = 'mqtt://127.0.0.1:1883'

/** The C tool's path, building it under CI; undefined (skip) only outside CI without a build. */
function cTool(): string | undefined {
  if (process.env.CI) {
    for (const args of [
      ['-S', LIBRARY, '-B', BUILD, '-DSMQTT_WERROR=ON'],
      ['--build', BUILD, '--target', 'smqtt-c'],
    ]) {
      const built = spawnSync('cmake', args, { encoding: 'utf8', timeout: 300_000 })
      if (built.status !== 0)
        throw new Error(`libsmqtt does not build (cmake ${args.join(' ')}):\n${built.stdout}\n${built.stderr}`)
    }
  }
  if (existsSync(CLI)) return CLI
  console.warn(`skipping: libsmqtt is not built (${CLI} is missing): run libsmqtt/ci.sh`)
  return undefined
}

const tool = cTool()

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
const unhex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'hex'))
const seed = (label: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + label) & 0xff)

interface CAnswer {
  readonly ok: boolean
  readonly code?: string
  readonly envelope?: string
  readonly payload?: string
  readonly sender?: number
  readonly seq?: number
  readonly password?: string
}

/** Runs one job through smqtt-c: exit 0 done, 1 refused (with the code), anything else fails the test. */
function runC(job: Record<string, unknown>): CAnswer {
  const result = spawnSync(tool as string, [], { input: JSON.stringify(job), encoding: 'utf8', timeout: 10_000 })
  if (result.status !== 0 && result.status !== 1)
    throw new Error(`smqtt-c failed (${result.status}): ${result.stdout}\n${result.stderr}`)
  return JSON.parse(result.stdout) as CAnswer
}

/** Flips one bit inside the signature (the last byte). */
function tampered(envelope: Uint8Array): Uint8Array {
  const copy = envelope.slice()
  copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 0x01
  return copy
}

function errorCode(action: () => unknown): string | undefined {
  try {
    action()
  } catch (err) {
    if (isSmqttError(err)) return err.code
    throw err
  }
  return undefined
}

const GROUP = 7
const EPOCH = 300
const SENT_AT = 1_790_000_000

describe.runIf(tool !== undefined)('libsmqtt (C) and @smqtt/core', () => {
  const writers = [
    { kid: 1000, seed: seed(1) },
    { kid: 2000, seed: seed(2) },
  ].map((w) => ({ ...w, signer: createEnvelopeSigner({ kid: w.kid, seed: w.seed }) }))
  const writerList = writers.map((w) => ({ kid: w.kid, publicKey: hex(w.signer.publicKey) }))
  const epochKeyBytes = seed(3)

  for (const suite of [1, 2] as const) {
    const epochKey = new EpochKey({ group: GROUP, epoch: EPOCH, suite, key: epochKeyBytes })
    const keys = {
      epochKey: (group: number, epoch: number) => (group === GROUP && epoch === EPOCH ? epochKey : undefined),
      writerKey: (group: number, sender: number) =>
        group === GROUP ? writers.find((w) => w.kid === sender)?.signer.publicKey : undefined,
    }
    const cOpen = (envelope: Uint8Array, topic: string, properties?: unknown) =>
      runC({
        op: 'open',
        suite,
        group: GROUP,
        epoch: EPOCH,
        topic,
        envelope: hex(envelope),
        epochKey: hex(epochKeyBytes),
        writers: writerList,
        now: SENT_AT,
        ...(properties === undefined ? {} : { properties }),
      })
    const cSeal = (topic: string, payload: Uint8Array, seq: number, properties?: unknown) => {
      const answer = runC({
        op: 'seal',
        suite,
        group: GROUP,
        epoch: EPOCH,
        kid: 2000,
        seq,
        sentAt: SENT_AT,
        topic,
        payload: hex(payload),
        epochKey: hex(epochKeyBytes),
        signingSeed: hex(seed(2)),
        ...(properties === undefined ? {} : { properties }),
      })
      if (answer.code === 'ERR_ENVELOPE_UNSUPPORTED') return undefined // no AES-GCM on this CPU
      expect(answer).toMatchObject({ ok: true })
      return unhex(answer.envelope as string)
    }

    test(`suite ${suite}: TypeScript seals, C opens; a tampered envelope is refused`, () => {
      const topic = 'home/hall/thermostat/temp'
      const payload = new TextEncoder().encode('{"celsius":21.5}')
      const envelope = sealEnvelope({
        topic,
        payload,
        epochKey,
        signer: writers[0]?.signer as ReturnType<typeof createEnvelopeSigner>,
        seq: 42,
        sentAt: SENT_AT,
      })
      const opened = cOpen(envelope, topic)
      if (opened.code === 'ERR_ENVELOPE_UNSUPPORTED' && suite === 2) return // no AES-GCM on this CPU
      expect(opened).toMatchObject({ ok: true, payload: hex(payload), sender: 1000, seq: 42 })
      expect(cOpen(tampered(envelope), topic)).toEqual({ ok: false, code: 'ERR_ENVELOPE_SIGNATURE_INVALID' })
      expect(cOpen(envelope, `${topic}/moved`)).toEqual({ ok: false, code: 'ERR_ENVELOPE_SIGNATURE_INVALID' })
    })

    test(`suite ${suite}: C seals, TypeScript opens; a tampered envelope is refused`, () => {
      const topic = 'maison/séjour/température'
      const payload = new TextEncoder().encode('22.0')
      const envelope = cSeal(topic, payload, 7)
      if (envelope === undefined) return
      const opened = openEnvelope(envelope, topic, { keys, now: SENT_AT })
      expect(new TextDecoder().decode(opened.payload)).toBe('22.0')
      expect(opened.header).toMatchObject({ sender: 2000, group: GROUP, epoch: EPOCH, seq: 7, suite })
      expect(errorCode(() => openEnvelope(tampered(envelope), topic, { keys, now: SENT_AT }))).toBe(
        'ERR_ENVELOPE_SIGNATURE_INVALID',
      )
      // The same inputs give the same bytes on both sides (Ed25519 is deterministic).
      const signer = writers[1]?.signer as ReturnType<typeof createEnvelopeSigner>
      expect(hex(sealEnvelope({ topic, payload, epochKey, signer, seq: 7, sentAt: SENT_AT }))).toBe(hex(envelope))
    })

    test(`suite ${suite}: bound MQTT 5 properties, both directions`, () => {
      const topic = 'home/hall/lock/set'
      const payload = new TextEncoder().encode('{"lock":"open"}')
      const properties: EnvelopeProperties = {
        contentType: 'application/json',
        responseTopic: 'home/hall/lock/reply/app-1',
        correlationData: unhex('0102030405'),
        userProperties: [['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']],
      }
      const asJson = {
        contentType: properties.contentType,
        responseTopic: properties.responseTopic,
        correlationData: '0102030405',
        userProperties: properties.userProperties,
      }
      const fromC = cSeal(topic, payload, 8, asJson)
      if (fromC === undefined) return
      const signer = writers[1]?.signer as ReturnType<typeof createEnvelopeSigner>
      const fromTs = sealEnvelope({ topic, payload, epochKey, signer, seq: 8, sentAt: SENT_AT, properties })
      expect(hex(fromC)).toBe(hex(fromTs))
      expect(openEnvelope(fromC, topic, { keys, now: SENT_AT, properties }).properties.verified).toEqual(properties)
      expect(cOpen(fromTs, topic, asJson)).toMatchObject({ ok: true, payload: hex(payload), sender: 2000 })
      const redirected = { ...asJson, responseTopic: 'evil/reply' }
      expect(cOpen(fromTs, topic, redirected)).toEqual({ ok: false, code: 'ERR_ENVELOPE_SIGNATURE_INVALID' })
      expect(
        errorCode(() =>
          openEnvelope(fromC, topic, {
            keys,
            now: SENT_AT,
            properties: { ...properties, responseTopic: 'evil/reply' },
          }),
        ),
      ).toBe('ERR_ENVELOPE_SIGNATURE_INVALID')
    })
  }

  test('the CONNECT password the C library makes is the one @smqtt/core verifies', () => {
    const signer = writers[0]?.signer as ReturnType<typeof createEnvelopeSigner>
    const answer = runC({
      op: 'password',
      clientId: 'thermostat-1',
      timestamp: SENT_AT,
      nonce: '000102030405060708090a0b0c0d0e0f',
      signingSeed: hex(seed(1)),
    })
    const password = answer.password as string
    expect(password).toMatch(/^smqtt1\.1790000000\.AAECAwQFBgcICQoLDA0ODw\.[A-Za-z0-9_-]{86}$/)
    const check = (clientId: string, now: number) =>
      errorCode(() => verifyConnectPassword(password, { clientId, signingKey: signer.publicKey, now }))
    expect(check('thermostat-1', SENT_AT + 60)).toBeUndefined()
    expect(check('thermostat-2', SENT_AT)).toBe('ERR_UNAUTHENTICATED')
    expect(check('thermostat-1', SENT_AT + 61)).toBe('ERR_UNAUTHENTICATED')
  })

  test('through Mosquitto (127.0.0.1:1883): C → TypeScript and TypeScript → C, bytes unchanged', async () => {
    const epochKey = new EpochKey({ group: GROUP, epoch: EPOCH, suite: 1, key: epochKeyBytes })
    const keys = {
      epochKey: () => epochKey,
      writerKey: (_group: number, sender: number) => writers.find((w) => w.kid === sender)?.signer.publicKey,
    }
    const run = `clib${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`
    const fromCTopic = `smqtt-test/${run}/from-c`
    const fromTsTopic = `smqtt-test/${run}/from-ts`
    const client = await mqtt.connectAsync(MOSQUITTO, { protocolVersion: 5, clientId: `c-library-${run}` })
    try {
      const received = new Map<string, Uint8Array>()
      const arrived = new Promise<void>((resolve) => {
        client.on('message', (topic, message) => {
          received.set(topic, new Uint8Array(message))
          if (received.size === 2) resolve()
        })
      })
      await client.subscribeAsync(`smqtt-test/${run}/#`, { qos: 1 })
      const fromC = runC({
        op: 'seal',
        suite: 1,
        group: GROUP,
        epoch: EPOCH,
        kid: 2000,
        seq: 100,
        sentAt: SENT_AT,
        topic: fromCTopic,
        payload: hex(new TextEncoder().encode('from C')),
        epochKey: hex(epochKeyBytes),
        signingSeed: hex(seed(2)),
      })
      const signer = writers[0]?.signer as ReturnType<typeof createEnvelopeSigner>
      const payload = new TextEncoder().encode('from TypeScript')
      const fromTs = sealEnvelope({ topic: fromTsTopic, payload, epochKey, signer, seq: 101, sentAt: SENT_AT })
      await client.publishAsync(fromCTopic, Buffer.from(unhex(fromC.envelope as string)), { qos: 1 })
      await client.publishAsync(fromTsTopic, Buffer.from(fromTs), { qos: 1 })
      await arrived

      const cEnvelope = received.get(fromCTopic) as Uint8Array
      const opened = openEnvelope(cEnvelope, fromCTopic, { keys, now: SENT_AT })
      expect([new TextDecoder().decode(opened.payload), opened.header.sender]).toEqual(['from C', 2000])
      expect(errorCode(() => openEnvelope(tampered(cEnvelope), fromCTopic, { keys, now: SENT_AT }))).toBe(
        'ERR_ENVELOPE_SIGNATURE_INVALID',
      )

      const tsEnvelope = received.get(fromTsTopic) as Uint8Array
      const cJob = {
        op: 'open',
        suite: 1,
        group: GROUP,
        epoch: EPOCH,
        topic: fromTsTopic,
        epochKey: hex(epochKeyBytes),
        writers: writerList,
        now: SENT_AT,
      }
      expect(runC({ ...cJob, envelope: hex(tsEnvelope) })).toMatchObject({
        ok: true,
        payload: hex(payload),
        sender: 1000,
      })
      expect(runC({ ...cJob, envelope: hex(tampered(tsEnvelope)) })).toEqual({
        ok: false,
        code: 'ERR_ENVELOPE_SIGNATURE_INVALID',
      })
    } finally {
      await client.endAsync()
    }
  })
})

describe.runIf(tool !== undefined)('libsmqtt (C) through smqtt-broker (full verification mode)', () => {
  const stack = useInteropStack()
  const now = () => Math.floor(Date.now() / 1000)
  const url = () => `mqtts://${stack.host}:${stack.port}`

  /** What the C tool needs to act as `who`: its key bundle from the key server and its keys. */
  async function deviceJob(who: Enrolled): Promise<Record<string, unknown>> {
    const response = await stack.h.device(who.identity, 'GET', '/v1/bundle')
    expect(response.status).toBe(200)
    return {
      bundle: (response.body as { bundle: unknown }).bundle,
      keyServerPublicKey: hex(stack.h.keyServer.publicKey),
      id: who.identity.id,
      agreementSecret: hex(who.identity.agreementSecret),
      agreementKey: hex(who.identity.agreementKey),
      now: now(),
    }
  }

  test('C seals with its own key bundle and TypeScript opens, and the reverse; the broker drops a tampered envelope; the C CONNECT password logs in', async () => {
    const { thermostat, app } = stack.enrolled
    const ca = readFileSync(stack.caFile)
    const password = runC({
      op: 'password',
      clientId: app.identity.id,
      timestamp: now(),
      nonce: hex(randomBytes(16)),
      signingSeed: hex(app.identity.signingSeed),
    }).password as string
    const reader = await mqtt.connectAsync(url(), {
      ca,
      clientId: app.identity.id,
      username: app.identity.id,
      password,
      reconnectPeriod: 0,
    })
    const publisher = () =>
      mqtt.connectAsync(url(), {
        ca,
        cert: readFileSync(stack.tls.thermostat.cert),
        key: readFileSync(stack.tls.thermostat.key),
        clientId: PRINCIPALS.thermostat.id,
        reconnectPeriod: 0,
      })
    const received: Uint8Array[] = []
    reader.on('message', (_topic, message) => received.push(new Uint8Array(message)))
    const waitFor = async (count: number) => {
      for (let i = 0; i < 100 && received.length < count; i++) await new Promise((resolve) => setTimeout(resolve, 50))
      expect(received.length).toBe(count)
    }
    try {
      await reader.subscribeAsync('home/+/thermostat/#', { qos: 1 })

      // TypeScript → C: the thermostat seals with @smqtt/core; the app's C side opens with its bundle.
      const thermostatClient = await publisher()
      const fromTs = await stack.sealToFile(thermostat, TEMPERATURE_TOPIC, '22.5')
      await thermostatClient.publishAsync(TEMPERATURE_TOPIC, Buffer.from(fromTs.bytes), { qos: 1 })
      await waitFor(1)
      const appJob = { op: 'device-open', ...(await deviceJob(app)), topic: TEMPERATURE_TOPIC }
      expect(runC({ ...appJob, envelope: hex(received[0] as Uint8Array) })).toMatchObject({
        ok: true,
        payload: hex(new TextEncoder().encode('22.5')),
        sender: thermostat.kid,
      })
      expect(runC({ ...appJob, envelope: hex(tampered(received[0] as Uint8Array)) })).toEqual({
        ok: false,
        code: 'ERR_ENVELOPE_SIGNATURE_INVALID',
      })

      // C → TypeScript: the C tool opens the thermostat's bundle and seals with its newest epoch key.
      const sealJob = {
        op: 'device-seal',
        ...(await deviceJob(thermostat)),
        signingSeed: hex(thermostat.identity.signingSeed),
      }
      const cSeal = (seq: number, text: string) =>
        unhex(
          runC({
            ...sealJob,
            kid: thermostat.kid,
            seq,
            sentAt: now(),
            topic: TEMPERATURE_TOPIC,
            payload: hex(new TextEncoder().encode(text)),
          }).envelope as string,
        )
      // A tampered envelope first: the broker checks the signature and refuses it (audited).
      await thermostatClient.publishAsync(TEMPERATURE_TOPIC, Buffer.from(tampered(cSeal(5_000, 'forged'))), { qos: 0 })
      const audit = await stack.auditUntil('publish:signature-invalid')
      expect(audit).toContain('publish:signature-invalid')
      expect(audit).toContain('login:connect-password') // the C library's CONNECT password
      await thermostatClient.endAsync(true)
      const again = await publisher()
      await again.publishAsync(TEMPERATURE_TOPIC, Buffer.from(cSeal(5_001, '23.0')), { qos: 1 })
      await waitFor(2)
      await new Promise((resolve) => setTimeout(resolve, 300)) // nothing else arrives
      expect(received.length).toBe(2)
      const fromC = received[1] as Uint8Array
      expect(await stack.open(app, TEMPERATURE_TOPIC, hex(fromC))).toBe('23.0')
      expect(parseEnvelope(fromC).header).toMatchObject({ sender: thermostat.kid, seq: 5_001 })
      await again.endAsync(true)
    } finally {
      await reader.endAsync(true)
    }
  })
})
