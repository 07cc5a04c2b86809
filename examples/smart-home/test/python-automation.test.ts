// The Python automation (python/automation.py) as a member of the house, through the real key
// server and broker: it reads the thermostat (verified sender), locks the back door when the hall
// gets warm (the lock sees a verified command from it), and refuses a replayed reading.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import { injectIntoBroker } from '../src/attacks.js'
import { type Deployment, startDeployment } from '../src/deployment.js'
import { connectDevice, type Device, enrollDevice } from '../src/devices.js'
import { PRINCIPALS, topics } from '../src/policy.js'
import { type PythonAutomation, pythonAutomationAvailable, startPythonAutomation } from '../src/python-automation.js'

const available = pythonAutomationAvailable()
if (!available) {
  const message = 'Python 3.11+ with PyNaCl and paho-mqtt is missing: apt-get install python3-nacl python3-paho-mqtt'
  if (process.env.CI) throw new Error(message)
  console.warn(`skipping: ${message}`)
}

test.skipIf(!available)(
  'the Python automation reads the thermostat and locks the back door',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smqtt-automation-'))
    const devices: Device[] = []
    let deployment: Deployment | undefined
    let automation: PythonAutomation | undefined
    try {
      deployment = await startDeployment(dir)
      const d = deployment
      const connect = async (principal: { readonly id: string; readonly roles: readonly string[] }) => {
        const device = await connectDevice(d, await enrollDevice(d, principal, dir))
        devices.push(device)
        return device
      }
      const thermostat = await connect(PRINCIPALS.thermostat)
      const backDoor = await connect(PRINCIPALS.backDoor)
      const lockTopic = topics.lockCommand(backDoor.id)
      await backDoor.client.subscribeAsync(lockTopic, { qos: 1 })
      automation = await startPythonAutomation(d, dir, {
        subscribe: ['home/+/thermostat/#'],
        lockCommandTopic: lockTopic,
        warmAbove: 21.6,
      })
      const started = automation
      const reading = async (celsius: number) => {
        await thermostat.client.publishAsync(topics.temperature(thermostat.id), JSON.stringify({ celsius }), { qos: 1 })
        return started.waitFor((e) => e.event === 'reading' && e.celsius === celsius, 5_000, `the reading ${celsius}`)
      }

      const cool = await reading(21.5)
      expect(cool).toMatchObject({ sender: thermostat.id, topic: topics.temperature(thermostat.id), group: 1 })
      expect(automation.events.filter((e) => e.event === 'command')).toEqual([])

      await reading(21.7)
      const command = await backDoor.waitForMessage((m) => m.topic === lockTopic, 5_000, 'the lock command')
      expect(JSON.parse(command.text)).toEqual({ command: 'lock' })
      expect(command.info).toMatchObject({ encrypted: true, sender: 'python-automation' })
      // The broker routed an envelope, not the command.
      const routed = d.routed.filter((r) => r.topic === lockTopic)
      expect(routed).toHaveLength(1)
      expect(routed[0]?.payload.includes('lock')).toBe(false)

      // A broker replays the warm reading: the automation refuses it and sends nothing more.
      const warm = d.routed.filter((r) => r.topic === topics.temperature(thermostat.id)).at(-1)
      expect(warm).toBeDefined()
      await injectIntoBroker(d, topics.temperature(thermostat.id), warm?.payload ?? new Uint8Array())
      const refused = await automation.waitFor((e) => e.event === 'securityError', 5_000, 'the replay refused')
      expect(refused.code).toBe('ERR_REPLAY')
      expect(automation.events.filter((e) => e.event === 'command')).toHaveLength(1)
      expect(backDoor.messages.filter((m) => m.topic === lockTopic)).toHaveLength(1)

      await automation.close()
      expect(automation.events.at(-1)).toEqual({ event: 'done' })
    } finally {
      await automation?.close()
      for (const device of devices) await device.close()
      await deployment?.close()
      rmSync(dir, { recursive: true, force: true })
    }
  },
  60_000,
)
