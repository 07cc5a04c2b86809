// X.509 is key-server-only, so PKI code uses @peculiar/x509 over WebCrypto instead of growing core.
//
// A ready-to-use PKI for development and first runs: a root CA, an issuing intermediate CA and a
// server certificate for this machine, created once in a folder and reused ever after.
// Production deployments point the config at their own files instead; nothing here is special
// except that it never overwrites a CA, and the server leaf is renewed from the intermediate when
// due (see server-certificate-renewal.ts).
//
// The root lives 5 years and may only vouch for the names the deployment's servers use: the
// loopback names and addresses plus the ones given at init (name constraints, critical; the
// intermediate carries them too). It certifies the intermediate and nothing else; the
// intermediate lives as long as the root and issues every leaf. The server certificate file
// holds the leaf followed by the intermediate: what every listener sends, never the root.
// Must load before @peculiar/x509 (see the file).
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { assertDeploymentFileMode } from '@smqtt/core/file-modes'
import { CertificateAuthority, createCertificateAuthority } from './certificate-authority.js'
import { renewServerCertificate, SERVER_CERTIFICATE_VALIDITY_DAYS } from './server-certificate-renewal.js'
import { PemConverter } from './x509.js'

/**
 * The files {@link ensureDevPki} keeps, by role. Keys are PKCS #8 PEM, mode 0600. A folder made
 * before two levels has no intermediate files: its root goes on issuing the leaves.
 */
export const DEV_PKI_FILES = {
  caCertificate: 'ca.pem',
  caKey: 'ca.key',
  serverCertificate: 'server.pem',
  serverKey: 'server.key',
  intermediateCertificate: 'intermediate.pem',
  intermediateKey: 'intermediate.key',
} as const

/** The CN of the issuing intermediate CA under the deployment root. */
export const INTERMEDIATE_COMMON_NAME = 'SMQTT issuing CA'

/** Lifetime of a deployment CA made by `init` or the development PKI: 5 years. */
export const CA_VALIDITY_DAYS = 1825
/** Lifetime of its server leaves (renewed when a third is left). */
export const SERVER_VALIDITY_DAYS = SERVER_CERTIFICATE_VALIDITY_DAYS
/** What every development certificate covers: the names a loopback deployment is reached by. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'] as const
const SECRET_FILE_MODE = 0o600

export interface DevPki {
  /** The root: the trust anchor peers pin. */
  readonly caPem: string
  /** The leaf followed by the intermediate. */
  readonly serverCertPem: string
  readonly serverKeyPem: string
  /** The issuing CA (the intermediate; the root in a folder made before two levels). */
  readonly ca: CertificateAuthority
  /** True when this call created the files, false when it loaded existing ones. */
  readonly created: boolean
}

/**
 * Makes sure `dir` holds a development PKI and returns it: on the first run creates `ca.pem`,
 * `ca.key`, `intermediate.pem`, `intermediate.key`, `server.pem` and `server.key` (a certificate
 * for `localhost`, `127.0.0.1` and `::1`, followed by the intermediate); on later runs loads them.
 * Never overwrites. Refuses, with an Error naming the files, a folder that holds some of the
 * files but not all, or a key file readable by group or others.
 *
 * @example
 * ```ts
 * const pki = await ensureDevPki('/var/lib/smqtt/pki')
 * https.createServer({ cert: pki.serverCertPem, key: pki.serverKeyPem, ca: pki.caPem })
 * ```
 */
export async function ensureDevPki(dir: string): Promise<DevPki> {
  const paths = {
    caCertificate: join(dir, DEV_PKI_FILES.caCertificate),
    caKey: join(dir, DEV_PKI_FILES.caKey),
    serverCertificate: join(dir, DEV_PKI_FILES.serverCertificate),
    serverKey: join(dir, DEV_PKI_FILES.serverKey),
    intermediateCertificate: join(dir, DEV_PKI_FILES.intermediateCertificate),
    intermediateKey: join(dir, DEV_PKI_FILES.intermediateKey),
  }
  const intermediate = await Promise.all([paths.intermediateCertificate, paths.intermediateKey].map(exists))
  // A folder from before two levels has neither intermediate file; it stays one-level.
  const required = intermediate.some(Boolean) ? Object.values(paths) : Object.values(paths).slice(0, 4)
  const present = await Promise.all(required.map(exists))
  if (present.every(Boolean)) {
    const pki = await loadDevPki(paths)
    const renewal = await renewServerCertificate(pki.ca, {
      certFile: paths.serverCertificate,
      keyFile: paths.serverKey,
    })
    if (!renewal.renewed) return pki
    const [serverCertPem, serverKeyPem] = await Promise.all([
      readFile(paths.serverCertificate, 'utf8'),
      readFile(paths.serverKey, 'utf8'),
    ])
    return { ...pki, serverCertPem, serverKeyPem }
  }
  if (present.some(Boolean)) {
    const missing = required.filter((_, i) => !present[i])
    throw new Error(
      `${dir} holds part of a development PKI; missing: ${missing.join(', ')}. ` +
        'Restore the missing files, or remove the others to start a new CA (every certificate it issued then stops working).',
    )
  }
  return createDevPki(dir, paths)
}

type DevPkiPaths = Record<keyof typeof DEV_PKI_FILES, string>

