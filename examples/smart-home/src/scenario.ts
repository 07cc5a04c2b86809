// The smart-home scenario, top to bottom: start the infrastructure, set the policy, enroll the
// devices with one-time tokens, let the house run (the thermostat reports, the homeowner
// unlocks and locks the front door), then let an attacker try each defence in turn.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type DefenceResult, type Home, runAttacks } from './attacks.js'
import { type Deployment, startDeployment } from './deployment.js'
import { connectDevice, type Device, enrollDevice } from './devices.js'
import { PRINCIPALS, SMART_HOME_POLICY, topics } from './policy.js'
import {
  AUTOMATION,
  type PythonAutomation,
  pythonAutomationAvailable,
  startPythonAutomation,
} from './python-automation.js'

export type { DefenceResult } from './attacks.js'

export interface ScenarioOptions {
  /** Receives the story, one line at a time (default: silent). */
  readonly log?: (line: string) => void
}

const BOUND_MS = 5_000

/** A verified sender can still send nonsense: the firmware ignores what it does not understand. */
function parseCommand(payload: Uint8Array): unknown {
  try {
    return (JSON.parse(new TextDecoder().decode(payload)) as { command?: unknown } | null)?.command
  } catch {
    return undefined
  }
}

/**
 * Runs the whole scenario on loopback in a temporary folder, closes everything, and returns
 * one result per defence. Throws only when the house itself cannot be set up or run.
 *
 * @example
 * ```ts
 * const results = await runScenario({ log: console.log })
 * process.exitCode = results.every((r) => r.held) ? 0 : 1
 * ```
 */
