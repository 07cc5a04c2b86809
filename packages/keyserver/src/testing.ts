// A real key server for tests of this and other packages (import '@smqtt/keyserver/testing').
// Runs the real key server for tests: dev PKI, master key, SQLite file (or the given store),
// HTTPS on an ephemeral loopback port. Devices talk to it over real TLS.
import { mkdtempSync, rmSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEnrollmentRequest, generateIdentity, type Identity, sha256, signRequest } from '@smqtt/core'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './http/app.js'
import { MasterKey } from './master-key.js'
import { ensureDevPki } from './pki/dev-pki.js'
import { KeyServer, type KeyServerSettings } from './service/key-server.js'
import type { KeyStore } from './store/key-store.js'
import { openStore } from './store/open-store.js'

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef'

export interface Response {
  readonly status: number
  readonly body: unknown
  readonly text: string
}

export interface Harness {
  readonly url: string
  readonly dir: string
  readonly caPem: string
  readonly keyServer: KeyServer
  readonly store: KeyStore
  readonly masterKey: MasterKey
  readonly app: FastifyInstance
  readonly clock: { now: number }
  request(
    method: string,
    path: string,
    options?: { body?: unknown; rawBody?: string; headers?: Record<string, string> },
  ): Promise<Response>
  admin(method: string, path: string, body?: unknown): Promise<Response>
  /** A signed device request (proof of possession). */
  device(identity: Identity, method: string, path: string, body?: unknown): Promise<Response>
  /** Creates a token and enrolls a fresh identity with it. */
  enroll(id: string, roles: string[]): Promise<{ identity: Identity; kid: number }>
  /** Closes the server and store; with keepFiles the directory survives for a restart. */
  close(options?: { keepFiles?: boolean }): Promise<void>
}

export async function startHarness(
  options: {
    dir?: string
    masterKey?: MasterKey
    settings?: Partial<KeyServerSettings>
    storeUrl?: string
    maxBodyBytes?: number
    corsOrigins?: readonly string[]
  } = {},
): Promise<Harness> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'smqtt-ks-'))
  const pki = await ensureDevPki(join(dir, 'pki'))
  const masterKey = options.masterKey ?? MasterKey.generate()
  const store = await openStore(options.storeUrl ?? `sqlite:${join(dir, 'keyserver.db')}`)
  const clock = { now: 1_790_000_000 }
  const keyServer = await KeyServer.open({
    store,
    masterKey,
    certificateAuthority: pki.ca,
    settings: options.settings ?? {},
    now: () => clock.now,
  })
  const app = await buildApp({
    keyServer,
    adminTokenHash: sha256(new TextEncoder().encode(ADMIN_TOKEN)),
    tls: { key: pki.serverKeyPem, cert: pki.serverCertPem },
    ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}),
    ...(options.corsOrigins ? { corsOrigins: options.corsOrigins } : {}),
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (!address || typeof address === 'string') throw new Error('no address')
  const url = `https://127.0.0.1:${address.port}`

  const request: Harness['request'] = (method, path, opts = {}) =>
    new Promise((resolve, reject) => {
      const payload = opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body))
      const headers: Record<string, string> = {
        ...(payload !== undefined ? { 'content-type': 'application/json' } : {}),
        ...opts.headers,
      }
      const req = httpsRequest(`${url}${path}`, { method, headers, ca: pki.caPem, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown
          try {
            body = text ? JSON.parse(text) : undefined
          } catch {
            body = undefined
          }
          resolve({ status: res.statusCode ?? 0, body, text })
        })
      })
      req.on('timeout', () => req.destroy(new Error('request timed out')))
      req.on('error', reject)
      req.end(payload)
    })

  const harness: Harness = {
    url,
    dir,
    caPem: pki.caPem,
    keyServer,
    store,
    masterKey,
    app,
    clock,
    request,
    admin: (method, path, body) => request(method, path, { body, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
    device(identity, method, path, body) {
      const raw = body === undefined ? '' : JSON.stringify(body)
      const headers = signRequest(
        identity.id,
        identity,
        { method, path, body: new TextEncoder().encode(raw) },
        { now: clock.now },
      )
      return request(method, path, { ...(body === undefined ? {} : { rawBody: raw }), headers })
    },
    async enroll(id, roles) {
      const token = await harness.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
      if (token.status !== 201) throw new Error(`token: ${token.text}`)
      const identity = generateIdentity(id)
      const enrolled = await request('POST', '/v1/enroll', {
        body: createEnrollmentRequest(identity, (token.body as { token: string }).token),
      })
      if (enrolled.status !== 200) throw new Error(`enroll: ${enrolled.text}`)
      return { identity, kid: (enrolled.body as { kid: number }).kid }
    },
    async close(closeOptions = {}) {
      await app.close()
      await store.close()
      if (!closeOptions.keepFiles) rmSync(dir, { recursive: true, force: true })
    },
  }
  return harness
}

/** Smart-home policy: thermostats write temperatures, apps read them and command locks. */
/**
 * Adds `count` disabled principals (`<prefix>0000000`, …; role thermostat) straight into the
 * harness's store: a fleet's weight in snapshots and lists without enrolling each one (which at
 * thousands takes minutes). Disabled, so the push sends them no bundles.
 */
export async function addFleet(h: Pick<Harness, 'store' | 'clock'>, count: number, prefix = 'fleet-'): Promise<void> {
  for (let i = 0; i < count; i++) {
    const id = `${prefix}${String(i).padStart(7, '0')}`
    const key = new Uint8Array(32)
    new DataView(key.buffer).setUint32(0, i + 1)
    await h.store.createPrincipal({
      id,
      roles: ['thermostat'],
      username: undefined,
      signingKey: key,
      agreementKey: key,
      kem: 'x25519',
      createdAt: h.clock.now,
      certificateSerial: undefined,
    })
    await h.store.setPrincipalStatus(id, 'disabled', h.clock.now)
  }
}

export const SMART_HOME_POLICY = {
  version: 1,
  rules: [
    { effect: 'allow', actions: ['publish'], topics: ['home/+/thermostat/%c/#'], roles: ['thermostat'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/+/thermostat/#', 'home/+/lock/+/state'], roles: ['app'] },
    { effect: 'allow', actions: ['publish'], topics: ['home/+/lock/+/cmd'], roles: ['app'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/+/lock/%c/cmd'], roles: ['lock'] },
    { effect: 'allow', actions: ['publish'], topics: ['home/+/lock/%c/state'], roles: ['lock'] },
  ],
  groups: [
    { id: 1, name: 'thermostats', filter: 'home/+/thermostat/#', rotateEverySeconds: 3600, graceSeconds: 120 },
    { id: 2, name: 'lock-commands', filter: 'home/+/lock/+/cmd' },
    { id: 3, name: 'lock-states', filter: 'home/+/lock/+/state' },
  ],
  plaintext: [],
}
