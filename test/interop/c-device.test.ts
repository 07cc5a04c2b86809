// Issue 17: the Linux reference device program (libsmqtt/examples/linux-device: libsmqtt,
// libcurl, libmosquitto) lives its whole life against the real stack: the key server over HTTPS
// and the real `smqtt-broker` process (mqtts://, full verification mode). It enrolls with a
// one-time token, logs in with its CONNECT password, publishes sealed temperatures that a
// TypeScript SecureClient opens (plaintext and sender asserted), verifies a sealed command from
// that SecureClient, is stopped and restarted without reusing a sequence number (the envelopes'
// seq on the wire keep rising), and once revoked through the admin API its next CONNECT is refused.
// Without the program the test is skipped with the reason, except under CI, where it is built
// and the test fails if that fails (libcurl4-openssl-dev and libmosquitto-dev must be installed).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { enroll, memoryStorage, type SecureClient, secure } from '@smqtt/client'
import { parseEnvelope } from '@smqtt/core'
import { p256Pems, within } from '@smqtt/test-kit/broker'
import mqtt from 'mqtt'
import { afterAll, describe, expect, test } from 'vitest'
import { useInteropStack } from './_broker.js'
import { cDeviceArgs, cThermostatArgs, events as deviceEvents, succeeded, token, waitFor } from './_devices.js'
import { start } from './_run.js'

const LIBRARY = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'libsmqtt')

/** The device program: built under CI (its own build folder, so it never races c-library.test.ts). */
function deviceProgram(): string | undefined {
  if (process.env.CI) {
    const build = join(LIBRARY, 'build', 'interop-device')
    for (const args of [
      ['-S', LIBRARY, '-B', build, '-DSMQTT_WERROR=ON', '-DSMQTT_BUILD_TESTS=OFF'],
      ['--build', build, '--target', 'smqtt-device', '-j', '2'],
    ]) {
      const built = spawnSync('cmake', args, { encoding: 'utf8', timeout: 300_000 })
      if (built.status !== 0)
        throw new Error(
          `smqtt-device does not build (cmake ${args.join(' ')}; it needs libcurl4-openssl-dev and libmosquitto-dev):\n${built.stdout}\n${built.stderr}`,
        )
    }
    return join(build, 'examples', 'linux-device', 'smqtt-device')
  }
  const built = join(LIBRARY, 'build', 'examples', 'linux-device', 'smqtt-device')
  if (existsSync(built)) return built
  console.warn(`skipping: the device program is not built (${built} is missing): run libsmqtt/ci.sh`)
  return undefined
}

const program = deviceProgram()

interface DeviceEvent {
  readonly event: string
  readonly topic?: string
  readonly payload?: string
  readonly sender?: number
  readonly seq?: number
  readonly kid?: number
  readonly code?: string
  readonly reason?: number
  readonly what?: string
}

const events = (stdout: string) => deviceEvents<DeviceEvent>(stdout)

