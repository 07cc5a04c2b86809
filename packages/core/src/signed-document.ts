// One way to sign JSON documents the key server hands out (key bundles, revocation lists).
//
//   { "payload": base64url(JSON bytes), "signature": base64url(Ed25519) }
//
// The signature covers the exact payload bytes (domain-separated by the document type), so
// there is no canonicalization to get wrong: the verifier checks the bytes it received, then
// parses them. Nothing in the payload is looked at before the signature verifies.

import { defaultBackend } from '#crypto-backend'
import { fromBase64Url, fromUtf8, toBase64Url, utf8 } from './_bytes.js'
import { objectProblem } from './_strict-json.js'
import type { CryptoBackend } from './crypto/backend.js'
import { type SigningKeyPair, signWithContext, verifyWithContext } from './crypto/signature.js'
import { ERROR_CODES, SmqttError, type SmqttErrorCode } from './errors.js'

/** A signed document as it travels (JSON-safe). */
export interface SignedDocument {
  readonly payload: string
  readonly signature: string
}

/** Describes one kind of signed document: its type string and the error codes it raises. */
export interface DocumentKind<T> {
  /** The body's `type` field, also the signature context (`smqtt.key-bundle`). */
  readonly type: string
  readonly malformed: SmqttErrorCode
  readonly signatureInvalid: SmqttErrorCode
  /** Validates the parsed JSON body strictly; throws `SmqttError(malformed)` through `read`. */
  parseBody(body: unknown, read: StrictJsonReader): T
}

/** Default limit on a document's payload: 1 MiB. */
export const DEFAULT_MAX_DOCUMENT_BYTES = 1024 * 1024

const SIGNATURE_LENGTH = 64

/**
 * Signs a JSON body as a document of `type` (the body's own `type` field must say the same).
 *
 * @example
 * ```ts
 * const signed = signDocument('smqtt.revocations', { type: 'smqtt.revocations', v: 1, ... }, keyServer)
 * ```
 */
export function signDocument(
  type: string,
  body: { readonly type: string },
  signer: SigningKeyPair,
  backend: CryptoBackend = defaultBackend,
): SignedDocument {
  if (body.type !== type) throw new TypeError(`body.type must be ${type}`)
  const payload = utf8(JSON.stringify(body))
  const signature = signWithContext(signer, type, payload, backend)
  return { payload: toBase64Url(payload), signature: toBase64Url(signature) }
}

/**
 * Verifies a signed document under `signingKey` FIRST, then parses its payload strictly and
 * hands it to `kind.parseBody`. On any input it returns the parsed body or throws an
 * `SmqttError` carrying `kind.malformed` or `kind.signatureInvalid`, nothing else.
 *
 * @example
 * ```ts
 * const body = openSignedDocument(signed, { kind: revocationListKind, signingKey: keyServerKey })
 * ```
 */
export function openSignedDocument<T>(
  signed: unknown,
  options: { kind: DocumentKind<T>; signingKey: Uint8Array; maxBytes?: number; backend?: CryptoBackend },
): T {
  const { kind, signingKey, maxBytes = DEFAULT_MAX_DOCUMENT_BYTES, backend = defaultBackend } = options
  const read: StrictJsonReader = new StrictJsonReader(kind.malformed)
  const envelope = read.object(signed, 'document', ['payload', 'signature'])
  // Bound the work before decoding: base64url is 4 characters per 3 bytes.
  read.string(envelope.payload, 'payload', Math.ceil((maxBytes * 4) / 3))
  const payload = read.bytes(envelope.payload, 'payload')
  if (payload.length > maxBytes) read.fail(`payload is larger than ${maxBytes} bytes`)
  const signature = fromBase64Url(read.string(envelope.signature, 'signature', 128))
  if (!signature || signature.length !== SIGNATURE_LENGTH) throw new SmqttError(kind.signatureInvalid)
  if (!verifyWithContext(signingKey, kind.type, payload, signature, backend))
    throw new SmqttError(kind.signatureInvalid)

  const text = fromUtf8(payload)
  if (text === undefined) read.fail('payload is not UTF-8')
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    read.fail('payload is not JSON')
  }
  try {
    return kind.parseBody(body, read)
  } catch (err) {
    if (err instanceof SmqttError) throw err
    // Fail closed: a validator bug must not let a foreign exception escape on network input.
    throw new SmqttError(kind.malformed, undefined, { cause: err })
  }
}

