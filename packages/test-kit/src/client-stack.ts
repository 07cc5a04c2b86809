// The client stack for tests (`@smqtt/test-kit/client`), all real: key server over HTTPS (SQLite,
// dev PKI), a plain Aedes broker over TLS with the same PKI, mqtt.js clients. No mocks, and no
// vitest here, so benches and scripts outside the runner can import it (`useStack` is in
// `@smqtt/test-kit/use-stack`).
import { join } from 'node:path'
import { createServer, type Server } from 'node:tls'
import {
  type ClientStorage,
  type Enrollment,
  type EnrollOptions,
  enroll,
  type MessageInfo,
  memoryStorage,
  type SecureClient,
  type SecurityErrorEvent,
  secure,
} from '@smqtt/client'
import { EpochKey, type Identity, openKeyBundle, parseEnvelope, type SuiteId } from '@smqtt/core'
import { ensureDevPki } from '@smqtt/keyserver'
import { Aedes } from 'aedes'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { type Harness, SMART_HOME_POLICY, startHarness } from './keyserver-harness.js'

export interface Stack {
  readonly h: Harness
  readonly brokerUrl: string
  readonly ca: string
  /** Enrolls `id` through the client's own enroll() with a fresh operator token. */
  enroll(
    id: string,
    roles: string[],
    storage?: ClientStorage,
  ): Promise<Enrollment<Identity> & { storage: ClientStorage }>
  /** A connected secure client with keys loaded, recording what it receives. */
  client(enrollment: Enrollment & { storage: ClientStorage }, options?: ClientOptions): Promise<Recorder>
  /** A raw mqtt.js client on the same broker (or `url`): the attacker's, or a wire tap. Ended with the stack. */
  raw(url?: string, options?: IClientOptions): Promise<MqttClient>
  /** Publishes the principal's current bundle on its control topic, as the key server's push would. */
  push(identity: Identity): Promise<void>
  /** Keeps the key server's clock on real time. */
  syncClock(): void
  closeClients(): Promise<void>
  close(): Promise<void>
}

export interface ClientOptions {
  readonly url?: string
  readonly storage?: ClientStorage
  readonly mqtt?: IClientOptions
}

export interface Received {
  readonly topic: string
  readonly text: string
  readonly payload: Uint8Array
  readonly info: MessageInfo
}

/** A secure client plus everything it delivered or refused. */
export interface Recorder {
  readonly client: SecureClient
  readonly messages: Received[]
  readonly errors: SecurityErrorEvent[]
  waitForMessages(count: number, timeoutMs?: number): Promise<Received[]>
  waitForErrors(count: number, timeoutMs?: number): Promise<SecurityErrorEvent[]>
}

/** Enrolls `id` through the client's own enroll(), with a fresh one-time token from the harness's operator. */
export async function enrollThrough(
  h: Harness,
  id: string,
  roles: string[],
  storage: ClientStorage = memoryStorage(),
  extra: Pick<EnrollOptions, 'clientCertificate'> = {},
): Promise<Enrollment<Identity> & { storage: ClientStorage }> {
  const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
  if (token.status !== 201) throw new Error(`token: ${token.text}`)
  const enrollment = await enroll({
    keyServerUrl: h.url,
    ca: h.caPem,
    token: (token.body as { token: string }).token,
    id,
    storage,
    ...extra,
  })
  return { ...enrollment, identity: rawIdentity(enrollment.identity), storage }
}

/** The identity of an enrollment into a storage without CryptoKeys (Node): raw keys, which tests sign with directly. */
function rawIdentity(identity: Enrollment['identity']): Identity {
  if (!('signingSeed' in identity)) throw new Error('expected an identity with raw keys')
  return identity
}

export const now = () => Math.floor(Date.now() / 1000)

