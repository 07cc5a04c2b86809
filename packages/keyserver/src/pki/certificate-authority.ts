// X.509 is key-server-only, so it uses @peculiar/x509 over WebCrypto here instead of growing core.
//
// The deployment PKI has two levels: a self-signed root (the trust anchor clients pin, used only
// to certify the issuing CA) and an issuing intermediate CA that issues the broker's and key
// server's TLS certificates, each principal's client certificate for mutual TLS, and the CRL.
// Every issued certificate comes as the leaf followed by the intermediate (the chain a TLS peer
// presents, never the root). ECDSA P-256 with SHA-256 throughout: the one curve every embedded
// TLS stack (mbedTLS, wolfSSL, BearSSL) supports.
//
// A client certificate names its principal twice: CN = the id (for humans and logs) and a URI
// SAN `urn:smqtt:principal:<encodeURIComponent(id)>`. Only the URI SAN is authoritative: the broker
// maps a certificate to a principal with `principalIdFromCertificate`, never from the CN (which
// X.500 limits to 64 characters and which has no single canonical string form).
//
// A CA made with `permittedNames` carries critical name constraints (RFC 5280 4.2.1.10): a leaf
// it signs for any other DNS name or IP address fails verification, so a leaked CA key cannot
// impersonate other hosts to anyone who trusts the CA. There is no URI constraint: RFC 5280 URI
// constraints name hosts, and OpenSSL refuses every certificate with a URN SAN under one.
import { isIP } from 'node:net'
import { cryptoBackend, isValidPrincipalId, principalIdFromUris, principalUri, SmqttError } from '@smqtt/core'
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  CRLDistributionPointsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  type Extension,
  KeyUsageFlags,
  KeyUsagesExtension,
  PemConverter,
  Extension as RawExtension,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CertificateGenerator,
  X509CrlGenerator,
  X509CrlReason,
} from './x509.js'

const webCrypto = globalThis.crypto
// The lib settings have no DOM, so name WebCrypto's key type through the global.
type CryptoKey = Awaited<ReturnType<typeof webCrypto.subtle.importKey>>
const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const
const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const
const DAY_MS = 86_400_000
// Backdate notBefore a little so a device whose clock runs slightly behind still accepts
// a certificate issued a moment ago.
const CLOCK_SKEW_MS = 5 * 60_000
// RFC 5280 allows serials up to 20 octets; 128 random bits keep them unguessable and unique.
const SERIAL_BYTES = 16

/** A CA certificate and its private key, as {@link createCertificateAuthority} returns them. */
export interface CertificateAuthorityMaterial {
  readonly certificatePem: string
  /** PKCS #8 DER. Secret: store it encrypted or in a 0600 file. */
  readonly privateKeyPkcs8: Uint8Array
}

export interface CreateCertificateAuthorityOptions {
  readonly commonName: string
  readonly validityDays: number
  /**
   * The only DNS names (each with its subdomains) and IP addresses (each exactly) that server
   * certificates under this CA may name; a critical name constraints extension. Absent: none.
   */
  readonly permittedNames?: { readonly dnsNames?: readonly string[]; readonly ipAddresses?: readonly string[] }
}

export interface IssueServerCertificateOptions {
  readonly commonName: string
  /** DNS names for the SAN (e.g. `localhost`, `broker.example.com`, `*.example.com`). */
  readonly dnsNames?: readonly string[]
  /** IPv4 or IPv6 addresses for the SAN (e.g. `127.0.0.1`, `::1`). */
  readonly ipAddresses?: readonly string[]
  readonly validityDays: number
}

export interface IssuedServerCertificate {
  /**
   * The leaf followed by the issuing CA's certificate when that is an intermediate: the chain
   * the server presents, without the root. Parsers that read one certificate read the leaf.
   */
  readonly certificatePem: string
  /** PKCS #8 PEM of the freshly generated key. Secret. */
  readonly privateKeyPem: string
}

export interface IssueClientCertificateOptions {
  readonly principalId: string
  /** DER SubjectPublicKeyInfo of the principal's EC P-256 TLS key (made on the principal). */
  readonly publicKeySpki: Uint8Array
  readonly validityDays: number
  /** Where the CA's CRL is published (`https://keys.example:8443/v1/crl`): a CRL distribution point. */
  readonly crlDistributionPoint?: string
}

