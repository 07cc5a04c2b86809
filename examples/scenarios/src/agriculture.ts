// Smart agriculture: a soil sensor reports moisture, the farm controller opens and closes the
// irrigation valves. A valve obeys only commands the controller signed, never the same command
// twice, and never one sealed under a key that rotation retired.
import { waitUntil } from '@smqtt/example-smart-home/wait'
import { commands, reports } from './policy.js'
import {
  BOUND_MS,
  captured,
  check,
  type DefenceResult,
  type Device,
  forgeWithMadeUpKey,
  headerOf,
  newestEpoch,
  refusedByBroker,
  refusedByDevice,
  runStage,
  type ScenarioOptions,
} from './stage.js'

export const AGRICULTURE_POLICY = {
  version: 1,
  rules: [
    ...reports('farm/1/soil', 'soil-sensor', 'farm-controller'),
    ...commands('farm/1/valve', 'farm-controller', 'valve'),
  ],
  groups: [
    { id: 1, name: 'soil-readings', filter: 'farm/1/soil/#' },
    // Daily rotation, and no grace: a command key is worthless the moment its successor is active.
    { id: 2, name: 'valve-commands', filter: 'farm/1/valve/+/cmd', rotateEverySeconds: 86_400, graceSeconds: 0 },
  ],
  plaintext: [],
} as const

const COMMANDS = 2

const PRINCIPALS = {
  controller: { id: 'farm-controller', roles: ['farm-controller'] },
  north: { id: 'valve-north', roles: ['valve'] },
  // Offline (a storm took its link) while the controller sends it a command.
  east: { id: 'valve-east', roles: ['valve'] },
  soil: { id: 'soil-field-3', roles: ['soil-sensor'] },
} as const

const moisture = (sensor: string) => `farm/1/soil/${sensor}/moisture`
const valveCommand = (valve: string) => `farm/1/valve/${valve}/cmd`

