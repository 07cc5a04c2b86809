// Issue 19, certificates: lifetimes and renewal of the server leaves, name constraints on the
// deployment CA, and the CRL for third-party brokers. Checked from outside with the openssl
// command line (what mosquitto and most brokers verify with), not only with our own parser.
import { execFile, execFileSync, spawnSync } from 'node:child_process'
import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createEnrollmentRequest, generateIdentity } from '@smqtt/core'
import { type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { type KeyServerConfig, loadKeyServerConfig } from '../src/config.js'
import { MasterKey } from '../src/master-key.js'
import {
  CertificateAuthority,
  createCertificateAuthority,
  principalIdFromCertificate,
} from '../src/pki/certificate-authority.js'
import { CA_VALIDITY_DAYS, createDevPkiMaterial, SERVER_VALIDITY_DAYS } from '../src/pki/dev-pki.js'
import { renewServerCertificate } from '../src/pki/server-certificate-renewal.js'
import { initKeyServer, renewDeploymentCertificate, startKeyServer, upgradeDeploymentPki } from '../src/server.js'
import { openStore } from '../src/store/open-store.js'

const DAY_MS = 86_400_000
const dirs: string[] = []
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-certs-'))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** Writes `files` into a fresh folder and runs openssl there; status and all output. */
function openssl(args: string[], files: Record<string, string | Uint8Array>): { status: number; output: string } {
  const dir = tempDir()
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content)
  const result = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' })
  return { status: result.status ?? -1, output: `${result.stdout}${result.stderr}` }
}

/** The PEM certificates in `text`, in order. */
function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []
}

function p256Spki(): Uint8Array {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }))
}

/** Issues a `localhost` leaf from `ca` and writes it where the key server's config reads its own. */
async function writeServerLeaf(ca: CertificateAuthority, config: KeyServerConfig, validityDays: number): Promise<void> {
  const leaf = await ca.issueServerCertificate({ commonName: 'localhost', dnsNames: ['localhost'], validityDays })
  writeFileSync(config.tls.certFile, leaf.certificatePem)
  writeFileSync(config.tls.keyFile, leaf.privateKeyPem)
}

describe('name constraints on the deployment CA', () => {
  let caPem: string
  let ca: CertificateAuthority
  beforeAll(async () => {
    const material = await createCertificateAuthority({
      commonName: 'SMQTT constrained CA',
      validityDays: 30,
      permittedNames: { dnsNames: ['localhost', 'keys.example'], ipAddresses: ['127.0.0.1', '::1'] },
    })
    caPem = material.certificatePem
    ca = await CertificateAuthority.load(caPem, material.privateKeyPkcs8)
  })

  test('the CA carries a critical name constraints extension with the permitted DNS names and addresses', () => {
    const { status, output } = openssl(['x509', '-in', 'ca.pem', '-noout', '-text'], { 'ca.pem': caPem })
    expect(status, output).toBe(0)
    expect(output).toMatch(/X509v3 Name Constraints: critical\s+Permitted:/)
    for (const name of ['DNS:localhost', 'DNS:keys.example', 'IP:127.0.0.1/255.255.255.255', 'IP:0:0:0:0:0:0:0:1/'])
      expect(output).toContain(name)
    expect(output).not.toContain('Excluded')
  })

  test('openssl verifies a server leaf inside the constraints and refuses one outside them', async () => {
    const inside = await ca.issueServerCertificate({
      commonName: 'keys.example',
      dnsNames: ['keys.example', 'api.keys.example', 'localhost'],
      ipAddresses: ['127.0.0.1'],
      validityDays: 1,
    })
    const ok = openssl(['verify', '-CAfile', 'ca.pem', '-purpose', 'sslserver', 'leaf.pem'], {
      'ca.pem': caPem,
      'leaf.pem': inside.certificatePem,
    })
    expect(ok.output).toContain('leaf.pem: OK')

    for (const outside of [
      { dnsNames: ['bank.example.com'] },
      { dnsNames: ['localhost.evil.example'] },
      { ipAddresses: ['10.0.0.1'] },
    ]) {
      const leaf = await ca.issueServerCertificate({ commonName: 'x', validityDays: 1, ...outside })
      const refused = openssl(['verify', '-CAfile', 'ca.pem', '-purpose', 'sslserver', 'leaf.pem'], {
        'ca.pem': caPem,
        'leaf.pem': leaf.certificatePem,
      })
      expect(refused.status, JSON.stringify(outside)).not.toBe(0)
      expect(refused.output).toContain('permitted subtree violation')
    }
  })

  test('client certificates still verify, for principal ids with dots too (OpenSSL reads such a CN as a host name)', async () => {
    for (const principalId of ['thermostat-1', 'sensor.hall', 'a.b.c', 'x:y.z']) {
      const issued = await ca.issueClientCertificate({ principalId, publicKeySpki: p256Spki(), validityDays: 1 })
      const result = openssl(['verify', '-CAfile', 'ca.pem', '-purpose', 'sslclient', 'client.pem'], {
        'ca.pem': caPem,
        'client.pem': issued.certificatePem,
      })
      expect(result.output, principalId).toContain('client.pem: OK')
      expect(principalIdFromCertificate(issued.certificatePem)).toBe(principalId)
    }
    const plain = await ca.issueClientCertificate({ principalId: 'lock-1', publicKeySpki: p256Spki(), validityDays: 1 })
    expect(new X509Certificate(plain.certificatePem).subject).toBe('CN=lock-1')
    const dotted = await ca.issueClientCertificate({
      principalId: 'lock.1',
      publicKeySpki: p256Spki(),
      validityDays: 1,
    })
    expect(new X509Certificate(dotted.certificatePem).subject).toBe('CN=urn:smqtt:principal:lock.1')
  })
})

