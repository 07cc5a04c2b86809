// The attack catalogue of issue 7, part 2: attacks on access (sessions, topics, TLS, slow-loris).
// One test per attack, named after it, against the full real stack (test/attacks/_stack.ts, the
// broker as startBroker assembles it, with its defaults); each asserts the refusal and its reason
// in the broker's log (audit entries) or the TLS error code.
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { createConnectPassword as connectPasswordOf, isSmqttError, substitutePattern } from '@smqtt/core'
import { CertificateAuthority, createCertificateAuthority } from '@smqtt/keyserver'
import { closed, DEFAULT_CONNECT_TIMEOUT_SECONDS, p256Pems, sleep, within } from '@smqtt/test-kit/broker'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest'
import { connectPacket } from '../fuzz/_mqtt-packets.js'
import { type AttackStack, type Member, publishOutcome, startAttackStack } from './_stack.js'

let s: AttackStack
let thermostat: Member
let thermostat2: Member
let lock: Member
beforeAll(async () => {
  s = await startAttackStack()
  thermostat = await s.enroll('thermostat-1', ['thermostat'])
  thermostat2 = await s.enroll('thermostat-2', ['thermostat'])
  lock = await s.enroll('lock-1', ['lock'], { certificate: true })
}, 60_000)
afterAll(async () => {
  await s?.close()
})
beforeEach(() => {
  s.takeAudit()
})

const refusals = () =>
  s
    .takeAudit()
    .filter((entry) => entry.event === 'refused')
    .map((entry) => [entry.hook, entry.reason, entry.detail].filter((part) => part !== undefined))

/** SUBACK return codes of one SUBSCRIBE (128 = refused). */
async function granted(client: MqttClient, filter: string): Promise<number | undefined> {
  try {
    const [grant] = await within(client.subscribeAsync(filter, { qos: 1 }), `SUBACK ${filter}`)
    return grant?.qos
  } catch (err) {
    // mqtt.js rejects a SUBACK that refuses; the packet holds the return codes.
    const packet = (err as { packet?: { granted?: (number | { qos: number })[] } }).packet
    const first = packet?.granted?.[0]
    if (first === undefined) throw err
    return typeof first === 'number' ? first : first.qos
  }
}

/** The CONNECT refusal of `connecting` (its CONNACK return code). */
async function refusal(connecting: Promise<MqttClient>): Promise<number | undefined> {
  try {
    await connecting
  } catch (err) {
    return (err as { code?: number }).code
  }
  throw new Error('the CONNECT was accepted')
}

