// mosquitto_pub / mosquitto_sub (Eclipse Mosquitto's clients, libmosquitto, MQTT 3.1.1) against
// the real `smqtt-broker` process over mqtts:// with the dev PKI: they log in three ways, are
// refused exactly as the ACL says, and carry SMQTT envelopes through unchanged. Each refusal is
// asserted twice: what mosquitto reports (exit code, message) and the reason in the broker's audit log.
import { describe, expect, test } from 'vitest'
import { MOSQUITTO_CLIENTS, toolAvailable } from '../_tools.js'
import {
  type CertificateFiles,
  type Enrolled,
  LEGACY_USER,
  PRINCIPALS,
  TEMPERATURE_TOPIC,
  useInteropStack,
} from './_broker.js'
import { run, start } from './_run.js'

const OTHER_THERMOSTAT_TOPIC = 'home/h1/thermostat/thermostat-2/temp'
const CONNECTION_LOST = 7 // MOSQ_ERR_CONN_LOST
const TIMED_OUT = 27 // MOSQ_ERR_TIMEOUT: mosquitto_sub -W elapsed

describe.runIf(toolAvailable(MOSQUITTO_CLIENTS))('mosquitto-clients against smqtt-broker', () => {
  const stack = useInteropStack()

  const server = () => ['-h', stack.host, '-p', String(stack.port), '--cafile', stack.caFile]
  const withCertificate = (
    files: CertificateFiles = stack.tls.thermostat,
    clientId: string = PRINCIPALS.thermostat.id,
  ) => [...server(), '--cert', files.cert, '--key', files.key, '-i', clientId]
  const withPassword = (who: Enrolled, options: { clientId?: string; password?: string } = {}) => [
    ...server(),
    '-i',
    options.clientId ?? who.identity.id,
    '-u',
    who.identity.id,
    '-P',
    options.password ?? stack.password(who),
  ]
  const asLegacyUser = (password: string) => [
    ...server(),
    '-i',
    LEGACY_USER.principal,
    '-u',
    LEGACY_USER.username,
    '-P',
    password,
  ]
  /** mosquitto_pub at QoS 1 (so a refusal closing the connection is seen: no PUBACK). */
  const publish = (login: string[], topic: string, payload: string[] = ['-m', 'hello'], qos = 1) =>
    run('mosquitto_pub', [...login, '-q', String(qos), '-t', topic, ...payload])
  /** mosquitto_sub printing `topic hex-payload`, ready once its SUBACK is printed (-d). */
  const subscribe = async (login: string[], filters: string[], extra: string[]) => {
    // Line-buffered: into a pipe, mosquitto_sub's stdio would hold the SUBACK line until it exits.
    const sub = start('stdbuf', [
      '-oL',
      'mosquitto_sub',
      ...login,
      '-d',
      '-F',
      '%t %x',
      ...filters.flatMap((f) => ['-t', f]),
      ...extra,
    ])
    const suback = await sub.line(/^Subscribed \(mid: \d+\): /, 'SUBACK')
    return {
      ...sub,
      grants: suback
        .replace(/^Subscribed \(mid: \d+\): /, '')
        .split(', ')
        .map(Number),
    }
  }
  const messagesIn = (stdout: string) => stdout.split('\n').filter((line) => /^(public|home)\//.test(line))

  describe('authentication', () => {
    test('a client certificate issued at enrollment (mTLS), a CONNECT password, a legacy scrypt user', async () => {
      for (const login of [withCertificate(), withPassword(stack.enrolled.app), asLegacyUser(LEGACY_USER.password)]) {
        const result = await publish(login, 'public/interop')
        expect(result, result.stderr).toMatchObject({ code: 0, stderr: '' })
      }
      expect(await stack.newAudit(3)).toEqual(['login:certificate', 'login:connect-password', 'login:legacy-password'])
    })

    const refusals = [
      {
        refusal: 'a wrong CONNECT password',
        login: () => withPassword(stack.enrolled.app, { password: 'not-the-password' }),
        code: 4,
        says: 'bad user name or password',
        reason: 'bad-credentials',
      },
      {
        refusal: 'a wrong legacy password',
        login: () => asLegacyUser('Tr0ub4dor&3'),
        code: 4,
        says: 'bad user name or password',
        reason: 'bad-credentials',
      },
      {
        refusal: 'a certificate from another CA (naming a real principal)',
        login: () => withCertificate(stack.tls.rogue),
        code: 5,
        says: 'not authorised',
        reason: 'certificate-mismatch',
      },
      {
        refusal: 'a certificate of the deployment CA not made for clients (the broker’s server certificate)',
        login: () => withCertificate({ cert: `${stack.h.dir}/pki/server.pem`, key: `${stack.h.dir}/pki/server.key` }),
        code: 5,
        says: 'not authorised',
        reason: 'certificate-mismatch',
      },
      {
        refusal: 'a client id other than the principal (CONNECT password)',
        login: () => withPassword(stack.enrolled.app, { clientId: PRINCIPALS.thermostat.id }),
        code: 2,
        says: 'identifier rejected',
        reason: 'client-id-mismatch',
      },
      {
        refusal: 'a client id other than the principal (certificate)',
        login: () => withCertificate(stack.tls.thermostat, PRINCIPALS.app.id),
        code: 2,
        says: 'identifier rejected',
        reason: 'client-id-mismatch',
      },
      {
        refusal: 'a revoked principal with a valid CONNECT password',
        login: () => withPassword(stack.enrolled.revoked),
        code: 5,
        says: 'not authorised',
        reason: 'principal-inactive',
      },
    ]
    test.each(refusals)('$refusal: exit $code, "$says" ($reason)', async ({ login, code, says, reason }) => {
      const result = await publish(login(), 'public/interop')
      expect(result.code).toBe(code) // mosquitto_pub exits with the CONNACK return code
      expect(result.stderr).toBe(`Connection error: Connection Refused: ${says}.\nError: The connection was refused.\n`)
      expect(await stack.newAudit()).toEqual([`connect:${reason}`])
    })

    test('a CONNECT password works once: replayed, it is refused like a wrong one', async () => {
      const once = stack.password(stack.enrolled.app)
      expect((await publish(withPassword(stack.enrolled.app, { password: once }), 'public/interop')).code).toBe(0)
      const replayed = await publish(withPassword(stack.enrolled.app, { password: once }), 'public/interop')
      expect(replayed.code).toBe(4)
      expect(replayed.stderr).toContain('Connection Refused: bad user name or password.')
      expect(await stack.newAudit(2)).toEqual(['login:connect-password', 'connect:replayed-password'])
    })
  })

  test('revoked while subscribed: the session is closed (exit 7), and the next CONNECT gets CONNACK 5', async () => {
    const doomed = withCertificate(stack.tls.doomed, PRINCIPALS.doomed.id)
    const sub = await subscribe(doomed, ['public/#'], ['-W', '10'])
    expect(sub.grants).toEqual([0])
    await stack.h.keyServer.revokePrincipal(PRINCIPALS.doomed.id, 'admin')
    // The broker learns of it by its next pull (1 s here), then closes the session at once.
    const ended = await sub.exited
    expect(ended).toMatchObject({ code: CONNECTION_LOST, stderr: 'Error: The connection was lost.\n', timedOut: false })
    const again = await publish(doomed, 'public/interop')
    expect(again.code).toBe(5)
    expect(again.stderr).toContain('Connection Refused: not authorised.')
    expect(await stack.newAudit(3)).toEqual([
      'login:certificate',
      'session-closed:revoked',
      'connect:principal-inactive',
    ])
  })

  describe('ACL', () => {
    test('a publish on the plaintext area is delivered; one outside the ACL closes the connection, never delivered', async () => {
      const sub = await subscribe(withPassword(stack.enrolled.app), ['home/+/thermostat/#', 'public/#'], ['-C', '1'])
      expect(sub.grants).toEqual([0, 0])

      // Refused first: if either got through, it would be the one message the subscriber prints.
      const refused = await publish(withCertificate(), OTHER_THERMOSTAT_TOPIC)
      expect(refused.code).toBe(CONNECTION_LOST)
      expect(refused.stderr).toContain('Error: The connection was lost.')
      // At QoS 0 MQTT 3.1.1 has no answer to a PUBLISH: mosquitto_pub cannot tell it was refused.
      const refusedQos0 = await publish(withCertificate(), OTHER_THERMOSTAT_TOPIC, ['-m', 'hello'], 0)
      expect(refusedQos0).toMatchObject({ code: 0, stderr: '' })

      expect((await publish(withCertificate(), 'public/interop', ['-m', 'plain hello'])).code).toBe(0)
      const received = await sub.exited
      expect(received.code).toBe(0)
      expect(messagesIn(received.stdout)).toEqual([`public/interop ${Buffer.from('plain hello').toString('hex')}`])
      expect(await stack.newAudit(6)).toEqual([
        'login:connect-password',
        'login:certificate',
        'publish:acl-denied',
        'login:certificate',
        'publish:acl-denied',
        'login:certificate',
      ])
    })

    test('SUBSCRIBE outside the ACL (+, #, $SYS/#, smqtt/control/#) gets SUBACK 0x80; the session stays up', async () => {
      const filters = ['home/+/thermostat/#', 'home/+/+/#', 'home/#', '#', '$SYS/#', 'smqtt/control/#']
      const sub = await subscribe(withPassword(stack.enrolled.app), filters, ['-W', '2'])
      expect(sub.grants).toEqual([0, 128, 128, 128, 128, 128])
      const ended = await sub.exited
      expect(ended.code).toBe(TIMED_OUT) // still connected when -W elapsed
      expect(ended.stderr).toBe('Timed out\n')
      expect(await stack.newAudit(6)).toEqual([
        'login:connect-password',
        'subscribe:acl-denied',
        'subscribe:acl-denied',
        'subscribe:control-topic', // `#` reaches into smqtt/control/
        'subscribe:reserved-topic',
        'subscribe:control-topic',
      ])
    })

    test('when every filter is refused, mosquitto_sub says so and exits 0', async () => {
      const sub = await subscribe(withPassword(stack.enrolled.app), ['$SYS/#'], ['-W', '5'])
      expect(sub.grants).toEqual([128])
      const ended = await sub.exited
      expect(ended).toMatchObject({ code: 0, stderr: 'All subscription requests were denied.\n', timedOut: false })
      expect(await stack.newAudit(2)).toEqual(['login:connect-password', 'subscribe:reserved-topic'])
    })
  })

  describe('encrypted topics', () => {
    test('plaintext is refused; an envelope from a file passes byte for byte and opens with the reader’s key', async () => {
      const sub = await subscribe(withPassword(stack.enrolled.app), ['home/+/thermostat/#'], ['-C', '1'])
      expect(sub.grants).toEqual([0])

      const plaintext = await publish(withCertificate(), TEMPERATURE_TOPIC, ['-m', '21.5 °C'])
      expect(plaintext.code).toBe(CONNECTION_LOST)
      expect(plaintext.stderr).toContain('Error: The connection was lost.')

      const envelope = await stack.sealToFile(stack.enrolled.thermostat, TEMPERATURE_TOPIC, '21.5 °C')
      const sent = await publish(withCertificate(), TEMPERATURE_TOPIC, ['-f', envelope.file])
      expect(sent).toMatchObject({ code: 0, stderr: '' })

      const received = await sub.exited
      expect(received.code).toBe(0)
      const [line] = messagesIn(received.stdout)
      expect(messagesIn(received.stdout)).toHaveLength(1)
      expect(line).toBe(`${TEMPERATURE_TOPIC} ${Buffer.from(envelope.bytes).toString('hex')}`)
      expect(await stack.open(stack.enrolled.app, TEMPERATURE_TOPIC, line?.split(' ')[1] ?? '')).toBe('21.5 °C')
      expect(await stack.newAudit(4)).toEqual([
        'login:connect-password',
        'login:certificate',
        'publish:not-an-envelope',
        'login:certificate',
      ])
    })
  })
})