describe('lifetimes of the development PKI', () => {
  test('CA 1825 days, server leaf 90 days; the CA is name-constrained to the loopback names and the extra ones', async () => {
    expect(CA_VALIDITY_DAYS).toBe(1825)
    expect(SERVER_VALIDITY_DAYS).toBe(90)
    const pki = await createDevPkiMaterial({ serverNames: ['keys.example', '192.0.2.7'] })
    const caCert = new X509Certificate(pki.caPem)
    const server = new X509Certificate(pki.serverCertPem)
    const days = (cert: X509Certificate) => Math.round((Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / DAY_MS)
    expect(days(caCert)).toBe(1825)
    expect(days(server)).toBe(90)
    // The intermediate lives as long as the root, never longer.
    expect(new X509Certificate(pki.intermediatePem).validTo).toBe(caCert.validTo)
    expect(server.checkHost('keys.example')).toBe('keys.example')
    expect(server.checkIP('192.0.2.7')).toBe('192.0.2.7')
    expect(server.checkHost('localhost')).toBe('localhost')
    const text = openssl(['x509', '-in', 'ca.pem', '-noout', '-text'], { 'ca.pem': pki.caPem }).output
    for (const name of ['DNS:localhost', 'DNS:keys.example', 'IP:127.0.0.1/', 'IP:192.0.2.7/', 'IP:0:0:0:0:0:0:0:1/'])
      expect(text).toContain(name)
    expect(
      // server.pem holds the leaf and then the intermediate, which chains it to the root.
      openssl(['verify', '-CAfile', 'ca.pem', '-untrusted', 'server.pem', 'server.pem'], {
        'ca.pem': pki.caPem,
        'server.pem': pki.serverCertPem,
      }).output,
    ).toContain('server.pem: OK')
  })
})

describe('lifetime of client certificates', () => {
  test('a CRL distribution point when the caller gives one', async () => {
    const material = await createCertificateAuthority({ commonName: 'SMQTT CDP CA', validityDays: 30 })
    const cdpCa = await CertificateAuthority.load(material.certificatePem, material.privateKeyPkcs8)
    const url = 'https://keys.example:8443/v1/crl'
    const issued = await cdpCa.issueClientCertificate({
      principalId: 'p',
      publicKeySpki: p256Spki(),
      validityDays: 1,
      crlDistributionPoint: url,
    })
    const text = openssl(['x509', '-in', 'c.pem', '-noout', '-text'], { 'c.pem': issued.certificatePem }).output
    expect(text).toMatch(new RegExp(`X509v3 CRL Distribution Points:\\s+Full Name:\\s+URI:${url}`))
  })

  test('365 days by default, at most 397 (config)', async () => {
    const { defaultKeyServerConfig, parseKeyServerConfig } = await import('../src/config.js')
    expect(defaultKeyServerConfig('/srv/smqtt').clientCertificateValidityDays).toBe(365)
    expect(
      parseKeyServerConfig({ clientCertificateValidityDays: 397 }, '/srv/smqtt').clientCertificateValidityDays,
    ).toBe(397)
    expect(() => parseKeyServerConfig({ clientCertificateValidityDays: 398 }, '/srv/smqtt')).toThrow(
      /\$\.clientCertificateValidityDays/,
    )
  })
})

describe('renewal of server certificates', () => {
  let ca: CertificateAuthority
  let caPem: string
  beforeAll(async () => {
    const material = await createCertificateAuthority({ commonName: 'SMQTT renewal CA', validityDays: 1825 })
    caPem = material.certificatePem
    ca = await CertificateAuthority.load(caPem, material.privateKeyPkcs8)
  })

  async function leafFiles(validityDays: number, issuer = ca) {
    const dir = tempDir()
    const issued = await issuer.issueServerCertificate({
      commonName: 'localhost',
      dnsNames: ['localhost', 'keys.example'],
      ipAddresses: ['127.0.0.1', '::1'],
      validityDays,
    })
    const certFile = join(dir, 'server.pem')
    const keyFile = join(dir, 'server.key')
    writeFileSync(certFile, issued.certificatePem, { mode: 0o644 })
    writeFileSync(keyFile, issued.privateKeyPem, { mode: 0o600 })
    return { certFile, keyFile, pem: issued.certificatePem }
  }

  test('leaves a leaf with more than a third of its life left alone', async () => {
    const files = await leafFiles(90)
    const result = await renewServerCertificate(ca, { ...files, now: new Date(Date.now() + 59 * DAY_MS) })
    expect(result.renewed).toBe(false)
    expect(readFileSync(files.certFile, 'utf8')).toBe(files.pem)
  })

  test('re-issues a leaf with less than a third of its life left: same names, new key, 90 days, key file 0600', async () => {
    const files = await leafFiles(90)
    const oldKey = readFileSync(files.keyFile, 'utf8')
    const result = await renewServerCertificate(ca, { ...files, now: new Date(Date.now() + 61 * DAY_MS) })
    expect(result).toMatchObject({ renewed: true, reason: 'due' })
    const renewed = new X509Certificate(readFileSync(files.certFile, 'utf8'))
    expect(renewed.verify(new X509Certificate(caPem).publicKey)).toBe(true)
    expect(renewed.subjectAltName).toBe(new X509Certificate(files.pem).subjectAltName)
    expect(renewed.subject).toBe('CN=localhost')
    expect(Math.round((Date.parse(renewed.validTo) - Date.parse(renewed.validFrom)) / DAY_MS)).toBe(90)
    expect(readFileSync(files.keyFile, 'utf8')).not.toBe(oldKey)
    expect(renewed.checkPrivateKey((await import('node:crypto')).createPrivateKey(readFileSync(files.keyFile)))).toBe(
      true,
    )
    expect(statSync(files.keyFile).mode & 0o777).toBe(0o600)
    expect(statSync(files.certFile).mode & 0o077).toBe(0o044 & statSync(files.certFile).mode)
  })

  test('re-issues a leaf that lives longer than the policy (the 825-day leaves of earlier inits)', async () => {
    const files = await leafFiles(825)
    const result = await renewServerCertificate(ca, files)
    expect(result).toMatchObject({ renewed: true, reason: 'too-long' })
    const renewed = new X509Certificate(readFileSync(files.certFile, 'utf8'))
    expect(Math.round((Date.parse(renewed.validTo) - Date.parse(renewed.validFrom)) / DAY_MS)).toBe(90)
  })

  test('two processes renewing at once leave a matching key and certificate', async () => {
    const files = await leafFiles(825)
    const results = await Promise.all([renewServerCertificate(ca, files), renewServerCertificate(ca, files)])
    expect(results.map((r) => r.renewed).sort()).toEqual([false, true])
    const { createPrivateKey } = await import('node:crypto')
    expect(
      new X509Certificate(readFileSync(files.certFile)).checkPrivateKey(createPrivateKey(readFileSync(files.keyFile))),
    ).toBe(true)
  })

  test('leaves a certificate from another CA alone, even when it is due; --force renews one of ours at once', async () => {
    const other = await createCertificateAuthority({ commonName: 'Operator CA', validityDays: 100 })
    const foreign = await leafFiles(3, await CertificateAuthority.load(other.certificatePem, other.privateKeyPkcs8))
    const result = await renewServerCertificate(ca, { ...foreign, now: new Date(Date.now() + 2.5 * DAY_MS) })
    expect(result).toMatchObject({ renewed: false, reason: 'other-issuer' })
    expect(readFileSync(foreign.certFile, 'utf8')).toBe(foreign.pem)

    const ours = await leafFiles(90)
    expect(await renewServerCertificate(ca, { ...ours, force: true })).toMatchObject({
      renewed: true,
      reason: 'forced',
    })
    expect(readFileSync(ours.certFile, 'utf8')).not.toBe(ours.pem)
  })
})

describe('init and start', () => {
  test('init names the server in the certificate and the CA constraints; start renews a leaf that is due', async () => {
    const dir = join(tempDir(), 'keyserver')
    const { configFile } = await initKeyServer(dir, {
      listen: { host: '127.0.0.1', port: 0 },
      serverNames: ['keys.example'],
    })
    const config = loadKeyServerConfig(configFile)
    const caText = openssl(['x509', '-in', 'ca.pem', '-noout', '-text'], {
      'ca.pem': readFileSync(config.tls.caFile, 'utf8'),
    }).output
    expect(caText).toMatch(/X509v3 Name Constraints: critical/)
    expect(caText).toContain('DNS:keys.example')
    expect(new X509Certificate(readFileSync(config.tls.certFile)).checkHost('keys.example')).toBe('keys.example')

    // An 825-day leaf from the deployment CA, as an earlier init wrote it.
    const masterKey = MasterKey.fromEnvOrFile({ file: config.masterKeyFile })
    const store = await openStore(config.store)
    const sealed = await store.getSecret('ca.private-key')
    await store.close()
    if (!sealed) throw new Error('no CA key')
    const ca = await CertificateAuthority.load(
      readFileSync(config.tls.caFile, 'utf8'),
      masterKey.open('ca.private-key', sealed),
    )
    await writeServerLeaf(ca, config, 825)

    const server = await startKeyServer(config, { logger: (await import('pino')).pino({ level: 'silent' }) })
    try {
      const renewed = new X509Certificate(readFileSync(config.tls.certFile))
      expect(Math.round((Date.parse(renewed.validTo) - Date.parse(renewed.validFrom)) / DAY_MS)).toBe(90)
      // The listener serves the renewed leaf.
      // Asynchronously: the server answers from this very process.
      const { stdout: served } = await promisify(execFile)(
        'sh',
        ['-c', `openssl s_client -connect ${new URL(server.url).host} -showcerts </dev/null 2>/dev/null`],
        { encoding: 'utf8', timeout: 10_000 },
      )
      expect(served).toContain(renewed.toString().trim().split('\n')[1])
    } finally {
      await server.close()
    }

    // `pki renew --force` (the CLI calls renewDeploymentCertificate) re-issues it by hand.
    const before = readFileSync(config.tls.certFile, 'utf8')
    const result = await renewDeploymentCertificate(config, { force: true })
    expect(result.renewed).toBe(true)
    expect(readFileSync(config.tls.certFile, 'utf8')).not.toBe(before)
  }, 30_000)
})

describe('two levels: the root certifies an issuing intermediate, which issues every leaf', () => {
  let pki: Awaited<ReturnType<typeof createDevPkiMaterial>>
  beforeAll(async () => {
    pki = await createDevPkiMaterial({ serverNames: ['keys.example'] })
  })

  test('openssl verifies server and client certificates under the root with the intermediate they come with', async () => {
    const client = await pki.ca.issueClientCertificate({
      principalId: 'sensor.hall',
      publicKeySpki: p256Spki(),
      validityDays: 1,
    })
    for (const [chain, purpose] of [
      [pki.serverCertPem, 'sslserver'],
      [client.certificatePem, 'sslclient'],
    ] as const) {
      const [leaf = '', intermediate = '', ...more] = pemBlocks(chain)
      expect(more).toEqual([])
      expect(intermediate.trim()).toBe(pki.intermediatePem.trim())
      const files = { 'ca.pem': pki.caPem, 'intermediate.pem': intermediate, 'leaf.pem': leaf }
      const args = ['verify', '-CAfile', 'ca.pem', '-purpose', purpose]
      expect(openssl([...args, '-untrusted', 'intermediate.pem', 'leaf.pem'], files).output).toContain('leaf.pem: OK')
      // Without the intermediate the leaf does not chain: peers must send it, and do.
      expect(openssl([...args, 'leaf.pem'], files).status).not.toBe(0)
    }
    const text = openssl(['x509', '-in', 'i.pem', '-noout', '-text'], { 'i.pem': pki.intermediatePem }).output
    expect(text).toMatch(/CA:TRUE, pathlen:0/)
    expect(text).toMatch(/Certificate Sign, CRL Sign/)
    expect(text).toMatch(/X509v3 Name Constraints: critical/)
  })

  test('a leaf from the intermediate for a name outside the constraints still fails', async () => {
    const leaf = await pki.ca.issueServerCertificate({
      commonName: 'x',
      dnsNames: ['bank.example.com'],
      validityDays: 1,
    })
    const [first = ''] = pemBlocks(leaf.certificatePem)
    const refused = openssl(
      ['verify', '-CAfile', 'ca.pem', '-untrusted', 'i.pem', '-purpose', 'sslserver', 'leaf.pem'],
      {
        'ca.pem': pki.caPem,
        'i.pem': pki.intermediatePem,
        'leaf.pem': first,
      },
    )
    expect(refused.status).not.toBe(0)
    expect(refused.output).toContain('permitted subtree violation')
  })

  test('a one-level deployment: start keeps it working as it was; pki upgrade re-certifies the root, and then every leaf comes from the intermediate', async () => {
    const dir = join(tempDir(), 'keyserver')
    const { configFile } = await initKeyServer(dir, { listen: { host: '127.0.0.1', port: 0 } })
    const config = loadKeyServerConfig(configFile)
    const masterKey = MasterKey.fromEnvOrFile({ file: config.masterKeyFile })
    // What an earlier init left: a root with path length 0 sealed in the store, no intermediate,
    // the server leaf and a client certificate issued by the root itself.
    const oldRoot = await oneLevelRoot()
    const root = await CertificateAuthority.load(oldRoot.certificatePem, oldRoot.privateKeyPkcs8)
    rmSync(config.store.slice('sqlite:'.length))
    const store = await openStore(config.store)
    await store.insertSecret('ca.private-key', masterKey.seal('ca.private-key', oldRoot.privateKeyPkcs8))
    await store.close()
    writeFileSync(config.tls.caFile, oldRoot.certificatePem)
    await writeServerLeaf(root, config, 90)
    const client = await root.issueClientCertificate({
      principalId: 'old-1',
      publicKeySpki: p256Spki(),
      validityDays: 9,
    })

    const silent = (await import('pino')).pino({ level: 'silent' })
    const served = async () => {
      const server = await startKeyServer(config, { logger: silent })
      try {
        const { stdout } = await promisify(execFile)(
          'sh',
          ['-c', `openssl s_client -connect ${new URL(server.url).host} -showcerts </dev/null 2>/dev/null`],
          { encoding: 'utf8', timeout: 10_000 },
        )
        return pemBlocks(stdout).map((pem) => new X509Certificate(pem))
      } finally {
        await server.close()
      }
    }
    // Start changes nothing pinned: a path-length-0 root can certify no intermediate.
    expect((await served()).map((c) => c.subject)).toEqual(['CN=localhost'])
    expect(readFileSync(config.tls.caFile, 'utf8')).toBe(oldRoot.certificatePem)

    const upgrade = await upgradeDeploymentPki(config)
    expect(upgrade).toMatchObject({ rootRecertified: true, renewal: { renewed: true, reason: 'new-issuer' } })
    const newRootPem = readFileSync(config.tls.caFile, 'utf8')
    expect(readFileSync(`${config.tls.caFile}.one-level`, 'utf8')).toBe(oldRoot.certificatePem)
    const [oldAnchor, newAnchor] = [new X509Certificate(oldRoot.certificatePem), new X509Certificate(newRootPem)]
    expect(newAnchor.subject).toBe(oldAnchor.subject)
    expect(newAnchor.validTo).toBe(oldAnchor.validTo)
    expect(newAnchor.publicKey.equals(oldAnchor.publicKey)).toBe(true)

    const [serverLeaf = '', intermediate = ''] = pemBlocks(readFileSync(config.tls.certFile, 'utf8'))
    const files = {
      'ca.pem': newRootPem,
      'i.pem': intermediate,
      'leaf.pem': serverLeaf,
      'old.pem': client.certificatePem,
    }
    const verify = ['verify', '-CAfile', 'ca.pem', '-untrusted', 'i.pem']
    expect(openssl([...verify, '-purpose', 'sslserver', 'leaf.pem'], files).output).toContain('leaf.pem: OK')
    // A client certificate the root issued before stays valid, under the re-certified root too.
    expect(openssl([...verify, '-purpose', 'sslclient', 'old.pem'], files).output).toContain('old.pem: OK')

    const sent = await served()
    expect(sent).toHaveLength(2)
    for (const certificate of sent) expect(certificate.checkIssued(certificate)).toBe(false)
    expect(sent[1]?.checkIssued(newAnchor)).toBe(true)
    expect(sent.some((certificate) => certificate.raw.equals(newAnchor.raw))).toBe(false)
    expect((await upgradeDeploymentPki(config)).rootRecertified).toBe(false)
  }, 30_000)
})

/** A root as `init` made it before two levels: basicConstraints CA:TRUE, pathlen:0. */
async function oneLevelRoot(): Promise<{ certificatePem: string; privateKeyPkcs8: Uint8Array }> {
  const {
    X509CertificateGenerator,
    BasicConstraintsExtension,
    KeyUsagesExtension,
    KeyUsageFlags,
    SubjectKeyIdentifierExtension,
  } = await import('../src/pki/x509.js')
  const webCrypto = globalThis.crypto
  const keys = await webCrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])
  const certificate = await X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name: 'CN=SMQTT development CA',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 30 * DAY_MS),
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new BasicConstraintsExtension(true, 0, true),
        new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, webCrypto),
      ],
    },
    webCrypto,
  )
  const pkcs8 = new Uint8Array(await webCrypto.subtle.exportKey('pkcs8', keys.privateKey))
  return { certificatePem: certificate.toString('pem'), privateKeyPkcs8: pkcs8 }
}