/** One certificate on a CRL: `hold` for a suspension (a disabled principal), otherwise revoked for good. */
export interface RevokedCertificate {
  /** Hex, as {@link IssuedClientCertificate.serialNumber}. */
  readonly serialNumber: string
  readonly revokedAt: Date
  readonly hold?: boolean
}

export interface IssueRevocationListOptions {
  readonly entries: readonly RevokedCertificate[]
  /** nextUpdate is this many days after thisUpdate. */
  readonly validityDays: number
  /** thisUpdate; default now. Also the CRL number (milliseconds since 1970, so it only grows). */
  readonly now?: Date
}

export interface IssuedClientCertificate {
  /** The leaf followed by the issuing CA's certificate when that is an intermediate, as for servers. */
  readonly certificatePem: string
  /** Lowercase hex of the serial number, without a leading sign octet. */
  readonly serialNumber: string
}

export interface IssueIntermediateAuthorityOptions {
  readonly commonName: string
  /** Default, and at most: the rest of this CA's life. */
  readonly validityDays?: number
}

/**
 * Creates a self-signed deployment root CA: ECDSA P-256, basicConstraints CA:true with path
 * length 1 (one issuing CA below it, see {@link CertificateAuthority.issueIntermediateAuthority}),
 * keyUsage keyCertSign + cRLSign, and a subject key id.
 *
 * @example
 * ```ts
 * const { certificatePem, privateKeyPkcs8 } = await createCertificateAuthority({
 *   commonName: 'SMQTT home CA',
 *   validityDays: 3650,
 * })
 * const ca = await CertificateAuthority.load(certificatePem, privateKeyPkcs8)
 * ```
 */
export async function createCertificateAuthority(
  options: CreateCertificateAuthorityOptions,
): Promise<CertificateAuthorityMaterial> {
  checkCommonName(options.commonName)
  const validity = validityWindow(options.validityDays)
  const constraints = options.permittedNames ? nameConstraintsExtension(options.permittedNames) : undefined
  const keys = await webCrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])
  const certificate = await X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialHex(),
      name: [{ CN: [options.commonName] }],
      ...validity,
      keys,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new BasicConstraintsExtension(true, 1, true),
        new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, webCrypto),
        ...(constraints ? [constraints] : []),
      ],
    },
    webCrypto,
  )
  const pkcs8 = await webCrypto.subtle.exportKey('pkcs8', keys.privateKey)
  return { certificatePem: certificate.toString('pem'), privateKeyPkcs8: new Uint8Array(pkcs8) }
}

/**
 * The deployment CA, loaded from its certificate and private key. Issues server certificates
 * (for the broker and the key server) and client certificates (one per enrolled principal).
 *
 * @example
 * ```ts
 * const ca = await CertificateAuthority.load(caPem, caKeyPkcs8)
 * const server = await ca.issueServerCertificate({
 *   commonName: 'broker', dnsNames: ['broker.local'], ipAddresses: ['127.0.0.1', '::1'], validityDays: 365,
 * })
 * const client = await ca.issueClientCertificate({ principalId: 'thermostat-hall', publicKeySpki, validityDays: 365 })
 * ```
 */
export class CertificateAuthority {
  /** The CA certificate, PEM: for a root, the trust anchor of the deployment's TLS. */
  readonly certificatePem: string
  /**
   * What follows a leaf of this CA in the chain a TLS peer presents: this CA's certificate when it
   * is an intermediate, empty for a self-signed root (peers have the root; sending it is waste).
   */
  readonly chainPem: string
  readonly #certificate: X509Certificate
  readonly #signingKey: CryptoKey
  readonly #authorityKeyId: string

  private constructor(certificate: X509Certificate, signingKey: CryptoKey, authorityKeyId: string) {
    this.#certificate = certificate
    this.#signingKey = signingKey
    this.#authorityKeyId = authorityKeyId
    this.certificatePem = certificate.toString('pem')
    this.chainPem = isSelfSigned(certificate) ? '' : `${this.certificatePem}\n`
  }

  /** True for a root whose path length allows a CA below it (every root before two levels had 0). */
  get mayCertifyAuthorities(): boolean {
    const pathLength = this.#certificate.getExtension(BasicConstraintsExtension)?.pathLength
    return pathLength === undefined || pathLength > 0
  }