export function runAgriculture(options: ScenarioOptions = {}): Promise<DefenceResult[]> {
  // A rotation's new key is handed out 1 s before it activates (the default is 30 s).
  const setup = { policy: AGRICULTURE_POLICY, watch: 'farm/#', keyServer: { rotationLeadSeconds: 1 } }
  return runStage('agriculture', setup, options, async (stage) => {
    const { deployment, log } = stage
    const controller = await stage.join(PRINCIPALS.controller)
    const north = await stage.join(PRINCIPALS.north)
    const eastEnrolled = await stage.enroll(PRINCIPALS.east)
    const soil = await stage.join(PRINCIPALS.soil)
    await controller.client.subscribeAsync('farm/1/soil/#', { qos: 1 })

    // The valve firmware: open or close on its own command topic.
    const valves = new Map<Device, string>()
    const install = async (valve: Device) => {
      valves.set(valve, 'closed')
      valve.client.on('message', (topic, payload, info) => {
        const text = new TextDecoder().decode(payload)
        if (topic !== valveCommand(valve.id) || (text !== 'open' && text !== 'close')) return
        valves.set(valve, text === 'open' ? 'open' : 'closed')
        const epoch = info.encrypted ? `, epoch ${info.epoch}` : ''
        log(`  ${valve.id.padEnd(16)} ← ${text} from ${info.sender}${epoch}: ${valves.get(valve)}`)
      })
      await valve.client.subscribeAsync(valveCommand(valve.id), { qos: 1 })
    }
    await install(north)
    const command = async (valve: Device, text: string) => {
      const before = valve.messages.length
      await stage.send(controller, valveCommand(valve.id), text)
      await waitUntil(() => valve.messages.length > before, BOUND_MS, `${valve.id} to receive ${text}`)
    }

    log('  irrigation at work')
    const reading = async (percent: number) => {
      const text = JSON.stringify({ moisture: percent })
      await stage.send(soil, moisture(soil.id), text)
      await stage.receive(controller, moisture(soil.id), text)
    }
    await reading(18)
    await command(north, 'open')
    const capturedOpen = captured(deployment, valveCommand(north.id))
    await reading(31)
    await command(north, 'close')
    // valve-east is offline: the command reaches nobody, but the broker saw it go by.
    await stage.send(controller, valveCommand(PRINCIPALS.east.id), 'open')
    await waitUntil(
      () => deployment.routed.some((m) => m.topic === valveCommand(PRINCIPALS.east.id)),
      BOUND_MS,
      'the broker to route the command for valve-east',
    )
    const heldBack = captured(deployment, valveCommand(PRINCIPALS.east.id))
    log(`  (${PRINCIPALS.east.id} is offline: nobody received that one, but a compromised broker kept a copy)`)

    log('  attacks')
    await stage.defend('only the controller’s signed commands', async () => {
      const topic = valveCommand(north.id)
      const forged = forgeWithMadeUpKey(soil, headerOf(capturedOpen), topic, 'open')
      await refusedByBroker(deployment, soil, topic, forged, 'acl-denied')
      const forgedCode = await refusedByDevice(deployment, north, topic, forged, ['ERR_UNKNOWN_SENDER'])
      const plainCode = await refusedByDevice(deployment, north, topic, new TextEncoder().encode('open'), [
        'ERR_ENVELOPE_MALFORMED',
        'ERR_ENVELOPE_UNSUPPORTED',
      ])
      check(valves.get(north) === 'closed', `${north.id} is ${valves.get(north)}`)
      return `${soil.id}'s "open": refused by the broker (acl-denied) and, forced through, by ${north.id} (${forgedCode}); a plaintext "open": refused (${plainCode}); the valve stays closed`
    })

    await stage.defend('a replayed "open"', async () => {
      const code = await refusedByDevice(deployment, north, valveCommand(north.id), capturedOpen, ['ERR_REPLAY'])
      check(valves.get(north) === 'closed', `${north.id} is ${valves.get(north)}`)
      return `the controller's real "open", captured and sent again after "close": refused (${code}); the valve stays closed`
    })

    await stage.defend('a command from before the rotation', async () => {
      const oldEpoch = headerOf(heldBack).epoch
      const rotated = await deployment.admin('POST', `/v1/admin/groups/${COMMANDS}/rotate`)
      check(rotated.status === 200, `rotation failed: ${JSON.stringify(rotated.body)}`)
      const { epoch, activatesAt } = rotated.body as { epoch: number; activatesAt: number }
      const inSeconds = activatesAt - Math.floor(Date.now() / 1000)
      log(`  operator rotates valve-commands: epoch ${epoch} active in ${inSeconds} s, epoch ${oldEpoch} retires then`)
      await waitUntil(
        () => newestEpoch(controller, COMMANDS) >= epoch && Date.now() / 1000 >= activatesAt,
        BOUND_MS,
        'the new epoch to reach the controller and activate',
      )
      // The control: the controller's commands go on, under the new epoch.
      await command(north, 'open')
      await command(north, 'close')
      const last = north.messages.at(-1)
      check(last?.info.encrypted && last.info.epoch === epoch, `${north.id} did not get a command under epoch ${epoch}`)
      // valve-east comes back; the compromised broker delivers the command it kept.
      const east = await stage.connect(eastEnrolled)
      await install(east)
      check(newestEpoch(east, COMMANDS) === epoch, `${east.id} holds epoch ${newestEpoch(east, COMMANDS)}`)
      const code = await refusedByDevice(deployment, east, valveCommand(east.id), heldBack, ['ERR_UNKNOWN_EPOCH'])
      check(valves.get(east) === 'closed', `${east.id} is ${valves.get(east)}`)
      return `${east.id}, back online, never saw the "open" sent under epoch ${oldEpoch} (so no replay window can stop it): refused (${code}); it stays closed`
    })
  })
}
