// One deployment for the interop tests: the real key server (`@smqtt/test-kit/keyserver`, HTTPS,
// SQLite, dev PKI) and `smqtt-broker start` as a child process from a config file, serving
// mqtts:// with that PKI. Every principal is enrolled (and one revoked) before the broker starts,
// so its first snapshot already knows them all. Clients written by others (mosquitto, Paho)
// get files: the CA, client certificates and keys, sealed envelopes.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { hashLegacyPassword } from '@smqtt/broker-plugin'
import {
  createConnectPassword,
  createEnrollmentRequest,
  type EnvelopeKeys,
  exportIdentity,
  generateIdentity,
  type Identity,
  openEnvelope,
  sealEnvelope,
} from '@smqtt/core'
import { CertificateAuthority, createCertificateAuthority } from '@smqtt/keyserver'
import { openBundleOf, p256Pems, sealingKeys, TEST_POLICY, within } from '@smqtt/test-kit/broker'
import { type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll } from 'vitest'
import { killAll } from './_run.js'

const repository = fileURLToPath(new URL('../..', import.meta.url))
const TSX = join(repository, 'node_modules/.bin/tsx')

/** Who takes part. Roles from TEST_POLICY: thermostats write temperatures, apps read them; both use `public/#`. */
export const PRINCIPALS = {
  /** Authenticates with its client certificate (mTLS). */
  thermostat: { id: 'thermostat-1', roles: ['thermostat'] },
  /** Authenticates with a CONNECT password. */
  app: { id: 'app-1', roles: ['app'] },
  /** Revoked before the broker starts. */
  revoked: { id: 'app-revoked', roles: ['app'] },
  /** Authenticates with its client certificate; a test revokes it while it is connected. */
  doomed: { id: 'app-doomed', roles: ['app'] },
} as const

export const LEGACY_USER = { username: 'old-app', password: 'correct horse battery staple', principal: 'app-1' }

/** The home of the thermostat's encrypted temperature topic (group `thermostats`). */
export const TEMPERATURE_TOPIC = `home/h1/thermostat/${PRINCIPALS.thermostat.id}/temp`

export interface Enrolled {
  readonly identity: Identity
  readonly kid: number
}

/** A TLS client credential as files. */
export interface CertificateFiles {
  readonly cert: string
  readonly key: string
}

export interface InteropStack {
  readonly h: Harness
  readonly host: '127.0.0.1'
  readonly port: number
  /** The deployment CA (dev PKI): verifies the broker's certificate. */
  readonly caFile: string
  /**
   * Client certificates with their keys: the ones the key server issued at enrollment to the
   * thermostat and to the doomed app, and a `rogue` one naming the thermostat, from a CA the
   * broker does not trust.
   */
  readonly tls: Record<'thermostat' | 'doomed' | 'rogue', CertificateFiles>
  readonly enrolled: Record<keyof typeof PRINCIPALS, Enrolled>
  /** A fresh one-time CONNECT password for `who` (client id = principal id). */
  password(who: Enrolled): string
  /** An envelope sealed by `sender` for `topic`, written to a file; returns its path and bytes. */
  sealToFile(sender: Enrolled, topic: string, payload: string): Promise<{ file: string; bytes: Uint8Array }>
  /**
   * Opens an envelope received on `topic`, as hex (how mosquitto_sub and the Paho script print
   * payloads), with `reader`'s own key bundle; returns the plaintext.
   */
  open(reader: Enrolled, topic: string, payloadHex: string): Promise<string>
  /**
   * What the broker's audit log got since the previous call (waiting for at least `atLeast`
   * entries: the log is written asynchronously): refusals as `hook:reason` (`connect:bad-credentials`),
   * accepted CONNECTs as `login:method`, other events as `event:reason` (`session-closed:revoked`).
   */
  newAudit(atLeast?: number): Promise<string[]>
  /**
   * {@link newAudit} read until `entry` is among what arrived (or 15 s passed): for an entry that
   * follows others still unread, which `newAudit()` alone may return without it.
   */
  auditUntil(entry: string): Promise<string[]>
  close(): Promise<void>
}

/**
 * Registers the hooks of a test file run against one interop stack: started before all; after
 * all, the client programs still running killed and the stack closed. The returned stack is
 * filled in by beforeAll, so read it inside tests (or helpers they call), not at collection time.
 */
