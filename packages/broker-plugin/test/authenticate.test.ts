import { readFileSync } from 'node:fs'
import { createConnectPassword, generateIdentity } from '@smqtt/core'
import { CertificateAuthority, createCertificateAuthority } from '@smqtt/keyserver'
import {
  closed,
  type Deployment,
  type Enrolled,
  p256Pems,
  rawConnect,
  rawExchange,
  startDeployment,
  within,
} from '@smqtt/test-kit/broker'
import { Aedes } from 'aedes'
import mqtt from 'mqtt'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { attachSmqtt, hashLegacyPassword } from '../src/index.js'

let d: Deployment
let thermostat: Enrolled
let app: Enrolled
beforeEach(async () => {
  d = await startDeployment()
  thermostat = await d.enroll('thermostat-1', ['thermostat'], { certificate: true })
  app = await d.enroll('app-1', ['app'])
  d.smqtt.applySnapshot(await d.freshSnapshot())
})
afterEach(async () => {
  await d.close()
})

const auditReasons = () => d.logs.filter((l) => l.audit && l.event === 'refused').map((l) => l.reason)
const password = (who: Enrolled, clientId = who.identity.id) => createConnectPassword(who.identity, clientId)

describe('CONNECT password (proof of key possession)', () => {
  test('accepted; the session records its principal', async () => {
    const client = await d.connectAs(app)
    expect(client.connected).toBe(true)
    expect(d.smqtt.state.sessions).toBe(1)
  })

  test.each([
    ['wrong password (signed by another key) → CONNACK 4', 'app-1', 'bad-credentials'],
    ['unknown principal → CONNACK 4 (same answer as a wrong password)', 'ghost-1', 'unknown-principal'],
  ])('%s', async (_, id, reason) => {
    // Signed with a key the key server never enrolled for `id`.
    const refused = d.connect({ clientId: id, username: id, password: createConnectPassword(generateIdentity(id), id) })
    await expect(refused).rejects.toMatchObject({ code: 4 })
    expect(auditReasons()).toEqual([reason])
  })

  test('a replayed CONNECT password → CONNACK 4', async () => {
    const once = password(app)
    const first = await d.connect({ clientId: 'app-1', username: 'app-1', password: once })
    first.end(true)
    await expect(d.connect({ clientId: 'app-1', username: 'app-1', password: once })).rejects.toMatchObject({ code: 4 })
    expect(auditReasons()).toEqual(['replayed-password'])
  })

  test('client id other than the principal id → CONNACK 2 (identifier rejected)', async () => {
    const refused = d.connect({ clientId: 'someone-else', username: 'app-1', password: password(app, 'someone-else') })
    await expect(refused).rejects.toMatchObject({ code: 2 })
    expect(auditReasons()).toEqual(['client-id-mismatch'])
  })

  test('session takeover: another principal using a live client id is refused; the victim stays connected', async () => {
    const victim = await d.connectAs(app)
    const attacker = d.connect({ clientId: 'app-1', username: 'thermostat-1', password: password(thermostat, 'app-1') })
    await expect(attacker).rejects.toMatchObject({ code: 2 })
    expect(victim.connected).toBe(true)
    expect(auditReasons()).toEqual(['client-id-mismatch'])
  })

  test('no credentials → CONNACK 4', async () => {
    await expect(d.connect({ clientId: 'app-1' })).rejects.toMatchObject({ code: 4 })
  })

  test('empty client id, clean=true → CONNACK 2 (SMQTT binds the id to the principal)', async () => {
    await expect(
      d.connect({ clientId: '', clean: true, username: 'app-1', password: password(app, '') }),
    ).rejects.toMatchObject({ code: 2 })
    expect(auditReasons()).toEqual(['empty-client-id'])
  })

  test('empty client id, clean=false → CONNACK 2 and close (MQTT-3.1.3-8; plain Aedes 1.2 accepts it)', async () => {
    // mqtt.js refuses to send this CONNECT, so it is built by hand.
    const { received, closed: wasClosed } = await rawExchange(
      d.url,
      d.ca,
      rawConnect('', false, 'app-1', password(app, '')),
    )
    expect([...received]).toEqual([0x20, 0x02, 0x00, 0x02])
    expect(wasClosed).toBe(true)
    expect(auditReasons()).toEqual(['empty-client-id'])
  })

  test('MQTT 5 clients are refused by Aedes 1.2 itself (CONNACK: unsupported protocol version)', async () => {
    const refused = d.connect({ clientId: 'app-1', username: 'app-1', password: password(app), protocolVersion: 5 })
    await expect(refused).rejects.toMatchObject({ code: expect.any(Number) })
    await refused.catch((err: { code: number; message: string }) => {
      console.info(`MQTT 5 CONNECT observed: code ${err.code}, ${err.message}`)
    })
  })
})

