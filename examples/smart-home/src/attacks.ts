// The attacker's turn. Each defence is a real attempt whose refusal is observed (a CONNACK or
// SUBACK code, a broker refusal counter, a client's security error, bytes searched), never a
// print. An attempt returns what was observed when the defence held and throws when it did not.
//
// Two attacker positions are used. A device or outsider talks to the honest broker, where the
// SMQTT plugin is the first line. A compromised broker (or anyone who can write into it) is
// played by publishing straight into Aedes, past the plugin's publish checks: whatever it
// injects must still be refused by the receiving device, end to end. The moves are exported:
// the smaller scenarios (examples/scenarios) make them too.

import { Keyring, KeyServerClient } from '@smqtt/client'
import {
  createConnectPassword,
  createEnvelopeSigner,
  cryptoBackend,
  type EnvelopeHeader,
  EpochKey,
  generateIdentity,
  isSmqttError,
  openEnvelope,
  openKeyBundle,
  parseEnvelope,
  type SuiteId,
  sealEnvelope,
} from '@smqtt/core'
import mqtt, { type IClientOptions } from 'mqtt'
import { sleep, waitUntil, within } from './_wait.js'
import type { Deployment } from './deployment.js'
import type { Device } from './devices.js'
import { topics } from './policy.js'

/** The outcome of one attack. */
export interface DefenceResult {
  readonly defence: string
  readonly held: boolean
  /** What was observed: the refusal when it held, what went wrong when it did not. */
  readonly detail: string
}

/** The house as the attacker finds it after the normal run. */
export interface Home {
  readonly deployment: Deployment
  readonly thermostat: Device
  readonly frontDoor: Device
  readonly backDoor: Device
  readonly app: Device
  readonly tablet: Device
  /** Each lock's current state, as its firmware keeps it. */
  readonly lockState: (lock: Device) => string
  /** Every plaintext payload the devices sent so far. */
  readonly plaintexts: readonly string[]
  /** Publishes a reading as the thermostat's firmware does (through @smqtt/client). */
  publishReading(celsius: number): Promise<string>
}

/** How long a device gets to refuse (or a broker to close) before the attempt counts as failed. */
const BOUND_MS = 5_000
/** How long to watch for something that must NOT arrive. */
const QUIET_MS = 300

class DefenceBroken extends Error {}

/** Fails the attempt: the defence did not hold (not a setup error). */
export function check(condition: unknown, failure: string): asserts condition {
  if (!condition) throw new DefenceBroken(failure)
}

/** Runs one attack; what `run` returns is what was observed when the defence held. */
export async function attempt(defence: string, run: () => Promise<string>): Promise<DefenceResult> {
  try {
    return { defence, held: true, detail: await run() }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    return { defence, held: false, detail: err instanceof DefenceBroken ? message : `attempt failed: ${message}` }
  }
}

/** The compromised broker's move: deliver bytes on a topic without going through the plugin's publish checks. */
export function injectIntoBroker(deployment: Deployment, topic: string, payload: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) =>
    deployment.broker.publish(
      { cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false },
      (err) => (err ? reject(err) : resolve()),
    ),
  )
}

/** How often the plugin refused something, by hook and reason (its Prometheus counter). */
export async function refusals(deployment: Deployment, hook: string, reason: string): Promise<number> {
  const metric = await deployment.plugin.metrics.refusals.get()
  return metric.values.find((v) => v.labels.hook === hook && v.labels.reason === reason)?.value ?? 0
}

/** Tries a CONNECT that must be refused; returns the CONNACK return code. */
export async function refusedConnect(deployment: Deployment, options: IClientOptions): Promise<number> {
  const attemptConnect = mqtt.connectAsync(deployment.brokerUrl, {
    ca: deployment.ca,
    reconnectPeriod: 0,
    connectTimeout: BOUND_MS,
    ...options,
  })
  let client: mqtt.MqttClient
  try {
    client = await within(attemptConnect, BOUND_MS + 1_000, 'a CONNACK')
  } catch (err) {
    const code = (err as { code?: unknown }).code
    check(typeof code === 'number', `no CONNACK refusal, but: ${(err as Error).message}`)
    return code
  }
  await client.endAsync(true)
  throw new DefenceBroken(`the broker accepted CONNECT as ${options.clientId}`)
}

/**
 * The operator revokes `device` while it is connected. Returns how long the broker took to close
 * its session, the CONNACK code of its next CONNECT, and the key server's answer to its bundle
 * request (which must be ERR_PRINCIPAL_REVOKED).
 */