  /**
   * Loads a CA. Refuses (with `ERR_CERTIFICATE_AUTHORITY_INVALID`) a certificate that is not a
   * P-256 CA with a subject key id, or a private key that is not the certificate's.
   *
   * @example
   * ```ts
   * const ca = await CertificateAuthority.load(readFileSync('pki/ca.pem', 'utf8'), caKeyPkcs8)
   * ```
   */
  static async load(certificatePem: string, privateKeyPkcs8: Uint8Array): Promise<CertificateAuthority> {
    if (typeof certificatePem !== 'string') throw new TypeError('certificatePem must be a string')
    if (!(privateKeyPkcs8 instanceof Uint8Array)) throw new TypeError('privateKeyPkcs8 must be a Uint8Array')
    const invalid = (why: string, cause?: unknown) =>
      new SmqttError('ERR_CERTIFICATE_AUTHORITY_INVALID', `CA not loaded: ${why}`, { cause })

    let certificate: X509Certificate
    try {
      certificate = new X509Certificate(certificatePem)
    } catch (cause) {
      throw invalid('the certificate is not a well-formed X.509 certificate', cause)
    }
    const constraints = certificate.getExtension(BasicConstraintsExtension)
    if (!constraints?.ca) throw invalid('the certificate is not a CA certificate (basicConstraints CA:true)')
    const subjectKeyId = certificate.getExtension(SubjectKeyIdentifierExtension)
    if (!subjectKeyId) throw invalid('the certificate has no subject key identifier')

    let certificateKey: CryptoKey
    let privateKey: CryptoKey
    try {
      certificateKey = await certificate.publicKey.export(EC_P256, ['verify'], webCrypto)
    } catch (cause) {
      throw invalid('the certificate key is not an EC P-256 key', cause)
    }
    try {
      privateKey = await webCrypto.subtle.importKey('pkcs8', privateKeyPkcs8, EC_P256, true, ['sign'])
    } catch (cause) {
      throw invalid('the private key is not a PKCS #8 EC P-256 key', cause)
    }
    const [publicJwk, privateJwk] = await Promise.all([
      webCrypto.subtle.exportKey('jwk', certificateKey),
      webCrypto.subtle.exportKey('jwk', privateKey),
    ])
    if (publicJwk.x !== privateJwk.x || publicJwk.y !== privateJwk.y) {
      throw invalid('the private key does not belong to the certificate')
    }
    // Keep only a non-extractable handle: nothing later can read the key back out.
    const signingKey = await webCrypto.subtle.importKey('pkcs8', privateKeyPkcs8, EC_P256, false, ['sign'])
    return new CertificateAuthority(certificate, signingKey, subjectKeyId.keyId)
  }