describe.runIf(program !== undefined)('the Linux reference device (libsmqtt + libcurl + libmosquitto)', () => {
  const stack = useInteropStack()
  const storage = mkdtempSync(join(tmpdir(), 'smqtt-c-device-'))
  const ended: (() => Promise<unknown>)[] = []
  const killed: ChildProcess[] = []
  afterAll(async () => {
    for (const child of killed) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await Promise.all(ended.map((end) => within(end(), 'end client', 5_000)))
    rmSync(storage, { recursive: true, force: true })
  })

  // A thermostat that also takes commands: role `thermostat` publishes home/+/thermostat/%c/#,
  // role `lock` subscribes to home/+/lock/%c/cmd, where apps publish (group lock-commands).
  const id = 'c-device-1'
  const temperatureTopic = `home/h1/thermostat/${id}/temp`
  const commandTopic = `home/h1/lock/${id}/cmd`
  const deviceArgs = (command: 'enroll' | 'run', args: string[]) => cDeviceArgs(stack, command, storage, args)
  const device = (command: 'enroll' | 'run', args: string[], timeoutMs = 30_000) =>
    start(program as string, deviceArgs(command, args), timeoutMs)
  const runArgs = (args: string[]) => [
    ...cThermostatArgs(stack, temperatureTopic, commandTopic),
    '--interval-ms',
    '50',
    '--seconds',
    '20',
    ...args,
  ]
  const run = (args: string[]) => device('run', runArgs(args))

  /** A TypeScript app: a SecureClient enrolled through @smqtt/client, on the smqtt-broker. */
  async function app() {
    const appId = 'app-c-device'
    const keys = memoryStorage()
    const enrollment = await enroll({
      keyServerUrl: stack.h.url,
      ca: stack.h.caPem,
      token: await token(stack, appId, ['app']),
      id: appId,
      storage: keys,
    })
    const client: SecureClient = secure(
      mqtt.connect(`mqtts://${stack.host}:${stack.port}`, { ca: stack.h.caPem, clientId: appId, reconnectPeriod: 500 }),
      {
        identity: enrollment.identity,
        kid: enrollment.kid,
        keyServer: { url: stack.h.url, ca: stack.h.caPem, keyServerPublicKey: enrollment.keyServerPublicKey },
        storage: keys,
        connectPassword: true,
      },
    )
    ended.push(() => client.endAsync(true))
    client.on('error', () => {})
    client.on('keyServerError', () => {})
    const messages: { topic: string; text: string; sender: string | undefined; seq: number | undefined }[] = []
    client.on('message', (topic, payload, info) =>
      messages.push({
        topic,
        text: new TextDecoder().decode(payload),
        sender: info.encrypted ? info.sender : undefined,
        seq: info.encrypted ? info.seq : undefined,
      }),
    )
    const connected = new Promise<void>((resolve) => client.once('connect', () => resolve()))
    await within(Promise.all([connected, client.ready]), `${appId} connect + keys`, 15_000)
    return { client, messages, kid: enrollment.kid }
  }

  /** A wire tap on the broker (the app's other session): the envelopes as sent, their seq parsed. */
  async function wireTap(): Promise<number[]> {
    const who = stack.enrolled.app
    const tap = await mqtt.connectAsync(`mqtts://${stack.host}:${stack.port}`, {
      ca: readFileSync(stack.caFile),
      clientId: who.identity.id, // the broker wants client id = principal id
      username: who.identity.id,
      password: stack.password(who),
      reconnectPeriod: 0,
    })
    ended.push(() => tap.endAsync(true))
    const seqs: number[] = []
    tap.on('message', (_topic, payload) => seqs.push(parseEnvelope(new Uint8Array(payload)).header.seq))
    await tap.subscribeAsync(temperatureTopic, { qos: 1 })
    return seqs
  }

  test('enrolls, logs in with its CONNECT password, seals temperatures, verifies a command, restarts without reusing a seq, and is refused after revoke', async () => {
    const ts = await app()
    await ts.client.subscribeAsync('home/+/thermostat/#', { qos: 1 })
    const wire = await wireTap()

    // 1. Enrollment: one-time token, proof of possession; the key server's key is pinned.
    const enrolled = await succeeded(
      device('enroll', ['--id', id, '--token', await token(stack, id, ['thermostat', 'lock'])]),
    )
    const [record] = events(enrolled.stdout)
    expect(record).toMatchObject({ event: 'enrolled', id })
    expect(readFileSync(join(storage, 'key-server.key'), 'utf8').trim()).toBe(
      Buffer.from(stack.h.keyServer.publicKey).toString('base64url'),
    )

    // 2. First run: three sealed temperatures, then it waits for one sealed command.
    const first = run(['--readings', '3', '--expect-commands', '1'])
    await first.line(/"event":"subscribed"/, 'the device to subscribe', 20_000)
    await waitFor(() => ts.messages.length >= 3, 'three temperatures from the C device')
    expect(ts.messages.map(({ topic, text, sender }) => ({ topic, text, sender }))).toEqual(
      ['21.0', '21.1', '21.2'].map((celsius) => ({
        topic: temperatureTopic,
        text: `{"celsius":${celsius}}`,
        sender: id,
      })),
    )
    await ts.client.publishAsync(commandTopic, '{"setpoint":19.5}', { qos: 1 })
    const firstRun = await succeeded(first)
    const out = events(firstRun.stdout)
    expect(out.map((e) => e.event)).toEqual([
      'connected',
      'keys',
      'subscribed',
      'published',
      'published',
      'published',
      'command',
      'done',
    ])
    expect(out.find((e) => e.event === 'command')).toMatchObject({
      topic: commandTopic,
      payload: '{"setpoint":19.5}',
      sender: ts.kid, // verified: the app's signature, listed in the device's key bundle
    })
    expect(await stack.auditUntil('login:connect-password')).toContain('login:connect-password')
    await waitFor(() => wire.length >= 3, 'the first run on the wire')
    const before = [...wire]

    // 3. A crash (SIGKILL mid-run: nothing saved at exit), then a restart. The sequence range was
    //    reserved ahead in storage before the first seal, so no number ever comes back.
    const crashing = spawn(
      program as string,
      deviceArgs('run', runArgs(['--readings', '100', '--interval-ms', '100'])),
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let crashOut = ''
    let crashErr = ''
    crashing.stdout.on('data', (chunk) => {
      crashOut += chunk
    })
    crashing.stderr.on('data', (chunk) => {
      crashErr += chunk
    })
    const crashed = new Promise((resolve) => crashing.once('close', resolve))
    killed.push(crashing)
    await waitFor(() => crashOut.includes('"event":"published"'), 'the device to publish before the crash', 20_000)
    crashing.kill('SIGKILL')
    await crashed
    expect(crashErr).toBe('')
    await waitFor(() => wire.length > before.length, 'the crashed run on the wire')
    const beforeRestart = wire.length
    const restarted = await succeeded(run(['--readings', '2']))
    expect(events(restarted.stdout).filter((e) => e.event === 'published')).toHaveLength(2)
    await waitFor(() => wire.length >= beforeRestart + 2, 'the restarted run on the wire')
    const afterCrash = wire.slice(before.length, beforeRestart)
    const afterRestart = wire.slice(beforeRestart)
    expect(afterRestart).toHaveLength(2)
    expect(Math.min(...afterCrash)).toBeGreaterThan(Math.max(...before))
    expect(Math.min(...afterRestart)).toBeGreaterThan(Math.max(...afterCrash))
    expect(new Set(wire).size).toBe(wire.length) // no seq twice under one key: no nonce reuse
    await waitFor(() => ts.messages.length >= wire.length, 'the SecureClient to open them all')
    expect(ts.messages.map((m) => m.seq)).toEqual(wire)
    expect(ts.messages.every((m) => m.sender === id)).toBe(true)

    // 4. Revoked through the admin API: the broker's next snapshot drops it; its CONNECT is refused.
    const revoked = await stack.h.admin('POST', `/v1/admin/principals/${id}/revoke`, {})
    expect(revoked.status).toBe(200)
    // Until the broker's next snapshot pull (every second here) the key server alone refuses it
    // (no key bundle for a revoked principal); from then on the broker refuses its CONNECT.
    let refused: DeviceEvent | undefined
    for (let attempt = 0; attempt < 20 && refused === undefined; attempt++) {
      const third = await run(['--readings', '0']).exited
      expect(third.stderr).toBe('')
      const out = events(third.stdout)
      expect(out.filter((e) => e.event === 'published')).toEqual([])
      refused = out.find((e) => e.event === 'connect-refused')
      if (refused) {
        expect(third.code).toBe(3)
      } else {
        expect(out.at(-1)).toMatchObject({ event: 'key-server-refused', code: 'ERR_PRINCIPAL_REVOKED' })
        expect(third.code).toBe(4)
        await new Promise((resolve) => setTimeout(resolve, 250))
      }
    }
    expect(refused).toMatchObject({ event: 'connect-refused', reason: 5 }) // not authorised
    expect(await stack.auditUntil('connect:principal-inactive')).toContain('connect:principal-inactive')
  }, 90_000)

  test('enrolls with a TLS key, logs in with the client certificate (mTLS), takes sequence ranges from the key server, and refuses a rolled-back bundle', async () => {
    const certId = 'c-device-cert'
    const dir = join(storage, certId)
    mkdirSync(dir)
    const tls = await p256Pems()
    writeFileSync(join(dir, 'tls.der'), tls.spki)
    writeFileSync(join(dir, 'tls.key'), tls.keyPem, { mode: 0o600 })
    await succeeded(
      start(
        program as string,
        cDeviceArgs(stack, 'enroll', dir, [
          '--id',
          certId,
          '--token',
          await token(stack, certId, ['thermostat', 'lock']),
          '--tls-public-key',
          join(dir, 'tls.der'),
        ]),
      ),
    )
    expect(readFileSync(join(dir, 'certificate.pem'), 'utf8')).toMatch(/^-----BEGIN CERTIFICATE-----/)

    await stack.newAudit(0) // what came before
    const runArgs = cDeviceArgs(stack, 'run', dir, [
      ...cThermostatArgs(stack, `home/h1/thermostat/${certId}/temp`, `home/h1/lock/${certId}/cmd`),
      '--readings',
      '1',
      '--tls-key',
      join(dir, 'tls.key'),
      '--sequence',
      'key-server', // ranges from POST /v1/sequence instead of the file `sequence`
    ])
    const ran = await succeeded(start(program as string, runArgs))
    expect(events(ran.stdout).map((e) => e.event)).toEqual(['connected', 'keys', 'subscribed', 'published', 'done'])
    expect(await stack.auditUntil('login:certificate')).toContain('login:certificate')
    expect(existsSync(join(dir, 'sequence'))).toBe(false)
    const again = await start(program as string, runArgs).exited
    const seqs = [ran, again].map((r) => events(r.stdout).find((e) => e.event === 'published')?.seq as number)
    expect(seqs[1]).toBeGreaterThan(seqs[0] as number)

    // held.json remembers the newest bundle accepted: one issued earlier is a rollback, refused
    // before anything is published (as if the key server answered with an old bundle).
    const held = JSON.parse(readFileSync(join(dir, 'held.json'), 'utf8')) as { bundleIssuedAt: number }
    writeFileSync(join(dir, 'held.json'), JSON.stringify({ ...held, bundleIssuedAt: held.bundleIssuedAt + 3600 }))
    const rolledBack = await start(program as string, runArgs).exited
    expect(rolledBack.code).toBe(2)
    expect(events(rolledBack.stdout).slice(-1)).toEqual([
      { event: 'error', what: 'key bundle', code: 'ERR_BUNDLE_ROLLBACK' },
    ])
  }, 60_000)
})
