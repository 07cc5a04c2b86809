import { utf8 } from '../_bytes.js'
import { signedBytes as contextSignedBytes } from '../crypto/signature.js'

// The same domain separation as every other SMQTT signature: "smqtt/v1 envelope" 0x00 || ...
const CONTEXT = contextSignedBytes('envelope', new Uint8Array(0))
const MAX_TOPIC_BYTES = 0xffff
const NO_PROPERTIES = new Uint8Array(0)

// Devices publish and subscribe to the same few topics over and over; encoding a short string
// to UTF-8 costs about as much as the rest of the header work, so remember the last ones.
const topicBytesCache = new Map<string, Uint8Array>()
const TOPIC_CACHE_LIMIT = 1024

/** The UTF-8 bytes of a topic, from a small bounded cache. Callers must not modify them. */
export function topicBytes(topic: string): Uint8Array {
  let bytes = topicBytesCache.get(topic)
  if (!bytes) {
    bytes = utf8(topic)
    if (topicBytesCache.size >= TOPIC_CACHE_LIMIT) topicBytesCache.clear()
    topicBytesCache.set(topic, bytes)
  }
  return bytes
}

/**
 * Signed bytes up to this size are laid out in one reused buffer: a new typed array over 64
 * bytes costs ~2 µs in V8 (its memory lives outside the JS heap), as much as the rest of the
 * envelope work besides the crypto, and every seal, verify and open needs one.
 */
const SCRATCH_LIMIT = 64 * 1024
let scratch = new Uint8Array(1024)

/**
 * Lays out one buffer: context | header | topic length u16 | topic | bound properties | ciphertext.
 * The AEAD's associated data is its middle (header + topic + bound properties) and the signature
 * covers it all, so both bind the exact topic and properties. The caller writes the ciphertext
 * at `ciphertextOffset`. `bound` is the canonical encoding of the bound MQTT 5 properties
 * (bound-properties.ts), empty when the envelope binds none.
 *
 * The buffer is valid until the next call (it is reused): use it and `aad` synchronously, as
 * sealing and verifying do (no call in between can reach this module).
 */
export function signedBytes(
  headerBytes: Uint8Array,
  topic: Uint8Array,
  ciphertextLength: number,
  bound: Uint8Array = NO_PROPERTIES,
): { buffer: Uint8Array; aad: Uint8Array; ciphertextOffset: number } {
  if (topic.length > MAX_TOPIC_BYTES) throw new RangeError('topic is longer than 65535 bytes')
  const aadStart = CONTEXT.length
  const topicStart = aadStart + headerBytes.length + 2
  const boundStart = topicStart + topic.length
  const ciphertextOffset = boundStart + bound.length
  const size = ciphertextOffset + ciphertextLength
  if (size > scratch.length && size <= SCRATCH_LIMIT) scratch = new Uint8Array(Math.min(SCRATCH_LIMIT, 2 * size))
  const buffer = size <= scratch.length ? scratch.subarray(0, size) : new Uint8Array(size)
  buffer.set(CONTEXT, 0)
  buffer.set(headerBytes, aadStart)
  buffer[topicStart - 2] = topic.length >>> 8
  buffer[topicStart - 1] = topic.length & 0xff
  buffer.set(topic, topicStart)
  if (bound.length > 0) buffer.set(bound, boundStart)
  return { buffer, aad: buffer.subarray(aadStart, ciphertextOffset), ciphertextOffset }
}

/** The AEAD's associated data alone (header + topic + bound properties), when the signature was checked elsewhere. */
export function associatedData(headerBytes: Uint8Array, topic: string, bound?: Uint8Array): Uint8Array {
  return signedBytes(headerBytes, topicBytes(topic), 0, bound).aad
}

export { MAX_TOPIC_BYTES }
