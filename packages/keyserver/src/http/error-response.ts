import { SmqttError, type SmqttErrorCode } from '@smqtt/core'
import { StoreUnavailableError } from '../store/key-store.js'

/** The body of every error response: a stable code (see docs/errors.md) and a message. */
export interface ErrorBody {
  readonly error: { readonly code: SmqttErrorCode; readonly message: string }
}

const STATUS_BY_CODE: Partial<Record<SmqttErrorCode, number>> = {
  ERR_UNAUTHENTICATED: 401,
  ERR_REQUEST_SIGNATURE_INVALID: 401,
  ERR_ENROLLMENT_TOKEN_INVALID: 401,
  ERR_FORBIDDEN: 403,
  ERR_PRINCIPAL_REVOKED: 403,
  ERR_NOT_FOUND: 404,
  ERR_CONFLICT: 409,
  ERR_SEQUENCE_EXHAUSTED: 409,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  ERR_RATE_LIMITED: 429,
  ERR_INTERNAL: 500,
  ERR_STORE_UNAVAILABLE: 503,
}

// Fastify's own refusals, mapped onto our codes so clients see one vocabulary.
const FASTIFY_CODES: Record<string, SmqttErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'ERR_PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'ERR_REQUEST_INVALID',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'ERR_REQUEST_INVALID',
}

/**
 * Turns any error into a status and a typed body. Untrusted-input errors (SmqttError) are
 * 4xx with their code; a store that cannot serve now is a 503 ERR_STORE_UNAVAILABLE; anything
 * else is a 500 with a generic message (details go to the log).
 */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof SmqttError) {
    const status = STATUS_BY_CODE[err.code] ?? 400
    return { status, body: { error: { code: err.code, message: err.message } } }
  }
  // The details (path, host) go to the log only.
  if (err instanceof StoreUnavailableError)
    return errorResponse(new SmqttError('ERR_STORE_UNAVAILABLE', 'the key store cannot serve now; retry later'))
  const fastifyError = err as { code?: string; statusCode?: number; validation?: unknown; message?: string }
  const mapped = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined
  if (mapped) return errorResponse(new SmqttError(mapped, fastifyError.message))
  if (fastifyError.validation) return errorResponse(new SmqttError('ERR_REQUEST_INVALID', fastifyError.message))
  if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500)
    return errorResponse(new SmqttError('ERR_REQUEST_INVALID', fastifyError.message))
  return errorResponse(new SmqttError('ERR_INTERNAL'))
}
