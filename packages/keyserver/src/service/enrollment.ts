// Enrollment: one-time tokens, a device's proof of possession, its principal record and (with
// a CA) its client certificate, and the repeat of an enrollment whose answer was lost.
import {
  constantTimeEqual,
  createPrincipalRecord,
  cryptoBackend,
  type EnrollmentRequest,
  importPublicIdentity,
  type PublicIdentity,
  type SignedDocument,
  SmqttError,
  sha256,
  verifyEnrollmentProof,
} from '@smqtt/core'
import { certifiesKey } from '../pki/certificate-authority.js'
import type { EnrolledPrincipal, EnrollmentTokenRecord, PrincipalRecord } from '../store/key-store.js'
import { StoreConflictError } from '../store/key-store.js'
import type { KeyServerContext } from './context.js'

export interface EnrollmentResult {
  readonly principal: SignedDocument
  readonly kid: number
  readonly keyServerPublicKey: string
  readonly certificatePem?: string
}

/** Principal ids are used as MQTT client ids, in topics and in certificates: keep them plain. */
export const PRINCIPAL_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/
const ROLE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/

function fromB64u(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined
  return new Uint8Array(Buffer.from(text, 'base64url'))
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x))
}

export class Enrollment {
  readonly #ctx: KeyServerContext

  constructor(context: KeyServerContext) {
    this.#ctx = context
  }

