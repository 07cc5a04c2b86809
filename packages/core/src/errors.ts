/**
 * Every error SMQTT raises for untrusted input is an {@link SmqttError} with a stable
 * string `code`. Switch on `err.code`, never on the message. Programmer mistakes
 * (wrong argument types, impossible lengths) raise `TypeError` / `RangeError` instead.
 *
 * Each code, with its meaning, is listed here once; `docs/errors.md` must list the same
 * codes (a test checks it).
 */
export const ERROR_CODES = {
  ERR_ENVELOPE_MALFORMED: 'The bytes are not a well-formed SMQTT envelope (bad length, varint, trailing bytes).',
  ERR_ENVELOPE_UNSUPPORTED: 'The envelope names a version or suite this implementation does not accept.',
  ERR_ENVELOPE_TOO_LARGE: 'The envelope or its plaintext exceeds the configured size limit.',
  ERR_ENVELOPE_SIGNATURE_INVALID:
    "The sender's Ed25519 signature does not verify (forged or altered envelope, moved to another topic, or its bound MQTT 5 properties changed).",
  ERR_ENVELOPE_DECRYPTION_FAILED:
    'Decryption failed. Deliberately uninformative: wrong key, altered ciphertext and wrong topic look the same.',
  ERR_UNKNOWN_SENDER: 'The sender key id is not listed as a writer of the group.',
  ERR_UNKNOWN_EPOCH: 'No key is held for the group and epoch the envelope names.',
  ERR_REPLAY: 'The sequence number was already seen, or is older than the replay window.',
  ERR_REPLAY_STATE_INVALID: 'A saved replay window state is not well formed (corrupt or altered storage).',
  ERR_STALE: 'The send time is outside the freshness limit.',
  ERR_SENDER_REVOKED: 'The sender is on the revocation list.',
  ERR_SENDER_NOT_PERMITTED:
    "The sender is a verified writer of the group, but its publish rights in the key bundle do not include the topic (another writer's, or another group's).",
  ERR_SEQUENCE_EXHAUSTED: 'The sender has used every sequence number it may; a new identity or epoch is needed.',
  ERR_SEQUENCE_UNAVAILABLE:
    'No sequence numbers are reserved for this run yet: the key server, which hands each run of an identity its own range, has not answered. Publishing resumes once it does.',
  ERR_IDENTITY_IN_USE:
    'Another process or browser tab is already running this identity from the same storage; a second instance would fight over the broker session and the receive state.',
  ERR_KEY_INVALID: 'A key is malformed, of the wrong length, or a point of small order.',
  ERR_HPKE_OPEN_FAILED: 'An HPKE-sealed key could not be opened (wrong recipient or altered ciphertext).',
  ERR_BUNDLE_MALFORMED: 'A key bundle is not well formed.',
  ERR_BUNDLE_SIGNATURE_INVALID: "A key bundle's signature does not verify under the pinned key-server key.",
  ERR_BUNDLE_EXPIRED: 'A key bundle is past its validity window.',
  ERR_BUNDLE_NOT_YET_VALID: 'A key bundle is not yet valid.',
  ERR_BUNDLE_WRONG_RECIPIENT: 'A key bundle is addressed to another principal.',
  ERR_BUNDLE_ROLLBACK:
    'A key bundle is older than the one held, or issued in the same second with other content (replayed or reordered).',
  ERR_REVOCATION_LIST_MALFORMED: 'A revocation list is not well formed.',
  ERR_REVOCATION_LIST_SIGNATURE_INVALID:
    "A revocation list's signature does not verify under the pinned key-server key.",
  ERR_REVOCATION_LIST_ROLLBACK: 'A revocation list is older than one already accepted.',
  ERR_IDENTITY_MALFORMED: 'An exported identity or principal record is not well formed.',
  ERR_TOPIC_INVALID: 'A topic name breaks MQTT rules (empty, wildcard characters, NUL, too long or too deep).',
  ERR_FILTER_INVALID: 'A topic filter breaks MQTT rules (misplaced wildcard, empty, NUL, too long or too deep).',
  ERR_ACL_SUBSTITUTION_REFUSED:
    'A %c/%u substitution value is empty, contains +, #, / or NUL, or would make the filter start with $ or be invalid; an allow rule is not applied, a deny rule denies.',
  ERR_POLICY_INVALID: 'A policy document is not well formed.',
  ERR_CERTIFICATE_REQUEST_INVALID: 'Refused certificate request: key not P-256, or a malformed name, address or id.',
  ERR_CERTIFICATE_AUTHORITY_INVALID: 'The CA certificate or key is malformed, not a P-256 CA, or they do not match.',
  ERR_MASTER_KEY_INVALID:
    'The master key is missing, badly encoded, not 32 bytes, or its file is readable or writable by group or others.',
  ERR_SEALED_SECRET_INVALID: 'A secret sealed at rest does not open (wrong master key, altered bytes or wrong label).',
  ERR_CONFIG_INVALID:
    'A config file is unreadable, not JSON, or has an unknown field or a bad value; or a file it names (or its folder) is open to group or others.',
  ERR_REQUEST_SIGNATURE_INVALID:
    'A signed HTTP request is missing its signature headers, is stale, replayed, or its signature does not verify.',
  ERR_UNAUTHENTICATED: 'The request is not authenticated (no or wrong credentials).',
  ERR_FORBIDDEN: 'The caller is authenticated but not allowed to do this.',
  ERR_PRINCIPAL_REVOKED: 'The principal is revoked (or disabled) and may do nothing.',
  ERR_NOT_FOUND: 'The requested resource does not exist.',
  ERR_CONFLICT:
    'The request conflicts with the current state (duplicate id, concurrent change); retry after re-reading.',
  ERR_REQUEST_INVALID:
    'The request body, query or parameters do not match the schema (malformed JSON, unknown fields, wrong types).',
  ERR_PAYLOAD_TOO_LARGE: 'The request body exceeds the size limit.',
  ERR_RATE_LIMITED:
    'Too many requests from this principal, or too many failed authentications from this address; retry later. HTTP 429.',
  ERR_UNSUPPORTED_MEDIA_TYPE: 'The request body has a content type other than application/json.',
  ERR_ENROLLMENT_TOKEN_INVALID: 'The enrollment token is unknown, already used, expired, or bound to another id.',
  ERR_INTERNAL: 'An internal error; details are in the server log, not in the response.',
  ERR_STORE_UNAVAILABLE:
    "The key server's store cannot serve now (database connection lost, disk full, read-only file); retry later.",
  ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID:
    "A principal record's signature does not verify under the pinned key-server key.",
  ERR_SNAPSHOT_MALFORMED: 'A broker snapshot is not well formed.',
  ERR_SNAPSHOT_SIGNATURE_INVALID: "A broker snapshot's signature does not verify under the pinned key-server key.",
  ERR_NO_KEY_GROUP: 'The topic belongs to no key group the client holds keys for.',
} as const