export async function revokeConnected(
  deployment: Deployment,
  device: Device,
): Promise<{ closedMs: number; connack: number; keyServer: string }> {
  const session = device.client.mqttClient
  check(session.connected, `${device.id} should be connected before the revocation`)
  const closed = new Promise<void>((resolve) => session.once('close', () => resolve()))
  const revokedAt = Date.now()
  const revoked = await deployment.admin('POST', `/v1/admin/principals/${device.id}/revoke`)
  check(revoked.status === 200, `revocation failed: ${JSON.stringify(revoked.body)}`)
  await within(closed, BOUND_MS, `the broker to close the session of ${device.id}`)
  const closedMs = Date.now() - revokedAt
  const connack = await refusedConnect(deployment, {
    clientId: device.id,
    username: device.id,
    password: createConnectPassword(device.enrollment.identity, device.id),
  })
  const keyServer = await imageKeys(deployment, device).then(
    () => 'answered',
    (err: unknown) => (isSmqttError(err) ? err.code : String(err)),
  )
  check(keyServer === 'ERR_PRINCIPAL_REVOKED', `the key server ${keyServer} the bundle request of revoked ${device.id}`)
  return { closedMs, connack, keyServer }
}

/**
 * The best forgery of a device that lacks a group's key: the group and epoch of a captured
 * envelope (they travel in the clear), a made-up key, and the device's own signature.
 */
export function forgeWithMadeUpKey(device: Device, like: EnvelopeHeader, topic: string, text: string): Uint8Array {
  return sealEnvelope({
    topic,
    payload: new TextEncoder().encode(text),
    epochKey: new EpochKey({
      group: like.group,
      epoch: like.epoch,
      suite: like.suite as SuiteId,
      key: cryptoBackend.randomBytes(32),
    }),
    signer: createEnvelopeSigner({ kid: device.enrollment.kid, seed: device.enrollment.identity.signingSeed }),
    seq: 1_000_000,
  })
}

/**
 * The keys a device holds, as someone who images it (or the device itself, compromised) gets
 * them: its identity fetches its current bundle from the key server.
 */
export async function imageKeys(deployment: Deployment, device: Device): Promise<Keyring> {
  const { identity } = device.enrollment
  const signed = await new KeyServerClient({ url: deployment.keyServerUrl, ca: deployment.ca }, identity).bundle()
  const now = () => Math.floor(Date.now() / 1000)
  const keyring = new Keyring(now)
  keyring.apply(
    openKeyBundle(signed, { keyServerPublicKey: deployment.keyServerPublicKey, recipient: identity, now: now() }),
  )
  return keyring
}

/** Opens `envelope` with `keyring` alone; returns the plaintext, or the error code. */
export function tryOpen(keyring: Keyring, topic: string, envelope: Uint8Array): string {
  try {
    return new TextDecoder().decode(openEnvelope(envelope, topic, { keys: keyring }).payload)
  } catch (err) {
    return isSmqttError(err) ? err.code : String(err)
  }
}

/**
 * The device publishes `payload` raw on its own authenticated session (past @smqtt/client's
 * checks, as compromised firmware would): the broker must refuse it for `reason` and close the
 * session. The device then reboots; the caller re-subscribes what it needs.
 */
export async function refusedByBroker(
  deployment: Deployment,
  device: Device,
  topic: string,
  payload: Uint8Array,
  reason: string,
): Promise<void> {
  const before = await refusals(deployment, 'publish', reason)
  const session = device.client.mqttClient
  const closed = new Promise<void>((resolve) => session.once('close', () => resolve()))
  session.publish(topic, Buffer.from(payload), { qos: 1 }, () => {})
  await within(closed, BOUND_MS, `the broker to close ${device.id}'s session`)
  check((await refusals(deployment, 'publish', reason)) === before + 1, `the broker did not refuse it as ${reason}`)
  await device.connect()
}

/**
 * A compromised broker delivers `payload` on `topic` past the plugin's checks: `receiver` must
 * refuse it with one of `codes`, and its code must never see it. Returns the code.
 */
export async function refusedByDevice(
  deployment: Deployment,
  receiver: Device,
  topic: string,
  payload: Uint8Array,
  codes: readonly string[],
): Promise<string> {
  const since = receiver.refused.length
  const delivered = receiver.messages.length
  await injectIntoBroker(deployment, topic, payload)
  const refusal = await receiver.waitForRefusal(since, BOUND_MS, `the message injected on ${topic}`)
  check(codes.includes(refusal.code), `${receiver.id} refused it, but with ${refusal.code}: ${refusal.message}`)
  check(receiver.messages.length === delivered, `the injected message reached ${receiver.id}'s code`)
  return refusal.code
}

