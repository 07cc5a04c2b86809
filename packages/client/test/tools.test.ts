// smqtt-pub and smqtt-sub as a user runs them: child processes (node + tsx, the source the npm
// scripts run), against the real key server (HTTPS, dev PKI) and the real SMQTT broker
// (startBroker: Aedes + plugin, mqtts://, key-proof CONNECT passwords), and against the
// third-party Mosquitto on 127.0.0.1:1883 (plain, no login), where anyone may publish: there
// forged, replayed and tampered messages reach the subscriber, which reports them on stderr.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseBrokerConfig, type RunningBroker, startBroker } from '@smqtt/broker-plugin'
import { exportIdentity } from '@smqtt/core'
import { brokerConfigFor } from '@smqtt/test-kit/broker'
import { enrollThrough, now, within } from '@smqtt/test-kit/client'
import { freePort, type Harness } from '@smqtt/test-kit/keyserver'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { fileStorage, loadEnrollment } from '../src/index.js'
import { startLiveHarness } from './_live-harness.js'

const clientDir = fileURLToPath(new URL('..', import.meta.url))
const BIN = { pub: 'src/tools/smqtt-pub.ts', sub: 'src/tools/smqtt-sub.ts' } as const
const MOSQUITTO = 'mqtt://127.0.0.1:1883'
const TOOL_TIMEOUT_MS = 40_000

interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

interface Tool {
  readonly child: ChildProcess
  readonly exited: Promise<Finished>
  /** Resolves once `stream` has printed a line matching `pattern`. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp, what: string): Promise<void>
}

const running = new Set<ChildProcess>()

/** Starts a tool the way `npm run pub|sub -w @smqtt/client` does, in one process (signals reach it). */
function tool(name: keyof typeof BIN, args: readonly string[], stdin?: string): Tool {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=smqtt-source', BIN[name], ...args], {
    cwd: clientDir,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  running.add(child)
  const out = { stdout: '', stderr: '' }
  child.stdout?.on('data', (chunk) => {
    out.stdout += chunk
  })
  child.stderr?.on('data', (chunk) => {
    out.stderr += chunk
  })
  if (stdin === undefined) child.stdin?.end()
  else child.stdin?.end(stdin)
  const timer = setTimeout(() => child.kill('SIGKILL'), TOOL_TIMEOUT_MS)
  const exited = new Promise<Finished>((resolve) =>
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      running.delete(child)
      resolve({ code, signal, ...out })
    }),
  )
  let done = false
  void exited.then(() => {
    done = true
  })
  return {
    child,
    exited,
    waitFor: (stream, pattern, what) =>
      within(
        (async () => {
          while (!pattern.test(out[stream])) {
            if (done) throw new Error(`${name} exited before ${what}:\n${out.stdout}\n${out.stderr}`)
            await new Promise((resolve) => setTimeout(resolve, 25))
          }
        })(),
        TOOL_TIMEOUT_MS,
        what,
      ),
  }
}

const run = (name: keyof typeof BIN, args: readonly string[], stdin?: string) => tool(name, args, stdin).exited

afterEach(() => {
  for (const child of running) child.kill('SIGKILL')
})

describe('usage', () => {
  test('--help prints the usage and the exit codes, exit 0; an unknown option exits 2 with the usage line', async () => {
    const [pubHelp, subHelp, pubBad, subBad, noTopic] = await Promise.all([
      run('pub', ['--help']),
      run('sub', ['--help']),
      run('pub', ['--state', 'x', '-t', 'a', '-m', 'b', '--token', 'secret']),
      run('sub', ['--state', 'x', '-t', 'a', '-x']),
      run('pub', ['--state', 'x', '-m', 'b']),
    ])
    expect(pubHelp).toMatchObject({ code: 0, stderr: '' })
    expect(pubHelp.stdout).toMatch(/^Usage: smqtt-pub /)
    expect(pubHelp.stdout).toMatch(/Exit codes:\n {2}0 {2}every message was acknowledged/)
    expect(subHelp).toMatchObject({ code: 0, stderr: '' })
    expect(subHelp.stdout).toMatch(/^Usage: smqtt-sub /)
    expect(subHelp.stdout).toContain('27  -W elapsed first')
    expect(pubBad.code).toBe(2)
    expect(pubBad.stderr).toMatch(/Unknown option '--token'[\s\S]*Usage: smqtt-pub /)
    expect(subBad.code).toBe(2)
    expect(subBad.stderr).toMatch(/Unknown option '-x'[\s\S]*Usage: smqtt-sub /)
    expect(noTopic.code).toBe(2)
    expect(noTopic.stderr).toContain('-t TOPIC is required')
  })
})

