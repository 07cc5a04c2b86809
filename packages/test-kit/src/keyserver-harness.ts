// A real key server for the tests of every workspace (`@smqtt/test-kit/keyserver`): dev PKI,
// master key, SQLite file (or the given store), HTTPS on an ephemeral loopback port. Devices talk
// to it over real TLS. Built on @smqtt/keyserver's public API only.
import { mkdtempSync, rmSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { text as readText } from 'node:stream/consumers'
import { createEnrollmentRequest, generateIdentity, type Identity, sha256, signRequest } from '@smqtt/core'
import {
  buildApp,
  ensureDevPki,
  KeyServer,
  type KeyServerSettings,
  type KeyStore,
  MasterKey,
  openStore,
} from '@smqtt/keyserver'
import type { FastifyInstance } from 'fastify'

/**
 * A TCP port free on 127.0.0.1 right now (the OS picks it, the probe lets it go): for servers
 * that must be told a port (other processes, Mosquitto) or come back on the same one.
 */
export async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise((resolve) => probe.close(resolve))
  return port
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef'

export interface Response {
  readonly status: number
  readonly headers: IncomingHttpHeaders
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

/** The parsed body, or undefined when it is empty or not JSON (tests then look at `text`). */
function jsonOrUndefined(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined
  } catch {
    return undefined
  }
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
        readText(res).then(
          (text) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: jsonOrUndefined(text), text }),
          reject,
        )
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

/** How {@link addPrincipals} makes each principal. */
export interface FleetOptions {
  /** Ids are `<prefix>0000000`, `<prefix>0000001`, … */
  readonly prefix: string
  readonly roles?: readonly string[]
  /** Left active when absent; else set to this status at `statusAt(i)` (default: the harness's clock). */
  readonly status?: 'disabled' | 'revoked'
  readonly statusAt?: (i: number) => number
  /**
   * One valid Ed25519 key shared by all (kids tell them apart), for principals that must sign;
   * otherwise each gets a distinct placeholder key (enough for snapshots and lists).
   */
  readonly signing?: boolean
  /** Each principal's public keys (of identities the caller signs with); overrides `signing`. */
  readonly keys?: (i: number) => Pick<Identity, 'signingKey' | 'agreementKey'>
}

/** The id {@link addPrincipals} gives the `i`th principal of `prefix`. */
export const fleetId = (prefix: string, i: number): string => `${prefix}${String(i).padStart(7, '0')}`

/**
 * Adds `count` principals straight into the harness's store: a fleet's weight in snapshots,
 * lists and bundles without enrolling each one (which at thousands takes minutes). Returns their
 * kids in order.
 */
export async function addPrincipals(
  h: Pick<Harness, 'store' | 'clock'>,
  count: number,
  options: FleetOptions,
): Promise<number[]> {
  const shared = options.signing ? generateIdentity('shared-fleet-key') : undefined
  const kids: number[] = []
  for (let i = 0; i < count; i++) {
    const id = fleetId(options.prefix, i)
    const placeholder = new Uint8Array(32)
    new DataView(placeholder.buffer).setUint32(0, i + 1)
    const keys = options.keys?.(i) ?? shared ?? { signingKey: placeholder, agreementKey: placeholder }
    const statusAt = options.statusAt?.(i) ?? h.clock.now
    const created = await h.store.createPrincipal({
      id,
      roles: [...(options.roles ?? ['thermostat'])],
      username: undefined,
      signingKey: keys.signingKey,
      agreementKey: keys.agreementKey,
      kem: 'x25519',
      createdAt: Math.min(h.clock.now, Math.max(0, statusAt - 1)),
      certificateSerial: undefined,
    })
    kids.push(created.kid)
    if (options.status) await h.store.setPrincipalStatus(id, options.status, statusAt)
    // A synchronous store answers in microtasks: let sockets and timers run now and then.
    if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve))
  }
  return kids
}

/** Active writers with `roles`, all signing with one valid key: the writers of a large group. */
export const addWriters = (
  h: Pick<Harness, 'store' | 'clock'>,
  count: number,
  prefix = 'writer-',
  roles: readonly string[] = ['thermostat'],
): Promise<number[]> => addPrincipals(h, count, { prefix, roles, signing: true })

/** Disabled principals: their weight in snapshots, and the push sends them no bundles. */
export const addFleet = async (h: Pick<Harness, 'store' | 'clock'>, count: number, prefix = 'fleet-'): Promise<void> =>
  void (await addPrincipals(h, count, { prefix, status: 'disabled' }))

/**
 * Revoked principals: a fleet's lifetime revocations without revoking each one through the
 * service. Their revocation times are spread evenly over the `spanSeconds` before the harness's
 * clock, the newest `spanSeconds / count` ago (issue 14, cliff 1: most lie outside any retention window).
 */
export const addRevokedFleet = async (
  h: Pick<Harness, 'store' | 'clock'>,
  count: number,
  spanSeconds: number,
  prefix = 'revoked-',
): Promise<void> => {
  const now = h.clock.now
  await addPrincipals(h, count, {
    prefix,
    status: 'revoked',
    statusAt: (i) => now - Math.ceil(((count - i) * spanSeconds) / count),
  })
}

/** Smart-home policy: thermostats write temperatures, apps read them and command locks. */
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
