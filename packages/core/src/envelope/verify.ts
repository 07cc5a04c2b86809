import { defaultBackend } from '#crypto-backend'
import type { CryptoBackend } from '../crypto/backend.js'
import { SmqttError } from '../errors.js'
import { signedBytes, topicBytes } from './_signed-bytes.js'
import { type EnvelopeProperties, encodeBoundProperties } from './bound-properties.js'
import { type ParsedEnvelope, parseEnvelope } from './header.js'

/** Looks up a group's writer: its Ed25519 public key by sender key id, or undefined. */
export type WriterLookup = (group: number, sender: number) => Uint8Array | undefined

export interface VerifyEnvelopeOptions {
  readonly writerKey: WriterLookup
  readonly backend?: CryptoBackend
  /** Largest envelope accepted, in bytes (default 4 MiB + 1 KiB). */
  readonly maxEnvelopeBytes?: number
  /**
   * The MQTT 5 properties the PUBLISH packet carried (user properties in packet order). Needed
   * only for envelopes that bind properties (flag 0x20): without them, such an envelope whose
   * sender bound a property that is there fails. Ignored for envelopes that bind none.
   */
  readonly properties?: EnvelopeProperties
}

export const DEFAULT_MAX_ENVELOPE_BYTES = 4 * 1024 * 1024 + 1024

/**
 * Parses an envelope and checks its sender's signature over header, topic and ciphertext,
 * without any group key: what a broker can check. Returns the parsed envelope; the caller
 * decides about sender identity, epoch and freshness.
 *
 * @example
 * ```ts
 * const { header } = verifyEnvelope(packet.payload, packet.topic, { writerKey: (g, kid) => directory.key(g, kid) })
 * if (header.sender !== session.kid) refuse()
 * ```
 */
export function verifyEnvelope(bytes: Uint8Array, topic: string, options: VerifyEnvelopeOptions): ParsedEnvelope {
  if (bytes instanceof Uint8Array && bytes.length > (options.maxEnvelopeBytes ?? DEFAULT_MAX_ENVELOPE_BYTES))
    throw new SmqttError('ERR_ENVELOPE_TOO_LARGE', `envelope of ${bytes.length} bytes exceeds the limit`)
  const parsed = parseEnvelope(bytes)
  checkSignature(parsed, topic, options.writerKey, options.backend ?? defaultBackend, options.properties)
  return parsed
}

/** Shared by verify and open: the sender must be a listed writer of the envelope's group. */
export function senderKeyOf(parsed: ParsedEnvelope, writerKey: WriterLookup): Uint8Array {
  const { group, sender } = parsed.header
  const publicKey = writerKey(group, sender)
  if (!publicKey)
    throw new SmqttError('ERR_UNKNOWN_SENDER', `sender ${sender} is not a writer of group ${group}`, {
      details: { group, kid: sender },
    })
  return publicKey
}

/**
 * The canonical encoding of the properties the envelope binds, built from those received; empty
 * when it binds none, undefined when the received ones cannot match (too few, too large).
 */
export function boundPropertiesOf(
  parsed: ParsedEnvelope,
  received: EnvelopeProperties | undefined,
): Uint8Array | undefined {
  const binding = parsed.header.properties
  return binding ? encodeBoundProperties(binding, received) : NO_PROPERTIES
}

const NO_PROPERTIES = new Uint8Array(0)

/**
 * Whether the sender's signature over header, topic, bound properties and ciphertext holds under
 * `publicKey`; also returns the AEAD's associated data (header + topic + bound properties), which
 * is part of the same signed bytes. `bound` is {@link boundPropertiesOf}'s answer.
 */
export function verifySignature(
  parsed: ParsedEnvelope,
  topic: string,
  publicKey: Uint8Array,
  backend: CryptoBackend,
  bound: Uint8Array | undefined,
): { valid: boolean; aad: Uint8Array } {
  const { headerBytes, ciphertext, signature } = parsed
  const { buffer, aad, ciphertextOffset } = signedBytes(
    headerBytes,
    topicBytes(topic),
    ciphertext.length,
    bound ?? NO_PROPERTIES,
  )
  buffer.set(ciphertext, ciphertextOffset)
  // Received properties that cannot match what was bound: the signature cannot hold.
  if (bound === undefined) return { valid: false, aad }
  return { valid: backend.ed25519Verify(signature, buffer, publicKey), aad }
}

/** Shared by verify and open: sender must be a listed writer, and its signature must hold. */
export function checkSignature(
  parsed: ParsedEnvelope,
  topic: string,
  writerKey: WriterLookup,
  backend: CryptoBackend,
  properties?: EnvelopeProperties,
): { aad: Uint8Array } {
  const publicKey = senderKeyOf(parsed, writerKey)
  const { valid, aad } = verifySignature(parsed, topic, publicKey, backend, boundPropertiesOf(parsed, properties))
  if (!valid) throw new SmqttError('ERR_ENVELOPE_SIGNATURE_INVALID')
  return { aad }
}
