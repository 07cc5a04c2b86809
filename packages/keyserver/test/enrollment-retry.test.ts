// A device whose enrollment committed but whose answer was lost retries with the same token and
// the same keys: the key server answers as the first time. Anything else with a used token stays
// refused. Real key server over HTTPS, on SQLite and on PostgreSQL (SMQTT_TEST_POSTGRES_URL,
// default postgres://postgres@127.0.0.1:5432/test).
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from 'node:tls'
import {
  createEnrollmentRequest,
  type EnrollmentRequest,
  generateIdentity,
  type Identity,
  openPrincipalRecord,
} from '@smqtt/core'
import { type Harness, type Response, startHarness } from '@smqtt/test-kit/keyserver'
import pg from 'pg'
import { afterAll, afterEach, beforeEach, describe, expect, test } from 'vitest'
import { principalIdFromCertificate } from '../src/pki/certificate-authority.js'
import { ensureDevPki } from '../src/pki/dev-pki.js'

const POSTGRES_URL = process.env.SMQTT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const schemas: string[] = []

function postgresStoreUrl(): string {
  const schema = `smqtt_test_${crypto.randomUUID().replaceAll('-', '')}`
  schemas.push(schema)
  const url = new URL(POSTGRES_URL)
  url.searchParams.set('schema', schema)
  return url.toString()
}

afterAll(async () => {
  if (schemas.length === 0) return
  const client = new pg.Client({ connectionString: POSTGRES_URL })
  await client.connect()
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`)
  } finally {
    await client.end()
  }
})

interface Device {
  readonly identity: Identity
  readonly tls: { readonly spki: Uint8Array; readonly privateKeyPem: string }
}

async function newDevice(id: string): Promise<Device> {
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', pair.privateKey)).toString('base64')
  return {
    identity: generateIdentity(id),
    tls: {
      spki: new Uint8Array(await crypto.subtle.exportKey('spki', pair.publicKey)),
      privateKeyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)?.join('\n')}\n-----END PRIVATE KEY-----\n`,
    },
  }
}

interface EnrollBody {
  readonly principal: unknown
  readonly kid: number
  readonly keyServerPublicKey: string
  readonly certificatePem?: string
}

const STORES: readonly (readonly [string, () => string | undefined])[] = [
  ['sqlite', () => undefined],
  ['postgres', postgresStoreUrl],
]

