// The deployment CA's CRL, for brokers other than SMQTT's. SMQTT's broker never needs it: it maps
// a client certificate to its principal and refuses the principal by its status in the signed
// snapshot, which also covers principals that log in with a password. A third-party broker that
// only checks certificates (mosquitto `crlfile`, EMQX, HiveMQ) needs the serials instead.
import type { CertificateAuthority } from '../pki/certificate-authority.js'
import type { PrincipalRecord } from '../store/key-store.js'

/**
 * The longest a client certificate can be valid (the CA/Browser Forum's cap on TLS leaves,
 * which the config enforces for `clientCertificateValidityDays`).
 */
export const MAX_CLIENT_CERTIFICATE_DAYS = 397

/**
 * A revoked principal is listed while its certificate may still be valid: for the longest a
 * certificate can live after its revocation (which comes after its issue), and a day of slack
 * for clocks. An expired certificate fails on its own (RFC 5280 §3.3 lets the entry go), so
 * the CRL holds the revocations of about 13 months, not the fleet's lifetime (issue 14).
 */
export const CRL_RETENTION_SECONDS = (MAX_CLIENT_CERTIFICATE_DAYS + 1) * 86_400

/** nextUpdate − thisUpdate of every CRL: how long a fetched CRL may be relied on. */
export const CRL_VALIDITY_DAYS = 7
/**
 * A served CRL is re-issued after this long even without a change (and at once after one on this
 * process), so a broker fetching daily never holds one older than about a day. Another key
 * server process sharing the store notices a change within this too.
 */
export const CRL_REISSUE_MS = 60_000

/**
 * The CRL for `principals`: the certificate of each revoked one, and each disabled one on hold
 * (`certificateHold`: disabling can be undone). Principals without a certificate are left out.
 *
 * @example
 * ```ts
 * const der = await issueCertificateRevocationList(ca, await store.listPrincipals({ revokedSince: now - CRL_RETENTION_SECONDS }))
 * ```
 */
export function issueCertificateRevocationList(
  ca: CertificateAuthority,
  principals: readonly PrincipalRecord[],
  now: Date = new Date(),
): Promise<Uint8Array> {
  const entries = principals
    .filter((p) => p.certificateSerial !== undefined && p.status !== 'active')
    .map((p) => ({
      serialNumber: p.certificateSerial as string,
      revokedAt: new Date((p.statusChangedAt ?? Math.floor(now.getTime() / 1000)) * 1000),
      hold: p.status === 'disabled',
    }))
  return ca.issueRevocationList({ entries, validityDays: CRL_VALIDITY_DAYS, now })
}
