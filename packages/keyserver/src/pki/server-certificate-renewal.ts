// Short-lived server leaves only work if something renews them: the key server does it when it
// starts (and `npm start` for the broker's copy), `smqtt-keyserver pki renew` does it by hand.
// A leaf is re-issued from the deployment CA with the same CN and SANs and a new key, once less
// than a third of its life is left (30 of 90 days), or when it lives longer than the policy
// allows (the 825-day leaves of earlier inits), or when the deployment's root issued it and the
// intermediate issues now (a deployment made before two levels). The file holds the leaf followed
// by the intermediate. Leaves from another CA are the operator's: left alone.
import { chmod, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import type { CertificateAuthority } from './certificate-authority.js'
import { SubjectAlternativeNameExtension, X509Certificate } from './x509.js'

/** How long a server leaf from the deployment CA lives, in days. */
export const SERVER_CERTIFICATE_VALIDITY_DAYS = 90

const DAY_MS = 86_400_000
// A leaf may be up to this much longer than its validityDays (the notBefore backdating for clock skew).
const LIFETIME_SLACK_MS = DAY_MS

export interface RenewServerCertificateOptions {
  /** The leaf, PEM; rewritten in place (mode 0644) when renewed. */
  readonly certFile: string
  /** Its PKCS #8 key, PEM; rewritten in place (mode 0600) when renewed. */
  readonly keyFile: string
  /** Lifetime of the new leaf (default {@link SERVER_CERTIFICATE_VALIDITY_DAYS}). */
  readonly validityDays?: number
  /** Renew even when not due. */
  readonly force?: boolean
  /**
   * The deployment's root when `ca` is its intermediate: a leaf the root issued directly (before
   * two levels) is re-issued from `ca` at once (reason `new-issuer`).
   */
  readonly formerIssuer?: CertificateAuthority
  /** For tests: the time to judge "due" by. */
  readonly now?: Date
}

export interface ServerCertificateRenewal {
  readonly renewed: boolean
  /**
   * `due`: under a third of its life left; `too-long`: lives longer than validityDays; `forced`;
   * `new-issuer`: signed by `formerIssuer`; `not-due`; `other-issuer`: not signed by this CA (never touched).
   */
  readonly reason: 'due' | 'too-long' | 'forced' | 'new-issuer' | 'not-due' | 'other-issuer'
  /** notAfter of the certificate now in certFile. */
  readonly notAfter: Date
}

/**
 * Re-issues the server certificate in `certFile`/`keyFile` from `ca` when it is due (see the
 * file comment), keeping its CN, DNS names and IP addresses. Each file is written beside itself
 * and renamed over the old one, key first.
 *
 * @example
 * ```ts
 * const { renewed, notAfter } = await renewServerCertificate(ca, { certFile: 'pki/server.pem', keyFile: 'pki/server.key' })
 * ```
 */
export async function renewServerCertificate(
  ca: CertificateAuthority,
  options: RenewServerCertificateOptions,
): Promise<ServerCertificateRenewal> {
  // Nothing to do writes nothing (a deployment on a read-only file system still starts).
  const unchanged = await keptAsItIs(ca, options)
  if (unchanged) return unchanged
  // Key server processes sharing these files may start together: one renews, the others wait
  // and then find a fresh leaf, so no process pairs one's key with another's certificate.
  const release = await lock(`${options.certFile}.renew-lock`)
  try {
    return await renewLocked(ca, options)
  } finally {
    await release()
  }
}

/** The answer when the certificate stays as it is, or undefined when it is to be re-issued. */
async function keptAsItIs(
  ca: CertificateAuthority,
  options: RenewServerCertificateOptions,
): Promise<ServerCertificateRenewal | undefined> {
  const pem = await readFile(options.certFile, 'utf8')
  const current = new X509Certificate(pem)
  if (!(await ca.hasIssued(pem))) {
    if (await options.formerIssuer?.hasIssued(pem)) return undefined
    return { renewed: false, reason: 'other-issuer', notAfter: current.notAfter }
  }
  return renewalReason(current, options) ? undefined : { renewed: false, reason: 'not-due', notAfter: current.notAfter }
}

function renewalReason(current: X509Certificate, options: RenewServerCertificateOptions) {
  const validityDays = options.validityDays ?? SERVER_CERTIFICATE_VALIDITY_DAYS
  const now = (options.now ?? new Date()).getTime()
  const lifetime = current.notAfter.getTime() - current.notBefore.getTime()
  return options.force
    ? 'forced'
    : lifetime > validityDays * DAY_MS + LIFETIME_SLACK_MS
      ? 'too-long'
      : current.notAfter.getTime() - now < lifetime / 3
        ? 'due'
        : undefined
}

async function renewLocked(
  ca: CertificateAuthority,
  options: RenewServerCertificateOptions,
): Promise<ServerCertificateRenewal> {
  const unchanged = await keptAsItIs(ca, options) // another process may have renewed it meanwhile
  if (unchanged) return unchanged
  const validityDays = options.validityDays ?? SERVER_CERTIFICATE_VALIDITY_DAYS
  const pem = await readFile(options.certFile, 'utf8')
  const current = new X509Certificate(pem)
  const reason = (await ca.hasIssued(pem))
    ? (renewalReason(current, options) as NonNullable<ReturnType<typeof renewalReason>>)
    : 'new-issuer'

  const names = current.getExtension(SubjectAlternativeNameExtension)?.names.items ?? []
  const issued = await ca.issueServerCertificate({
    commonName: current.subjectName.getField('CN')[0] ?? 'localhost',
    dnsNames: names.filter((name) => name.type === 'dns').map((name) => name.value),
    ipAddresses: names.filter((name) => name.type === 'ip').map((name) => name.value),
    validityDays,
  })
  await replaceFile(options.keyFile, issued.privateKeyPem, 0o600)
  await replaceFile(options.certFile, issued.certificatePem, 0o644)
  return { renewed: true, reason, notAfter: new X509Certificate(issued.certificatePem).notAfter }
}

const LOCK_WAIT_MS = 20_000
// A lock file older than this was left by a process that died while renewing.
const STALE_LOCK_MS = 60_000

async function lock(path: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    try {
      await (await open(path, 'wx', 0o600)).close()
      return () => rm(path, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const age = await stat(path).then(
      (s) => Date.now() - s.mtimeMs,
      () => 0,
    )
    if (age > STALE_LOCK_MS) await rm(path, { force: true })
    else if (Date.now() > deadline)
      throw new Error(`${path}: another process has been renewing for ${LOCK_WAIT_MS / 1000} s`)
    else await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function replaceFile(path: string, content: string, mode: number): Promise<void> {
  const staging = `${path}.renew-${process.pid}`
  try {
    await writeFile(staging, content, { mode, flag: 'wx' })
    await chmod(staging, mode) // the umask may have taken bits off
    await rename(staging, path)
  } catch (err) {
    await rm(staging, { force: true })
    throw err
  }
}
