// smqtt-broker: config validation, startBroker against the real key server (mqtts with a
// CONNECT password, wss, legacy password, metrics, audit log file, graceful close), and the CLI
// (help, hash-password, `start` as a real process stopped with SIGTERM).
import { type ChildProcess, spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import {
  createConnectPassword,
  createEnrollmentRequest,
  generateIdentity,
  type Identity,
  isSmqttError,
} from '@smqtt/core'
import {
  BROKER_IDENTITY_FILE,
  brokerConfigFor,
  brokerFolder,
  closed,
  connected,
  p256Pems,
  startTestKeyServer,
  within,
} from '@smqtt/test-kit/broker'
import type { Harness } from '@smqtt/test-kit/keyserver'
import type { Client } from 'aedes'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { CliError, main } from '../src/cli.js'
import {
  type BrokerConfigDocument,
  hashLegacyPassword,
  loadBrokerConfig,
  parseBrokerConfig,
  type RunningBroker,
  startBroker,
  verifyLegacyPassword,
} from '../src/index.js'

const PUBLIC_KEY = Buffer.alloc(32, 7).toString('base64url')
const MINIMAL = { keyServer: { url: 'https://127.0.0.1:8443', publicKey: PUBLIC_KEY } }

/** The ERR_CONFIG_INVALID message of parsing `doc`, or a failure if it parses. */
function configError(doc: unknown): string {
  try {
    parseBrokerConfig(doc, '/etc/smqtt')
  } catch (err) {
    expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
    return (err as Error).message
  }
  throw new Error('the config was accepted')
}

describe('config', () => {
  test('defaults: mqtts on loopback 8883, metrics on loopback 9464, no wss, no plain listener', () => {
    const config = parseBrokerConfig(MINIMAL, '/etc/smqtt')
    expect(config.listeners).toEqual({ mqtts: { host: '127.0.0.1', port: 8883 }, wss: undefined, mqtt: undefined })
    expect(config.metrics).toEqual({ host: '127.0.0.1', port: 9464 })
    expect(config.tls).toEqual({
      certFile: '/etc/smqtt/tls/server.pem',
      keyFile: '/etc/smqtt/tls/server.key',
      caFile: '/etc/smqtt/tls/ca.pem',
      profile: 'intermediate',
    })
    expect(config.keyServer.caFile).toBe('/etc/smqtt/tls/ca.pem') // the key server's CA defaults to tls.caFile
    expect(config.keyServer.identityFile).toBe('/etc/smqtt/identity.json')
    expect(config.keyServer.publicKey).toEqual(new Uint8Array(32).fill(7))
    expect(config).toMatchObject({ mode: 'full', maxPacketBytes: 262_144, auditLogFile: undefined, logLevel: 'info' })
    expect(config.topicLimits).toEqual({ maxBytes: 65_535, maxLevels: 32 })
  })

  test('paths are relative to the config file; wss gets a default path; metrics can be switched off', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smqtt-broker-config-'))
    try {
      const doc: BrokerConfigDocument = {
        ...MINIMAL,
        listeners: { mqtts: { port: 0 }, wss: { host: '::1', port: 0 } },
        tls: { certFile: 'a/cert.pem', keyFile: '/abs/key.pem' },
        keyServer: { ...MINIMAL.keyServer, caFile: '../ks-ca.pem' },
        metrics: false,
        auditLogFile: 'logs/audit.log',
        mode: 'sampled',
      }
      writeFileSync(join(dir, 'config.json'), JSON.stringify(doc))
      const config = loadBrokerConfig(join(dir, 'config.json'))
      expect(config.baseDir).toBe(dir)
      expect(config.tls.certFile).toBe(join(dir, 'a/cert.pem'))
      expect(config.tls.keyFile).toBe('/abs/key.pem')
      expect(config.keyServer.caFile).toBe(join(dir, '../ks-ca.pem'))
      expect(config.auditLogFile).toBe(join(dir, 'logs/audit.log'))
      expect(config.listeners.wss).toEqual({ host: '::1', port: 0, path: '/mqtt', clientCertificates: false })
      expect(config.metrics).toBeUndefined()
      expect(config.mode).toBe('sampled')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('unknown fields are refused with their JSON path', () => {
    expect(configError({ ...MINIMAL, listners: {} })).toMatch(/config \$\.listners: unknown field/)
    expect(configError({ ...MINIMAL, listeners: { mqtts: { hots: 'x' } } })).toMatch(/\$\.listeners\.mqtts\.hots/)
    expect(configError({ keyServer: { ...MINIMAL.keyServer, pin: 'x' } })).toMatch(/\$\.keyServer\.pin: unknown/)
    expect(configError({ ...MINIMAL, tls: { cert: 'x' } })).toMatch(/\$\.tls\.cert: unknown/)
    expect(configError({ ...MINIMAL, tls: { profile: 'old' } })).toMatch(
      /\$\.tls\.profile: expected one of intermediate, modern/,
    )
    expect(parseBrokerConfig({ ...MINIMAL, tls: { profile: 'modern' } }, '/x').tls.profile).toBe('modern')
    expect(
      configError({ ...MINIMAL, legacyUsers: [{ username: 'a', principal: 'b', hash: 'scrypt$x', x: 1 }] }),
    ).toMatch(/\$\.legacyUsers\[0\]\.x: unknown/)
  })

  test('a plain listener only with insecurePlainListener: true', () => {
    const plain = { ...MINIMAL, listeners: { mqtt: { port: 1883 } } }
    expect(configError(plain)).toMatch(/\$\.listeners\.mqtt: .*insecurePlainListener/)
    expect(configError({ ...plain, insecurePlainListener: 'yes' })).toMatch(/\$\.insecurePlainListener/)
    const allowed = parseBrokerConfig({ ...plain, insecurePlainListener: true }, '/x')
    expect(allowed.listeners.mqtt).toEqual({ host: '127.0.0.1', port: 1883 })
    expect(allowed.insecurePlainListener).toBe(true)
  })

  test('bad values name the field and never echo the value', () => {
    expect(configError({})).toMatch(/\$\.keyServer: required/)
    expect(configError(null)).toMatch(/config \$: expected an object/)
    expect(configError({ keyServer: { ...MINIMAL.keyServer, url: 'http://keys:8443' } })).toMatch(
      /\$\.keyServer\.url: an https:\/\/ URL/,
    )
    expect(configError({ keyServer: { ...MINIMAL.keyServer, publicKey: 'c2VjcmV0' } })).toMatch(
      /\$\.keyServer\.publicKey/,
    )
    expect(configError({ ...MINIMAL, listeners: { mqtts: { port: 70_000 } } })).toMatch(/\$\.listeners\.mqtts\.port/)
    expect(configError({ ...MINIMAL, listeners: { wss: { path: 'mqtt' } } })).toMatch(/\$\.listeners\.wss\.path/)
    expect(configError({ ...MINIMAL, listeners: { wss: { clientCertificates: 'no' } } })).toMatch(
      /\$\.listeners\.wss\.clientCertificates/,
    )
    expect(configError({ ...MINIMAL, mode: 'none' })).toMatch(/\$\.mode: expected one of full, sampled, binding/)
    expect(configError({ ...MINIMAL, maxPacketBytes: 10 })).toMatch(/\$\.maxPacketBytes/)
    expect(configError({ ...MINIMAL, topicLimits: { maxLevels: 0 } })).toMatch(/\$\.topicLimits\.maxLevels/)
    expect(configError({ ...MINIMAL, sampleRate: 0 })).toMatch(/\$\.sampleRate/)
    expect(configError({ ...MINIMAL, metrics: true })).toMatch(/\$\.metrics: expected an object/)
    expect(configError({ ...MINIMAL, logLevel: 'loud' })).toMatch(/\$\.logLevel/)
    expect(configError({ ...MINIMAL, tls: { certFile: '' } })).toMatch(/\$\.tls\.certFile/)
    expect(configError({ ...MINIMAL, legacyUsers: [{ username: 'a', principal: 'b', hash: 'plain' }] })).toMatch(
      /\$\.legacyUsers\[0\]\.hash/,
    )
    expect(configError('{not json')).toMatch(/not valid JSON/)
    expect(configError({ keyServer: { ...MINIMAL.keyServer, url: 'https://hunter2@x' }, mode: 'hunter2' })).not.toMatch(
      /hunter2/,
    )
  })

  test('an unreadable or malformed file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smqtt-broker-config-'))
    try {
      expect(() => loadBrokerConfig(join(dir, 'missing.json'))).toThrow(/cannot be read/)
      writeFileSync(join(dir, 'bad.json'), '{')
      expect(() => loadBrokerConfig(join(dir, 'bad.json'))).toThrow(/not valid JSON/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

// ---- a real key server, a broker started from a config file ----------------------------------

let h: Harness
let dir: string
let device: { identity: Identity; kid: number }
let legacyHash: string
const LEGACY_PASSWORD = 'correct horse battery staple'

/** Writes a config (with the broker identity and the key server's PKI) and returns its path. */
function writeConfig(name: string, extra: Partial<BrokerConfigDocument> = {}): string {
  const doc = brokerConfigFor(h, {
    listeners: { mqtts: { port: 0 }, wss: { port: 0, path: '/mqtt', clientCertificates: true } },
    keyServer: { identityFile: BROKER_IDENTITY_FILE },
    metrics: { port: 0 },
    legacyUsers: [{ username: 'old-device', principal: 'device-1', hash: legacyHash }],
    ...extra,
  })
  const file = join(dir, `${name}.json`)
  writeFileSync(file, JSON.stringify(doc, null, 2))
  return file
}

interface Captured {
  readonly lines: Record<string, unknown>[]
  readonly stream: { write(line: string): void }
}
function captureLog(): Captured {
  const lines: Record<string, unknown>[] = []
  return { lines, stream: { write: (line: string) => void lines.push(JSON.parse(line)) } }
}

const clients = new Set<MqttClient>()
function connect(url: string, options: IClientOptions): Promise<MqttClient> {
  const client = mqtt.connect(url, { ca: h.caPem, reconnectPeriod: 0, connectTimeout: 5000, ...options })
  clients.add(client)
  return connected(client, `CONNACK from ${url}`)
}
const asDevice = (): IClientOptions => ({
  clientId: 'device-1',
  username: 'device-1',
  password: createConnectPassword(device.identity, 'device-1'),
})

function httpGet(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 5000 }, (res) => {
      let body = ''
      res.on('data', (chunk) => {
        body += chunk
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** True when nothing accepts TCP connections on the URL's port any more. */
function refused(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = netConnect({ host: hostname, port: Number(port) })
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(true))
  })
}

beforeAll(async () => {
  h = await startTestKeyServer()
  dir = await brokerFolder(h, 'smqtt-broker-cli-')
  device = await h.enroll('device-1', ['thermostat'])
  legacyHash = await hashLegacyPassword(LEGACY_PASSWORD)
})

afterAll(async () => {
  for (const client of clients) client.end(true)
  await h?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('startBroker', () => {
  let running: RunningBroker
  let log: Captured
  afterAll(async () => {
    await running?.close()
  })

  test('pulls the snapshot, then serves mqtts (CONNECT password, legacy password), wss and /metrics', async () => {
    log = captureLog()
    const file = writeConfig('full', { auditLogFile: 'logs/audit.log' })
    running = await startBroker(loadBrokerConfig(file), { logDestination: log.stream })
    expect(running.urls.mqtts).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/)
    expect(running.urls.wss).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/mqtt$/)
    expect(running.urls.metrics).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
    expect(running.urls.mqtt).toBeUndefined()
    expect(running.plugin.state.snapshotIssuedAt).toBeDefined()
    expect(log.lines.find((l) => l.msg === 'smqtt-broker listening')).toMatchObject({ mqtts: running.urls.mqtts })

    const overTls = await connect(running.urls.mqtts, asDevice())
    expect(overTls.connected).toBe(true)
    overTls.end(true)
    await closed(overTls)

    const registered = new Promise<Client>((resolve) => running.broker.once('client', resolve))
    const overWs = await connect(running.urls.wss as string, asDevice())
    expect(overWs.connected).toBe(true)
    // Over wss too, the plugin sees the peer address (rate limits and bans are per address).
    expect(((await registered).conn as { remoteAddress?: string }).remoteAddress).toBe('127.0.0.1')
    overWs.end(true)
    await closed(overWs)

    const legacy = await connect(running.urls.mqtts, {
      clientId: 'device-1',
      username: 'old-device',
      password: LEGACY_PASSWORD,
    })
    legacy.end(true)
    await closed(legacy)

    const metrics = await httpGet(running.urls.metrics as string)
    expect(metrics.status).toBe(200)
    expect(metrics.type).toMatch(/^text\/plain/)
    expect(metrics.body).toMatch(/^smqtt_broker_connects_total\{method="connect-password"\} 2$/m)
    expect(metrics.body).toMatch(/^smqtt_broker_connects_total\{method="legacy-password"\} 1$/m)
    expect(metrics.body).toMatch(/^smqtt_broker_snapshot_stale 0$/m)
    expect(metrics.body).toMatch(/^smqtt_broker_connected_clients \d+$/m)
    expect(metrics.body).toMatch(/^process_cpu_seconds_total /m)
    const health = await httpGet(running.urls.metrics?.replace('/metrics', '/health') as string)
    expect(health.status).toBe(200)
    expect(JSON.parse(health.body)).toMatchObject({ status: 'ok', stale: false })
    expect((await httpGet(running.urls.metrics?.replace('/metrics', '/') as string)).status).toBe(404)
  })

  test('mutual TLS works over wss too (the client certificate reaches the plugin)', async () => {
    const identity = generateIdentity('device-2')
    const { spki, keyPem } = await p256Pems()
    const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: 'device-2', roles: ['app'] })
    const enrolled = await h.request('POST', '/v1/enroll', {
      body: createEnrollmentRequest(identity, (token.body as { token: string }).token, { tlsPublicKey: spki }),
    })
    const cert = (enrolled.body as { certificatePem?: string }).certificatePem
    expect(cert).toBeDefined()
    expect(await running.plugin.pull()).toBe(true)
    const client = await connect(running.urls.wss as string, {
      clientId: 'device-2',
      cert: cert as string,
      key: keyPem,
    })
    expect(client.connected).toBe(true)
    client.end(true)
    await closed(client)
    const metrics = await httpGet(running.urls.metrics as string)
    expect(metrics.body).toMatch(/^smqtt_broker_connects_total\{method="certificate"\} 1$/m)
  })

  test('refusals go to the audit log file, not to stdout', async () => {
    const wrong = connect(running.urls.mqtts, { ...asDevice(), password: 'not-the-password' })
    await expect(wrong).rejects.toMatchObject({ code: 4 })
    const auditFile = join(dir, 'logs/audit.log')
    await within(
      (async () => {
        while (!existsSync(auditFile) || !readFileSync(auditFile, 'utf8').includes('bad-credentials'))
          await new Promise((resolve) => setTimeout(resolve, 20))
      })(),
      'the audit entry',
    )
    const entries = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(entries.every((e) => e.audit === true)).toBe(true)
    expect(entries.at(-1)).toMatchObject({ event: 'refused', hook: 'connect', reason: 'bad-credentials' })
    expect(log.lines.some((l) => l.audit === true)).toBe(false)
  })

  test('graceful close: clients are disconnected, every listener stops, close() is idempotent', async () => {
    const client = await connect(running.urls.mqtts, asDevice())
    const { urls } = running
    await within(Promise.all([running.close(), running.close(), closed(client)]), 'close')
    expect(client.connected).toBe(false)
    for (const url of [urls.mqtts, urls.wss, urls.metrics] as string[]) expect(await refused(url)).toBe(true)
    expect(log.lines.at(-1)?.msg).toBe('smqtt-broker stopped')
  })
})

describe('startBroker refuses', () => {
  test('an identity file others can read', async () => {
    const file = join(dir, 'loose-identity.json')
    writeFileSync(file, readFileSync(join(dir, BROKER_IDENTITY_FILE)))
    chmodSync(file, 0o644)
    const config = loadBrokerConfig(writeConfig('loose', { keyServer: { ...baseKeyServer(), identityFile: file } }))
    await expect(startBroker(config, { logDestination: captureLog().stream })).rejects.toThrow(
      /\$\.keyServer\.identityFile: .*chmod 600/,
    )
  })

  test('a missing TLS file, naming the field', async () => {
    const config = loadBrokerConfig(
      writeConfig('nocert', { tls: { certFile: 'nope.pem', caFile: `${h.dir}/pki/ca.pem` } }),
    )
    await expect(startBroker(config, { logDestination: captureLog().stream })).rejects.toThrow(
      /\$\.tls\.certFile: cannot read/,
    )
  })
})

function baseKeyServer(): BrokerConfigDocument['keyServer'] {
  return { url: h.url, publicKey: Buffer.from(h.keyServer.publicKey).toString('base64url') }
}

describe('the plain listener', () => {
  test('is refused without the insecure flag', () => {
    writeFileSync(
      join(dir, 'plain.json'),
      JSON.stringify({ keyServer: baseKeyServer(), listeners: { mqtt: { port: 0 } } }),
    )
    expect(() => loadBrokerConfig(join(dir, 'plain.json'))).toThrow(/\$\.listeners\.mqtt: .*insecurePlainListener/)
  })

  test('with insecurePlainListener: true it listens and is logged loudly as INSECURE', async () => {
    const log = captureLog()
    const config = loadBrokerConfig(
      writeConfig('plain-ok', {
        listeners: { mqtts: { port: 0 }, mqtt: { port: 0 } },
        insecurePlainListener: true,
        metrics: false,
      }),
    )
    const running = await startBroker(config, { logDestination: log.stream })
    try {
      expect(running.urls.mqtt).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/)
      expect(running.urls.metrics).toBeUndefined()
      expect(log.lines.find((l) => String(l.msg).startsWith('INSECURE'))).toMatchObject({ level: 40 })
      const client = await connect(running.urls.mqtt as string, asDevice())
      expect(client.connected).toBe(true)
      client.end(true)
    } finally {
      await running.close()
    }
  })
})

// ---- the command line ---------------------------------------------------------------------------

function output(): { stream: Writable; text: () => string } {
  let text = ''
  return {
    stream: new Writable({
      write(chunk, _encoding, done) {
        text += chunk
        done()
      },
    }),
    text: () => text,
  }
}

describe('cli', () => {
  test('--help on every command', async () => {
    for (const argv of [['--help'], ['start', '--help'], ['enroll', '--help'], ['hash-password', '--help']]) {
      const out = output()
      expect(await main(argv, { stdin: Readable.from([]), stdout: out.stream })).toBe(0)
      expect(out.text()).toMatch(argv[0] === '--help' ? /usage: smqtt-broker/ : new RegExp(`^${argv[0]}`))
    }
    const none = output()
    expect(await main([], { stdin: Readable.from([]), stdout: none.stream })).toBe(2)
    await expect(main(['serve'])).rejects.toThrow(CliError)
    await expect(main(['start', '--bogus'])).rejects.toThrow(/Unknown option/)
  })

  test('hash-password reads one line from stdin and prints a scrypt hash', async () => {
    const out = output()
    expect(
      await main(['hash-password'], { stdin: Readable.from(['s3cret pass\n', 'ignored\n']), stdout: out.stream }),
    ).toBe(0)
    const hash = out.text().trim()
    expect(hash).toMatch(/^scrypt\$/)
    expect(await verifyLegacyPassword('s3cret pass', hash)).toBe(true)
    await expect(main(['hash-password'], { stdin: Readable.from(['\n']), stdout: output().stream })).rejects.toThrow(
      /no password/,
    )
  })

  test('enroll: a broker principal from a one-time token (stdin), its identity file 0600, then it pulls', async () => {
    const issued = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: 'broker-2', roles: ['broker'] })
    const token = (issued.body as { token: string }).token
    const out = join(dir, 'broker-2', 'identity.json')
    const argv = ['enroll', '--id', 'broker-2', '--key-server', h.url, '--ca', `${h.dir}/pki/ca.pem`, '--out', out]
    const printed = output()
    expect(await main(argv, { stdin: Readable.from([`${token}\n`]), stdout: printed.stream })).toBe(0)
    expect(printed.text()).toContain(
      `key server public key: ${Buffer.from(h.keyServer.publicKey).toString('base64url')}`,
    )
    expect(statSync(out).mode & 0o777).toBe(0o600)
    await expect(main(argv, { stdin: Readable.from([`${token}\n`]), stdout: output().stream })).rejects.toThrow(
      /exists: refusing to overwrite/,
    )
    await expect(
      main([...argv.slice(0, -1), join(dir, 'broker-3.json')], {
        stdin: Readable.from(['used\n']),
        stdout: output().stream,
      }),
    ).rejects.toThrow(/ERR_ENROLLMENT_TOKEN_INVALID/)

    const config = loadBrokerConfig(
      writeConfig('broker-2', { keyServer: { ...baseKeyServer(), identityFile: out }, listeners: {}, metrics: false }),
    )
    const running = await startBroker(
      { ...config, listeners: { ...config.listeners, mqtts: { host: '127.0.0.1', port: 0 } } },
      { logDestination: captureLog().stream },
    )
    try {
      expect(running.plugin.state.snapshotIssuedAt).toBeDefined()
    } finally {
      await running.close()
    }
  })

  test('start runs until SIGTERM, then shuts down gracefully and exits 0', async () => {
    const root = fileURLToPath(new URL('..', import.meta.url))
    const file = writeConfig('process', { listeners: { mqtts: { port: 0 } }, metrics: false })
    // One process (node with tsx's loader), not the tsx CLI: its parent relays SIGTERM with a
    // 30 ms guess at whether the child handles it, and on a loaded machine exits 143 itself.
    const child: ChildProcess = spawn(
      process.execPath,
      ['--conditions=smqtt-source', '--import', 'tsx', 'src/bin.ts', 'start', '--config', file],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    try {
      let out = ''
      child.stdout?.on('data', (chunk) => {
        out += chunk
      })
      child.stderr?.on('data', (chunk) => {
        out += chunk
      })
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      await within(
        (async () => {
          while (!out.includes('smqtt-broker listening') && child.exitCode === null)
            await new Promise((resolve) => setTimeout(resolve, 50))
        })(),
        'the broker process to listen',
        20_000,
      )
      const listening = out
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((l) => l.msg === 'smqtt-broker listening')
      const client = await connect(listening?.mqtts as string, asDevice())
      child.kill('SIGTERM')
      await closed(client)
      expect(await within(exited, 'exit')).toBe(0)
      expect(out).toContain('smqtt-broker stopped')
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  }, 30_000)
})