describe.each(STORES)('repeated enrollment (%s store)', (_kind, storeUrl) => {
  let h: Harness
  beforeEach(async () => {
    const url = storeUrl()
    h = await startHarness(url === undefined ? {} : { storeUrl: url })
  })
  afterEach(async () => {
    await h.close()
  })

  const errorOf = (response: Response) => ({ status: response.status, body: response.body })
  const enrollWith = (body: EnrollmentRequest) => h.request('POST', '/v1/enroll', { body })
  const audit = async () =>
    (
      (await h.admin('GET', '/v1/admin/audit?limit=1000')).body as {
        entries: { action: string; subject: string; outcome: string; details: Record<string, unknown> }[]
      }
    ).entries

  async function token(principalId: string, roles: string[] = ['thermostat'], ttlSeconds?: number): Promise<string> {
    const response = await h.admin('POST', '/v1/admin/enrollment-tokens', {
      principalId,
      roles,
      ...(ttlSeconds ? { ttlSeconds } : {}),
    })
    expect(response.status, response.text).toBe(201)
    return (response.body as { token: string }).token
  }

  /** What a used token answers today: the refusal every other misuse must keep getting. */
  async function usedTokenRefusal(): Promise<{ status: number; body: unknown }> {
    const t = await token('reference-1')
    expect((await enrollWith(createEnrollmentRequest(generateIdentity('reference-1'), t))).status).toBe(200)
    const refused = errorOf(await enrollWith(createEnrollmentRequest(generateIdentity('reference-1'), t)))
    expect(refused).toMatchObject({ status: 401, body: { error: { code: 'ERR_ENROLLMENT_TOKEN_INVALID' } } })
    return refused
  }

  /** A mutual-TLS handshake with the certificate, against a server trusting only the dev CA. */
  async function handshake(certificatePem: string, privateKeyPem: string): Promise<string | undefined> {
    const pki = await ensureDevPki(join(h.dir, 'pki'))
    const server = createTlsServer({
      key: pki.serverKeyPem,
      cert: pki.serverCertPem,
      ca: pki.caPem,
      requestCert: true,
      rejectUnauthorized: true,
    })
    const accepted = new Promise<string | undefined>((resolve) => {
      server.on('secureConnection', (socket: TLSSocket) => {
        resolve(socket.authorized ? principalIdFromCertificate(socket.getPeerCertificate().raw) : undefined)
        socket.end()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    const client = tlsConnect({ host: '127.0.0.1', port, ca: pki.caPem, cert: certificatePem, key: privateKeyPem })
    client.on('error', () => {})
    try {
      return await accepted
    } finally {
      client.destroy()
      server.close()
    }
  }

  test('the same keys again: same kid, same principal, the same working certificate; audited as a repeat', async () => {
    const device = await newDevice('thermostat-1')
    const request = createEnrollmentRequest(device.identity, await token('thermostat-1'), {
      tlsPublicKey: device.tls.spki,
    })
    const first = await enrollWith(request)
    expect(first.status, first.text).toBe(200)
    h.clock.now += 600 // ten minutes later
    const again = await enrollWith(request)
    expect(again.status, again.text).toBe(200)

    const [a, b] = [first.body as EnrollBody, again.body as EnrollBody]
    expect(b.kid).toBe(a.kid)
    expect(b.keyServerPublicKey).toBe(a.keyServerPublicKey)
    expect(b.certificatePem).toBe(a.certificatePem)
    const record = openPrincipalRecord(b.principal, h.keyServer.publicKey)
    expect(record).toEqual({ ...openPrincipalRecord(a.principal, h.keyServer.publicKey), issuedAt: h.clock.now })
    expect(Array.from(record.signingKey)).toEqual(Array.from(device.identity.signingKey))
    expect(await handshake(b.certificatePem as string, device.tls.privateKeyPem)).toBe('thermostat-1')
    // The principal works: its signed requests are accepted.
    expect((await h.device(device.identity, 'GET', '/v1/principal')).status).toBe(200)

    const principals = (await h.admin('GET', '/v1/admin/principals')).body as { principals: { id: string }[] }
    expect(principals.principals.map((p) => p.id)).toEqual(['thermostat-1'])
    const entries = (await audit()).filter((e) => e.subject === 'thermostat-1')
    expect(entries.map((e) => [e.action, e.outcome])).toEqual([
      ['enrollment-token.create', 'ok'],
      ['enroll', 'ok'],
      ['enroll.repeat', 'ok'],
    ])
    expect(entries[2]?.details).toMatchObject({ kid: a.kid, certificate: expect.any(String) })
  })

  test('without a certificate too, and each repeat is audited', async () => {
    const identity = generateIdentity('app-1')
    const request = createEnrollmentRequest(identity, await token('app-1', ['app']), { roles: ['app'] })
    const answers = [await enrollWith(request), await enrollWith(request), await enrollWith(request)]
    expect(answers.map((r) => [r.status, (r.body as EnrollBody).kid, (r.body as EnrollBody).certificatePem])).toEqual([
      [200, 1, undefined],
      [200, 1, undefined],
      [200, 1, undefined],
    ])
    expect((await audit()).filter((e) => e.action === 'enroll.repeat')).toHaveLength(2)
  })

  test('a lost answer: the connection is cut after the request is sent, the retry gets the enrollment', async () => {
    const identity = generateIdentity('lock-1')
    const request = createEnrollmentRequest(identity, await token('lock-1', ['lock']))
    // Send the request, then drop the connection without reading the answer.
    await new Promise<void>((resolve) => {
      const req = httpsRequest(`${h.url}/v1/enroll`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        ca: h.caPem,
      })
      req.on('error', () => resolve())
      req.on('response', () => {
        req.destroy(new Error('answer lost'))
        resolve()
      })
      req.end(JSON.stringify(request), () => setImmediate(() => req.destroy(new Error('answer lost'))))
    })
    // The server goes on and commits; wait until it has.
    const deadline = Date.now() + 5000
    while (!(await audit()).some((e) => e.action === 'enroll' && e.subject === 'lock-1')) {
      if (Date.now() > deadline) throw new Error('the enrollment never committed')
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const retry = await enrollWith(request)
    expect(retry.status, retry.text).toBe(200)
    expect(openPrincipalRecord((retry.body as EnrollBody).principal, h.keyServer.publicKey)).toMatchObject({
      id: 'lock-1',
      kid: 1,
    })
    expect((await audit()).filter((e) => e.action === 'enroll.repeat')).toHaveLength(1)
  })

  test('two identical requests at once: both get the one enrollment', async () => {
    const device = await newDevice('thermostat-2')
    const request = createEnrollmentRequest(device.identity, await token('thermostat-2'), {
      tlsPublicKey: device.tls.spki,
    })
    const answers = await Promise.all([enrollWith(request), enrollWith(request)])
    expect(answers.map((r) => r.status)).toEqual([200, 200])
    const [a, b] = answers.map((r) => r.body as EnrollBody)
    expect(b?.kid).toBe(a?.kid)
    expect(b?.certificatePem).toBe(a?.certificatePem)
    const principals = (await h.admin('GET', '/v1/admin/principals')).body as {
      principals: { certificateSerial: string }[]
    }
    expect(principals.principals).toHaveLength(1)
  })

  test('a used token with other keys, another id, other roles or another TLS key is refused as before', async () => {
    const refusal = await usedTokenRefusal()
    const device = await newDevice('thermostat-3')
    const t = await token('thermostat-3')
    expect(
      (await enrollWith(createEnrollmentRequest(device.identity, t, { tlsPublicKey: device.tls.spki }))).status,
    ).toBe(200)

    const other = await newDevice('thermostat-3')
    const mixed = { ...device.identity, agreementKey: other.identity.agreementKey } // same signing key, new agreement key
    const attempts = {
      'other keys': createEnrollmentRequest(other.identity, t, { tlsPublicKey: device.tls.spki }),
      'other agreement key': createEnrollmentRequest(mixed, t, { tlsPublicKey: device.tls.spki }),
      'another id': createEnrollmentRequest(generateIdentity('mallory'), t),
      'other roles': createEnrollmentRequest(device.identity, t, { roles: ['admin'], tlsPublicKey: device.tls.spki }),
      'another TLS key': createEnrollmentRequest(device.identity, t, { tlsPublicKey: other.tls.spki }),
      'no TLS key': createEnrollmentRequest(device.identity, t),
    }
    for (const [what, body] of Object.entries(attempts)) {
      h.clock.now += 60 // an address's first 5 failures a minute are audited one by one, the rest summed up
      expect({ what, ...errorOf(await enrollWith(body)) }).toEqual({ what, ...refusal })
    }
    // A proof made by another key for these public keys stays a signature failure, as before.
    const forged = { ...attempts['other keys'], identity: createEnrollmentRequest(device.identity, t).identity }
    expect(errorOf(await enrollWith(forged))).toMatchObject({
      status: 401,
      body: { error: { code: 'ERR_REQUEST_SIGNATURE_INVALID' } },
    })

    const refusedRepeats = (await audit()).filter((e) => e.action === 'enroll' && e.outcome === 'refused')
    expect(refusedRepeats.map((e) => e.details.reason)).toEqual(
      expect.arrayContaining([
        'token unknown, used or expired (keys differ from the enrollment)',
        'token unknown, used or expired (token is bound to thermostat-3)',
        'token unknown, used or expired (roles differ from the token)',
        'token unknown, used or expired (TLS key differs from the enrollment)',
      ]),
    )
    expect((await audit()).filter((e) => e.action === 'enroll.repeat')).toEqual([])
  })

  test('a token burnt by a refused redemption enrolls nobody, so it is never repeated', async () => {
    const refusal = await usedTokenRefusal()
    const identity = generateIdentity('app-2')
    const t = await token('app-2', ['app'])
    const wrongRoles = await enrollWith(createEnrollmentRequest(identity, t, { roles: ['admin'] }))
    expect(errorOf(wrongRoles)).toEqual(refusal)
    expect(errorOf(await enrollWith(createEnrollmentRequest(identity, t)))).toEqual(refusal)
  })

  test('refused once the principal is revoked or disabled', async () => {
    const refusal = await usedTokenRefusal()
    for (const [id, action] of [
      ['app-3', 'revoke'],
      ['app-4', 'disable'],
    ] as const) {
      const request = createEnrollmentRequest(generateIdentity(id), await token(id, ['app']))
      expect((await enrollWith(request)).status).toBe(200)
      expect((await h.admin('POST', `/v1/admin/principals/${id}/${action}`, {})).status).toBeLessThan(300)
      expect(errorOf(await enrollWith(request))).toEqual(refusal)
    }
    const reasons = (await audit()).filter((e) => e.outcome === 'refused').map((e) => e.details.reason)
    expect(reasons).toContain('token unknown, used or expired (principal is revoked)')
    expect(reasons).toContain('token unknown, used or expired (principal is disabled)')
  })

  test('only within enrollmentRepeatSeconds (24 h) of the token use, even past the token expiry', async () => {
    const refusal = await usedTokenRefusal()
    const request = createEnrollmentRequest(generateIdentity('app-5'), await token('app-5', ['app'], 60))
    expect((await enrollWith(request)).status).toBe(200)
    h.clock.now += 86_400 - 1 // long past the token's 60 s
    expect((await enrollWith(request)).status).toBe(200)
    h.clock.now += 1
    expect(errorOf(await enrollWith(request))).toEqual(refusal)
  })
})