describe('certificate revocation list', () => {
  let h: Harness
  beforeAll(async () => {
    h = await startHarness()
  })
  afterAll(() => h?.close())
  afterEach(() => {
    h.clock.now = 1_790_000_000
  })

  async function enrollWithCertificate(id: string): Promise<string> {
    const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles: ['app'] })
    const request = createEnrollmentRequest(generateIdentity(id), (token.body as { token: string }).token, {
      tlsPublicKey: p256Spki(),
    })
    const enrolled = await h.request('POST', '/v1/enroll', { body: request })
    expect(enrolled.status, enrolled.text).toBe(200)
    return (enrolled.body as { certificatePem: string }).certificatePem
  }

  async function fetchCrl(): Promise<{ der: Buffer; contentType: string | undefined }> {
    const { request } = await import('node:https')
    return new Promise((resolve, reject) => {
      const req = request(`${h.url}/v1/crl`, { ca: h.caPem }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`))
          else resolve({ der: Buffer.concat(chunks), contentType: res.headers['content-type'] })
        })
      })
      req.on('error', reject)
      req.end()
    })
  }

  test('GET /v1/crl, unauthenticated: DER signed by the CA, the revoked serial listed, nextUpdate within 7 days', async () => {
    const kept = await enrollWithCertificate('crl-kept')
    const doomed = await enrollWithCertificate('crl-doomed')
    const before = await fetchCrl()
    expect(before.contentType).toBe('application/pkix-crl')
    expect(
      openssl(['crl', '-inform', 'DER', '-in', 'crl.der', '-noout', '-text'], { 'crl.der': before.der }).output,
    ).toContain('No Revoked Certificates')

    expect((await h.admin('POST', '/v1/admin/principals/crl-doomed/revoke')).status).toBe(200)
    const { der } = await fetchCrl()
    const serial = new X509Certificate(doomed).serialNumber.toUpperCase()
    const text = openssl(['crl', '-inform', 'DER', '-in', 'crl.der', '-noout', '-text'], { 'crl.der': der }).output
    expect(text).toContain(`Serial Number: ${serial}`)
    expect(text).toContain('X509v3 CRL Number')
    expect(text).toContain('X509v3 Authority Key Identifier')
    expect(text).not.toContain(new X509Certificate(kept).serialNumber.toUpperCase())
    const lastUpdate = Date.parse(/Last Update: (.+)/.exec(text)?.[1] ?? '')
    const nextUpdate = Date.parse(/Next Update: (.+)/.exec(text)?.[1] ?? '')
    expect(nextUpdate - lastUpdate).toBeLessThanOrEqual(7 * DAY_MS)
    expect(nextUpdate - lastUpdate).toBeGreaterThanOrEqual(7 * DAY_MS - 6 * 60_000)

    // The CRL verifies under its issuer, the intermediate (not the root); -crl_check refuses the
    // revoked certificate and passes the other, each sent with the intermediate as a client sends it.
    const pemCrl = execFileSync('openssl', ['crl', '-inform', 'DER', '-outform', 'PEM'], { input: der }).toString()
    const [, intermediate = ''] = pemBlocks(kept)
    const files = {
      'ca.pem': h.caPem,
      'intermediate.pem': intermediate,
      'crl.pem': pemCrl,
      'doomed.pem': doomed,
      'kept.pem': kept,
    }
    expect(openssl(['crl', '-in', 'crl.pem', '-CAfile', 'intermediate.pem', '-noout'], files).output).toMatch(
      /verify OK/,
    )
    expect(openssl(['crl', '-in', 'crl.pem', '-CAfile', 'ca.pem', '-noout'], files).output).not.toMatch(/verify OK/)
    const check = ['verify', '-crl_check', '-CAfile', 'ca.pem', '-untrusted', 'intermediate.pem', '-CRLfile', 'crl.pem']
    const revoked = openssl([...check, 'doomed.pem'], files)
    expect(revoked.status).not.toBe(0)
    expect(revoked.output).toContain('certificate revoked')
    expect(openssl([...check, 'kept.pem'], files).output).toContain('kept.pem: OK')
  })

  test('a certificate revoked longer ago than any certificate lives is left out: the CRL does not grow with lifetime revocations', async () => {
    const longGone = await enrollWithCertificate('crl-long-gone')
    const recent = await enrollWithCertificate('crl-recent')
    // Revoked 400 days ago (straight into the store, as a fleet's history would be): its
    // certificate, valid at most 397 days from an issue before that, has expired.
    expect(await h.store.setPrincipalStatus('crl-long-gone', 'revoked', h.clock.now - 400 * 86_400)).toBe(true)
    expect((await h.admin('POST', '/v1/admin/principals/crl-recent/revoke')).status).toBe(200)
    const { der } = await fetchCrl()
    const text = openssl(['crl', '-inform', 'DER', '-in', 'crl.der', '-noout', '-text'], { 'crl.der': der }).output
    expect(text).toContain(`Serial Number: ${new X509Certificate(recent).serialNumber.toUpperCase()}`)
    expect(text).not.toContain(new X509Certificate(longGone).serialNumber.toUpperCase())
  })

  test('a disabled principal is on hold; the CRL is in the OpenAPI description', async () => {
    const held = await enrollWithCertificate('crl-held')
    expect((await h.admin('POST', '/v1/admin/principals/crl-held/disable')).status).toBe(204)
    const { der } = await fetchCrl()
    const text = openssl(['crl', '-inform', 'DER', '-in', 'crl.der', '-noout', '-text'], { 'crl.der': der }).output
    const entry = text.slice(text.indexOf(`Serial Number: ${new X509Certificate(held).serialNumber.toUpperCase()}`))
    expect(entry).toMatch(
      /^Serial Number: [0-9A-F]+\s+Revocation Date: .+\s+CRL entry extensions:\s+X509v3 CRL Reason Code:\s+Certificate Hold/,
    )

    const openapi = await h.request('GET', '/openapi.json')
    expect(Object.keys((openapi.body as { paths: object }).paths)).toContain('/v1/crl')
  })
})
