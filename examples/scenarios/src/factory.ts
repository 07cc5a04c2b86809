// Smart factory: line sensors publish on their own line's topics only, the line controller reads
// them and commands the line's press. A compromised sensor can neither write on another line,
// nor pass for another sensor, nor command the press.

import { commands, reports } from './policy.js'
import {
  captured,
  check,
  type DefenceResult,
  type Device,
  forgeWithMadeUpKey,
  headerOf,
  imageKeys,
  refusedByBroker,
  refusedByDevice,
  runStage,
  type ScenarioOptions,
  sealWithKeys,
} from './stage.js'

// A sensor writes under its own name, on its own line; the line's controller commands its actuators.
const lineRules = (line: string) => [
  ...reports(`factory/${line}/sensor`, `${line}-sensor`, `${line}-controller`),
  ...commands(`factory/${line}/actuator`, `${line}-controller`, `${line}-actuator`),
]

export const FACTORY_POLICY = {
  version: 1,
  rules: [...lineRules('line-1'), ...lineRules('line-2')],
  groups: [
    { id: 1, name: 'line-1-sensors', filter: 'factory/line-1/sensor/#' },
    { id: 2, name: 'line-1-commands', filter: 'factory/line-1/actuator/+/cmd' },
    { id: 3, name: 'line-2-sensors', filter: 'factory/line-2/sensor/#' },
    { id: 4, name: 'line-2-commands', filter: 'factory/line-2/actuator/+/cmd' },
  ],
  plaintext: [],
} as const

const PRINCIPALS = {
  // Will be compromised.
  sensor1a: { id: 'sensor-1a', roles: ['line-1-sensor'] },
  sensor1b: { id: 'sensor-1b', roles: ['line-1-sensor'] },
  controller1: { id: 'controller-1', roles: ['line-1-controller'] },
  press1: { id: 'press-1', roles: ['line-1-actuator'] },
  sensor2a: { id: 'sensor-2a', roles: ['line-2-sensor'] },
  controller2: { id: 'controller-2', roles: ['line-2-controller'] },
} as const

const reading = (line: string, sensor: string) => `factory/${line}/sensor/${sensor}/temperature`
const command = (line: string, actuator: string) => `factory/${line}/actuator/${actuator}/cmd`

export function runFactory(options: ScenarioOptions = {}): Promise<DefenceResult[]> {
  return runStage('factory', { policy: FACTORY_POLICY, watch: 'factory/#' }, options, async (stage) => {
    const { deployment, log } = stage
    const sensor1a = await stage.join(PRINCIPALS.sensor1a)
    const sensor1b = await stage.join(PRINCIPALS.sensor1b)
    const controller1 = await stage.join(PRINCIPALS.controller1)
    const press1 = await stage.join(PRINCIPALS.press1)
    const sensor2a = await stage.join(PRINCIPALS.sensor2a)
    const controller2 = await stage.join(PRINCIPALS.controller2)
    await controller1.client.subscribeAsync('factory/line-1/sensor/#', { qos: 1 })
    await controller2.client.subscribeAsync('factory/line-2/sensor/#', { qos: 1 })

    // The press firmware: obeys stop/start on its command topic.
    let press = 'running'
    press1.client.on('message', (topic, payload) => {
      const text = new TextDecoder().decode(payload)
      if (topic !== command('line-1', press1.id)) return
      if (text === 'stop' || text === 'start') press = text === 'stop' ? 'stopped' : 'running'
      log(`  ${press1.id.padEnd(16)} ← ${text}: ${press}`)
    })
    await press1.client.subscribeAsync(command('line-1', press1.id), { qos: 1 })

    log('  the lines at work')
    const report = async (sensor: Device, line: string, celsius: number) => {
      const text = JSON.stringify({ celsius })
      await stage.send(sensor, reading(line, sensor.id), text)
      await stage.receive(line === 'line-1' ? controller1 : controller2, reading(line, sensor.id), text)
    }
    await report(sensor1a, 'line-1', 61.2)
    await report(sensor1b, 'line-1', 59.8)
    await report(sensor2a, 'line-2', 44.1)
    await stage.send(controller1, command('line-1', press1.id), 'stop')
    await press1.waitForMessage((m) => m.text === 'stop', 5_000, 'stop')
    await stage.send(controller1, command('line-1', press1.id), 'start')
    await press1.waitForMessage((m) => m.text === 'start', 5_000, 'start')

    log('  attacks (sensor-1a is compromised)')
    await stage.defend('a sensor writes on another line', async () => {
      const topic = reading('line-2', sensor1a.id)
      const text = JSON.stringify({ celsius: 120 })
      const forged = forgeWithMadeUpKey(
        sensor1a,
        headerOf(captured(deployment, reading('line-2', sensor2a.id))),
        topic,
        text,
      )
      await refusedByBroker(deployment, sensor1a, topic, forged, 'acl-denied')
      const code = await refusedByDevice(deployment, controller2, topic, forged, ['ERR_UNKNOWN_SENDER'])
      return `${sensor1a.id} publishing on ${topic}: refused (acl-denied), session closed; forced through a compromised broker, ${controller2.id} refused it (${code})`
    })

    await stage.defend('a sensor passes for another', async () => {
      // It holds the line-1 sensor key (it is a writer), so its forgeries are as good as they get.
      const keys = await imageKeys(deployment, sensor1a)
      const text = JSON.stringify({ celsius: 20 })
      // 1. Naming sensor-1b as the sender, on its own topic: sender binding at the broker.
      const own = reading('line-1', sensor1a.id)
      const posing = sealWithKeys(sensor1a, keys, own, text, sensor1b.enrollment.kid)
      await refusedByBroker(deployment, sensor1a, own, posing, 'wrong-sender')
      const posingTopic = reading('line-1', sensor1b.id)
      const posingOnB = sealWithKeys(sensor1a, keys, posingTopic, text, sensor1b.enrollment.kid)
      const signature = await refusedByDevice(deployment, controller1, posingTopic, posingOnB, [
        'ERR_ENVELOPE_SIGNATURE_INVALID',
      ])
      // 2. Signing honestly, on sensor-1b's topic: the ACL (%c) at the broker; forced through, the
      //    controller's client finds the topic outside sensor-1a's publish rights in its bundle.
      const honest = sealWithKeys(sensor1a, keys, posingTopic, text)
      await refusedByBroker(deployment, sensor1a, posingTopic, honest, 'acl-denied')
      const rights = await refusedByDevice(deployment, controller1, posingTopic, honest, ['ERR_SENDER_NOT_PERMITTED'])
      return `claiming kid ${sensor1b.enrollment.kid}: broker refused it (wrong-sender), ${controller1.id} refused it (${signature}); on ${sensor1b.id}'s topic: refused (acl-denied), and forced through, ${controller1.id} refused it (${rights}: ${sensor1a.id} may publish only factory/line-1/sensor/${sensor1a.id}/#)`
    })

    await stage.defend('a sensor commands the press', async () => {
      const topic = command('line-1', press1.id)
      const forged = forgeWithMadeUpKey(sensor1a, headerOf(captured(deployment, topic)), topic, 'stop')
      await refusedByBroker(deployment, sensor1a, topic, forged, 'acl-denied')
      const code = await refusedByDevice(deployment, press1, topic, forged, ['ERR_UNKNOWN_SENDER', 'ERR_NO_KEY_GROUP'])
      check(press === 'running', `the press is ${press}`)
      return `${sensor1a.id} publishing "stop" on ${topic}: refused (acl-denied), session closed; forced through, ${press1.id} refused it (${code}) and keeps ${press}`
    })
  })
}
