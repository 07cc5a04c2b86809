// Loads before @peculiar/x509, which this test also imports directly.
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm, stat, unlink } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, createServer, type Server, type TLSSocket } from 'node:tls'
import { isSmqttError } from '@smqtt/core'
import { afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import {
  CertificateAuthority,
  createCertificateAuthority,
  principalIdFromCertificate,
} from '../src/pki/certificate-authority.js'
import { ensureDevPki } from '../src/pki/dev-pki.js'
import {
  BasicConstraintsExtension,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  X509Certificate as PeculiarCertificate,
  SubjectKeyIdentifierExtension,
  X509CertificateGenerator,
} from '../src/pki/x509.js'

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1'
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2'

function p256Spki(): { spki: Uint8Array; privateKeyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return {
    spki: new Uint8Array(publicKey.export({ type: 'spki', format: 'der' })),
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.fail('expected a rejection'),
    (err: unknown) => err,
  )
}

let caMaterial: Awaited<ReturnType<typeof createCertificateAuthority>>
let ca: CertificateAuthority
let caCert: X509Certificate

beforeAll(async () => {
  caMaterial = await createCertificateAuthority({ commonName: 'SMQTT test CA', validityDays: 30 })
  ca = await CertificateAuthority.load(caMaterial.certificatePem, caMaterial.privateKeyPkcs8)
  caCert = new X509Certificate(caMaterial.certificatePem)
})

/** Checks what every certificate the test CA issues is: a leaf it signed, for `usage` only. */
function expectLeafOfTestCa(pem: string, usage: string): X509Certificate {
  const cert = new X509Certificate(pem)
  expect(cert.checkIssued(caCert)).toBe(true)
  expect(cert.verify(caCert.publicKey)).toBe(true)
  expect(cert.ca).toBe(false)
  expect(cert.keyUsage).toEqual([usage])
  return cert
}

describe('createCertificateAuthority', () => {
  test('makes a self-signed P-256 root that may certify one issuing CA (path length 1)', async () => {
    expect(caCert.ca).toBe(true)
    expect(caCert.subject).toBe('CN=SMQTT test CA')
    expect(caCert.checkIssued(caCert)).toBe(true)
    expect(caCert.verify(caCert.publicKey)).toBe(true)
    expect(caCert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')

    const parsed = new PeculiarCertificate(caMaterial.certificatePem)
    expect(parsed.signatureAlgorithm).toMatchObject({ name: 'ECDSA', hash: { name: 'SHA-256' } })
    const constraints = parsed.getExtension(BasicConstraintsExtension)
    expect(constraints?.ca).toBe(true)
    expect(constraints?.pathLength).toBe(1)
    expect(constraints?.critical).toBe(true)
    expect(parsed.getExtension(KeyUsagesExtension)?.usages).toBe(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)
    expect(parsed.getExtension(SubjectKeyIdentifierExtension)?.keyId).toMatch(/^[0-9a-f]{40}$/)
  })

  test('its intermediate has path length 0, keyCertSign + cRLSign, and leaves come with it but never the root', async () => {
    const intermediate = await ca.issueIntermediateAuthority({ commonName: 'SMQTT issuing CA' })
    const parsed = new PeculiarCertificate(intermediate.certificatePem)
    expect(parsed.getExtension(BasicConstraintsExtension)).toMatchObject({ ca: true, pathLength: 0, critical: true })
    expect(parsed.getExtension(KeyUsagesExtension)?.usages).toBe(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)
    expect(parsed.notAfter.getTime()).toBeLessThanOrEqual(Date.parse(caCert.validTo))
    const issuing = await CertificateAuthority.load(intermediate.certificatePem, intermediate.privateKeyPkcs8)
    expect(ca.chainPem).toBe('')
    expect(issuing.chainPem.trim()).toBe(intermediate.certificatePem.trim())
    const { spki } = p256Spki()
    const client = await issuing.issueClientCertificate({ principalId: 'lock-1', publicKeySpki: spki, validityDays: 1 })
    const blocks = client.certificatePem.match(/-----BEGIN CERTIFICATE-----/g) ?? []
    expect(blocks).toHaveLength(2)
    expect(client.certificatePem).toContain(intermediate.certificatePem.trim())
    expect(client.certificatePem).not.toContain(caMaterial.certificatePem.trim())
    // An intermediate may certify no CA, and neither may a root from before two levels.
    const refused = await rejection(issuing.issueIntermediateAuthority({ commonName: 'deeper' }))
    expect(isSmqttError(refused) && refused.code).toBe('ERR_CERTIFICATE_REQUEST_INVALID')
  })

  test('returns the private key as PKCS #8 DER that matches the certificate', () => {
    const privateKey = createPrivateKey({ key: Buffer.from(caMaterial.privateKeyPkcs8), format: 'der', type: 'pkcs8' })
    const derived = createPublicKey(privateKey).export({ type: 'spki', format: 'der' })
    expect(derived.equals(caCert.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true)
  })
})

describe('CertificateAuthority.load', () => {
  test("refuses another CA's private key", async () => {
    const other = await createCertificateAuthority({ commonName: 'Other CA', validityDays: 30 })
    const err = await rejection(CertificateAuthority.load(caMaterial.certificatePem, other.privateKeyPkcs8))
    expect(isSmqttError(err, 'ERR_CERTIFICATE_AUTHORITY_INVALID')).toBe(true)
  })

  test('refuses a certificate that is not a CA', async () => {
    const server = await ca.issueServerCertificate({ commonName: 'x', dnsNames: ['x'], validityDays: 1 })
    const key = createPrivateKey(server.privateKeyPem).export({ type: 'pkcs8', format: 'der' })
    const err = await rejection(CertificateAuthority.load(server.certificatePem, new Uint8Array(key)))
    expect(isSmqttError(err, 'ERR_CERTIFICATE_AUTHORITY_INVALID')).toBe(true)
  })

  test('refuses garbage certificate and key bytes', async () => {
    const badCert = await rejection(CertificateAuthority.load('not a certificate', caMaterial.privateKeyPkcs8))
    expect(isSmqttError(badCert, 'ERR_CERTIFICATE_AUTHORITY_INVALID')).toBe(true)
    const badKey = await rejection(CertificateAuthority.load(caMaterial.certificatePem, new Uint8Array(40)))
    expect(isSmqttError(badKey, 'ERR_CERTIFICATE_AUTHORITY_INVALID')).toBe(true)
  })
})

describe('issueServerCertificate', () => {
  test('issues a serverAuth certificate for the given DNS names and IPv4/IPv6 addresses', async () => {
    const issued = await ca.issueServerCertificate({
      commonName: 'localhost',
      dnsNames: ['localhost', 'broker.example.com'],
      ipAddresses: ['127.0.0.1', '::1'],
      validityDays: 10,
    })
    const cert = expectLeafOfTestCa(issued.certificatePem, SERVER_AUTH)
    expect(cert.checkHost('localhost')).toBe('localhost')
    expect(cert.checkHost('broker.example.com')).toBe('broker.example.com')
    expect(cert.checkHost('evil.example.com')).toBeUndefined()
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1')
    expect(cert.checkIP('::1')).toBe('::1')
    expect(cert.issuer).toBe('CN=SMQTT test CA')

    const derived = createPublicKey(createPrivateKey(issued.privateKeyPem)).export({ type: 'spki', format: 'der' })
    expect(derived.equals(cert.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true)

    const parsed = new PeculiarCertificate(issued.certificatePem)
    expect(parsed.getExtension(KeyUsagesExtension)?.usages).toBe(KeyUsageFlags.digitalSignature)
    expect(parsed.getExtension(ExtendedKeyUsageExtension)?.usages).toEqual([SERVER_AUTH])
    expect(principalIdFromCertificate(issued.certificatePem)).toBeUndefined()
  })

  test('refuses malformed names and addresses, and a certificate with no name at all', async () => {
    const base = { commonName: 'localhost', validityDays: 1 }
    for (const options of [
      { ...base, dnsNames: ['bad name'] },
      { ...base, dnsNames: ['-leading.example'] },
      { ...base, ipAddresses: ['256.0.0.1'] },
      { ...base, ipAddresses: ['fe80::1%eth0'] },
      { ...base, dnsNames: [], ipAddresses: [] },
    ]) {
      const err = await rejection(ca.issueServerCertificate(options))
      expect(isSmqttError(err, 'ERR_CERTIFICATE_REQUEST_INVALID')).toBe(true)
    }
  })
})

describe('issueClientCertificate', () => {
  test('issues a clientAuth certificate naming the principal in the CN and a URI SAN', async () => {
    const { spki } = p256Spki()
    const issued = await ca.issueClientCertificate({
      principalId: 'thermostat-hall',
      publicKeySpki: spki,
      validityDays: 7,
    })
    const cert = expectLeafOfTestCa(issued.certificatePem, CLIENT_AUTH)
    expect(cert.subject).toBe('CN=thermostat-hall')
    expect(cert.subjectAltName).toBe('URI:urn:smqtt:principal:thermostat-hall')
    expect(Buffer.from(spki).equals(cert.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true)
    expect(issued.serialNumber).toMatch(/^[0-9a-f]{1,32}$/)
    expect(BigInt(`0x${issued.serialNumber}`)).toBe(BigInt(`0x${cert.serialNumber}`))
    expect(principalIdFromCertificate(issued.certificatePem)).toBe('thermostat-hall')
    expect(principalIdFromCertificate(new Uint8Array(cert.raw))).toBe('thermostat-hall')
  })

  test('gives every certificate a different serial number', async () => {
    const { spki } = p256Spki()
    const serials = new Set<string>()
    for (let i = 0; i < 5; i++) {
      serials.add(
        (await ca.issueClientCertificate({ principalId: 'p', publicKeySpki: spki, validityDays: 1 })).serialNumber,
      )
    }
    expect(serials.size).toBe(5)
  })

  test('round-trips ids with spaces, slashes, non-ASCII and more than 64 characters', async () => {
    const { spki } = p256Spki()
    for (const principalId of ['kitchen/sensor 1', 'café:thermostat%20', 'x'.repeat(200), 'a,b+c=d"e']) {
      const issued = await ca.issueClientCertificate({ principalId, publicKeySpki: spki, validityDays: 1 })
      expect(principalIdFromCertificate(issued.certificatePem)).toBe(principalId)
    }
  })

  test('does not outlive the CA', async () => {
    const { spki } = p256Spki()
    const issued = await ca.issueClientCertificate({ principalId: 'p', publicKeySpki: spki, validityDays: 3650 })
    expect(new Date(new X509Certificate(issued.certificatePem).validTo).getTime()).toBeLessThanOrEqual(
      new Date(caCert.validTo).getTime(),
    )
  })

  test('refuses keys that are not EC P-256, and invalid principal ids', async () => {
    const spkiOf = (key: ReturnType<typeof generateKeyPairSync>['publicKey']) =>
      new Uint8Array(key.export({ type: 'spki', format: 'der' }))
    const keys = [
      spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey),
      spkiOf(generateKeyPairSync('ed25519').publicKey),
      spkiOf(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey),
      new Uint8Array(91),
    ]
    for (const publicKeySpki of keys) {
      const err = await rejection(ca.issueClientCertificate({ principalId: 'p', publicKeySpki, validityDays: 1 }))
      expect(isSmqttError(err, 'ERR_CERTIFICATE_REQUEST_INVALID')).toBe(true)
    }
    const { spki } = p256Spki()
    for (const principalId of ['', 'bad\u0000id', 'x'.repeat(257)]) {
      const err = await rejection(ca.issueClientCertificate({ principalId, publicKeySpki: spki, validityDays: 1 }))
      expect(isSmqttError(err, 'ERR_CERTIFICATE_REQUEST_INVALID')).toBe(true)
    }
  })
})

describe('principalIdFromCertificate', () => {
  async function selfSignedWithUris(uris: string[]): Promise<string> {
    const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
    const { SubjectAlternativeNameExtension } = await import('../src/pki/x509.js')
    const cert = await X509CertificateGenerator.createSelfSigned(
      {
        name: 'CN=test',
        keys,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        extensions: [new SubjectAlternativeNameExtension(uris.map((value) => ({ type: 'url', value })))],
      },
      crypto,
    )
    return cert.toString('pem')
  }

  test('is undefined for two principal URIs, a non-canonical encoding, or an invalid id', async () => {
    expect(await selfSignedWithUris(['urn:smqtt:principal:a']).then(principalIdFromCertificate)).toBe('a')
    expect(
      await selfSignedWithUris(['urn:smqtt:principal:a', 'urn:smqtt:principal:b']).then(principalIdFromCertificate),
    ).toBeUndefined()
    expect(await selfSignedWithUris(['urn:smqtt:principal:a%2Db']).then(principalIdFromCertificate)).toBeUndefined()
    expect(await selfSignedWithUris(['urn:smqtt:principal:%00']).then(principalIdFromCertificate)).toBeUndefined()
    expect(await selfSignedWithUris(['urn:smqtt:principal:%E0']).then(principalIdFromCertificate)).toBeUndefined()
    expect(await selfSignedWithUris(['urn:smqtt:principal:']).then(principalIdFromCertificate)).toBeUndefined()
  })

  test('is undefined for a certificate without a principal URI and for bytes that are no certificate', () => {
    expect(principalIdFromCertificate(caMaterial.certificatePem)).toBeUndefined()
    expect(principalIdFromCertificate(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01]))).toBeUndefined()
    expect(principalIdFromCertificate('garbage')).toBeUndefined()
  })
})

describe('mutual TLS 1.3 with issued certificates', () => {
  const NETWORK_TIMEOUT_MS = 5_000
  const servers: Server[] = []
  const sockets = new Set<TLSSocket>()

  afterEach(async () => {
    for (const socket of sockets) socket.destroy()
    sockets.clear()
    await Promise.all(servers.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
  })

  /**
   * A server that requires a client certificate from the CA and answers with the principal it
   * maps; `refused` settles with the server's error for the first connection it refuses.
   */
  async function startServer(): Promise<{ port: number; refused: Promise<Error> }> {
    const serverCert = await ca.issueServerCertificate({
      commonName: 'localhost',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
      validityDays: 1,
    })
    const server = createServer(
      {
        cert: serverCert.certificatePem,
        key: serverCert.privateKeyPem,
        ca: caMaterial.certificatePem,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
      },
      (socket) => {
        sockets.add(socket)
        const peer = socket.getPeerCertificate()
        socket.end(`principal=${principalIdFromCertificate(new Uint8Array(peer.raw)) ?? 'none'}`)
      },
    )
    server.on('connection', (socket) => socket.on('error', () => {}))
    const refused = withTimeout(
      new Promise<Error>((resolve) => server.once('tlsClientError', resolve)),
      'no connection was refused',
    )
    refused.catch(() => {}) // only the tests that expect a refusal await it
    servers.push(server)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', resolve)
    })
    return { port: (server.address() as AddressInfo).port, refused }
  }

  function withTimeout<T>(promise: Promise<T>, message: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), NETWORK_TIMEOUT_MS)
    })
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
  }

  /** A TLS client's certificate and key for principal `thermostat-hall`, issued by `issuer`. */
  async function thermostatCredentials(issuer: CertificateAuthority): Promise<{ cert: string; key: string }> {
    const { spki, privateKeyPem } = p256Spki()
    const issued = await issuer.issueClientCertificate({
      principalId: 'thermostat-hall',
      publicKeySpki: spki,
      validityDays: 1,
    })
    return { cert: issued.certificatePem, key: privateKeyPem }
  }

  /** Connects, reads until the server closes; `received` is what the server sent, `error` why it failed. */
  function exchange(port: number, clientCredentials: { cert?: string; key?: string }) {
    const closed = new Promise<{ received: string; error: Error | undefined }>((resolve) => {
      const socket = connect({
        host: '127.0.0.1',
        port,
        ca: caMaterial.certificatePem,
        minVersion: 'TLSv1.3',
        ...clientCredentials,
      })
      sockets.add(socket)
      let received = ''
      let error: Error | undefined
      socket.setEncoding('utf8')
      socket.on('data', (chunk: string) => {
        received += chunk
      })
      socket.on('error', (err) => {
        error = err
      })
      socket.on('close', () => resolve({ received, error }))
    })
    return withTimeout(closed, 'the TLS exchange did not finish')
  }

  test('accepts a client certificate issued by the CA and maps it to the principal', async () => {
    const { port } = await startServer()
    const outcome = await exchange(port, await thermostatCredentials(ca))
    expect(outcome.error).toBeUndefined()
    expect(outcome.received).toBe('principal=thermostat-hall')
  })

  test('refuses a client certificate from another CA', async () => {
    const { port, refused } = await startServer()
    const otherMaterial = await createCertificateAuthority({ commonName: 'SMQTT test CA', validityDays: 30 })
    const other = await CertificateAuthority.load(otherMaterial.certificatePem, otherMaterial.privateKeyPkcs8)
    const outcome = await exchange(port, await thermostatCredentials(other))
    expect(outcome.received).toBe('')
    // Node drops a client whose certificate fails verification without saying why on the
    // server side ('socket hang up'); that the handler never ran is what matters.
    await expect(refused).resolves.toBeInstanceOf(Error)
  })

  test('refuses a client without a certificate', async () => {
    const { port, refused } = await startServer()
    const outcome = await exchange(port, {})
    expect(outcome.received).toBe('')
    expect((await refused).message).toMatch(/certificate/i)
  })
})

