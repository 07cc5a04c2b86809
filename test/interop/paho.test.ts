// Eclipse Paho for Python (paho-mqtt 1.6.1, MQTT 3.1.1) against the real `smqtt-broker` process
// over mqtts:// with the dev PKI, through paho_client.py (JSON lines of what Paho reported): the
// compact form of the mosquitto matrix, each outcome also checked in the broker's audit log.
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { PAHO_PYTHON, toolAvailable } from '../_tools.js'
import { type Enrolled, PRINCIPALS, TEMPERATURE_TOPIC, useInteropStack } from './_broker.js'
import { start } from './_run.js'

const PYTHON = '/usr/bin/python3' // the pyenv python3 first on PATH has no paho-mqtt
const SCRIPT = fileURLToPath(new URL('./paho_client.py', import.meta.url))
const CONN_REFUSED = 5 // paho MQTT_ERR_CONN_REFUSED, after a CONNACK refusal
const CONN_LOST = 7 // paho MQTT_ERR_CONN_LOST

interface PahoEvent {
  readonly event: 'connack' | 'suback' | 'puback' | 'message' | 'disconnect' | 'error' | 'done'
  readonly rc?: number
  readonly codes?: number[]
  readonly mid?: number
  readonly topic?: string
  readonly payloadHex?: string
}
type Step =
  | { subscribe: string[] }
  | { publish: string; qos?: 0 | 1; payload?: string; payloadFile?: string }
  | { receive: number }
interface Login {
  clientId: string
  cert?: string
  key?: string
  username?: string
  password?: string
}

describe.runIf(toolAvailable(PAHO_PYTHON))('Paho (Python) against smqtt-broker', () => {
  const stack = useInteropStack()

  const withCertificate = (): Login => ({ clientId: PRINCIPALS.thermostat.id, ...stack.tls.thermostat })
  const withPassword = (who: Enrolled, password = stack.password(who), clientId = who.identity.id): Login => ({
    clientId,
    username: who.identity.id,
    password,
  })
  const paho = (login: Login, steps: Step[] = []) => {
    const plan = { host: stack.host, port: stack.port, ca: stack.caFile, ...login, steps, seconds: 10 }
    const running = start(PYTHON, [SCRIPT, JSON.stringify(plan)], 15_000)
    return {
      ...running,
      finished: async () => {
        const { code, stdout, stderr } = await running.exited
        const events = stdout
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as PahoEvent)
        return { code, stderr, events }
      },
    }
  }
  const publishOk = [
    { event: 'connack', rc: 0 },
    { event: 'puback', mid: 1 },
    { event: 'disconnect', rc: 0 },
    { event: 'done' },
  ]

  test('a client certificate (mTLS) and a CONNECT password log in; refusals arrive as CONNACK codes', async () => {
    for (const login of [withCertificate(), withPassword(stack.enrolled.app)]) {
      const run = await paho(login, [{ publish: 'public/paho', payload: 'hello' }]).finished()
      expect(run).toEqual({ code: 0, stderr: '', events: publishOk })
    }
    expect(await stack.newAudit(2)).toEqual(['login:certificate', 'login:connect-password'])

    const refused = [
      { login: withPassword(stack.enrolled.app, 'not-the-password'), rc: 4, reason: 'bad-credentials' },
      { login: { ...withCertificate(), ...stack.tls.rogue }, rc: 5, reason: 'certificate-mismatch' },
      {
        login: withPassword(stack.enrolled.app, undefined, PRINCIPALS.thermostat.id),
        rc: 2,
        reason: 'client-id-mismatch',
      },
      { login: withPassword(stack.enrolled.revoked), rc: 5, reason: 'principal-inactive' },
    ]
    for (const { login, rc, reason } of refused) {
      const run = await paho(login).finished()
      expect(run).toEqual({
        code: 1,
        stderr: '',
        events: [
          { event: 'connack', rc },
          { event: 'disconnect', rc: CONN_REFUSED },
        ],
      })
      expect(await stack.newAudit()).toEqual([`connect:${reason}`])
    }
  })

  test('SUBACK per filter; an allowed publish is delivered, one outside the ACL closes the connection', async () => {
    const filters = ['public/#', 'home/+/thermostat/#', 'home/#', '$SYS/#', 'smqtt/control/#']
    const sub = paho(withPassword(stack.enrolled.app), [{ subscribe: filters }, { receive: 1 }])
    const suback = JSON.parse(await sub.line(/"suback"/, 'SUBACK')) as PahoEvent
    expect(suback.codes).toEqual([1, 1, 128, 128, 128])

    const refused = await paho(withCertificate(), [
      { publish: 'home/h1/thermostat/thermostat-2/temp', payload: 'not mine' },
    ]).finished()
    expect(refused).toEqual({
      code: 1,
      stderr: '',
      events: [
        { event: 'connack', rc: 0 },
        { event: 'disconnect', rc: CONN_LOST },
      ],
    })
    // At QoS 0 MQTT 3.1.1 has no answer to a PUBLISH: Paho cannot tell it was refused.
    const refusedQos0 = await paho(withCertificate(), [
      { publish: 'home/h1/thermostat/thermostat-2/temp', payload: 'not mine', qos: 0 },
    ]).finished()
    expect(refusedQos0.events).toEqual([{ event: 'connack', rc: 0 }, { event: 'disconnect', rc: 0 }, { event: 'done' }])
    const allowed = await paho(withCertificate(), [{ publish: 'public/paho', payload: 'plain hello' }]).finished()
    expect(allowed.events).toEqual(publishOk)

    // The refused message was sent first: had it got through, it would be the one received.
    const received = await sub.finished()
    expect(received.code).toBe(0)
    expect(received.events.filter((e) => e.event === 'message')).toEqual([
      { event: 'message', topic: 'public/paho', payloadHex: Buffer.from('plain hello').toString('hex') },
    ])
    expect(await stack.newAudit(9)).toEqual([
      'login:connect-password',
      'subscribe:acl-denied',
      'subscribe:reserved-topic',
      'subscribe:control-topic',
      'login:certificate',
      'publish:acl-denied',
      'login:certificate',
      'publish:acl-denied',
      'login:certificate',
    ])
  })

  test('encrypted topic: plaintext closes the connection; an envelope passes byte for byte', async () => {
    const sub = paho(withPassword(stack.enrolled.app), [{ subscribe: ['home/+/thermostat/#'] }, { receive: 1 }])
    await sub.line(/"suback"/, 'SUBACK')

    const plaintext = await paho(withCertificate(), [{ publish: TEMPERATURE_TOPIC, payload: '21.5 °C' }]).finished()
    expect(plaintext.events.at(-1)).toEqual({ event: 'disconnect', rc: CONN_LOST })
    const envelope = await stack.sealToFile(stack.enrolled.thermostat, TEMPERATURE_TOPIC, '21.5 °C')
    const sent = await paho(withCertificate(), [{ publish: TEMPERATURE_TOPIC, payloadFile: envelope.file }]).finished()
    expect(sent.events).toEqual(publishOk)

    const messages = (await sub.finished()).events.filter((e) => e.event === 'message')
    expect(messages).toEqual([
      { event: 'message', topic: TEMPERATURE_TOPIC, payloadHex: Buffer.from(envelope.bytes).toString('hex') },
    ])
    expect(await stack.open(stack.enrolled.app, TEMPERATURE_TOPIC, messages[0]?.payloadHex ?? '')).toBe('21.5 °C')
    expect(await stack.newAudit(4)).toEqual([
      'login:connect-password',
      'login:certificate',
      'publish:not-an-envelope',
      'login:certificate',
    ])
  })
})