/** The union of every stable error code. */
export type SmqttErrorCode = keyof typeof ERROR_CODES

/**
 * What an error is about, for a caller that acts on it: refresh the keys of `group`, drop the
 * state of sender `kid`, skip `topic`. Only identifiers the caller already handles (numbers from
 * the envelope header, a topic name), never key material or plaintext. Which codes carry which
 * fields is listed in `docs/errors.md`; any other error has none.
 */
export interface SmqttErrorDetails {
  /** The key group's number (as in the envelope header). */
  readonly group?: number
  /** The epoch number (as in the envelope header). */
  readonly epoch?: number
  /** The sender key id (the envelope header's `sender`). */
  readonly kid?: number
  /** The MQTT topic the error is about. */
  readonly topic?: string
}

/**
 * Marks SmqttErrors across copies of this package: two versions of @smqtt/core installed side
 * by side (a client and a plugin each bringing its own) have two SmqttError classes, and
 * `instanceof` against one fails for the other's errors. `Symbol.for` is shared by all copies.
 */
const SMQTT_ERROR = Symbol.for('@smqtt/core:SmqttError')

/**
 * The one error type for untrusted input. Test for it with {@link isSmqttError}, which also
 * recognises errors from another copy of @smqtt/core (`instanceof` does not).
 *
 * @example
 * ```ts
 * try { openEnvelope(bytes, topic, options) } catch (err) {
 *   if (isSmqttError(err, 'ERR_REPLAY')) return
 *   if (isSmqttError(err, 'ERR_UNKNOWN_EPOCH')) return refetchKeys(err.details?.group)
 *   throw err
 * }
 * ```
 */
export class SmqttError extends Error {
  override readonly name = 'SmqttError'
  readonly code: SmqttErrorCode
  /**
   * What the error is about (group, epoch, sender, topic), where the code carries it; frozen.
   * Absent (not even an own property) on errors without details.
   */
  declare readonly details?: SmqttErrorDetails

  constructor(
    code: SmqttErrorCode,
    message: string = ERROR_CODES[code],
    options?: { readonly cause?: unknown; readonly details?: SmqttErrorDetails },
  ) {
    super(message, options !== undefined && 'cause' in options ? { cause: options.cause } : undefined)
    this.code = code
    if (options?.details !== undefined) this.details = Object.freeze({ ...options.details })
  }

  /** @internal */
  get [SMQTT_ERROR](): true {
    return true
  }
}

/**
 * True when `err` is an {@link SmqttError} (of this copy of @smqtt/core or another), optionally
 * with the given code. A code this copy does not know (a newer copy's) counts as an SmqttError
 * but never equals `code`.
 */
export function isSmqttError(err: unknown, code?: SmqttErrorCode): err is SmqttError {
  if (typeof err !== 'object' || err === null) return false
  const branded = err as { [SMQTT_ERROR]?: unknown; code?: unknown }
  if (branded[SMQTT_ERROR] !== true || typeof branded.code !== 'string') return false
  return code === undefined || branded.code === code
}
