// MQTT 5 properties bound into the envelope, end to end over a third-party Mosquitto (MQTT 5,
// no SMQTT plugin): the door-lock command's response topic and correlation data, its content
// type and its traceparent reach the lock verified. The broker's attacks are played by a raw
// MQTT 5 client that forwards an app's honestly sealed command with the properties changed,
// as a broker that alters packets in transit would deliver it.
import type { EnvelopeProperties } from '@smqtt/core'
import { within } from '@smqtt/test-kit/client'
import { useStack } from '@smqtt/test-kit/use-stack'
import type { IClientPublishOptions, MqttClient } from 'mqtt'
import { expect, test } from 'vitest'
import { sealAs } from './_seal-as.js'

const MOSQUITTO = 'mqtt://127.0.0.1:1883'
const TRACE = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

const stack = useStack()

const run = () => `props${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`

/** The properties of the app's command, in mqtt.js's shape. */
function command(room: string): NonNullable<IClientPublishOptions['properties']> {
  return {
    contentType: 'application/json',
    responseTopic: `home/${room}/lock/lock-1/state`,
    correlationData: Buffer.from('c0ffee01', 'hex'),
    userProperties: { traceparent: TRACE, tenant: 'home-1' },
  }
}

/** An MQTT 5 mqtt.js client on Mosquitto, ended with the test's stack. */
const raw5 = (clientId: string): Promise<MqttClient> => stack.raw(MOSQUITTO, { protocolVersion: 5, clientId })

/** The lock, as a secure MQTT 5 client subscribed to its commands. */
async function lockFor(room: string, id: string) {
  const lock = await stack.enroll(id, ['lock'])
  const receiver = await stack.client(lock, {
    url: MOSQUITTO,
    mqtt: { clientId: `${room}-${id}`, protocolVersion: 5 },
  })
  await receiver.client.subscribeAsync(`home/${room}/lock/${id}/cmd`, { qos: 1 })
  return receiver
}

test('MQTT 5 over Mosquitto: a command with bound properties round trips, verified', async () => {
  const room = run()
  const lock = await lockFor(room, 'lock-1')
  const app = await stack.enroll('app-1', ['app'])
  const sender = await stack.client(app, { url: MOSQUITTO, mqtt: { clientId: `${room}-app`, protocolVersion: 5 } })
  const wire = await raw5(`${room}-tap`)
  const tapped: IClientPublishOptions['properties'][] = []
  wire.on('message', (_topic, _payload, packet) => tapped.push(packet.properties))
  await wire.subscribeAsync(`home/${room}/lock/#`, { qos: 1 })

  const topic = `home/${room}/lock/lock-1/cmd`
  await sender.client.publishAsync(topic, '{"lock":"open"}', {
    qos: 1,
    bindProperties: true,
    properties: command(room),
  })
  const [message] = await lock.waitForMessages(1, 10_000)
  expect(message?.text).toBe('{"lock":"open"}')
  if (!message?.info.encrypted) throw new Error('expected an encrypted message')
  expect(message.info.sender).toBe('app-1')
  const { verifiedProperties, unsignedProperties } = message.info
  expect(verifiedProperties.contentType).toBe('application/json')
  expect(verifiedProperties.responseTopic).toBe(`home/${room}/lock/lock-1/state`)
  expect(Buffer.from(verifiedProperties.correlationData ?? []).toString('hex')).toBe('c0ffee01')
  expect({ ...verifiedProperties.userProperties }).toEqual({ traceparent: TRACE, tenant: 'home-1' })
  for (const key of ['contentType', 'responseTopic', 'correlationData', 'userProperties'])
    expect(unsignedProperties).not.toHaveProperty(key)
  // They travel as ordinary MQTT 5 properties: Mosquitto and a plain client see them.
  await within(
    (async () => {
      while (tapped.length === 0) await new Promise((r) => setTimeout(r, 10))
    })(),
    5_000,
    'tap',
  )
  expect(tapped[0]?.contentType).toBe('application/json')
  expect({ ...tapped[0]?.userProperties }).toEqual({ traceparent: TRACE, tenant: 'home-1' })

  // Without bindProperties the same properties arrive unsigned.
  await sender.client.publishAsync(topic, '{"lock":"close"}', { qos: 1, properties: command(room) })
  const messages = await lock.waitForMessages(2, 10_000)
  const second = messages[1]?.info
  if (!second?.encrypted) throw new Error('expected an encrypted message')
  expect(second.verifiedProperties).toEqual({})
  expect(second.unsignedProperties.responseTopic).toBe(`home/${room}/lock/lock-1/state`)
  expect({ ...second.unsignedProperties.userProperties }).toEqual({ traceparent: TRACE, tenant: 'home-1' })
  expect(lock.errors).toEqual([])
})

test('attacks over Mosquitto: bound properties altered, stripped or injected are refused; an added user property is delivered unsigned', async () => {
  const room = run()
  const lock = await lockFor(room, 'lock-2')
  const app = await stack.enroll('app-2', ['app'])
  const broker = await raw5(`${room}-broker`)
  const topic = `home/${room}/lock/lock-2/cmd`
  const sent = command(room)
  const bound: EnvelopeProperties = {
    contentType: 'application/json',
    responseTopic: `home/${room}/lock/lock-1/state`,
    correlationData: Buffer.from('c0ffee01', 'hex'),
    userProperties: [
      ['traceparent', TRACE],
      ['tenant', 'home-1'],
    ],
  }
  let seq = 2 ** 40
  const forward = async (properties: NonNullable<IClientPublishOptions['properties']>) =>
    broker.publishAsync(
      topic,
      await sealAs(stack, app, { topic, text: '{"lock":"open"}', seq: seq++, properties: bound }),
      { qos: 1, properties },
    )

  // broker alters a bound correlation data → refused
  await forward({ ...sent, correlationData: Buffer.from('c0ffee02', 'hex') })
  // broker strips bound content type → refused
  const { contentType: _, ...stripped } = sent
  await forward(stripped)
  // broker redirects the answer: alters the bound response topic → refused
  await forward({ ...sent, responseTopic: `home/${room}/lock/evil/state` })
  // broker reorders bound user properties → refused
  await forward({ ...sent, userProperties: { tenant: 'home-1', traceparent: TRACE } })
  const errors = await lock.waitForErrors(4, 10_000)
  expect(errors.map((e) => e.code)).toEqual(Array(4).fill('ERR_ENVELOPE_SIGNATURE_INVALID'))

  // broker injects a user property → delivered, marked unsigned
  await forward({ ...sent, userProperties: { traceparent: TRACE, tenant: 'home-1', role: 'admin' } })
  const [message] = await lock.waitForMessages(1, 10_000)
  if (!message?.info.encrypted) throw new Error('expected an encrypted message')
  expect({ ...message.info.verifiedProperties.userProperties }).toEqual({ traceparent: TRACE, tenant: 'home-1' })
  expect({ ...message.info.unsignedProperties.userProperties }).toEqual({ role: 'admin' })
  expect(lock.errors).toHaveLength(4)
  await broker.endAsync()
})

test('binding properties on an MQTT 3.1.1 connection is refused with a TypeError', async () => {
  const room = run()
  const app = await stack.enroll('app-3', ['app'])
  const sender = await stack.client(app, { url: MOSQUITTO, mqtt: { clientId: `${room}-app3` } })
  expect(() =>
    sender.client.publishAsync(`home/${room}/lock/lock-1/cmd`, 'x', {
      bindProperties: true,
      properties: command(room),
    }),
  ).toThrow(TypeError)
})
