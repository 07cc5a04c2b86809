// Proof of possession for HTTPS requests: a principal signs each request with its Ed25519
// key, so the key server stores no shared secret per device and a stolen request cannot be
// replayed (timestamp window + one-time nonce) or altered (method, path and body hash are
// signed). Used by @smqtt/client (sign) and @smqtt/keyserver (verify).
import { defaultBackend } from '#crypto-backend'
import { fromBase64Url, toBase64Url, utf8 } from './_bytes.js'
import type { CryptoBackend } from './crypto/backend.js'
import { sha256 } from './crypto/kdf.js'
import {
  type AsyncSigningKey,
  type SigningKeyPair,
  signWithContext,
  signWithContextAsync,
  verifyWithContext,
} from './crypto/signature.js'
import { SmqttError } from './errors.js'
import { isValidPrincipalId } from './signed-document.js'

const CONTEXT = 'http-request'

/** The headers that carry a request signature (lower case, as Node delivers them). */
export const REQUEST_SIGNATURE_HEADERS = {
  principal: 'smqtt-principal',
  timestamp: 'smqtt-timestamp',
  nonce: 'smqtt-nonce',
  signature: 'smqtt-signature',
} as const

export interface RequestToSign {
  readonly method: string
  /** Path and query exactly as sent, e.g. `/v1/bundle?since=3`. */
  readonly path: string
  readonly body: Uint8Array
}

/** A parsed, not yet verified, request signature. */
export interface RequestSignature {
  readonly principal: string
  readonly timestamp: number
  readonly nonce: string
  readonly signature: Uint8Array
}

function signedMessage(request: RequestToSign, timestamp: number, nonce: string): Uint8Array {
  const bodyHash = toBase64Url(sha256(request.body))
  return utf8(`${request.method.toUpperCase()}\n${request.path}\n${timestamp}\n${nonce}\n${bodyHash}`)
}

/**
 * Signs a request as `principal`; returns the headers to send with it.
 *
 * @example
 * ```ts
 * const headers = signRequest(identity.id, identity, { method: 'GET', path: '/v1/bundle', body: new Uint8Array() })
 * await fetch(url, { headers })
 * ```
 */
export function signRequest(
  principal: string,
  keys: SigningKeyPair,
  request: RequestToSign,
  options: { now?: number; backend?: CryptoBackend } = {},
): Record<string, string> {
  const backend = options.backend ?? defaultBackend
  const { timestamp, nonce, message } = requestToSign(request, options.now, backend)
  return signatureHeaders(principal, timestamp, nonce, signWithContext(keys, CONTEXT, message, backend))
}

/**
 * {@link signRequest} for either kind of key, e.g. a non-extractable WebCrypto identity.
 *
 * @example
 * ```ts
 * const headers = await signRequestAsync(identity.id, identity, { method: 'GET', path: '/v1/bundle', body })
 * ```
 */
export async function signRequestAsync(
  principal: string,
  keys: SigningKeyPair | AsyncSigningKey,
  request: RequestToSign,
  options: { now?: number; backend?: CryptoBackend } = {},
): Promise<Record<string, string>> {
  const backend = options.backend ?? defaultBackend
  const { timestamp, nonce, message } = requestToSign(request, options.now, backend)
  return signatureHeaders(principal, timestamp, nonce, await signWithContextAsync(keys, CONTEXT, message, backend))
}

function requestToSign(request: RequestToSign, now: number | undefined, backend: CryptoBackend) {
  const timestamp = now ?? Math.floor(Date.now() / 1000)
  const nonce = toBase64Url(backend.randomBytes(16))
  return { timestamp, nonce, message: signedMessage(request, timestamp, nonce) }
}

function signatureHeaders(
  principal: string,
  timestamp: number,
  nonce: string,
  signature: Uint8Array,
): Record<string, string> {
  return {
    [REQUEST_SIGNATURE_HEADERS.principal]: principal,
    [REQUEST_SIGNATURE_HEADERS.timestamp]: String(timestamp),
    [REQUEST_SIGNATURE_HEADERS.nonce]: nonce,
    [REQUEST_SIGNATURE_HEADERS.signature]: toBase64Url(signature),
  }
}

function invalid(reason: string): SmqttError {
  return new SmqttError('ERR_REQUEST_SIGNATURE_INVALID', `request signature invalid: ${reason}`)
}

/**
 * Reads the signature headers strictly. Throws ERR_REQUEST_SIGNATURE_INVALID when one is
 * missing, repeated or malformed; the caller then looks up the principal's key.
 *
 * @example
 * ```ts
 * const parsed = parseRequestSignature(request.headers)
 * const principal = await store.getPrincipal(parsed.principal)
 * ```
 */
export function parseRequestSignature(
  headers: Readonly<Record<string, string | string[] | undefined>>,
): RequestSignature {
  const one = (name: string): string => {
    const value = headers[name]
    if (typeof value !== 'string' || value.length === 0) throw invalid(`header ${name} is missing or repeated`)
    return value
  }
  const principal = one(REQUEST_SIGNATURE_HEADERS.principal)
  if (!isValidPrincipalId(principal)) throw invalid('malformed principal id')
  const timestampText = one(REQUEST_SIGNATURE_HEADERS.timestamp)
  if (!/^[0-9]{1,12}$/.test(timestampText)) throw invalid('malformed timestamp')
  const nonce = one(REQUEST_SIGNATURE_HEADERS.nonce)
  if (fromBase64Url(nonce)?.length !== 16) throw invalid('malformed nonce')
  const signature = fromBase64Url(one(REQUEST_SIGNATURE_HEADERS.signature))
  if (signature?.length !== 64) throw invalid('malformed signature')
  return { principal, timestamp: Number(timestampText), nonce, signature }
}

/**
 * Checks a parsed signature against the principal's public key and the request as received,
 * within `maxSkewSeconds` (default 60) of `now`. One-time use of the nonce is the caller's
 * job (it owns the cache): keep each nonce while `now <= timestamp + maxSkewSeconds`, inclusive,
 * so a request stamped at the window's far edge cannot be replayed when the window closes.
 *
 * @example
 * ```ts
 * verifyRequestSignature(parsed, principal.signingKey, { method, path: request.url, body })
 * ```
 */
export function verifyRequestSignature(
  parsed: RequestSignature,
  signingKey: Uint8Array,
  request: RequestToSign,
  options: { now?: number; maxSkewSeconds?: number; backend?: CryptoBackend } = {},
): void {
  const now = options.now ?? Math.floor(Date.now() / 1000)
  if (Math.abs(now - parsed.timestamp) > (options.maxSkewSeconds ?? 60))
    throw invalid('timestamp outside the allowed window')
  const message = signedMessage(request, parsed.timestamp, parsed.nonce)
  if (!verifyWithContext(signingKey, CONTEXT, message, parsed.signature, options.backend ?? defaultBackend))
    throw invalid('signature does not verify')
}