describe('mutual TLS', () => {
  const tlsOf = (who: Enrolled) => ({ cert: who.certificatePem as string, key: who.keyPem as string })

  test('a certificate from the CA authenticates its principal, no password needed', async () => {
    const client = await d.connect({ clientId: 'thermostat-1', ...tlsOf(thermostat) })
    expect(client.connected).toBe(true)
    expect(await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_connects_total')).toContain(
      'method="certificate"} 1',
    )
  })

  test('no certificate falls back to the CONNECT password', async () => {
    expect((await d.connectAs(thermostat)).connected).toBe(true)
  })

  test("another principal's certificate with a different client id → CONNACK 2", async () => {
    const refused = d.connect({ clientId: 'app-1', ...tlsOf(thermostat) })
    await expect(refused).rejects.toMatchObject({ code: 2 })
    expect(auditReasons()).toEqual(['client-id-mismatch'])
  })

  test('a certificate the CA issued but not the current one (re-enrolled) → CONNACK 5', async () => {
    const pki = `${d.h.dir}/pki`
    const keyDer = Buffer.from(readFileSync(`${pki}/ca.key`, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64')
    const ca = await CertificateAuthority.load(readFileSync(`${pki}/ca.pem`, 'utf8'), new Uint8Array(keyDer))
    const { spki, keyPem } = await p256Pems()
    const other = await ca.issueClientCertificate({ principalId: 'thermostat-1', publicKeySpki: spki, validityDays: 1 })
    await expect(
      d.connect({ clientId: 'thermostat-1', cert: other.certificatePem, key: keyPem }),
    ).rejects.toMatchObject({
      code: 5,
    })
    expect(auditReasons()).toEqual(['certificate-mismatch'])
  })

  test('a certificate from an unknown CA → CONNACK 5 (no fallback to a password)', async () => {
    const material = await createCertificateAuthority({ commonName: 'rogue CA', validityDays: 1 })
    const rogue = await CertificateAuthority.load(material.certificatePem, material.privateKeyPkcs8)
    const { spki, keyPem } = await p256Pems()
    const cert = await rogue.issueClientCertificate({
      principalId: 'thermostat-1',
      publicKeySpki: spki,
      validityDays: 1,
    })
    const refused = d.connect({
      clientId: 'thermostat-1',
      cert: cert.certificatePem,
      key: keyPem,
      username: 'thermostat-1',
      password: password(thermostat),
    })
    await expect(refused).rejects.toMatchObject({ code: 5 })
    expect(auditReasons()).toEqual(['certificate-mismatch'])
  })

  test('a revoked certificate → CONNACK 5', async () => {
    await d.h.keyServer.revokePrincipal('thermostat-1', 'admin')
    expect(d.smqtt.applySnapshot(await d.freshSnapshot())).toBe(true)
    await expect(d.connect({ clientId: 'thermostat-1', ...tlsOf(thermostat) })).rejects.toMatchObject({ code: 5 })
    expect(auditReasons()).toEqual(['principal-inactive'])
  })
})

describe('legacy username/password (scrypt)', () => {
  test('accepted with the right password for the mapped principal; refused otherwise', async () => {
    await d.close()
    const hash = await hashLegacyPassword('correct horse')
    d = await startDeployment({ legacyUsers: [{ username: 'old-app', principal: 'app-1', hash }] })
    app = await d.enroll('app-1', ['app'])
    d.smqtt.applySnapshot(await d.freshSnapshot())
    expect((await d.connect({ clientId: 'app-1', username: 'old-app', password: 'correct horse' })).connected).toBe(
      true,
    )
    await expect(d.connect({ clientId: 'app-1', username: 'old-app', password: 'wrong' })).rejects.toMatchObject({
      code: 4,
    })
    await expect(
      d.connect({ clientId: 'other', username: 'old-app', password: 'correct horse' }),
    ).rejects.toMatchObject({
      code: 2,
    })
    expect(auditReasons()).toEqual(['bad-credentials', 'client-id-mismatch'])
  })
})

describe('deny by default and rate limits', () => {
  test('before the first snapshot every CONNECT is refused (CONNACK 3)', async () => {
    const broker = await Aedes.createBroker()
    const smqtt = await attachSmqtt(broker, {
      keyServerPublicKey: d.h.keyServer.publicKey,
      logger: d.h.app.log as never,
    })
    expect(smqtt.state).toMatchObject({ snapshotIssuedAt: undefined, stale: true, snapshotAge: -1 })
    const refusals: unknown[] = []
    broker.authenticate({ id: 'app-1', conn: {} } as never, 'app-1', Buffer.from(password(app)), (err) =>
      refusals.push((err as { returnCode?: number } | null)?.returnCode),
    )
    expect(refusals).toEqual([3])
    await smqtt.close()
    await new Promise<void>((resolve) => broker.close(() => resolve()))
  })

  test('too many CONNECTs from one address that do not authenticate: the next is dropped without CONNACK', async () => {
    await d.close()
    d = await startDeployment({ connectLimits: { perAddress: 2 } })
    app = await d.enroll('app-1', ['app'])
    d.smqtt.applySnapshot(await d.freshSnapshot())
    // Authenticated CONNECTs are given back: any number of them leave the budget untouched.
    for (let i = 0; i < 3; i++) (await d.connectAs(app)).end(true)
    for (let i = 0; i < 2; i++)
      await expect(d.connect({ clientId: 'app-1', username: 'app-1', password: 'nope' })).rejects.toMatchObject({
        code: 4,
      })
    await expect(d.connectAs(app)).rejects.toThrow(/closed before CONNACK|ECONNRESET|EPIPE/)
    expect(auditReasons()).toEqual(['bad-credentials', 'bad-credentials', 'rate-limited'])
  })

  test('a site of 150 devices behind one NAT address reconnecting at once gets in, with the default limits', async () => {
    await d.close()
    d = await startDeployment()
    const site = await Promise.all(Array.from({ length: 150 }, (_, i) => d.enroll(`site-device-${i}`, ['app'])))
    d.smqtt.applySnapshot(await d.freshSnapshot())
    // 150 TLS handshakes and key proofs at once: the bound is about the limits, not a loaded machine's speed.
    const clients = await Promise.all(site.map((device) => d.connectAs(device, { connectTimeout: 30_000 })))
    for (const client of clients) client.end(true)
    expect(auditReasons()).toEqual([]) // before: 60 admitted (the per-address budget), 90 refused rate-limited
  }, 60_000)

  test('an address failing authentication too often is banned', async () => {
    await d.close()
    d = await startDeployment({ connectLimits: { failuresBeforeBan: 2, banSeconds: 60 } })
    app = await d.enroll('app-1', ['app'])
    d.smqtt.applySnapshot(await d.freshSnapshot())
    for (let i = 0; i < 2; i++)
      await expect(d.connect({ clientId: 'app-1', username: 'app-1', password: 'nope' })).rejects.toMatchObject({
        code: 4,
      })
    await expect(d.connectAs(app)).rejects.toThrow(/closed before CONNACK|ECONNRESET|EPIPE/)
    expect(auditReasons()).toEqual(['bad-credentials', 'bad-credentials', 'rate-limited'])
  })
})

// Keep imports used by helpers in other suites.
void mqtt
void closed
void within