  /**
   * Issues a TLS server certificate with a freshly generated P-256 key: serverAuth EKU, SAN with
   * the given DNS names and IP addresses (at least one is required; clients ignore the CN).
   *
   * @example
   * ```ts
   * const { certificatePem, privateKeyPem } = await ca.issueServerCertificate({
   *   commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'], validityDays: 365,
   * })
   * ```
   */
  async issueServerCertificate(options: IssueServerCertificateOptions): Promise<IssuedServerCertificate> {
    checkCommonName(options.commonName)
    const dnsNames = options.dnsNames ?? []
    const ipAddresses = options.ipAddresses ?? []
    for (const name of dnsNames) {
      if (!isDnsName(name)) throw requestInvalid(`${JSON.stringify(name)} is not a DNS name`)
    }
    for (const address of ipAddresses) {
      if (!isIpAddress(address)) throw requestInvalid(`${JSON.stringify(address)} is not an IPv4 or IPv6 address`)
    }
    if (dnsNames.length + ipAddresses.length === 0) {
      throw requestInvalid('a server certificate needs at least one DNS name or IP address')
    }
    const validity = validityWindow(options.validityDays)
    const keys = await webCrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])
    const certificate = await this.#issue({
      subject: options.commonName,
      publicKey: keys.publicKey,
      validity,
      extendedKeyUsage: ExtendedKeyUsage.serverAuth,
      alternativeNames: [
        ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
      ],
    })
    const pkcs8 = await webCrypto.subtle.exportKey('pkcs8', keys.privateKey)
    return { certificatePem: this.#chain(certificate), privateKeyPem: PemConverter.encode(pkcs8, 'PRIVATE KEY') }
  }

  /**
   * Issues a client certificate for mutual TLS to the broker: clientAuth EKU, CN = the principal
   * id, URI SAN `urn:smqtt:principal:<id>` (percent-encoded), random 128-bit serial. The key is
   * made on the principal; only its public half comes here. Refuses a key that is not a valid
   * EC P-256 key, or an invalid principal id, with `ERR_CERTIFICATE_REQUEST_INVALID`.
   *
   * @example
   * ```ts
   * const { certificatePem, serialNumber } = await ca.issueClientCertificate({
   *   principalId: 'thermostat-hall', publicKeySpki, validityDays: 365,
   * })
   * ```
   */
  async issueClientCertificate(options: IssueClientCertificateOptions): Promise<IssuedClientCertificate> {
    if (!isValidPrincipalId(options.principalId)) throw requestInvalid('the principal id is not valid')
    if (!(options.publicKeySpki instanceof Uint8Array)) throw new TypeError('publicKeySpki must be a Uint8Array')
    const validity = validityWindow(options.validityDays)
    let publicKey: CryptoKey
    try {
      // WebCrypto checks the curve and that the point is on it; the certificate then carries the
      // key re-encoded from this handle, never the caller's bytes.
      publicKey = await webCrypto.subtle.importKey('spki', options.publicKeySpki, EC_P256, true, ['verify'])
    } catch (cause) {
      throw new SmqttError('ERR_CERTIFICATE_REQUEST_INVALID', 'the client key is not a DER SPKI EC P-256 public key', {
        cause,
      })
    }
    const distributionPoint = options.crlDistributionPoint
    if (distributionPoint !== undefined && !/^https?:\/\/[^\s]+$/.test(distributionPoint))
      throw new TypeError('crlDistributionPoint must be an http(s) URL')
    const certificate = await this.#issue({
      subject: clientCommonName(options.principalId),
      publicKey,
      validity,
      extendedKeyUsage: ExtendedKeyUsage.clientAuth,
      alternativeNames: [{ type: 'url', value: principalUri(options.principalId) }],
      ...(distributionPoint ? { extra: [new CRLDistributionPointsExtension([distributionPoint], false)] } : {}),
    })
    return { certificatePem: this.#chain(certificate), serialNumber: certificate.serialNumber }
  }

  /**
   * Issues the deployment's issuing CA: a fresh P-256 key, basicConstraints CA:true with path
   * length 0 (end-entity certificates only), keyUsage keyCertSign + cRLSign, and this CA's name
   * constraints copied (so a verifier that anchors at the intermediate still applies them). It
   * never outlives this CA. Refuses, with `ERR_CERTIFICATE_REQUEST_INVALID`, when this CA's path
   * length allows no CA below it.
   *
   * @example
   * ```ts
   * const issuing = await root.issueIntermediateAuthority({ commonName: 'SMQTT issuing CA' })
   * const ca = await CertificateAuthority.load(issuing.certificatePem, issuing.privateKeyPkcs8)
   * ```
   */
  async issueIntermediateAuthority(options: IssueIntermediateAuthorityOptions): Promise<CertificateAuthorityMaterial> {
    checkCommonName(options.commonName)
    if (!this.mayCertifyAuthorities)
      throw requestInvalid('this CA has path length 0: it may certify no CA below it (re-certify the root first)')
    const validity = validityWindow(options.validityDays ?? 36_500)
    const keys = await webCrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])
    const constraints = this.#certificate.extensions.find((extension) => extension.type === NAME_CONSTRAINTS_OID)
    const certificate = await X509CertificateGenerator.create(
      {
        serialNumber: randomSerialHex(),
        subject: [{ CN: [options.commonName] }],
        issuer: this.#certificate.subjectName,
        notBefore: validity.notBefore,
        notAfter: new Date(Math.min(validity.notAfter.getTime(), this.#certificate.notAfter.getTime())),
        publicKey: keys.publicKey,
        signingKey: this.#signingKey,
        signingAlgorithm: ECDSA_SHA256,
        extensions: [
          new BasicConstraintsExtension(true, 0, true),
          new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
          await SubjectKeyIdentifierExtension.create(keys.publicKey, false, webCrypto),
          new AuthorityKeyIdentifierExtension(this.#authorityKeyId, false),
          ...(constraints ? [new RawExtension(NAME_CONSTRAINTS_OID, true, constraints.value)] : []),
        ],
      },
      webCrypto,
    )
    const pkcs8 = await webCrypto.subtle.exportKey('pkcs8', keys.privateKey)
    return { certificatePem: certificate.toString('pem'), privateKeyPkcs8: new Uint8Array(pkcs8) }
  }

  /**
   * A new self-signed certificate for this root's own key: the same subject, key id, validity and
   * name constraints, with path length 1. For a root made before two levels (path length 0), which
   * cannot certify an intermediate. It is a new trust anchor file: every peer that holds the old
   * one must be given this one. Refuses a CA that is not self-signed.
   *
   * @example
   * ```ts
   * writeFileSync('pki/ca.pem', await root.recertifyRoot())
   * ```
   */
  async recertifyRoot(): Promise<string> {
    const old = this.#certificate
    if (!isSelfSigned(old)) throw requestInvalid('only a self-signed root can be re-certified')
    const publicKey = await old.publicKey.export(EC_P256, ['verify'], webCrypto)
    const kept = old.extensions.filter(
      (extension) => extension.type !== BASIC_CONSTRAINTS_OID && extension.type !== AUTHORITY_KEY_ID_OID,
    )
    const certificate = await X509CertificateGenerator.create(
      {
        serialNumber: randomSerialHex(),
        subject: old.subjectName,
        issuer: old.subjectName,
        notBefore: old.notBefore,
        notAfter: old.notAfter,
        publicKey,
        signingKey: this.#signingKey,
        signingAlgorithm: ECDSA_SHA256,
        extensions: [new BasicConstraintsExtension(true, 1, true), ...kept],
      },
      webCrypto,
    )
    return certificate.toString('pem')
  }

  /**
   * True when this CA signed `certificatePem` (issuer name and signature); false for anything
   * else, unparsable input included. Renewal uses it to touch only the leaves it issued.
   *
   * @example
   * ```ts
   * if (await ca.hasIssued(readFileSync('pki/server.pem', 'utf8'))) renew()
   * ```
   */
  async hasIssued(certificatePem: string): Promise<boolean> {
    try {
      const certificate = new X509Certificate(certificatePem)
      if (certificate.issuer !== this.#certificate.subject) return false
      return await certificate.verify({ publicKey: this.#certificate.publicKey, signatureOnly: true }, webCrypto)
    } catch {
      return false
    }
  }

  /**
   * Issues a CRL (RFC 5280 v2, DER) listing `entries`: a CRL number, the authority key id, and
   * reason `certificateHold` on the held ones (the others carry no reason). For brokers other
   * than SMQTT's, which refuse revoked principals by their status instead.
   *
   * @example
   * ```ts
   * const der = await ca.issueRevocationList({ entries: [{ serialNumber, revokedAt }], validityDays: 7 })
   * ```
   */
  async issueRevocationList(options: IssueRevocationListOptions): Promise<Uint8Array> {
    const { validityDays } = options
    if (!Number.isInteger(validityDays) || validityDays < 1 || validityDays > 366)
      throw new RangeError('validityDays must be an integer from 1 to 366')
    const thisUpdate = options.now ?? new Date()
    const crl = await X509CrlGenerator.create(
      {
        issuer: this.#certificate.subjectName,
        thisUpdate,
        nextUpdate: new Date(thisUpdate.getTime() + validityDays * DAY_MS),
        entries: options.entries.map((entry) => ({
          serialNumber: entry.serialNumber,
          revocationDate: entry.revokedAt,
          ...(entry.hold ? { reason: X509CrlReason.certificateHold } : {}),
        })),
        extensions: [
          new AuthorityKeyIdentifierExtension(this.#authorityKeyId, false),
          new RawExtension(CRL_NUMBER_OID, false, derInteger(BigInt(thisUpdate.getTime()))),
        ],
        signingKey: this.#signingKey,
        signingAlgorithm: ECDSA_SHA256,
      },
      webCrypto,
    )
    return new Uint8Array(crl.rawData)
  }

  /** The leaf PEM followed by this CA's chain. */
  #chain(leaf: X509Certificate): string {
    return this.chainPem ? `${leaf.toString('pem')}\n${this.chainPem}` : leaf.toString('pem')
  }

  async #issue(request: {
    subject: string
    publicKey: CryptoKey
    validity: { notBefore: Date; notAfter: Date }
    extendedKeyUsage: ExtendedKeyUsage
    alternativeNames: { type: 'dns' | 'ip' | 'url'; value: string }[]
    extra?: Extension[]
  }): Promise<X509Certificate> {
    // Never outlive the CA: a chain is only as valid as its shortest link.
    const notAfter = new Date(Math.min(request.validity.notAfter.getTime(), this.#certificate.notAfter.getTime()))
    const extensions: Extension[] = [
      new BasicConstraintsExtension(false, undefined, true),
      new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
      new ExtendedKeyUsageExtension([request.extendedKeyUsage], false),
      new SubjectAlternativeNameExtension(request.alternativeNames, false),
      await SubjectKeyIdentifierExtension.create(request.publicKey, false, webCrypto),
      new AuthorityKeyIdentifierExtension(this.#authorityKeyId, false),
      ...(request.extra ?? []),
    ]
    return X509CertificateGenerator.create(
      {
        serialNumber: randomSerialHex(),
        subject: [{ CN: [request.subject] }],
        issuer: this.#certificate.subjectName,
        notBefore: request.validity.notBefore,
        notAfter,
        publicKey: request.publicKey,
        signingKey: this.#signingKey,
        signingAlgorithm: ECDSA_SHA256,
        extensions,
      },
      webCrypto,
    )
  }
}

/**
 * The principal a client certificate names: the id in its one `urn:smqtt:principal:` URI SAN.
 * Undefined when the certificate has no such SAN, more than one, a non-canonical encoding, an
 * invalid id, or is not a parsable certificate — callers treat all of these as "no principal".
 * It does not check the chain: use it only on a certificate TLS has already verified.
 *
 * @example
 * ```ts
 * const peer = tlsSocket.getPeerCertificate()
 * const principalId = peer.raw ? principalIdFromCertificate(peer.raw) : undefined
 * ```
 */
export function principalIdFromCertificate(certificate: string | Uint8Array): string | undefined {
  let alternativeNames: SubjectAlternativeNameExtension | null
  try {
    alternativeNames = new X509Certificate(certificate).getExtension(SubjectAlternativeNameExtension)
  } catch {
    return undefined
  }
  const uris = (alternativeNames?.names.items ?? []).filter((name) => name.type === 'url').map((name) => name.value)
  return principalIdFromUris(uris)
}

/**
 * True when `certificate` certifies the EC P-256 key `publicKeySpki`. The key is re-encoded as
 * {@link CertificateAuthority.issueClientCertificate} re-encodes it, so the same key matches
 * whatever DER form the caller sent; anything unparsable is no match.
 *
 * @example
 * ```ts
 * if (!(await certifiesKey(storedPem, request.tlsPublicKey))) refuse()
 * ```
 */
export async function certifiesKey(certificate: string, publicKeySpki: Uint8Array): Promise<boolean> {
  try {
    const key = await webCrypto.subtle.importKey('spki', publicKeySpki, EC_P256, true, ['verify'])
    const requested = new Uint8Array(await webCrypto.subtle.exportKey('spki', key))
    const certified = new Uint8Array(new X509Certificate(certificate).publicKey.rawData)
    return requested.length === certified.length && requested.every((byte, i) => byte === certified[i])
  } catch {
    return false
  }
}

/**
 * The CN of a principal's client certificate: its id, unless OpenSSL would read the id as a host
 * name (letters, digits, `-`, `_` and an inner dot). OpenSSL checks such a CN of a leaf without
 * DNS SANs against the CA's DNS name constraints, and `sensor.hall` is in none of them: that
 * certificate would fail every OpenSSL verifier. Those ids get their principal URI as the CN.
 */
function clientCommonName(principalId: string): string {
  return /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+$/.test(principalId) ? principalUri(principalId) : principalId
}

const CRL_NUMBER_OID = '2.5.29.20'
const NAME_CONSTRAINTS_OID = '2.5.29.30'
const BASIC_CONSTRAINTS_OID = '2.5.29.19'
const AUTHORITY_KEY_ID_OID = '2.5.29.35'

/** Issued by itself under its own key: a root. (An intermediate's issuer is another name.) */
function isSelfSigned(certificate: X509Certificate): boolean {
  if (certificate.issuer !== certificate.subject) return false
  const authorityKeyId = certificate.getExtension(AuthorityKeyIdentifierExtension)?.keyId
  return (
    authorityKeyId === undefined || authorityKeyId === certificate.getExtension(SubjectKeyIdentifierExtension)?.keyId
  )
}

/**
 * A critical NameConstraints extension with permittedSubtrees only (RFC 5280 4.2.1.10): each DNS
 * name as a dNSName subtree, each address as an iPAddress subtree with a full-length mask.
 */
function nameConstraintsExtension(permitted: NonNullable<CreateCertificateAuthorityOptions['permittedNames']>) {
  const dnsNames = permitted.dnsNames ?? []
  const ipAddresses = permitted.ipAddresses ?? []
  for (const name of dnsNames) {
    if (name.startsWith('*.') || !isDnsName(name))
      throw requestInvalid(`${JSON.stringify(name)} is not a DNS name for a name constraint`)
  }
  for (const address of ipAddresses) {
    if (!isIpAddress(address)) throw requestInvalid(`${JSON.stringify(address)} is not an IPv4 or IPv6 address`)
  }
  if (dnsNames.length + ipAddresses.length === 0)
    throw requestInvalid('name constraints need at least one DNS name or IP address')
  const subtrees = [
    ...dnsNames.map((name) => der(0x82, new TextEncoder().encode(name.toLowerCase()))),
    ...ipAddresses.map((address) => {
      const bytes = ipAddressBytes(address)
      return der(0x87, new Uint8Array([...bytes, ...bytes.map(() => 0xff)]))
    }),
  ].map((generalName) => der(0x30, generalName))
  return new RawExtension(NAME_CONSTRAINTS_OID, true, der(0x30, der(0xa0, concat(subtrees))))
}

function ipAddressBytes(address: string): number[] {
  if (isIP(address) === 4) return address.split('.').map(Number)
  const [head = '', tail = ''] = address.includes('::') ? address.split('::') : [address, '']
  const words = (part: string) => (part ? part.split(':').map((word) => Number.parseInt(word, 16)) : [])
  const front = words(head)
  const back = words(tail)
  const all = [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back]
  return all.flatMap((word) => [word >> 8, word & 0xff])
}

/** One DER TLV (definite length). */
function der(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff]
  return concat([new Uint8Array([tag, ...length]), content])
}

function derInteger(value: bigint): Uint8Array {
  let hex = value.toString(16)
  if (hex.length % 2) hex = `0${hex}`
  if (Number.parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}` // positive: no sign bit
  return der(0x02, new Uint8Array(Buffer.from(hex, 'hex')))
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

function requestInvalid(why: string): SmqttError {
  return new SmqttError('ERR_CERTIFICATE_REQUEST_INVALID', `certificate request refused: ${why}`)
}

function checkCommonName(commonName: unknown): asserts commonName is string {
  if (typeof commonName !== 'string') throw new TypeError('commonName must be a string')
  // X.500 ub-common-name; control characters would garble logs and DN strings.
  if (commonName.length < 1 || commonName.length > 64 || /\p{Cc}/u.test(commonName)) {
    throw requestInvalid('the common name must be 1 to 64 characters without control characters')
  }
}

function validityWindow(validityDays: unknown): { notBefore: Date; notAfter: Date } {
  if (
    typeof validityDays !== 'number' ||
    !Number.isInteger(validityDays) ||
    validityDays < 1 ||
    validityDays > 36_500
  ) {
    throw new RangeError('validityDays must be an integer from 1 to 36500')
  }
  const now = Date.now()
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + validityDays * DAY_MS) }
}

function randomSerialHex(): string {
  // The X.509 library strips leading zeros and adds the sign octet: always a positive INTEGER.
  return Array.from(cryptoBackend.randomBytes(SERIAL_BYTES), (byte) => byte.toString(16).padStart(2, '0')).join('')
}

function isDnsName(name: unknown): boolean {
  if (typeof name !== 'string' || name.length > 253) return false
  // A leading `*.` wildcard is allowed; each label is LDH, 1 to 63 characters, no edge hyphen.
  const labels = (name.startsWith('*.') ? name.slice(2) : name).split('.')
  return labels.every((label) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label))
}

function isIpAddress(address: unknown): boolean {
  if (typeof address !== 'string') return false
  if (isIP(address) === 4) return true
  // The X.509 library encodes plain hex-and-colon IPv6 only: no zone ids, no embedded IPv4.
  return isIP(address) === 6 && /^[0-9A-Fa-f:]+$/.test(address)
}