export async function runScenario(options: ScenarioOptions = {}): Promise<DefenceResult[]> {
  const log = options.log ?? (() => {})
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-smart-home-'))
  const devices: Device[] = []
  let deployment: Deployment | undefined
  let automation: PythonAutomation | undefined
  try {
    log(`SMQTT smart home: everything on loopback, state in ${dir}`)
    deployment = await startDeployment(dir)
    const d = deployment
    log('')
    log('Infrastructure')
    log(`  key server  ${d.keyServerUrl}  HTTPS, SQLite, development PKI`)
    log(`  broker      ${d.brokerUrl}  Aedes over TLS 1.3 with the SMQTT plugin (devices reach it through a wire tap)`)
    log(`  policy      ${SMART_HOME_POLICY.groups.map((g) => `${g.name} (${g.filter})`).join(', ')}`)

    log('')
    log('Enrollment: the operator issues a one-time token per device; each device makes its own keys')
    const connect = async (principal: (typeof PRINCIPALS)[keyof typeof PRINCIPALS]) => {
      const enrolled = await enrollDevice(d, principal, dir)
      log(`  ${principal.id.padEnd(16)} kid ${enrolled.enrollment.kid}  role ${principal.roles.join(', ')}`)
      const device = await connectDevice(d, enrolled)
      devices.push(device)
      return device
    }
    const thermostat = await connect(PRINCIPALS.thermostat)
    const frontDoor = await connect(PRINCIPALS.frontDoor)
    const backDoor = await connect(PRINCIPALS.backDoor)
    const app = await connect(PRINCIPALS.app)
    const tablet = await connect(PRINCIPALS.tablet)
    // The automation, in Python (python/automation.py): reads the thermostats, locks the back door
    // when the hall gets warm. Without Python, PyNaCl and paho-mqtt the house runs without it.
    if (pythonAutomationAvailable()) {
      automation = await startPythonAutomation(d, dir, {
        subscribe: ['home/+/thermostat/#'],
        lockCommandTopic: topics.lockCommand(backDoor.id),
        warmAbove: 21.6,
      })
      const kid = automation.events.find((e) => e.event === 'enrolled')?.kid
      log(`  ${AUTOMATION.id.padEnd(16)} kid ${kid}  role ${AUTOMATION.roles.join(', ')} (Python, paho-mqtt)`)
    } else log(`  ${AUTOMATION.id.padEnd(16)} skipped: no Python 3.11+ with PyNaCl and paho-mqtt`)

    const plaintexts: string[] = []
    const send = async (device: Device, topic: string, text: string) => {
      plaintexts.push(text)
      log(`  ${device.id.padEnd(16)} → ${topic}  ${text}`)
      await device.client.publishAsync(topic, text, { qos: 1 })
    }

    // The lock firmware: obey lock/unlock from its command topic, report the new state.
    const lockStates = new Map<Device, string>()
    for (const lock of [frontDoor, backDoor]) {
      lockStates.set(lock, 'locked')
      lock.client.on('message', (topic, payload, info) => {
        if (topic !== topics.lockCommand(lock.id)) return
        const command = parseCommand(payload)
        if (command !== 'lock' && command !== 'unlock') return
        const state = command === 'lock' ? 'locked' : 'unlocked'
        lockStates.set(lock, state)
        log(`  ${lock.id.padEnd(16)} ← ${command} from ${info.sender}: ${state}`)
        send(lock, topics.lockState(lock.id), JSON.stringify({ state })).catch(() => {})
      })
      await lock.client.subscribeAsync(topics.lockCommand(lock.id), { qos: 1 })
    }
    await app.client.subscribeAsync(['home/+/thermostat/#', 'home/+/lock/+/state'], { qos: 1 })
    await tablet.client.subscribeAsync('home/+/thermostat/#', { qos: 1 })

    const publishReading = async (celsius: number) => {
      const text = JSON.stringify({ celsius })
      await send(thermostat, topics.temperature(thermostat.id), text)
      return text
    }
    const appReceives = async (topic: string, text: string) => {
      const { info } = await app.waitForMessage((m) => m.topic === topic && m.text === text, BOUND_MS, text)
      const from = info.encrypted ? `${info.sender}, group ${info.group} epoch ${info.epoch}` : 'unverified'
      log(`  ${app.id.padEnd(16)} ← ${text}  (verified: ${from})`)
    }

    log('')
    log('Normal operation')
    for (const celsius of [21.5, 21.7, 21.6]) {
      await appReceives(topics.temperature(thermostat.id), await publishReading(celsius))
    }
    if (automation) {
      const command = await automation.waitFor((e) => e.event === 'command', BOUND_MS, 'the automation to act')
      log(`  ${AUTOMATION.id.padEnd(16)} acted on a reading: ${command.because}, sent "lock" to ${command.topic}`)
      await backDoor.waitForMessage(
        (m) => m.topic === topics.lockCommand(backDoor.id) && m.info.sender === AUTOMATION.id,
        BOUND_MS,
        'the automation’s lock command',
      )
    }
    for (const command of ['unlock', 'lock'] as const) {
      await send(app, topics.lockCommand(frontDoor.id), JSON.stringify({ command }))
      await appReceives(
        topics.lockState(frontDoor.id),
        JSON.stringify({ state: command === 'lock' ? 'locked' : 'unlocked' }),
      )
    }
    await tablet.waitForMessage((m) => m.text === JSON.stringify({ celsius: 21.6 }), BOUND_MS, 'the readings')
    log(`  ${tablet.id.padEnd(16)} ← ${tablet.messages.length} readings (it is an app too, for now)`)

    log('')
    log('Attacks')
    const home: Home = {
      deployment: d,
      thermostat,
      frontDoor,
      backDoor,
      app,
      tablet,
      lockState: (lock) => lockStates.get(lock) ?? 'unknown',
      plaintexts,
      publishReading,
    }
    const results = await runAttacks(home, (result) =>
      log(`  ${result.held ? '✔ held  ' : '✘ FAILED'}  ${result.defence}: ${result.detail}`),
    )
    if (!results.every((r) => r.held) && d.logs.length > 0) {
      log('')
      log('Warnings logged by the key server and broker:')
      for (const line of d.logs) log(`  ${line}`)
    }
    return results
  } finally {
    await automation?.close()
    for (const device of devices) await device.close()
    await deployment?.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