/**
 * Strict readers for fields of untrusted JSON. Each one returns the value with its type or
 * throws `SmqttError(code)` naming the field: unknown fields, wrong types, numbers that are not
 * uint32 and non-canonical base64url are all refused.
 *
 * @example
 * ```ts
 * const read = new StrictJsonReader('ERR_BUNDLE_MALFORMED')
 * const body = read.object(json, 'bundle', ['type', 'v', 'principal'])
 * const principal = read.principal(body.principal, 'principal')
 * ```
 */
export class StrictJsonReader {
  readonly code: SmqttErrorCode

  constructor(code: SmqttErrorCode) {
    this.code = code
  }

  /** Throws the reader's error, with `reason` appended to the standard message. */
  fail(reason: string): never {
    throw new SmqttError(this.code, `${ERROR_CODES[this.code]} (${reason})`)
  }

  /** A plain object whose keys are exactly `required` plus any of `optional`. */
  object(
    value: unknown,
    path: string,
    required: readonly string[],
    optional: readonly string[] = [],
  ): Record<string, unknown> {
    const problem = objectProblem(value, required, optional)
    if (problem?.kind === 'not-an-object') this.fail(`${path} must be an object`)
    if (problem?.kind === 'not-plain') this.fail(`${path} must be a plain object`)
    if (problem?.kind === 'unknown-field') this.fail(`${path} has unknown field ${problem.key}`)
    if (problem?.kind === 'missing-field') this.fail(`${path}.${problem.key} is missing`)
    return value as Record<string, unknown>
  }

  /** An array of at most `maxLength` items. */
  array(value: unknown, path: string, maxLength = 65_536): unknown[] {
    if (!Array.isArray(value)) this.fail(`${path} must be an array`)
    if (value.length > maxLength) this.fail(`${path} has more than ${maxLength} items`)
    return value
  }

  /** An integer in [0, 2^32 - 1]. */
  uint32(value: unknown, path: string): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffff_ffff)
      this.fail(`${path} must be an integer in [0, 2^32 - 1]`)
    return value
  }

  /** A string of 1 to `maxLength` UTF-16 code units, well-formed Unicode without control characters. */
  string(value: unknown, path: string, maxLength = 1024): string {
    if (!isWellFormedText(value, maxLength))
      this.fail(
        `${path} must be a string of 1 to ${maxLength} characters, without control characters or lone surrogates`,
      )
    return value
  }

  /** Exactly `expected` (a type tag or version). */
  literal<T extends string | number>(value: unknown, path: string, expected: T): T {
    if (value !== expected) this.fail(`${path} must be ${JSON.stringify(expected)}`)
    return expected
  }

  /** One of `choices`. */
  oneOf<T extends string>(value: unknown, path: string, choices: readonly T[]): T {
    if (!choices.includes(value as T)) this.fail(`${path} must be one of ${choices.join(', ')}`)
    return value as T
  }

  /** Canonical unpadded base64url, decoded; of exactly `length` bytes when given. */
  bytes(value: unknown, path: string, length?: number): Uint8Array {
    const bytes = typeof value === 'string' ? fromBase64Url(value) : undefined
    if (!bytes) this.fail(`${path} must be canonical base64url`)
    if (length !== undefined && bytes.length !== length) this.fail(`${path} must decode to ${length} bytes`)
    return bytes
  }

  /** A principal id, as {@link isValidPrincipalId} defines it. */
  principal(value: unknown, path: string): string {
    if (!isValidPrincipalId(value)) this.fail(`${path} is not a valid principal id`)
    return value
  }
}

/**
 * True when `id` can name a principal: 1 to 256 UTF-16 code units of well-formed Unicode
 * without control characters (ids are logged, bound into HPKE info and used as MQTT client
 * ids, so they must have one unambiguous UTF-8 form).
 *
 * @example
 * ```ts
 * isValidPrincipalId('thermostat-hall') // true
 * isValidPrincipalId('bad\u0000id') // false
 * ```
 */
export function isValidPrincipalId(id: unknown): id is string {
  return isWellFormedText(id, 256)
}

/**
 * True for a string of 1 to `maxLength` UTF-16 code units without control characters (they
 * hide in logs) or lone surrogates (they do not survive a UTF-8 round trip).
 *
 * @example
 * ```ts
 * isWellFormedText('thermostats', 256) // true
 * ```
 */
export function isWellFormedText(value: unknown, maxLength: number): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= maxLength && !/[\p{Cc}\p{Cs}]/u.test(value)
}
