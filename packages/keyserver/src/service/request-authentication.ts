// Device authentication: signed requests (proof of possession), with a request rate and a
// nonce quota per principal.
import { parseRequestSignature, SmqttError, verifyRequestSignature } from '@smqtt/core'
import type { PrincipalRecord } from '../store/key-store.js'
import type { KeyServerContext } from './context.js'
import { NonceCache, REQUEST_WINDOW_SECONDS } from './nonce-cache.js'
import { RateLimiter } from './rate-limit.js'

export class RequestAuthentication {
  readonly #ctx: KeyServerContext
  readonly #nonces = new NonceCache()
  readonly #requestRate: RateLimiter

  constructor(context: KeyServerContext) {
    this.#ctx = context
    this.#requestRate = new RateLimiter({
      perSecond: context.settings.principalRequestsPerSecond,
      burst: context.settings.principalRequestBurst,
    })
  }

  /**
   * Authenticates a signed request (proof of possession): known, active principal, fresh
   * timestamp, unused nonce, valid signature. Each principal has its own request rate and nonce
   * quota, spent only once its signature verified: one principal's flood is refused
   * (ERR_RATE_LIMITED) without touching the others'. Failures are audited through failedAuth
   * (bounded per address and minute).
   */
  async authenticateRequest(
    headers: Readonly<Record<string, string | string[] | undefined>>,
    request: { method: string; path: string; body: Uint8Array },
    remoteAddress: string,
  ): Promise<PrincipalRecord> {
    let claimed = '?'
    try {
      const parsed = parseRequestSignature(headers)
      claimed = parsed.principal
      const principal = await this.#ctx.store.getPrincipal(parsed.principal)
      if (!principal) throw new SmqttError('ERR_UNAUTHENTICATED', 'unknown principal')
      const now = this.#ctx.now()
      verifyRequestSignature(parsed, principal.signingKey, request, { now, maxSkewSeconds: REQUEST_WINDOW_SECONDS })
      if (!this.#requestRate.take(principal.id, performance.now() / 1000)) throw principalRateLimited()
      const refused = this.#nonces.useOnce(principal.id, parsed.nonce, parsed.timestamp + REQUEST_WINDOW_SECONDS, now)
      if (refused === 'full') throw principalRateLimited()
      if (refused === 'replay')
        throw new SmqttError('ERR_REQUEST_SIGNATURE_INVALID', 'request signature invalid: nonce already used')
      if (principal.status !== 'active')
        throw new SmqttError('ERR_PRINCIPAL_REVOKED', `principal is ${principal.status}`)
      return principal
    } catch (err) {
      // A principal over its own quota is not a failed authentication: it costs its address nothing.
      if (err instanceof SmqttError && err.code !== 'ERR_RATE_LIMITED')
        throw await this.#ctx.failedAuth.failed(
          remoteAddress,
          { action: 'auth.failed', subject: claimed, reason: err.code, message: err.message },
          err,
        )
      throw err
    }
  }
}

function principalRateLimited(): SmqttError {
  return new SmqttError('ERR_RATE_LIMITED', 'too many requests from this principal; retry in a few seconds')
}
