// The full real stack the attack catalogue runs against: the key server over HTTPS (SQLite, dev
// PKI), the broker assembled by startBroker (Aedes + plugin behind mqtts://, restartable on the
// same port), @smqtt/client secure clients enrolled through the client's own enroll(), and raw
// mqtt.js clients for the attackers. Every broker log line is kept: the audit entries (`audit:
// true`) are what the tests assert refusals on.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  type BrokerConfigDocument,
  hashLegacyPassword,
  parseBrokerConfig,
  type RunningBroker,
  startBroker,
} from '@smqtt/broker-plugin'
import {
  type ClientStorage,
  type Enrollment,
  fileStorage,
  memoryStorage,
  type SecureClient,
  type SecureOptions,
  type SecurityErrorEvent,
  secure,
} from '@smqtt/client'
import {
  createConnectPassword,
  createEnvelopeSigner,
  EpochKey,
  exportIdentity,
  type Identity,
  type OpenedKeyBundle,
  type OpenedKeyGroup,
  openEnvelope,
  type SuiteId,
  sealEnvelope,
  topicMatches,
} from '@smqtt/core'
import { closed, connected, TEST_POLICY, within } from '@smqtt/test-kit/broker'
import { enrollThrough, waitUntil } from '@smqtt/test-kit/client'
import { type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'

/** The login an attacker stole from thermostat-1: its legacy MQTT password, not its keys. */
export const STOLEN_LOGIN = { username: 'thermostat-1-legacy', password: 'hunter2 from a config file' }

export type Member = Enrollment<Identity> & { readonly storage: ClientStorage }

/** A secure client plus everything it delivered or refused. */
export interface Recorder {
  readonly client: SecureClient
  readonly messages: { topic: string; text: string }[]
  readonly errors: SecurityErrorEvent[]
}

/** An audit entry of the broker (`event: 'refused'` entries carry hook and reason). */
export type AuditEntry = Record<string, unknown> & { event?: string; hook?: string; reason?: string }

export interface AttackStack {
  readonly h: Harness
  readonly ca: string
  /** mqtts:// of the broker; the same across restarts. */
  readonly url: string
  readonly broker: RunningBroker
  readonly dir: string
  /** Audit entries logged since the last call (so each test sees only its own). */
  takeAudit(): AuditEntry[]
  /** Every line the broker logged (debug level). */
  logs(): readonly AuditEntry[]
  enroll(id: string, roles: string[], options?: { persistent?: boolean; certificate?: boolean }): Promise<Member>
  /** A connected secure client with keys loaded (reconnects by itself when `reconnect`). */
  secureClient(
    member: Member,
    options?: {
      reconnect?: boolean
      /** Options passed on to secure() (freshness poll timings, a key server transport of the test's own). */
      secure?: Partial<Pick<SecureOptions, 'freshnessIntervalSeconds' | 'maxStalenessSeconds'>> & {
        transport?: SecureOptions['keyServer']['transport']
      }
    },
  ): Promise<Recorder>
  /** A raw mqtt.js client; resolves on CONNACK 0, rejects with the refusal (`code` = return code). */
  raw(options: IClientOptions): Promise<MqttClient>
  /** A raw mqtt.js client logged in as `member` with a fresh CONNECT password. */
  rawAs(member: Pick<Member, 'identity'>, options?: IClientOptions): Promise<MqttClient>
  /** Applies the key server's current snapshot to the broker now (as its pull would). */
  syncBroker(): Promise<void>
  restartBroker(): Promise<void>
  /**
   * From now until close(), the key server's clock follows real time (checked 5 times a second):
   * for tests whose request signatures, epochs and revocations carry the wall clock.
   */
  followRealTime(): void
  close(): Promise<void>
}

export async function startAttackStack(
  limits: BrokerConfigDocument['connectLimits'] = {},
  /** The broker's snapshot pulls (default: every 30 s, on-demand ones on). */
  pulls: { pullIntervalSeconds?: number } = {},
  /** The key server's settings, over the harness's defaults. */
  settings: NonNullable<Parameters<typeof startHarness>[0]>['settings'] = {},
): Promise<AttackStack> {
  const h = await startHarness({ settings })
  h.clock.now = Math.floor(Date.now() / 1000)
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-attacks-'))
  const logs: AuditEntry[] = []
  let taken = 0
  const clients = new Set<{ endAsync(force?: boolean): Promise<unknown> }>()
  let wallClock: ReturnType<typeof setInterval> | undefined
  try {
    const put = await h.admin('PUT', '/v1/admin/policy', { policy: TEST_POLICY })
    if (put.status !== 200) throw new Error(`policy: ${put.text}`)
    const brokerPrincipal = await h.enroll('broker-1', ['broker'])
    writeFileSync(join(dir, 'broker-identity.json'), JSON.stringify(exportIdentity(brokerPrincipal.identity)), {
      mode: 0o600,
    })
    const document = (port: number): BrokerConfigDocument => ({
      listeners: { mqtts: { host: '127.0.0.1', port } },
      tls: { certFile: `${h.dir}/pki/server.pem`, keyFile: `${h.dir}/pki/server.key`, caFile: `${h.dir}/pki/ca.pem` },
      keyServer: {
        url: h.url,
        publicKey: Buffer.from(h.keyServer.publicKey).toString('base64url'),
        identityFile: 'broker-identity.json',
        ...pulls,
      },
      metrics: false,
      legacyUsers: [{ username: STOLEN_LOGIN.username, principal: 'thermostat-1', hash: legacyHash }],
      connectLimits: { perAddress: 10_000, perClientId: 10_000, failuresBeforeBan: 10_000, ...limits },
      logLevel: 'debug',
    })
    const legacyHash = await hashLegacyPassword(STOLEN_LOGIN.password)
    const start = (port: number) =>
      startBroker(parseBrokerConfig(document(port), dir), {
        logDestination: { write: (line: string) => void logs.push(JSON.parse(line)) },
      })
    let broker = await start(0)
    const url = broker.urls.mqtts
    const port = Number(new URL(url).port)

    const untilConnected = (client: MqttClient) => connected(client, 'CONNACK', 10_000)
    const raw: AttackStack['raw'] = (options) => {
      const client = mqtt.connect(url, { ca: h.caPem, reconnectPeriod: 0, connectTimeout: 10_000, ...options })
      clients.add(client)
      return untilConnected(client)
    }

    const stack: AttackStack = {
      h,
      ca: h.caPem,
      url,
      dir,
      get broker() {
        return broker
      },
      logs: () => logs,
      takeAudit() {
        const fresh = logs.slice(taken).filter((line) => line.audit === true)
        taken = logs.length
        return fresh
      },
      async enroll(id, roles, options = {}) {
        const storage = options.persistent ? fileStorage(join(dir, `${id}.store`)) : memoryStorage()
        const member = await enrollThrough(
          h,
          id,
          roles,
          storage,
          options.certificate ? { clientCertificate: true } : {},
        )
        await stack.syncBroker() // the broker knows principals from its snapshot only
        return member
      },
      async secureClient(member, options = {}) {
        const id = member.identity.id
        const mqttClient = mqtt.connect(url, {
          ca: h.caPem,
          clientId: id,
          username: id,
          password: createConnectPassword(member.identity, id),
          reconnectPeriod: options.reconnect ? 200 : 0,
          connectTimeout: 10_000,
        })
        // A fresh one-time CONNECT password for every reconnect (secureConnectAsync does the same).
        mqttClient.on('reconnect', () => {
          mqttClient.options.password = createConnectPassword(member.identity, id)
        })
        const client = secure(mqttClient, {
          identity: member.identity,
          kid: member.kid,
          keyServer: {
            url: h.url,
            ca: h.caPem,
            keyServerPublicKey: member.keyServerPublicKey,
            ...(options.secure?.transport ? { transport: options.secure.transport } : {}),
          },
          storage: member.storage,
          ...(options.secure?.freshnessIntervalSeconds === undefined
            ? {}
            : { freshnessIntervalSeconds: options.secure.freshnessIntervalSeconds }),
          ...(options.secure?.maxStalenessSeconds === undefined
            ? {}
            : { maxStalenessSeconds: options.secure.maxStalenessSeconds }),
        })
        clients.add(client)
        const recorder: Recorder = { client, messages: [], errors: [] }
        client.on('message', (topic, payload) =>
          recorder.messages.push({ topic, text: new TextDecoder().decode(payload) }),
        )
        client.on('securityError', (event) => recorder.errors.push(event))
        client.on('error', () => {})
        client.on('keyServerError', () => {})
        await within(
          Promise.all([
            new Promise<void>((resolve) =>
              mqttClient.connected ? resolve() : mqttClient.once('connect', () => resolve()),
            ),
            client.ready,
          ]),
          `${id} connected with keys`,
          15_000,
        )
        return recorder
      },
      raw,
      rawAs: (member, options = {}) =>
        raw({
          clientId: member.identity.id,
          username: member.identity.id,
          password: createConnectPassword(member.identity, member.identity.id),
          ...options,
        }),
      async syncBroker() {
        h.clock.now = Math.floor(Date.now() / 1000)
        if (!(await broker.plugin.pull())) throw new Error('the broker did not apply the current snapshot')
      },
      async restartBroker() {
        await broker.close()
        broker = await start(port)
      },
      followRealTime() {
        clearInterval(wallClock)
        wallClock = setInterval(() => {
          h.clock.now = Math.floor(Date.now() / 1000)
        }, 200)
      },
      async close() {
        clearInterval(wallClock)
        await Promise.all([...clients].map((c) => within(c.endAsync(true), 'a client to end', 5_000).catch(() => {})))
        await broker.close()
        await h.close()
        rmSync(dir, { recursive: true, force: true })
      },
    }
    return stack
  } catch (err) {
    await h.close()
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}

/** Waits until `recorder` refused `count` messages with a security error. */
export const refusedBy = (recorder: Recorder, count = 1) =>
  waitUntil(() => recorder.errors.length >= count, `${count} security errors (have ${recorder.errors.length})`)

/** Waits until `recorder` delivered `count` messages. */
export const deliveredTo = (recorder: Recorder, count = 1) =>
  waitUntil(() => recorder.messages.length >= count, `${count} messages (have ${recorder.messages.length})`, 10_000)

/** How the broker took a QoS 1 PUBLISH: acknowledged, or refused (Aedes then closes the connection). */
export function publishOutcome(client: MqttClient, topic: string, payload: Uint8Array): Promise<'acked' | 'closed'> {
  const acked = client.publishAsync(topic, Buffer.from(payload), { qos: 1 }).then(() => 'acked' as const)
  const gone = closed(client).then(() => 'closed' as const)
  return within(Promise.race([acked, gone]), `the outcome of PUBLISH ${topic}`)
}

/**
 * An envelope for `topic` sealed with the newest key `bundle` holds for it (as whoever holds the
 * bundle can), signed with `signer`'s key and naming `kid` as its sender.
 */
export function sealWithBundle(
  bundle: OpenedKeyBundle,
  topic: string,
  options: { signer: Identity; kid: number; text: string; seq: number; suite?: SuiteId | undefined },
): Uint8Array {
  const group = bundle.groups.find((g) => topicMatches(g.filter, topic))
  const epoch = group?.epochs.at(-1)
  if (!group || !epoch) throw new Error(`no key for ${topic}`)
  const suite = options.suite ?? (group.suite as SuiteId)
  return sealEnvelope({
    topic,
    payload: new TextEncoder().encode(options.text),
    epochKey: new EpochKey({ group: group.group, epoch: epoch.epoch, suite, key: epoch.key }),
    signer: createEnvelopeSigner({ kid: options.kid, seed: options.signer.signingSeed }),
    seq: options.seq,
  })
}

/** What opening `envelope` with only the epochs in `held` (one group of a bundle) throws; undefined when it opens. */
export function openWithHeld(
  envelope: Uint8Array,
  topic: string,
  held: OpenedKeyGroup | undefined,
  writerKey: Uint8Array | undefined,
): unknown {
  try {
    openEnvelope(envelope, topic, {
      keys: {
        epochKey: (group, epoch) => {
          const key = held?.epochs.find((e) => e.epoch === epoch)?.key
          return key && new EpochKey({ group, epoch, suite: held?.suite as SuiteId, key })
        },
        writerKey: () => writerKey,
      },
    })
    return undefined
  } catch (err) {
    return err
  }
}
