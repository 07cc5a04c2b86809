// `npm start` (the README's run command, after install) brings up a working stack on loopback:
// the key server and the broker, wired together (pull and push), and a freshly enrolled device
// logs in to the broker with a CONNECT password.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { get as httpGet } from 'node:http'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createConnectPassword, createEnrollmentRequest, generateIdentity } from '@smqtt/core'
import { freePort } from '@smqtt/test-kit/keyserver'
import mqtt from 'mqtt'
import { afterAll, expect, test } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const devDir = mkdtempSync(join(tmpdir(), 'smqtt-start-'))
let child: ChildProcess | undefined
let output = ''

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child?.once('exit', resolve))
    child.kill('SIGTERM')
    const force = setTimeout(() => child?.kill('SIGKILL'), 5_000)
    await exited
    clearTimeout(force)
  }
  rmSync(devDir, { recursive: true, force: true })
})

function https(
  url: string,
  ca: string,
  options: { method?: string; token?: string; body?: unknown } = {},
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
    const headers: Record<string, string> = {
      ...(payload ? { 'content-type': 'application/json' } : {}),
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
    }
    const req = request(url, { method: options.method ?? 'GET', ca, headers, timeout: 5000 }, (res) => {
      let text = ''
      res.on('data', (chunk) => {
        text += chunk
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }))
    })
    req.on('timeout', () => req.destroy(new Error(`${url} timed out`)))
    req.on('error', reject)
    req.end(payload)
  })
}

async function waitFor(what: string, done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!done() && Date.now() < deadline && child?.exitCode === null) await new Promise((r) => setTimeout(r, 100))
  if (!done()) throw new Error(`npm start: no ${what} within ${ms} ms; output:\n${output}`)
}

test('npm start creates a development deployment and serves the key server and the broker on loopback', async () => {
  const ports = {
    keyServer: await freePort(),
    broker: await freePort(),
    wss: await freePort(),
    metrics: await freePort(),
  }
  // What `npm start` runs, in one process (node with tsx's loader): the tsx CLI's parent relays
  // signals with a 30 ms guess and, on a loaded machine, exits 130/143 itself.
  child = spawn(process.execPath, ['--conditions=smqtt-source', '--import', 'tsx', 'scripts/start.ts'], {
    cwd: root,
    env: {
      ...process.env,
      SMQTT_DEV_DIR: devDir,
      SMQTT_KEYSERVER_PORT: String(ports.keyServer),
      SMQTT_BROKER_PORT: String(ports.broker),
      SMQTT_BROKER_WSS_PORT: String(ports.wss),
      SMQTT_METRICS_PORT: String(ports.metrics),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  await waitFor('"Ctrl-C stops both"', () => output.includes('Ctrl-C stops both'), 25_000)
  expect(output).toContain(`key server listening on https://127.0.0.1:${ports.keyServer}`)
  expect(output).toMatch(new RegExp(`mqtts: +mqtts://127\\.0\\.0\\.1:${ports.broker}\\n`))
  expect(output).toMatch(new RegExp(`wss: +wss://127\\.0\\.0\\.1:${ports.wss}/mqtt\\n`))
  expect(output).toMatch(new RegExp(`metrics: +http://127\\.0\\.0\\.1:${ports.metrics}/metrics\\n`))
  expect(output).toContain('enroll thermostat-1 --role thermostat')
  expect(output).toContain('secureConnectAsync(')
  expect(statSync(join(devDir, 'broker', 'identity.json')).mode & 0o777).toBe(0o600)

  const ca = readFileSync(join(devDir, 'keyserver', 'pki', 'ca.pem'), 'utf8')
  const keyServer = `https://127.0.0.1:${ports.keyServer}`
  expect((await https(`${keyServer}/v1/health`, ca)).body).toEqual({ status: 'ok' })

  // The broker principal and the key server's push principal were created on first run.
  const token = readFileSync(join(devDir, 'keyserver', 'admin.token'), 'utf8').trim()
  const { body: list } = await https(`${keyServer}/v1/admin/principals`, ca, { token })
  const principals = (list as { principals: { id: string; roles: string[] }[] }).principals
  expect(principals).toContainEqual(expect.objectContaining({ id: 'smqtt-broker-1', roles: ['broker'] }))
  expect(principals).toContainEqual(expect.objectContaining({ id: 'smqtt-keyserver', roles: ['keyserver'] }))

  // Enroll a device as an operator would and log in with a CONNECT password at once: the broker
  // learns of it from the pushed snapshot or, if its CONNECT comes first, an on-demand pull.
  const issued = await https(`${keyServer}/v1/admin/enrollment-tokens`, ca, {
    method: 'POST',
    token,
    body: { principalId: 'thermostat-1', roles: ['thermostat'] },
  })
  expect(issued.status).toBe(201)
  const identity = generateIdentity('thermostat-1')
  const enrolled = await https(`${keyServer}/v1/enroll`, ca, {
    method: 'POST',
    body: createEnrollmentRequest(identity, (issued.body as { token: string }).token),
  })
  expect(enrolled.status).toBe(200)

  const connack = async () => {
    const client = mqtt.connect(`mqtts://127.0.0.1:${ports.broker}`, {
      ca,
      clientId: 'thermostat-1',
      username: 'thermostat-1',
      password: createConnectPassword(identity, 'thermostat-1'),
      reconnectPeriod: 0,
      connectTimeout: 5000,
    })
    try {
      return await new Promise<number>((resolve, reject) => {
        client.once('connect', (packet) => resolve(packet.returnCode ?? 0))
        client.once('error', (err) => resolve((err as { code?: number }).code ?? -1))
        client.once('close', () => reject(new Error('closed before CONNACK')))
      })
    } finally {
      client.end(true)
    }
  }
  // Push is coalesced over 100 ms; allow a few tries, far below the 30 s pull period.
  let code = await connack()
  for (let i = 0; code !== 0 && i < 20; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    code = await connack()
  }
  expect(code).toBe(0)

  const metrics = () =>
    new Promise<string>((resolve, reject) => {
      httpGet(`http://127.0.0.1:${ports.metrics}/metrics`, (res) => {
        let text = ''
        res.on('data', (chunk) => {
          text += chunk
        })
        res.on('end', () => resolve(text))
      }).on('error', reject)
    })
  // The key server's push reaches the broker too (coalesced over 100 ms; its next pull is 30 s
  // away): a snapshot applied, or, when the broker pulled that content already (the CONNECT of
  // a principal it did not know yet), the same content vouched current.
  await expect
    .poll(metrics, { timeout: 5_000, interval: 100 })
    .toMatch(/^smqtt_broker_snapshots_(applied|vouched)_total\{source="push"\} [1-9]/m)

  // Ctrl-C: both stop and the process exits cleanly.
  const exited = new Promise<number | null>((resolve) => child?.once('exit', (exitCode) => resolve(exitCode)))
  child.kill('SIGINT')
  expect(await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 10_000))])).toBe(0)
}, 60_000)