/** A client certificate for `principalId` from the deployment CA, as of `issuedAt`. */
async function deploymentCertificate(principalId: string, issuedAt: number) {
  const pki = `${s.h.dir}/pki`
  const keyDer = Buffer.from(readFileSync(`${pki}/ca.key`, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64')
  const ca = await CertificateAuthority.load(readFileSync(`${pki}/ca.pem`, 'utf8'), new Uint8Array(keyDer))
  const { spki, keyPem } = await p256Pems()
  vi.useFakeTimers({ toFake: ['Date'] })
  vi.setSystemTime(issuedAt)
  try {
    const { certificatePem } = await ca.issueClientCertificate({ principalId, publicKeySpki: spki, validityDays: 1 })
    return { cert: certificatePem, key: keyPem }
  } finally {
    vi.useRealTimers()
  }
}

describe('attacks on sessions', () => {
  test('client-id takeover: thermostat-2 asks for the client id of thermostat-1 -> CONNACK 2, client-id-mismatch', async () => {
    const victim = await s.rawAs(thermostat)
    const code = await refusal(s.rawAs(thermostat2, { clientId: 'thermostat-1' }))
    expect(code).toBe(2)
    await sleep(200)
    expect(victim.connected).toBe(true)
    expect(refusals()).toEqual([['connect', 'client-id-mismatch']])
  })

  test('wildcard ACL escape: "+", "#" or "/" in a principal or client id never reaches %c -> ERR_REQUEST_INVALID, client-id-mismatch, ERR_ACL_SUBSTITUTION_REFUSED', async () => {
    // 1. The key server enrolls no such principal.
    for (const id of ['+', '#', 'lock-1/+', 'a/b']) {
      const token = await s.h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles: ['lock'] })
      expect(token.status).toBe(400)
      expect((token.body as { error: { code: string } }).error.code).toBe('ERR_REQUEST_INVALID')
    }
    // 2. The broker binds the client id to the principal: a wildcard client id is refused at CONNECT,
    // so `home/+/lock/%c/cmd` cannot become `home/+/lock/+/cmd` (every lock's commands).
    for (const clientId of ['+', '#', 'lock-1/+', 'lock-1/#']) {
      expect(await refusal(s.rawAs(lock, { clientId, password: connectPasswordOf(lock.identity, clientId) }))).toBe(2)
    }
    expect(refusals()).toEqual(Array(4).fill(['connect', 'client-id-mismatch']))
    // 3. And the ACL itself refuses to substitute such a value (for principals imported by hand).
    for (const id of ['+', '#', 'a/b']) {
      let error: unknown
      try {
        substitutePattern('home/+/lock/%c/cmd', { id, roles: ['lock'] })
      } catch (err) {
        error = err
      }
      expect(isSmqttError(error, 'ERR_ACL_SUBSTITUTION_REFUSED')).toBe(true)
    }
    // The legitimate lock gets exactly its own commands, not its neighbours'.
    const legit = await s.rawAs(lock)
    expect(await granted(legit, 'home/h1/lock/lock-1/cmd')).toBe(1)
    expect(await granted(legit, 'home/h1/lock/+/cmd')).toBe(128)
    expect(refusals()).toEqual([['subscribe', 'acl-denied']])
  })

  test('$SYS access: subscribe and publish by a non-admin -> reserved-topic', async () => {
    const client = await s.rawAs(thermostat)
    expect(await granted(client, '$SYS/#')).toBe(128)
    expect(await granted(client, '#')).toBe(128) // `#` would cover the control topics too
    expect(await publishOutcome(client, '$SYS/broker/uptime', Buffer.from('0'))).toBe('closed')
    expect(refusals()).toEqual([
      ['subscribe', 'reserved-topic'],
      ['subscribe', 'control-topic'],
      ['publish', 'reserved-topic'],
    ])
  })

  test('control-topic access: publishing a snapshot or another principal`s bundle, subscribing to its control topic -> control-topic', async () => {
    const client = await s.rawAs(thermostat)
    expect(await granted(client, 'smqtt/control/principals/thermostat-2')).toBe(128)
    expect(await granted(client, 'smqtt/control/#')).toBe(128)
    expect(await granted(client, 'smqtt/control/principals/thermostat-1')).toBe(1) // its own: allowed
    expect(await publishOutcome(client, 'smqtt/control/brokers', Buffer.from('{}'))).toBe('closed')
    const again = await s.rawAs(thermostat)
    expect(await publishOutcome(again, 'smqtt/control/principals/thermostat-2', Buffer.from('{}'))).toBe('closed')
    expect(refusals()).toEqual([
      ['subscribe', 'control-topic'],
      ['subscribe', 'control-topic'],
      ['publish', 'control-topic'],
      ['publish', 'control-topic'],
    ])
  })

  test('oversize payload: a 300 KiB PUBLISH -> socket destroyed, packet-refused oversize', async () => {
    const client = await s.rawAs(thermostat)
    const gone = closed(client)
    client.publish('public/big', Buffer.alloc(300 * 1024), { qos: 0 })
    await gone
    const audit = s.takeAudit()
    expect(audit).toContainEqual(
      expect.objectContaining({ event: 'packet-refused', reason: 'oversize', max: 256 * 1024, address: '127.0.0.1' }),
    )
    expect((await s.rawAs(thermostat)).connected).toBe(true) // the broker keeps serving
  })
})

