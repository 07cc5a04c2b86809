// The TLS server options of every SMQTT listener (key server HTTPS, broker mqtts and wss): one
// definition, so the three cannot drift apart. Node-only (node:crypto), hence its own subpath
// export, `@smqtt/core/tls`, outside the browser-safe main entry.
import { constants } from 'node:crypto'

/**
 * `intermediate` (the default): Mozilla's "intermediate" profile, TLS 1.2 and 1.3, without its
 * DHE suites (docs/decisions.md). `modern`: Mozilla's "modern", TLS 1.3 only.
 */
export type TlsProfile = 'intermediate' | 'modern'

export const TLS_PROFILES: readonly TlsProfile[] = ['intermediate', 'modern']

/** The TLS 1.3 suites (all three of Mozilla intermediate and modern). */
export const TLS13_SUITES = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
] as const

/**
 * The TLS 1.2 suites, OpenSSL names, in Mozilla intermediate's order (guidelines 5.7): its ECDHE
 * AEAD suites. Its three DHE-RSA suites are left out: they would need finite-field groups, which
 * cost up to ~90× an X25519 handshake and are no longer offered. The ECDHE-RSA ones are used
 * only with an RSA certificate (the development PKI's is ECDSA P-256).
 */
export const TLS12_SUITES = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
] as const

/** The key-exchange groups offered, on TLS 1.2 and 1.3 (Mozilla's `tls_curves`). */
export const TLS_GROUPS = ['X25519', 'P-256', 'P-384'] as const

/** The hardening part of a Node TLS server's options (`tls.createServer`, `https.createServer`). */
export interface TlsServerHardening {
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
  readonly maxVersion: 'TLSv1.3'
  /** TLS 1.3 suites and TLS 1.2 suites in one list (Node splits them). */
  readonly ciphers: string
  readonly ecdhCurve: string
  /** The client's order: Node's servers default to their own. */
  readonly honorCipherOrder: false
  /** SSL_OP_NO_RENEGOTIATION: a client-initiated renegotiation is refused with a `no_renegotiation` alert. */
  readonly secureOptions: number
}

/**
 * The TLS options every SMQTT listener is created with; spread the certificate, key and
 * listener-specific options (handshake timeout, client certificates) beside them.
 *
 * @example
 * ```ts
 * const server = tls.createServer({ key, cert, ...tlsServerOptions(config.tls.profile) }, onSocket)
 * ```
 */
export function tlsServerOptions(profile: TlsProfile = 'intermediate'): TlsServerHardening {
  if (!TLS_PROFILES.includes(profile)) throw new TypeError(`unknown TLS profile ${JSON.stringify(profile)}`)
  return {
    minVersion: profile === 'modern' ? 'TLSv1.3' : 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    ciphers: [...TLS13_SUITES, ...TLS12_SUITES].join(':'),
    ecdhCurve: TLS_GROUPS.join(':'),
    honorCipherOrder: false,
    // `socket.disableRenegotiation()` alone lets the renegotiation complete before it errors.
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  }
}
