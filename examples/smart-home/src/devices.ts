// The devices: each enrolls once with a one-time token (the client's enroll(), identity made on
// the device, private keys never leave it), keeps its state in its own folder, and talks to the
// broker through @smqtt/client, so its code sees plaintext and the wire sees envelopes.
import { join } from 'node:path'
import {
  type ClientStorage,
  type Enrollment,
  enroll,
  fileStorage,
  loadEnrollment,
  type MessageInfo,
  type SecureClient,
  type SecurityErrorEvent,
  secureConnectAsync,
} from '@smqtt/client'
import { constantTimeEqual, type Identity } from '@smqtt/core'
import { waitUntil } from './_wait.js'
import type { Deployment } from './deployment.js'

export interface Received {
  readonly topic: string
  readonly text: string
  readonly info: MessageInfo
}

/** A connected device and everything it delivered to its code or refused. */
export interface Device {
  readonly id: string
  readonly enrollment: Enrollment<Identity>
  /** The live client; replaced when the device reconnects. */
  readonly client: SecureClient
  /** Messages that passed every check and reached the device's code. */
  readonly messages: Received[]
  /** Messages the client refused (they never reached the device's code). */
  readonly refused: SecurityErrorEvent[]
  /** Connects (again) from what the device stored at enrollment. */
  connect(): Promise<void>
  waitForMessage(match: (message: Received) => boolean, ms: number, what: string): Promise<Received>
  /** The first refusal after the first `since` ones. */
  waitForRefusal(since: number, ms: number, what: string): Promise<SecurityErrorEvent>
  close(): Promise<void>
}

/**
 * The operator issues a one-time token bound to `id` and `roles`; the device redeems it and
 * pins the key server's public key, which must be the one the operator knows.
 */
export async function enrollDevice(
  deployment: Deployment,
  principal: { readonly id: string; readonly roles: readonly string[] },
  dir: string,
): Promise<{ enrollment: Enrollment<Identity>; storage: ClientStorage }> {
  const issued = await deployment.admin('POST', '/v1/admin/enrollment-tokens', {
    principalId: principal.id,
    roles: principal.roles,
  })
  if (issued.status !== 201) throw new Error(`token for ${principal.id} refused: ${JSON.stringify(issued.body)}`)
  const storage = fileStorage(join(dir, 'devices', principal.id))
  const enrollment = await enroll({
    keyServerUrl: deployment.keyServerUrl,
    ca: deployment.ca,
    token: (issued.body as { token: string }).token,
    id: principal.id,
    storage,
    // Not passed as `keyServerPublicKey`: enroll() then does not store the pin and loadEnrollment()
    // fails later. The key pinned on first use is compared with the operator's instead.
  })
  if (!constantTimeEqual(enrollment.keyServerPublicKey, deployment.keyServerPublicKey))
    throw new Error(`${principal.id} pinned a key server key that is not the operator's`)
  return { enrollment, storage }
}

/** Connects an enrolled device to the broker, with keys loaded, recording what it receives. */
export async function connectDevice(
  deployment: Deployment,
  enrolled: { enrollment: Enrollment<Identity>; storage: ClientStorage },
): Promise<Device> {
  const { enrollment, storage } = enrolled
  // The broker learns of a new principal from the key server's next snapshot push (it follows
  // every change within ~100 ms); a CONNECT before that is refused like any stranger's.
  await waitUntil(
    () => deployment.plugin.snapshot?.principals.some((p) => p.id === enrollment.identity.id) === true,
    5_000,
    `the broker to learn about ${enrollment.identity.id}`,
  )
  const messages: Received[] = []
  const refused: SecurityErrorEvent[] = []
  let client: SecureClient | undefined

  const connect = async () => {
    await client?.endAsync(true).catch(() => {})
    // A restart in miniature: everything comes back from the device's own storage.
    const stored = await loadEnrollment(storage)
    if (!stored) throw new Error(`${enrollment.identity.id} has no stored enrollment`)
    const next = await secureConnectAsync(deployment.brokerUrl, {
      identity: stored.identity,
      kid: stored.kid,
      storage,
      keyServer: { url: stored.keyServerUrl, ca: deployment.ca, keyServerPublicKey: stored.keyServerPublicKey },
      // No automatic reconnect: the scenario decides when a device comes back, and stays bounded.
      mqtt: { ca: deployment.ca, reconnectPeriod: 0, connectTimeout: 5_000 },
      timeoutMs: 10_000,
    })
    next.on('message', (topic, payload, info) =>
      messages.push({ topic, info, text: new TextDecoder().decode(payload) }),
    )
    next.on('securityError', (event) => refused.push(event))
    next.on('error', () => {}) // a refused publish closes the connection; the scenario observes that
    next.on('keyServerError', () => {})
    client = next
  }
  await connect()

  return {
    id: enrollment.identity.id,
    enrollment,
    get client() {
      return client as SecureClient
    },
    messages,
    refused,
    connect,
    async waitForMessage(match, ms, what) {
      await waitUntil(() => messages.some(match), ms, `${enrollment.identity.id}: ${what}`)
      return messages.find(match) as Received
    },
    async waitForRefusal(since, ms, what) {
      await waitUntil(() => refused.length > since, ms, `${enrollment.identity.id} to refuse ${what}`)
      return refused[since] as SecurityErrorEvent
    },
    async close() {
      await client?.endAsync(true).catch(() => {})
    },
  }
}