describe('against the real stack', () => {
  let h: Harness
  let broker: RunningBroker
  let dir: string
  let caFile: string
  let stopClock: (() => void) | undefined
  const state: Record<string, string> = {}
  const others: MqttClient[] = []

  beforeAll(async () => {
    ;({ h, stopClock } = await startLiveHarness())
    dir = mkdtempSync(join(tmpdir(), 'smqtt-tools-'))
    caFile = join(dir, 'ca.pem')
    writeFileSync(caFile, h.caPem)
    for (const [id, roles] of [
      ['thermostat-1', ['thermostat']],
      ['app-1', ['app']],
    ] as const) {
      state[id] = join(dir, id)
      await enrollThrough(h, id, [...roles], fileStorage(state[id]))
    }
    const brokerPrincipal = await h.enroll('broker-1', ['broker'])
    const identityFile = join(dir, 'broker-identity.json')
    writeFileSync(identityFile, JSON.stringify(exportIdentity(brokerPrincipal.identity)), { mode: 0o600 })
    broker = await startBroker(
      parseBrokerConfig(
        brokerConfigFor(h, {
          listeners: { mqtts: { host: '127.0.0.1', port: 0 } },
          keyServer: { identityFile },
          metrics: false,
        }),
        dir,
      ),
      { logLevel: 'silent' },
    )
  }, 60_000)

  afterAll(async () => {
    stopClock?.()
    for (const client of others) await client.endAsync(true).catch(() => {})
    await broker?.close()
    await h?.close()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  const smqttBroker = () => ['-L', broker.urls.mqtts as string, '--cafile', caFile]
  const as = (id: string) => ['--state', state[id] as string]

  describe('the SMQTT broker (key-proof CONNECT passwords)', () => {
    const topic = 'home/h1/thermostat/thermostat-1/temp'

    test('pub -m and pub -l (stdin) reach sub, which prints sender, sentAt and "verified"; SIGINT ends it with 0', async () => {
      const sub = tool('sub', [
        ...as('app-1'),
        ...smqttBroker(),
        '-t',
        'home/+/thermostat/#',
        '-q',
        '1',
        '--json',
        '-d',
      ])
      await sub.waitFor('stderr', /subscribed to home\/\+\/thermostat\/# \(QoS 1\)/, 'the SUBACK')

      const before = now()
      const one = await run('pub', [...as('thermostat-1'), ...smqttBroker(), '-t', topic, '-m', '21.5', '-q', '1'])
      expect(one).toMatchObject({ code: 0, stderr: '' })
      const lines = await run(
        'pub',
        [...as('thermostat-1'), ...smqttBroker(), '-t', topic, '-l', '-q', '2'],
        'line one\nline two\n',
      )
      expect(lines).toMatchObject({ code: 0, stderr: '' })

      await sub.waitFor('stdout', /line two/, 'the third message')
      sub.child.kill('SIGINT')
      const { code, stdout, stderr } = await sub.exited
      expect(code, stderr).toBe(0)
      const received = stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line))
      expect(received.map((m) => m.payload)).toEqual(['21.5', 'line one', 'line two'])
      for (const message of received) {
        expect(message).toMatchObject({ topic, sender: 'thermostat-1', verified: true, retained: false, group: 1 })
        expect(message.sentAt).toBeGreaterThanOrEqual(before - 5)
        expect(message.sentAt).toBeLessThanOrEqual(now() + 5)
      }
      expect(stderr).not.toContain('refused')
    })

    test('exit 1: no write key for the topic (ERR_FORBIDDEN, the client); the ACL (the broker closes the connection)', async () => {
      const otherTopic = 'home/h1/thermostat/thermostat-2/temp'
      const [noKey, acl] = await Promise.all([
        run('pub', [...as('app-1'), ...smqttBroker(), '-t', topic, '-m', 'spoof', '-q', '1']),
        run('pub', [...as('thermostat-1'), ...smqttBroker(), '-t', otherTopic, '-m', 'spoof', '-q', '1']),
      ])
      expect(noKey.code, noKey.stderr).toBe(1)
      expect(noKey.stderr).toMatch(/^smqtt-pub: refused on home\/h1\/thermostat\/thermostat-1\/temp: ERR_FORBIDDEN: /m)
      expect(acl.code, acl.stderr).toBe(1)
      expect(acl.stderr).toMatch(/^smqtt-pub: refused on home\/h1\/thermostat\/thermostat-2\/temp: the broker closed/m)
    })

    test('exit 3: no broker on the port; the SMQTT broker refusing a login without key proof', async () => {
      const closedPort = await freePort()
      const [nobody, noProof] = await Promise.all([
        run('pub', [
          ...as('thermostat-1'),
          '-L',
          `mqtts://127.0.0.1:${closedPort}`,
          '--cafile',
          caFile,
          '-t',
          topic,
          '-m',
          'x',
        ]),
        run('sub', [...as('app-1'), ...smqttBroker(), '--no-key-login', '-t', 'home/#', '-C', '1']),
      ])
      expect(nobody.code, nobody.stderr).toBe(3)
      expect(nobody.stderr).toMatch(/^smqtt-pub: cannot connect to mqtts:\/\/127\.0\.0\.1:\d+ as thermostat-1: /)
      expect(noProof.code, noProof.stderr).toBe(3)
      expect(noProof.stderr).toMatch(/^smqtt-sub: cannot connect to .* as app-1: /)
    })
  })

  describe('the third-party Mosquitto (plain, no login)', () => {
    const run_ = `tools-${process.pid}-${Date.now()}`
    const topic = `home/${run_}/thermostat/thermostat-1/temp`
    const mosquitto = (who: string) => ['-L', MOSQUITTO, '--cafile', caFile, '--no-key-login', '-i', `${run_}-${who}`]
    /** smqtt-pub as thermostat-1 on `topic` at QoS 1, with `message` (-m TEXT or -f FILE). */
    const thermostatPub = (...message: string[]) =>
      run('pub', [...as('thermostat-1'), ...mosquitto('pub'), '-t', topic, ...message, '-q', '1'])

    const raw = async () => {
      const client = await mqtt.connectAsync(MOSQUITTO, { clientId: `${run_}-raw`, reconnectPeriod: 0 })
      others.push(client)
      return client
    }

    test('sub prints forged, tampered and replayed messages on stderr with their code and keeps running (-C 2)', async () => {
      const attacker = await raw()
      const wire: Buffer[] = []
      attacker.on('message', (_topic, payload) => wire.push(payload))
      await attacker.subscribeAsync(topic, { qos: 1 })
      // An envelope the subscriber has not seen yet: sent before it starts, kept by the attacker.
      const first = await thermostatPub('-m', 'first')
      expect(first).toMatchObject({ code: 0, stderr: '' })
      await within(
        (async () => {
          while (wire.length < 1) await new Promise((resolve) => setTimeout(resolve, 20))
        })(),
        10_000,
        'the envelope on the wire',
      )
      const envelope = wire[0] as Buffer

      const sub = tool('sub', [...as('app-1'), ...mosquitto('sub'), '-t', `home/${run_}/thermostat/#`, '-C', '2', '-d'])
      await sub.waitFor('stderr', /subscribed to /, 'the SUBACK')
      const refusals = async (count: number) => {
        await sub.waitFor(
          'stderr',
          new RegExp(`(refused ERR_\\w+ on [^\\n]*\\n[\\s\\S]*){${count}}`),
          `${count} refusals`,
        )
      }
      await attacker.publishAsync(topic, Buffer.from('not an envelope at all'), { qos: 1 })
      await refusals(1)
      const tampered = Buffer.from(envelope)
      const last = tampered.length - 64 - 17 // the last ciphertext byte (before the tag and the signature)
      tampered[last] = (tampered[last] as number) ^ 0x01
      await attacker.publishAsync(topic, tampered, { qos: 1 })
      await refusals(2)
      await attacker.publishAsync(topic, envelope, { qos: 1 }) // late, but genuine and not seen before
      await sub.waitFor('stdout', /first/, 'the first message')
      await attacker.publishAsync(topic, envelope, { qos: 1 }) // now a replay
      await refusals(3)

      const second = await thermostatPub('-f', caFile)
      expect(second).toMatchObject({ code: 0, stderr: '' })
      const { code, stdout, stderr } = await sub.exited
      expect(code, stderr).toBe(0)
      const printed = stdout.split('\n')
      expect(printed[0]).toMatch(
        new RegExp(`^\\[verified thermostat-1 \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.000Z\\] ${topic} first$`),
      )
      expect(printed[1]).toMatch(/^\[verified thermostat-1 [^\]]+\] home\/\S+ -----BEGIN CERTIFICATE-----$/)
      const refused = stderr.split('\n').filter((line) => line.startsWith('smqtt-sub: refused '))
      expect(refused.map((line) => line.split(' ')[2])).toEqual([
        'ERR_ENVELOPE_UNSUPPORTED',
        'ERR_ENVELOPE_SIGNATURE_INVALID',
        'ERR_REPLAY',
      ])
      for (const line of refused) expect(line).toMatch(new RegExp(`^smqtt-sub: refused ERR_[A-Z_]+ on ${topic}: `))
    })

    test('enrolls on first use with the token on stdin; -W exits 27 when nothing arrives', async () => {
      const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: 'app-2', roles: ['app'] })
      const fresh = join(dir, 'app-2')
      const lockTopic = `home/${run_}/lock/front/cmd`
      const [published, waited] = await Promise.all([
        run(
          'pub',
          ['--state', fresh, '--token-file', '-', '--id', 'app-2', '--key-server', h.url, ...mosquitto('app-2')].concat(
            ['-t', lockTopic, '-m', 'open', '-q', '1'],
          ),
          `${(token.body as { token: string }).token}\n(one-time token for app-2)\n`,
        ),
        run('sub', [...as('app-1'), ...mosquitto('quiet'), '-t', `home/${run_}/quiet/#`, '-W', '2']),
      ])
      expect(published).toMatchObject({ code: 0, stderr: '' })
      expect((await loadEnrollment(fileStorage(fresh)))?.identity.id).toBe('app-2')
      expect(waited).toMatchObject({ code: 27, stdout: '' })
    })
  })
})