/** Subscribes on the device's own session; the broker must answer SUBACK 0x80 (refused). */
export async function refusedSubscribe(device: Device, filter: string): Promise<void> {
  type Grant = number | { qos?: number } | undefined
  // mqtt.js rejects a refused subscription and attaches the SUBACK to the error.
  const grants: Grant[] = await within(
    device.client
      .subscribeAsync(filter, { qos: 1 })
      .catch((err: { packet?: { granted?: Grant[] } }) => err.packet?.granted ?? []),
    BOUND_MS,
    `the SUBACK for ${filter}`,
  )
  const first = grants[0]
  const code = typeof first === 'number' ? first : first?.qos
  check(code === 0x80, `the broker granted ${device.id} the subscription ${filter}`)
}

/** The newest epoch `device` holds for `group` (0 when none). */
export const newestEpoch = (device: Device, group: number): number =>
  Math.max(0, ...(device.client.keys.groups.find((g) => g.group === group)?.epochs ?? []))

const containsAny = (haystack: Buffer, needles: readonly string[]) =>
  needles.filter((needle) => haystack.includes(Buffer.from(needle, 'utf8')))

/** The captured `unlock` for the front door, as it crossed the broker. */
function capturedUnlock(home: Home): Uint8Array {
  const routed = home.deployment.routed.find((m) => m.topic === topics.lockCommand(home.frontDoor.id))
  check(routed, 'no command for the front door was captured')
  return new Uint8Array(routed.payload)
}

