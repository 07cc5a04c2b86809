// The soak's servers, real and on loopback, assembled like `npm start` (scripts/start.ts): the
// key server from `initKeyServer` + `startKeyServer` (HTTPS, SQLite, development PKI, pushing
// bundles and snapshots over MQTT) and the broker from `startBroker` (Aedes + the SMQTT plugin
// over TLS, full verification), enrolled as principal `broker` with a one-time token. Both log
// to a sink that keeps the broker's audited refusals, attributed to their principal.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseBrokerConfig, type RunningBroker, type SmqttPlugin, startBroker } from '@smqtt/broker-plugin'
import { type Enrollment, enroll, memoryStorage, nodeHttpsTransport } from '@smqtt/client'
import { exportIdentity, type Identity } from '@smqtt/core'
import {
  BROKER_ROLE,
  initKeyServer,
  loadKeyServerConfig,
  type RunningKeyServer,
  startKeyServer,
} from '@smqtt/keyserver'
import { freePort, SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import { pino } from 'pino'
import { sleep } from './shared.js'

const BROKER_PRINCIPAL = 'soak-broker'
const KEPT_WARNINGS = 20

/** What the servers logged at warn level and above. */
export interface ServerLog {
  /**
   * The broker's audited refusals by principal (or client id when authentication did not get
   * that far), then by `hook:reason`. Forward refusals are audited at debug level: not here.
   */
  readonly refusals: Map<string, Map<string, number>>
  /** Other warnings and errors (first few kept, all counted), closed sessions aside. */
  readonly warnings: string[]
  warningCount: number
}

export interface SoakServers {
  readonly keyServerUrl: string
  readonly brokerUrl: string
  /** PEM of the deployment CA. */
  readonly ca: string
  /** The key server's Ed25519 key, base64url. */
  readonly keyServerPublicKey: string
  readonly plugin: SmqttPlugin
  readonly log: ServerLog
  /** QoS 1 messages the broker holds for a client id's persistent session. */
  queuedFor(clientId: string): Promise<number>
  /** POST to the key server's admin API; rejects unless 2xx. */
  admin(path: string, body?: unknown): Promise<unknown>
  close(): Promise<void>
}

/** A pino destination that files JSON lines into `log`. */
function logSink(log: ServerLog) {
  return {
    write(line: string) {
      const entry = JSON.parse(line) as Record<string, unknown>
      if (entry.event === 'refused') {
        const who = String(entry.principal ?? entry.clientId ?? '(unknown)')
        const byReason = log.refusals.get(who) ?? new Map<string, number>()
        const reason = `${String(entry.hook)}:${String(entry.reason)}`
        byReason.set(reason, (byReason.get(reason) ?? 0) + 1)
        log.refusals.set(who, byReason)
        return
      }
      // Sessions the plugin closed are counted by its metrics (reason `revoked` is expected here).
      if (entry.event === 'session-closed') return
      if (++log.warningCount <= KEPT_WARNINGS) log.warnings.push(line.trim())
    },
  }
}

/** Starts the key server and the broker in `dir` with the smart-home policy. */
export async function startServers(dir: string, options: { devices: number }): Promise<SoakServers> {
  const log: ServerLog = { refusals: new Map(), warnings: [], warningCount: 0 }
  const logger = pino({ level: 'warn' }, logSink(log))
  const cleanups: (() => Promise<void>)[] = []
  const close = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
  }
  try {
    // The broker's port is chosen first: the key server is told where to push before it starts.
    const brokerPort = await freePort()
    const created = await initKeyServer(join(dir, 'keyserver'), {
      listen: { host: '127.0.0.1', port: 0 },
      push: { brokerUrl: `mqtts://127.0.0.1:${brokerPort}` },
    })
    const config = loadKeyServerConfig(created.configFile)
    const ca = readFileSync(config.tls.caFile, 'utf8')
    const keyServer: RunningKeyServer = await startKeyServer(config, { logger })
    cleanups.push(() => keyServer.close())
    await keyServer.keyServer.setPolicy(SMART_HOME_POLICY, 'soak')

    const transport = nodeHttpsTransport({ ca })
    const headers = { authorization: `Bearer ${created.adminToken}`, 'content-type': 'application/json' }
    const admin: SoakServers['admin'] = async (path, body) => {
      const response = await transport.request({
        method: 'POST',
        url: `${keyServer.url}${path}`,
        headers,
        body: new TextEncoder().encode(JSON.stringify(body ?? {})),
        timeoutMs: 60_000,
      })
      if (response.status < 200 || response.status > 299)
        throw new Error(`POST ${path}: ${response.status} ${JSON.stringify(response.body)}`)
      return response.body
    }

    // The broker is a principal (role broker) enrolled with a one-time token like any device.
    const keyServerPublicKey = new Uint8Array(Buffer.from(created.keyServerPublicKey, 'base64url'))
    const { token } = (await admin('/v1/admin/enrollment-tokens', {
      principalId: BROKER_PRINCIPAL,
      roles: [BROKER_ROLE],
    })) as { token: string }
    const brokerEnrollment: Enrollment<Identity> = await enroll({
      keyServerUrl: keyServer.url,
      ca,
      token,
      id: BROKER_PRINCIPAL,
      storage: memoryStorage(),
      keyServerPublicKey,
    })
    const brokerDir = join(dir, 'broker')
    mkdirSync(brokerDir, { recursive: true, mode: 0o700 })
    writeFileSync(join(brokerDir, 'identity.json'), JSON.stringify(exportIdentity(brokerEnrollment.identity)), {
      mode: 0o600,
    })
    const pki = join(dir, 'keyserver', 'pki')
    const broker: RunningBroker = await startBroker(
      parseBrokerConfig(
        {
          listeners: { mqtts: { host: '127.0.0.1', port: brokerPort } },
          tls: { certFile: join(pki, 'server.pem'), keyFile: join(pki, 'server.key'), caFile: join(pki, 'ca.pem') },
          keyServer: { url: keyServer.url, publicKey: created.keyServerPublicKey, caFile: config.tls.caFile },
          mode: 'full',
          // Every device connects from 127.0.0.1: the per-address limits, meant for one address
          // per device, would refuse the fleet. The per-client-id limit stays at its default.
          connectLimits: { perAddress: 10 * options.devices + 1_000, failuresBeforeBan: 10 * options.devices + 1_000 },
          metrics: false,
          logLevel: 'warn',
        },
        brokerDir,
      ),
      { logDestination: logSink(log) },
    )
    cleanups.push(() => broker.close())

    // The key server's push connection (the only session so far) retries until the broker is up.
    const deadline = Date.now() + 60_000
    while (broker.plugin.state.sessions === 0) {
      if (Date.now() > deadline) throw new Error(`the key server did not connect its push client:\n${log.warnings}`)
      await sleep(100)
    }
    return {
      keyServerUrl: keyServer.url,
      brokerUrl: broker.urls.mqtts,
      ca,
      keyServerPublicKey: created.keyServerPublicKey,
      plugin: broker.plugin,
      log,
      async queuedFor(clientId) {
        // Aedes 1.2 does not declare its persistence; outgoingStream is part of every backend.
        const { persistence } = broker.broker as unknown as {
          persistence: { outgoingStream(client: { id: string }): AsyncIterable<unknown> }
        }
        let count = 0
        for await (const _ of persistence.outgoingStream({ id: clientId })) count++
        return count
      },
      admin,
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}