/** Polls until `check` holds, or fails after `timeoutMs`. */
export async function waitUntil(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Rejects after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** Records the envelopes seen on the wire for `filter` (payload bytes, parsed header). */
export async function tap(raw: MqttClient, filter: string) {
  const seen: { topic: string; bytes: Uint8Array; seq: number; epoch: number; retain: boolean }[] = []
  raw.on('message', (topic, payload) => {
    try {
      const { header } = parseEnvelope(new Uint8Array(payload))
      seen.push({ topic, bytes: new Uint8Array(payload), seq: header.seq, epoch: header.epoch, retain: header.retain })
    } catch {
      // not an envelope (control messages are JSON)
    }
  })
  await within(raw.subscribeAsync(filter, { qos: 1 }), 5_000, 'tap subscribe')
  return seen
}

/** The newest key of `group` as `identity` holds it (a reader or writer of the group): what an attacker who is a member has. */
export async function currentGroupKey(stack: Stack, identity: Identity, group: number): Promise<EpochKey> {
  const response = await stack.h.device(identity, 'GET', '/v1/bundle')
  const bundle = openKeyBundle((response.body as { bundle: unknown }).bundle, {
    keyServerPublicKey: stack.h.keyServer.publicKey,
    recipient: identity,
    now: now(),
  })
  const held = bundle.groups.find((g) => g.group === group)
  const epoch = held?.epochs.at(-1)
  if (!held || !epoch) throw new Error(`no group ${group} key`)
  return new EpochKey({ group, epoch: epoch.epoch, suite: held.suite as SuiteId, key: epoch.key })
}

export async function startStack(harnessOptions: Parameters<typeof startHarness>[0] = {}): Promise<Stack> {
  const h = await startHarness(harnessOptions)
  h.clock.now = now()
  const policy = await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  if (policy.status !== 200) throw new Error(`policy: ${policy.text}`)
  const pki = await ensureDevPki(join(h.dir, 'pki')) // loads the files the harness made
  const broker = await Aedes.createBroker()
  const server: Server = createServer({ key: pki.serverKeyPem, cert: pki.serverCertPem }, broker.handle)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('no broker address')
  const brokerUrl = `mqtts://127.0.0.1:${address.port}`
  const mqttClients: MqttClient[] = []
  const secureClients: SecureClient[] = []
  let closed = false

  const connect = (url: string, extra: IClientOptions = {}) => {
    const client = mqtt.connect(url, {
      ...(url.startsWith('mqtts') ? { ca: h.caPem } : {}),
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ...extra,
    })
    mqttClients.push(client)
    return client
  }

  const stack: Stack = {
    h,
    brokerUrl,
    ca: h.caPem,
    enroll: (id, roles, storage) => enrollThrough(h, id, roles, storage),
    async client(enrollment, clientOptions = {}) {
      const url = clientOptions.url ?? brokerUrl
      const client = secure(connect(url, { clientId: enrollment.identity.id, ...clientOptions.mqtt }), {
        identity: enrollment.identity,
        kid: enrollment.kid,
        keyServer: { url: h.url, ca: h.caPem, keyServerPublicKey: enrollment.keyServerPublicKey },
        storage: clientOptions.storage ?? enrollment.storage,
      })
      secureClients.push(client)
      const messages: Received[] = []
      const errors: SecurityErrorEvent[] = []
      client.on('message', (topic, payload, info) =>
        messages.push({ topic, payload, info, text: new TextDecoder().decode(payload) }),
      )
      client.on('securityError', (event) => errors.push(event))
      client.on('error', () => {})
      client.on('keyServerError', () => {})
      const connected = client.connected
        ? Promise.resolve()
        : new Promise<void>((resolve) => client.once('connect', () => resolve()))
      await within(Promise.all([connected, client.ready]), 10_000, `${enrollment.identity.id} connect + keys`)
      return {
        client,
        messages,
        errors,
        async waitForMessages(count, timeoutMs = 5_000) {
          await waitUntil(() => messages.length >= count, `${count} messages (have ${messages.length})`, timeoutMs)
          return messages
        },
        async waitForErrors(count, timeoutMs = 5_000) {
          await waitUntil(() => errors.length >= count, `${count} security errors (have ${errors.length})`, timeoutMs)
          return errors
        },
      }
    },
    async raw(url = brokerUrl, options = {}) {
      const client = connect(url, options)
      await within(
        new Promise<void>((resolve, reject) => {
          client.once('connect', () => resolve())
          client.once('error', reject)
        }),
        5_000,
        'raw connect',
      )
      return client
    },
    async push(identity) {
      const response = await h.device(identity, 'GET', '/v1/bundle')
      if (response.status !== 200) throw new Error(`bundle: ${response.text}`)
      const bundle = (response.body as { bundle: unknown }).bundle
      // Check it opens, so a test fails here rather than by a silently ignored push.
      openKeyBundle(bundle, { keyServerPublicKey: h.keyServer.publicKey, recipient: identity, now: now() })
      const pusher = await stack.raw()
      await pusher.publishAsync(`smqtt/control/principals/${identity.id}`, JSON.stringify({ type: 'bundle', bundle }), {
        qos: 1,
      })
      await pusher.endAsync()
    },
    syncClock() {
      h.clock.now = now()
    },
    async closeClients() {
      await Promise.all(secureClients.splice(0).map((c) => within(c.endAsync(true), 5_000, 'end secure client')))
      await Promise.all(mqttClients.splice(0).map((c) => within(c.endAsync(true), 5_000, 'end mqtt client')))
    },
    async close() {
      if (closed) return
      closed = true
      await stack.closeClients()
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await h.close()
    },
  }
  return stack
}