/** Runs every attack in turn; `report` hears each result as soon as it is known. */
export async function runAttacks(home: Home, report: (result: DefenceResult) => void): Promise<DefenceResult[]> {
  const { deployment, thermostat, frontDoor, backDoor, app, tablet } = home
  const results: DefenceResult[] = []
  const record = async (defence: string, run: () => Promise<string>) => {
    const result = await attempt(defence, run)
    results.push(result)
    report(result)
  }

  await record('eavesdropping on the wire', async () => {
    const bytes = deployment.wire.captured()
    check(bytes.length > 0, 'the wire tap captured nothing')
    const leaked = containsAny(bytes, home.plaintexts)
    check(leaked.length === 0, `plaintext on the wire: ${leaked.join(', ')}`)
    return `${(bytes.length / 1024).toFixed(1)} KiB captured between devices and broker, none of the ${home.plaintexts.length} plaintexts in it (TLS 1.3)`
  })

  await record('a curious broker reading payloads', async () => {
    // A raw subscriber inside Aedes, past the plugin's ACL: everything on home/# as routed.
    const routed = deployment.routed
    check(routed.length > 0, 'the raw subscriber received nothing')
    for (const message of routed) {
      const leaked = containsAny(message.payload, home.plaintexts)
      check(leaked.length === 0, `plaintext routed on ${message.topic}: ${leaked.join(', ')}`)
      const isEnvelope = (() => {
        try {
          parseEnvelope(new Uint8Array(message.payload))
          return true
        } catch {
          return false
        }
      })()
      check(isEnvelope, `a payload on ${message.topic} is not an envelope`)
    }
    const sizes = routed.map((m) => m.payload.length)
    return `a raw subscriber on home/# got ${routed.length} messages, all envelopes (${Math.min(...sizes)}-${Math.max(...sizes)} bytes), no plaintext`
  })

  await record('subscribing beyond one’s rights', async () => {
    // The thermostat's own, authenticated session asks for the lock commands.
    const filter = 'home/+/lock/+/cmd'
    await refusedSubscribe(thermostat, filter)
    return `${thermostat.id} subscribing to ${filter}: SUBACK 0x80 (refused by the broker ACL)`
  })

  await record('an unenrolled client', async () => {
    const mallory = generateIdentity('mallory')
    const asHerself = await refusedConnect(deployment, {
      clientId: 'mallory',
      username: 'mallory',
      password: createConnectPassword(mallory, 'mallory'),
    })
    // Posing as the front door, proving possession of a key that is not the front door's.
    const posing = await refusedConnect(deployment, {
      clientId: frontDoor.id,
      username: frontDoor.id,
      password: createConnectPassword(generateIdentity(frontDoor.id), frontDoor.id),
    })
    check(frontDoor.client.connected, 'the real front door lost its session to the impostor')
    return `CONNECT refused: as mallory (CONNACK ${asHerself}), posing as ${frontDoor.id} (CONNACK ${posing})`
  })

  await record('the thermostat sends "unlock"', async () => {
    // A compromised thermostat: it has its own keys and session, not the lock-command key.
    // Its best forgery: a lock-command header (group and epoch are visible on the wire),
    // a made-up key, and its own signature.
    const topic = topics.lockCommand(frontDoor.id)
    const seen = parseEnvelope(capturedUnlock(home)).header
    const forged = forgeWithMadeUpKey(thermostat, seen, topic, JSON.stringify({ command: 'unlock' }))
    const before = { door: home.lockState(frontDoor), messages: frontDoor.messages.length }

    // 1. Through the honest broker, on the thermostat's own authenticated session (it then
    //    reboots, and the story goes on).
    await refusedByBroker(deployment, thermostat, topic, forged, 'acl-denied')
    await sleep(QUIET_MS)
    check(frontDoor.messages.length === before.messages, 'the front door received the forged command')

    // 2. Forced through by a compromised broker: the lock itself must refuse it.
    const code = await refusedByDevice(deployment, frontDoor, topic, forged, ['ERR_UNKNOWN_SENDER', 'ERR_NO_KEY_GROUP'])
    check(home.lockState(frontDoor) === before.door, 'the front door changed state')

    return `broker refused the PUBLISH (acl-denied) and closed the session; forced through, the lock refused it (${code}); door stays ${home.lockState(frontDoor)}`
  })

  await record('a replayed "unlock"', async () => {
    // The homeowner's real unlock, captured earlier; the door has been locked since.
    const topic = topics.lockCommand(frontDoor.id)
    check(home.lockState(frontDoor) === 'locked', 'the front door should be locked before the replay')
    await refusedByDevice(deployment, frontDoor, topic, capturedUnlock(home), ['ERR_REPLAY'])
    check(home.lockState(frontDoor) === 'locked', 'the replay unlocked the front door')
    return `the front door refused it (ERR_REPLAY) and stays locked`
  })

  await record('a message moved to another topic', async () => {
    // The front door's unlock, delivered to the back door: same key group, same key, and the
    // back door never saw it (so its replay window cannot be what stops it).
    const topic = topics.lockCommand(backDoor.id)
    const code = await refusedByDevice(deployment, backDoor, topic, capturedUnlock(home), [
      'ERR_ENVELOPE_SIGNATURE_INVALID',
    ])
    check(home.lockState(backDoor) === 'locked', 'the back door unlocked')
    return `the front door's "unlock" delivered on ${backDoor.id}'s command topic: refused (${code}, the topic is signed), back door stays locked`
  })

  // The old tablet is stolen. The thief has everything it held: its identity and its latest key
  // bundle (fetched here with the tablet's identity, as the tablet itself does).
  const imagedKeys = await imageKeys(deployment, tablet).catch(() => undefined)
  const oldEpoch = newestEpoch(tablet, 1)

  await record('a revoked app keeps its session', async () => {
    const { closedMs, connack, keyServer } = await revokeConnected(deployment, tablet)
    return `disconnected ${closedMs} ms after the revoke call; CONNECT again: CONNACK ${connack}; key server: ${keyServer}`
  })

  await record('a revoked app reads new messages', async () => {
    check(imagedKeys !== undefined, 'the thief could not image the tablet bundle before revocation')
    // Revocation re-keyed every group the tablet could read; the thermostat gets the new
    // epoch by push. Then it publishes as usual.
    await waitUntil(() => newestEpoch(thermostat, 1) > oldEpoch, BOUND_MS, 'the thermostat to receive the new epoch')
    const tabletBefore = tablet.messages.length
    const text = await home.publishReading(20.9)
    const delivered = await app.waitForMessage((m) => m.text === text, BOUND_MS, 'the reading after re-keying')
    check(
      delivered.info.encrypted && delivered.info.epoch > oldEpoch,
      'the new reading was not sealed under a new epoch',
    )
    const newEpoch = delivered.info.epoch
    check(tablet.messages.length === tabletBefore, 'the revoked tablet received the new reading')

    // The thief tries the captured readings with the imaged keys: the old ones open (they were
    // the tablet's to read), which shows the keys work; the new one must not.
    const readings = deployment.routed.filter((m) => m.topic === topics.temperature(thermostat.id))
    const [first, latest] = [readings[0], readings.at(-1)]
    check(first && latest && first !== latest, 'the readings were not captured')
    const withImagedKeys = (message: { topic: string; payload: Buffer }) =>
      tryOpen(imagedKeys, message.topic, new Uint8Array(message.payload))
    const old = withImagedKeys(first)
    check(old === home.plaintexts[0], `control failed: the imaged keys do not open an old reading (${old})`)
    const outcome = withImagedKeys(latest)
    check(outcome === 'ERR_UNKNOWN_EPOCH', `the stolen keys on the new reading: ${outcome}`)
    return `group re-keyed (epoch ${oldEpoch} → ${newEpoch}); the homeowner app reads the next reading; the tablet's imaged keys still open old readings, not this one (${outcome})`
  })

  return results
}