/** A new development PKI, in memory only (PEM, and the CA keys as PKCS #8). */
export interface DevPkiMaterial {
  /** The root. */
  readonly caPem: string
  readonly caKeyPkcs8: Uint8Array
  readonly intermediatePem: string
  readonly intermediateKeyPkcs8: Uint8Array
  /** The leaf followed by the intermediate. */
  readonly serverCertPem: string
  readonly serverKeyPem: string
  /** The issuing CA: the intermediate. */
  readonly ca: CertificateAuthority
}

/**
 * Makes a development root CA, its intermediate and a server certificate for `localhost`, `127.0.0.1`, `::1` and the
 * `serverNames` (DNS names or IP addresses) without writing anything: `init` seals the CA keys
 * into the store instead of files. Both CAs are name-constrained to exactly those names.
 *
 * @example
 * ```ts
 * const { caPem, caKeyPkcs8 } = await createDevPkiMaterial({ serverNames: ['keys.example'] })
 * ```
 */
export async function createDevPkiMaterial(options: { serverNames?: readonly string[] } = {}): Promise<DevPkiMaterial> {
  const names = [...new Set([...LOOPBACK_NAMES, ...(options.serverNames ?? [])])]
  const dnsNames = names.filter((name) => isIP(name) === 0)
  const ipAddresses = names.filter((name) => isIP(name) !== 0)
  const caMaterial = await createCertificateAuthority({
    commonName: 'SMQTT development CA',
    validityDays: CA_VALIDITY_DAYS,
    permittedNames: { dnsNames, ipAddresses },
  })
  const root = await CertificateAuthority.load(caMaterial.certificatePem, caMaterial.privateKeyPkcs8)
  const intermediate = await root.issueIntermediateAuthority({ commonName: INTERMEDIATE_COMMON_NAME })
  const ca = await CertificateAuthority.load(intermediate.certificatePem, intermediate.privateKeyPkcs8)
  const server = await ca.issueServerCertificate({
    commonName: dnsNames.find((name) => name !== 'localhost') ?? 'localhost',
    dnsNames,
    ipAddresses,
    validityDays: SERVER_VALIDITY_DAYS,
  })
  return {
    caPem: caMaterial.certificatePem,
    caKeyPkcs8: caMaterial.privateKeyPkcs8,
    intermediatePem: intermediate.certificatePem,
    intermediateKeyPkcs8: intermediate.privateKeyPkcs8,
    serverCertPem: server.certificatePem,
    serverKeyPem: server.privateKeyPem,
    ca,
  }
}

async function createDevPki(dir: string, paths: DevPkiPaths): Promise<DevPki> {
  const { caPem, caKeyPkcs8, intermediatePem, intermediateKeyPkcs8, serverCertPem, serverKeyPem, ca } =
    await createDevPkiMaterial()
  await mkdir(dir, { recursive: true, mode: 0o700 })
  // 'wx' fails if the file appeared meanwhile (another process): never overwrite.
  await writeFile(paths.caKey, PemConverter.encode(caKeyPkcs8, 'PRIVATE KEY'), {
    flag: 'wx',
    mode: SECRET_FILE_MODE,
  })
  await writeFile(paths.caCertificate, caPem, { flag: 'wx' })
  await writeFile(paths.intermediateKey, PemConverter.encode(intermediateKeyPkcs8, 'PRIVATE KEY'), {
    flag: 'wx',
    mode: SECRET_FILE_MODE,
  })
  await writeFile(paths.intermediateCertificate, intermediatePem, { flag: 'wx' })
  await writeFile(paths.serverKey, serverKeyPem, { flag: 'wx', mode: SECRET_FILE_MODE })
  await writeFile(paths.serverCertificate, serverCertPem, { flag: 'wx' })
  return { caPem, serverCertPem, serverKeyPem, ca, created: true }
}

async function loadDevPki(paths: DevPkiPaths): Promise<DevPki> {
  await Promise.all([refuseOpenPermissions(paths.caKey), refuseOpenPermissions(paths.serverKey)])
  const [caPem, caKeyPem, serverCertPem, serverKeyPem] = await Promise.all([
    readFile(paths.caCertificate, 'utf8'),
    readFile(paths.caKey, 'utf8'),
    readFile(paths.serverCertificate, 'utf8'),
    readFile(paths.serverKey, 'utf8'),
  ])
  const root = await CertificateAuthority.load(caPem, pemKey(paths.caKey, caKeyPem))
  if (!(await exists(paths.intermediateKey))) return { caPem, serverCertPem, serverKeyPem, ca: root, created: false }
  await refuseOpenPermissions(paths.intermediateKey)
  const [intermediatePem, intermediateKeyPem] = await Promise.all([
    readFile(paths.intermediateCertificate, 'utf8'),
    readFile(paths.intermediateKey, 'utf8'),
  ])
  if (!(await root.hasIssued(intermediatePem)))
    throw new Error(`${paths.intermediateCertificate} is not certified by ${paths.caCertificate}`)
  const ca = await CertificateAuthority.load(intermediatePem, pemKey(paths.intermediateKey, intermediateKeyPem))
  return { caPem, serverCertPem, serverKeyPem, ca, created: false }
}

function pemKey(path: string, pem: string): Uint8Array {
  try {
    return new Uint8Array(PemConverter.decodeFirst(pem))
  } catch (cause) {
    throw new Error(`${path} is not a PEM private key`, { cause })
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

async function refuseOpenPermissions(path: string): Promise<void> {
  assertDeploymentFileMode(path, 'secret', { label: 'development PKI key' })
}