export function useInteropStack(): InteropStack {
  const stack = {} as InteropStack
  let started: InteropStack | undefined
  beforeAll(async () => {
    started = await startInteropStack()
    Object.assign(stack, started)
  }, 60_000)
  afterAll(async () => {
    killAll()
    await started?.close()
  })
  return stack
}

/** Starts the key server and the `smqtt-broker` process; cleans up everything if a step fails. */
export async function startInteropStack(): Promise<InteropStack> {
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-interop-'))
  const file = (name: string, content: string | Uint8Array) => {
    const path = join(dir, name)
    writeFileSync(path, content, { mode: 0o600 })
    return path
  }
  let h: Harness | undefined
  let broker: ChildProcess | undefined
  const close = async () => {
    await stopProcess(broker)
    await h?.close()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    h = await startHarness()
    const harness = h
    harness.clock.now = Math.floor(Date.now() / 1000)
    const put = await harness.admin('PUT', '/v1/admin/policy', { policy: TEST_POLICY })
    if (put.status !== 200) throw new Error(`policy: ${put.text}`)

    const brokerPrincipal = await harness.enroll('broker-1', ['broker'])
    const thermostat = await enrollWithCertificate(harness, PRINCIPALS.thermostat.id, [...PRINCIPALS.thermostat.roles])
    const doomed = await enrollWithCertificate(harness, PRINCIPALS.doomed.id, [...PRINCIPALS.doomed.roles])
    const enrolled = {
      thermostat,
      app: await harness.enroll(PRINCIPALS.app.id, [...PRINCIPALS.app.roles]),
      revoked: await harness.enroll(PRINCIPALS.revoked.id, [...PRINCIPALS.revoked.roles]),
      doomed,
    }
    await harness.keyServer.revokePrincipal(PRINCIPALS.revoked.id, 'admin')

    const rogueCa = await createCertificateAuthority({ commonName: 'rogue CA', validityDays: 1 })
    const rogue = await CertificateAuthority.load(rogueCa.certificatePem, rogueCa.privateKeyPkcs8)
    const rogueKey = await p256Pems()
    const rogueCertificate = await rogue.issueClientCertificate({
      principalId: PRINCIPALS.thermostat.id,
      publicKeySpki: rogueKey.spki,
      validityDays: 1,
    })

    const pki = `${harness.dir}/pki`
    const auditLog = join(dir, 'audit.log')
    const config = file(
      'broker.json',
      JSON.stringify({
        listeners: { mqtts: { host: '127.0.0.1', port: 0 } },
        tls: { certFile: `${pki}/server.pem`, keyFile: `${pki}/server.key`, caFile: `${pki}/ca.pem` },
        keyServer: {
          url: harness.url,
          publicKey: Buffer.from(harness.keyServer.publicKey).toString('base64url'),
          identityFile: file('broker-identity.json', JSON.stringify(exportIdentity(brokerPrincipal.identity))),
          pullIntervalSeconds: 1, // no push here: a revocation reaches the broker by its next pull
        },
        // Every client here connects from 127.0.0.1: the refusal tests must not get the address banned.
        connectLimits: { perAddress: 10_000, perClientId: 10_000, failuresBeforeBan: 10_000 },
        legacyUsers: [
          {
            username: LEGACY_USER.username,
            principal: LEGACY_USER.principal,
            hash: await hashLegacyPassword(LEGACY_USER.password),
          },
        ],
        metrics: false,
        auditLogFile: auditLog,
      }),
    )
    const started = await startBrokerProcess(config)
    broker = started.child

    const bundles = new Map<string, ReturnType<typeof openBundleOf>>()
    const bundleOf = (who: Enrolled) => {
      let bundle = bundles.get(who.identity.id)
      if (!bundle) {
        bundle = openBundleOf(harness, who)
        bundles.set(who.identity.id, bundle)
      }
      return bundle
    }
    let seq = 0
    let auditSeen = 0
    const newAudit: InteropStack['newAudit'] = async (atLeast = 1) => {
      const deadline = Date.now() + 3_000
      let entries = readAuditLog(auditLog).slice(auditSeen)
      while (entries.length < atLeast && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20))
        entries = readAuditLog(auditLog).slice(auditSeen)
      }
      auditSeen += entries.length
      return entries.map((entry) => {
        if (entry.event === 'authenticated') return `login:${entry.method}`
        if (entry.event === 'refused') return `${entry.hook}:${entry.reason}`
        return `${entry.event}:${entry.reason}`
      })
    }

    return {
      h: harness,
      host: '127.0.0.1',
      port: started.port,
      caFile: `${pki}/ca.pem`,
      tls: {
        thermostat: {
          cert: file('thermostat.pem', thermostat.certificatePem),
          key: file('thermostat.key', thermostat.keyPem),
        },
        doomed: { cert: file('doomed.pem', doomed.certificatePem), key: file('doomed.key', doomed.keyPem) },
        rogue: { cert: file('rogue.pem', rogueCertificate.certificatePem), key: file('rogue.key', rogueKey.keyPem) },
      },
      enrolled,
      password: (who) => createConnectPassword(who.identity, who.identity.id),
      async sealToFile(sender, topic, payload) {
        const { epochKey, signer } = sealingKeys(await bundleOf(sender), sender, topic)
        seq += 1
        const bytes = sealEnvelope({ topic, payload: new TextEncoder().encode(payload), epochKey, signer, seq })
        return { file: file(`envelope-${seq}.bin`, bytes), bytes }
      },
      async open(reader, topic, payloadHex) {
        const bundle = await bundleOf(reader)
        const { epochKey } = sealingKeys(bundle, reader, topic)
        const keys: EnvelopeKeys = {
          epochKey: (group, epoch) => (group === epochKey.group && epoch === epochKey.epoch ? epochKey : undefined),
          writerKey: (group, sender) => bundle.groups.find((g) => g.group === group)?.writers.get(sender)?.signingKey,
        }
        const bytes = new Uint8Array(Buffer.from(payloadHex, 'hex'))
        return new TextDecoder().decode(openEnvelope(bytes, topic, { keys }).payload)
      },
      async auditUntil(entry) {
        const audit: string[] = []
        for (let i = 0; i < 5 && !audit.includes(entry); i++) audit.push(...(await newAudit()))
        return audit
      },
      newAudit,
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

/** Enrolls `id` with a fresh TLS key: the key server issues a client certificate naming it. */
async function enrollWithCertificate(
  h: Harness,
  id: string,
  roles: string[],
): Promise<Enrolled & { certificatePem: string; keyPem: string }> {
  const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
  if (token.status !== 201) throw new Error(`token: ${token.text}`)
  const identity = generateIdentity(id)
  const tls = await p256Pems()
  const response = await h.request('POST', '/v1/enroll', {
    body: createEnrollmentRequest(identity, (token.body as { token: string }).token, { tlsPublicKey: tls.spki }),
  })
  const body = response.body as { kid?: number; certificatePem?: string }
  if (response.status !== 200 || body.kid === undefined || !body.certificatePem)
    throw new Error(`enroll: ${response.text}`)
  return { identity, kid: body.kid, certificatePem: body.certificatePem, keyPem: tls.keyPem }
}

/** `smqtt-broker start --config FILE` as a real process; resolves once it listens. */
async function startBrokerProcess(config: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(TSX, ['--conditions=smqtt-source', 'src/bin.ts', 'start', '--config', config], {
    cwd: join(repository, 'packages/broker-plugin'),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const listening = () =>
    output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.msg === 'smqtt-broker listening')
  try {
    await within(
      (async () => {
        while (!listening() && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 50))
      })(),
      'smqtt-broker to listen',
      25_000,
    )
    const url = listening()?.mqtts
    if (typeof url !== 'string') throw new Error(`smqtt-broker did not start:\n${output}`)
    return { child, port: Number(new URL(url).port) }
  } catch (err) {
    await stopProcess(child)
    throw err
  }
}

/** `signal`, then SIGKILL if the process is still there after `graceMs`. */
export async function stopProcess(
  child: ChildProcess | undefined,
  signal: NodeJS.Signals = 'SIGTERM',
  graceMs = 5_000,
): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill(signal)
  const force = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(force)
}

function readAuditLog(path: string): Record<string, unknown>[] {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    return []
  }
  // The last element is '' or a line still being written (the log is asynchronous): skip it.
  return text
    .split('\n')
    .slice(0, -1)
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}
