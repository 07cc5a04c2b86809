// What every scenario shares: the smart-home example's real deployment (key server, Aedes with
// the SMQTT plugin over TLS, devices enrolled with one-time tokens), run with the scenario's own
// policy, plus the attacker's moves (most of them the smart-home example's own, re-exported here).
// Each defence is a real attempt whose refusal is observed (a SUBACK or CONNACK code, the
// plugin's refusal counter, a device's security error), returned as data and printed as one line.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ClientStorage, Enrollment, Keyring } from '@smqtt/client'
import { createEnvelopeSigner, type EnvelopeHeader, type Identity, parseEnvelope, sealEnvelope } from '@smqtt/core'
import { attempt, check, type DefenceResult } from '@smqtt/example-smart-home/attacks'
import { type Deployment, type DeploymentOptions, startDeployment } from '@smqtt/example-smart-home/deployment'
import { connectDevice, type Device, enrollDevice, type Received } from '@smqtt/example-smart-home/devices'

export {
  check,
  type DefenceResult,
  forgeWithMadeUpKey,
  imageKeys,
  newestEpoch,
  refusedByBroker,
  refusedByDevice,
  refusedSubscribe,
  revokeConnected,
  tryOpen,
} from '@smqtt/example-smart-home/attacks'
export type { Device } from '@smqtt/example-smart-home/devices'

/** How long a device gets to refuse (or the broker to close) before the attempt counts as failed. */
export const BOUND_MS = 5_000

export interface Principal {
  readonly id: string
  readonly roles: readonly string[]
}

/** The part of a policy document the output shows. */
export interface ScenarioPolicy {
  readonly groups: readonly { readonly name: string; readonly filter: string }[]
}

export interface ScenarioOptions {
  /** Receives the story, one line at a time (default: silent). */
  readonly log?: (line: string) => void
}

type Enrolled = { enrollment: Enrollment<Identity>; storage: ClientStorage }

/** The running deployment as a scenario uses it. */
export interface Stage {
  readonly deployment: Deployment
  log(line: string): void
  /** The operator issues a one-time token; the device makes its keys and enrolls. It stays offline. */
  enroll(principal: Principal): Promise<Enrolled>
  /** Brings an enrolled device online. */
  connect(enrolled: Enrolled): Promise<Device>
  /** Enrolls and connects. */
  join(principal: Principal): Promise<Device>
  /** Publishes through @smqtt/client, as the device's firmware does. */
  send(device: Device, topic: string, text: string): Promise<void>
  /** Waits for `device` to deliver `text` on `topic` to its code, and shows who verifiably sent it. */
  receive(device: Device, topic: string, text: string): Promise<Received>
  /** Tries one attack; its outcome is returned by the scenario and printed at once. */
  defend(defence: string, run: () => Promise<string>): Promise<void>
}

const bytes = (text: string) => new TextEncoder().encode(text)

/**
 * Runs `story` against a fresh deployment in a temporary folder, closes everything, and returns
 * one result per defence. Throws only when the deployment itself cannot be set up or run.
 */
export async function runStage(
  title: string,
  setup: DeploymentOptions & { readonly policy: ScenarioPolicy },
  options: ScenarioOptions,
  story: (stage: Stage) => Promise<void>,
): Promise<DefenceResult[]> {
  const log = options.log ?? (() => {})
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-scenario-'))
  const devices: Device[] = []
  const results: DefenceResult[] = []
  let deployment: Deployment | undefined
  try {
    log(`SMQTT ${title}: everything on loopback, state in ${dir}`)
    deployment = await startDeployment(dir, setup)
    const d = deployment
    log(`  key server  ${d.keyServerUrl}  HTTPS, SQLite, development PKI`)
    log(`  broker      ${d.brokerUrl}  Aedes over TLS 1.3 with the SMQTT plugin`)
    log(`  key groups  ${setup.policy.groups.map((g) => `${g.name} (${g.filter})`).join(', ')}`)
    const stage: Stage = {
      deployment: d,
      log,
      async enroll(principal) {
        const enrolled = await enrollDevice(d, principal, dir)
        log(`  enrolled ${principal.id.padEnd(16)} kid ${enrolled.enrollment.kid}  role ${principal.roles.join(', ')}`)
        return enrolled
      },
      async connect(enrolled) {
        const device = await connectDevice(d, enrolled)
        devices.push(device)
        return device
      },
      async join(principal) {
        return stage.connect(await stage.enroll(principal))
      },
      async send(device, topic, text) {
        log(`  ${device.id.padEnd(16)} → ${topic}  ${text}`)
        await device.client.publishAsync(topic, text, { qos: 1 })
      },
      async receive(device, topic, text) {
        const received = await device.waitForMessage((m) => m.topic === topic && m.text === text, BOUND_MS, text)
        const { info } = received
        const from = info.encrypted ? `${info.sender}, group ${info.group} epoch ${info.epoch}` : 'unverified'
        log(`  ${device.id.padEnd(16)} ← ${text}  (verified: ${from})`)
        return received
      },
      async defend(defence, run) {
        const result = await attempt(defence, run)
        results.push(result)
        log(`  ${result.held ? '✔ held  ' : '✘ FAILED'}  ${result.defence}: ${result.detail}`)
      },
    }
    await story(stage)
    if (!results.every((r) => r.held) && d.logs.length > 0) {
      log('  warnings logged by the key server and broker:')
      for (const line of d.logs) log(`    ${line}`)
    }
    return results
  } finally {
    for (const device of devices) await device.close()
    await deployment?.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The latest message the broker routed on `topic`, as a compromised broker keeps it. */
export function captured(deployment: Deployment, topic: string): Uint8Array {
  const routed = deployment.routed.filter((m) => m.topic === topic).at(-1)
  check(routed, `nothing was captured on ${topic}`)
  return new Uint8Array(routed.payload)
}

export const headerOf = (envelope: Uint8Array): EnvelopeHeader => parseEnvelope(envelope).header

/**
 * An envelope sealed with keys from `keyring` (a group key `device` really holds) and signed
 * with `device`'s key, naming `claimedKid` as its sender (default: honestly, its own).
 */
export function sealWithKeys(
  device: Device,
  keyring: Keyring,
  topic: string,
  text: string,
  claimedKid = device.enrollment.kid,
): Uint8Array {
  const { epochKey } = keyring.sealingKey(topic, device.enrollment.kid)
  return sealEnvelope({
    topic,
    payload: bytes(text),
    epochKey,
    signer: createEnvelopeSigner({ kid: claimedKid, seed: device.enrollment.identity.signingSeed }),
    seq: 2_000_000,
  })
}