describe('ensureDevPki', () => {
  let dir: string

  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'smqtt-dev-pki-')), 'nested', 'pki')
  })

  afterEach(async () => {
    await rm(join(dir, '..', '..'), { recursive: true, force: true })
  })

  const fileNames = ['ca.pem', 'ca.key', 'intermediate.pem', 'intermediate.key', 'server.pem', 'server.key']

  test('creates a root, an intermediate and a localhost server certificate, keys readable by the owner only', async () => {
    const pki = await ensureDevPki(dir)
    expect(pki.created).toBe(true)
    for (const name of fileNames) expect((await stat(join(dir, name))).isFile()).toBe(true)
    if (process.platform !== 'win32') {
      expect((await stat(join(dir, 'ca.key'))).mode & 0o777).toBe(0o600)
      expect((await stat(join(dir, 'server.key'))).mode & 0o777).toBe(0o600)
      expect((await stat(join(dir, 'intermediate.key'))).mode & 0o777).toBe(0o600)
    }
    expect(await readFile(join(dir, 'ca.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/)

    const caCertificate = new X509Certificate(pki.caPem)
    const intermediate = new X509Certificate(await readFile(join(dir, 'intermediate.pem'), 'utf8'))
    const server = new X509Certificate(pki.serverCertPem)
    expect(intermediate.verify(caCertificate.publicKey)).toBe(true)
    expect(server.verify(intermediate.publicKey)).toBe(true)
    // server.pem: the leaf, then the intermediate; never the root.
    expect(pki.serverCertPem).toContain(intermediate.toString().trim())
    expect(pki.serverCertPem).not.toContain(pki.caPem.trim())
    expect(server.checkHost('localhost')).toBe('localhost')
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1')
    expect(server.checkIP('::1')).toBe('::1')
    expect(server.checkPrivateKey(createPrivateKey(pki.serverKeyPem))).toBe(true)
    expect(pki.ca.certificatePem.trim()).toBe(intermediate.toString().trim())
  })

  test('loads the same files on later runs and never rewrites them', async () => {
    const first = await ensureDevPki(dir)
    const second = await ensureDevPki(dir)
    expect(second.created).toBe(false)
    expect(second.caPem).toBe(first.caPem)
    expect(second.serverCertPem).toBe(first.serverCertPem)
    expect(second.serverKeyPem).toBe(first.serverKeyPem)
    expect(await readFile(join(dir, 'ca.pem'), 'utf8')).toBe(first.caPem)

    // The reloaded CA still signs with the same key.
    const { spki } = p256Spki()
    const issued = await second.ca.issueClientCertificate({ principalId: 'p', publicKeySpki: spki, validityDays: 1 })
    const intermediate = new X509Certificate(await readFile(join(dir, 'intermediate.pem'), 'utf8'))
    expect(new X509Certificate(issued.certificatePem).verify(intermediate.publicKey)).toBe(true)
  })

  test('refuses a folder that holds only part of the PKI, and leaves it as it was', async () => {
    const first = await ensureDevPki(dir)
    await unlink(join(dir, 'server.key'))
    await expect(ensureDevPki(dir)).rejects.toThrow(/server\.key/)
    expect(await readFile(join(dir, 'ca.pem'), 'utf8')).toBe(first.caPem)
    await expect(stat(join(dir, 'server.key'))).rejects.toThrow()
  })

  test.skipIf(process.platform === 'win32')('refuses a key file readable by group or others', async () => {
    await ensureDevPki(dir)
    await chmod(join(dir, 'ca.key'), 0o640)
    await expect(ensureDevPki(dir)).rejects.toThrow(/ca\.key.*chmod 600/)
  })
})
