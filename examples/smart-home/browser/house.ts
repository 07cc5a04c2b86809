// The Node side of the browser demo: the hall thermostat and the front door lock, real devices
// of the smart-home example (enrolled with one-time tokens, @smqtt/client over mqtts://). The
// lock's firmware obeys verified lock/unlock commands and reports its new state.
import type { Deployment } from '../src/deployment.js'
import { connectDevice, type Device, enrollDevice } from '../src/devices.js'
import { PRINCIPALS, topics } from '../src/policy.js'

export interface House {
  readonly thermostat: Device
  readonly frontDoor: Device
  /** The front door's state as its firmware last set it. */
  lockState(): 'locked' | 'unlocked'
  /** Every command the lock obeyed, with its verified sender. */
  readonly commands: readonly { readonly command: string; readonly sender: string | undefined }[]
  publishReading(celsius: number): Promise<void>
  close(): Promise<void>
}

export async function startHouse(deployment: Deployment, dir: string): Promise<House> {
  const thermostat = await connectDevice(deployment, await enrollDevice(deployment, PRINCIPALS.thermostat, dir))
  const frontDoor = await connectDevice(deployment, await enrollDevice(deployment, PRINCIPALS.frontDoor, dir))
  let state: 'locked' | 'unlocked' = 'unlocked'
  const commands: { command: string; sender: string | undefined }[] = []
  const report = () =>
    frontDoor.client.publishAsync(topics.lockState(frontDoor.id), JSON.stringify({ state }), { qos: 1, retain: true })

  frontDoor.client.on('message', (topic, payload, info) => {
    if (topic !== topics.lockCommand(frontDoor.id)) return
    let command: unknown
    try {
      command = (JSON.parse(new TextDecoder().decode(payload)) as { command?: unknown } | null)?.command
    } catch {
      return // verified, but not a command this firmware understands
    }
    if (command !== 'lock' && command !== 'unlock') return
    commands.push({ command, sender: info.sender })
    state = command === 'lock' ? 'locked' : 'unlocked'
    report().catch(() => {})
  })
  await frontDoor.client.subscribeAsync(topics.lockCommand(frontDoor.id), { qos: 1 })
  await report()

  return {
    thermostat,
    frontDoor,
    lockState: () => state,
    commands,
    async publishReading(celsius) {
      await thermostat.client.publishAsync(topics.temperature(thermostat.id), JSON.stringify({ celsius }), {
        qos: 1,
        retain: true,
      })
    },
    async close() {
      await Promise.all([thermostat.close(), frontDoor.close()])
    },
  }
}