describe('attacks on TLS', () => {
  test('TLS with the wrong CA: a broker outside the pinned CA is refused by the client; a client certificate from another CA -> CONNACK 5, certificate-mismatch', async () => {
    const rogue = await createCertificateAuthority({ commonName: 'rogue CA', validityDays: 1 })
    const error = await new Promise<NodeJS.ErrnoException>((resolve) => {
      s.raw({ ca: rogue.certificatePem, clientId: 'thermostat-1' }).then(
        () => resolve(new Error('connected') as NodeJS.ErrnoException),
        resolve,
      )
    })
    expect(error.code).toMatch(
      /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)$/,
    )
    const ca = await CertificateAuthority.load(rogue.certificatePem, rogue.privateKeyPkcs8)
    const { spki, keyPem } = await p256Pems()
    const { certificatePem } = await ca.issueClientCertificate({
      principalId: 'thermostat-1',
      publicKeySpki: spki,
      validityDays: 1,
    })
    // Even with a valid CONNECT password: a certificate TLS did not verify never falls back.
    const code = await refusal(s.rawAs(thermostat, { cert: certificatePem, key: keyPem }))
    expect(code).toBe(5)
    expect(refusals()).toEqual([['connect', 'certificate-mismatch', 'certificate not verified by TLS']])
  })

  test('expired client certificate: issued by the deployment CA, expired yesterday -> CONNACK 5, certificate-mismatch', async () => {
    const expired = await deploymentCertificate('lock-1', Date.now() - 2 * 86_400_000)
    expect(new Date(new X509Certificate(expired.cert).validTo).getTime()).toBeLessThan(Date.now())
    expect(await refusal(s.raw({ clientId: 'lock-1', ...expired }))).toBe(5)
    expect(refusals()).toEqual([['connect', 'certificate-mismatch', 'certificate not verified by TLS']])
    // The same certificate, not expired, passes TLS and is refused for another reason: not the one enrolled.
    const valid = await deploymentCertificate('lock-1', Date.now())
    expect(await refusal(s.raw({ clientId: 'lock-1', ...valid }))).toBe(5)
    expect(refusals()).toEqual([['connect', 'certificate-mismatch', 'not the certificate issued last']])
    // And the enrolled one is accepted.
    const own = await s.raw({
      clientId: 'lock-1',
      cert: lock.certificatePem as string,
      key: lock.tlsPrivateKeyPem as string,
    })
    expect(own.connected).toBe(true)
  })

  test('no client certificate: mTLS is optional on the listener (requestCert, not required): no certificate and no password -> CONNACK 4, bad-credentials', async () => {
    expect(await refusal(s.raw({ clientId: 'lock-1' }))).toBe(4)
    expect(await refusal(s.raw({ clientId: 'lock-1', username: 'lock-1' }))).toBe(4)
    expect(refusals()).toEqual([
      ['connect', 'bad-credentials'],
      ['connect', 'bad-credentials'],
    ])
    // Without a certificate the CONNECT password still proves the key (the documented fallback).
    expect((await s.rawAs(lock)).connected).toBe(true)
  })
})

describe('attacks on connections', () => {
  /** Opens TCP (and TLS unless `tcpOnly`), writes `bytes` one byte every 250 ms; resolves when the broker closed it. */
  function slowPeer(bytes: Buffer, tcpOnly = false): Promise<{ sent: number; seconds: number }> {
    const { hostname, port } = new URL(s.url)
    const started = Date.now()
    return new Promise((resolve) => {
      let sent = 0
      const socket = tcpOnly
        ? netConnect({ host: hostname, port: Number(port) })
        : tlsConnect({ host: hostname, port: Number(port), ca: s.ca, servername: 'localhost' })
      const drip = setInterval(() => {
        if (sent < bytes.length && socket.writable) socket.write(bytes.subarray(sent, ++sent))
      }, 250)
      const stop = setTimeout(() => socket.destroy(), 30_000)
      socket.on('error', () => {})
      socket.once('close', () => {
        clearInterval(drip)
        clearTimeout(stop)
        resolve({ sent, seconds: (Date.now() - started) / 1000 })
      })
    })
  }

  test('slow-loris connect: no ClientHello, no CONNECT, or a CONNECT dripped byte by byte -> closed at the 10 s default deadline, connect-timeout', async () => {
    const connect = connectPacket({
      clientId: 'thermostat-1',
      username: 'thermostat-1',
      password: connectPasswordOf(thermostat.identity, 'thermostat-1'),
    }) // ~150 bytes: ~40 s at the drip's pace
    const [tcpOnly, silent, dripped] = await Promise.all([
      slowPeer(Buffer.alloc(0), true),
      slowPeer(Buffer.alloc(0)),
      slowPeer(connect),
    ])
    for (const { seconds } of [tcpOnly, silent, dripped]) {
      expect(seconds).toBeGreaterThanOrEqual(DEFAULT_CONNECT_TIMEOUT_SECONDS - 1)
      expect(seconds).toBeLessThan(DEFAULT_CONNECT_TIMEOUT_SECONDS + 10) // bounded, with slack for a busy machine
    }
    expect(dripped.sent).toBeLessThan(connect.length) // cut off although bytes kept coming
    const audit = s.takeAudit()
    expect(audit.filter((entry) => entry.event === 'connect-timeout')).toEqual([
      expect.objectContaining({ address: '127.0.0.1', seconds: DEFAULT_CONNECT_TIMEOUT_SECONDS }),
      expect.objectContaining({ address: '127.0.0.1', seconds: DEFAULT_CONNECT_TIMEOUT_SECONDS }),
    ])
    expect(audit.filter((entry) => entry.event === 'refused')).toEqual([]) // no CONNECT was ever parsed
    // Below MQTT, the TLS handshake has the same deadline (Node's default: 120 s, and it did not close).
    expect(s.logs()).toContainEqual(
      expect.objectContaining({ msg: 'TLS handshake failed', err: expect.stringMatching(/timeout/i) }),
    )
  }, 40_000)
})