  /** Issues a one-time enrollment token bound to an id and roles. The token is shown once. */
  async createEnrollmentToken(
    request: { principalId: string; roles: readonly string[]; ttlSeconds?: number },
    actor: string,
  ): Promise<{ token: string; expiresAt: number }> {
    const { principalId, roles } = request
    if (!PRINCIPAL_ID_PATTERN.test(principalId))
      throw new SmqttError('ERR_REQUEST_INVALID', `principal id must match ${PRINCIPAL_ID_PATTERN}`)
    const badRole = roles.find((role) => !ROLE_PATTERN.test(role))
    if (badRole !== undefined)
      throw new SmqttError('ERR_REQUEST_INVALID', `role ${JSON.stringify(badRole)} must match ${ROLE_PATTERN}`)
    if (await this.#ctx.store.getPrincipal(principalId))
      throw new SmqttError('ERR_CONFLICT', `principal ${principalId} is already enrolled`)
    const now = this.#ctx.now()
    const ttl = request.ttlSeconds ?? this.#ctx.settings.enrollmentTokenTtlSeconds
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 30 * 86_400)
      throw new SmqttError('ERR_REQUEST_INVALID', 'ttlSeconds must be an integer in [1, 2592000]')
    const token = Buffer.from(cryptoBackend.randomBytes(32)).toString('base64url')
    await this.#ctx.store.insertEnrollmentToken({
      tokenHash: sha256(new TextEncoder().encode(token)),
      principalId,
      roles: [...roles],
      createdAt: now,
      expiresAt: now + ttl,
      usedAt: undefined,
    })
    await this.#ctx.audit.record({
      actor,
      action: 'enrollment-token.create',
      subject: principalId,
      outcome: 'ok',
      details: { roles, expiresAt: now + ttl },
    })
    return { token, expiresAt: now + ttl }
  }

  /**
   * Enrolls a device: checks its proof of possession and the token, issues a client certificate
   * if asked, then redeems the token, records the principal with the token's roles and audits
   * it in one store transaction (all or nothing: a failed enrollment can be retried).
   *
   * A used token is accepted once more only as a repeat of the enrollment it made (the device
   * never got the answer): see #repeatEnrollment. Anything else with it is refused as before.
   */
  async enroll(request: EnrollmentRequest, remoteAddress: string): Promise<EnrollmentResult> {
    const refuse = async (
      reason: string,
      code: 'ERR_ENROLLMENT_TOKEN_INVALID' | 'ERR_REQUEST_SIGNATURE_INVALID' = 'ERR_ENROLLMENT_TOKEN_INVALID',
    ) =>
      this.#ctx.failedAuth.failed(
        remoteAddress,
        { action: 'enroll', subject: String(request.identity?.id ?? '?'), reason },
        new SmqttError(code),
      )
    const identity = importPublicIdentity(request.identity)
    const tokenHash = sha256(new TextEncoder().encode(request.token))
    if (!verifyEnrollmentProof(request.token, identity, request.proof))
      throw await refuse('proof of possession does not verify', 'ERR_REQUEST_SIGNATURE_INVALID')
    const tlsKey = request.tlsPublicKey === undefined ? undefined : fromB64u(request.tlsPublicKey)
    if (request.tlsPublicKey !== undefined && (!tlsKey || !this.#ctx.ca))
      throw new SmqttError(
        'ERR_REQUEST_INVALID',
        this.#ctx.ca ? 'tlsPublicKey is not base64url' : 'this key server issues no certificates',
      )

    const now = this.#ctx.now()
    const token = await this.#ctx.store.getEnrollmentToken(tokenHash)
    if (token?.usedAt !== undefined) {
      const repeated = await this.#repeatEnrollment(token, identity, request.roles, tlsKey, now, remoteAddress)
      if (typeof repeated === 'string') throw await refuse(`token unknown, used or expired (${repeated})`)
      return repeated
    }
    if (!token || token.expiresAt <= now) throw await refuse('token unknown, used or expired')
    const mismatch =
      token.principalId !== identity.id
        ? `token is bound to ${token.principalId}`
        : request.roles && !sameSet(request.roles, token.roles)
          ? 'roles differ from the token'
          : undefined
    if (mismatch) {
      await this.#ctx.store.consumeEnrollmentToken(tokenHash, now) // burnt: a leaked token gets no retries
      throw await refuse(mismatch)
    }

    const certificate =
      tlsKey && this.#ctx.ca
        ? await this.#ctx.ca.issueClientCertificate({
            principalId: identity.id,
            publicKeySpki: tlsKey,
            validityDays: this.#ctx.settings.clientCertificateValidityDays,
          })
        : undefined
    // Token, principal and audit entry in one transaction: a failure (503) leaves the token
    // unused, so the device retries with it.
    let enrolled: EnrolledPrincipal | undefined
    try {
      enrolled = await this.#ctx.store.enrollPrincipal({
        tokenHash,
        now,
        certificatePem: certificate?.certificatePem,
        principal: {
          id: identity.id,
          roles: token.roles,
          username: undefined,
          signingKey: identity.signingKey,
          agreementKey: identity.agreementKey,
          kem: identity.kem,
          createdAt: now,
          certificateSerial: certificate?.serialNumber,
        },
        audit: (principal) =>
          this.#ctx.audit.entry({
            actor: `principal:${principal.id}`,
            action: 'enroll',
            subject: principal.id,
            outcome: 'ok',
            details: {
              kid: principal.kid,
              roles: principal.roles,
              remoteAddress,
              certificate: certificate?.serialNumber ?? null,
            },
          }),
      })
    } catch (err) {
      if (err instanceof StoreConflictError) throw await refuse('principal already enrolled')
      throw err
    }
    if (!enrolled) {
      // A concurrent request redeemed it: if that was this device's first try, answer as it was answered.
      const redeemed = await this.#ctx.store.getEnrollmentToken(tokenHash)
      const repeated =
        redeemed?.usedAt === undefined
          ? 'token unknown or expired'
          : await this.#repeatEnrollment(redeemed, identity, request.roles, tlsKey, now, remoteAddress)
      if (typeof repeated === 'string') throw await refuse(`token unknown, used or expired (${repeated})`)
      return repeated
    }
    this.#ctx.audit.log(enrolled.audit)
    const { principal } = enrolled
    this.#ctx.emit({ kind: 'policy', version: this.#ctx.policy.version }) // readers/writers may have changed
    return {
      principal: this.signedPrincipalRecord(principal),
      kid: principal.kid,
      keyServerPublicKey: Buffer.from(this.#ctx.identity.signingKey).toString('base64url'),
      ...(certificate ? { certificatePem: certificate.certificatePem } : {}),
    }
  }

  /**
   * Answers a used token as its enrollment was answered, when this request is a repeat of it:
   * the token enrolled this very principal, still active, with the same signing key, agreement
   * key and KEM (the request's proof, already verified, shows possession of that signing key for
   * this token), the same roles and the same TLS key, within enrollmentRepeatSeconds of the
   * token's use. The answer is the same kid, a freshly signed record of the same principal and
   * the same certificate, byte for byte. Otherwise returns why not (for the refusal's audit).
   */
  async #repeatEnrollment(
    token: EnrollmentTokenRecord,
    identity: PublicIdentity,
    roles: readonly string[] | undefined,
    tlsKey: Uint8Array | undefined,
    now: number,
    remoteAddress: string,
  ): Promise<EnrollmentResult | string> {
    if (token.principalId !== identity.id) return `token is bound to ${token.principalId}`
    if (token.usedAt === undefined || now >= token.usedAt + this.#ctx.settings.enrollmentRepeatSeconds)
      return 'too late to repeat the enrollment'
    const enrolled = await this.#ctx.store.getTokenEnrollment(token.tokenHash)
    if (!enrolled) return 'token enrolled nobody'
    const { principal, certificatePem } = enrolled
    if (principal.status !== 'active') return `principal is ${principal.status}`
    if (
      principal.kem !== identity.kem ||
      !constantTimeEqual(principal.signingKey, identity.signingKey) ||
      !constantTimeEqual(principal.agreementKey, identity.agreementKey)
    )
      return 'keys differ from the enrollment'
    if (roles && !sameSet(roles, token.roles)) return 'roles differ from the token'
    const sameTlsKey =
      tlsKey === undefined || certificatePem === undefined
        ? tlsKey === undefined && certificatePem === undefined
        : await certifiesKey(certificatePem, tlsKey)
    if (!sameTlsKey) return 'TLS key differs from the enrollment'
    await this.#ctx.audit.record({
      actor: `principal:${principal.id}`,
      action: 'enroll.repeat',
      subject: principal.id,
      outcome: 'ok',
      details: { kid: principal.kid, remoteAddress, certificate: principal.certificateSerial ?? null },
    })
    return {
      principal: this.signedPrincipalRecord(principal),
      kid: principal.kid,
      keyServerPublicKey: Buffer.from(this.#ctx.identity.signingKey).toString('base64url'),
      ...(certificatePem ? { certificatePem } : {}),
    }
  }

  signedPrincipalRecord(principal: PrincipalRecord): SignedDocument {
    return createPrincipalRecord(
      {
        id: principal.id,
        kid: principal.kid,
        roles: principal.roles,
        signingKey: principal.signingKey,
        agreementKey: principal.agreementKey,
        kem: principal.kem,
        issuedAt: this.#ctx.now(),
      },
      this.#ctx.identity,
    )
  }
}
