import { utf8 } from '../_bytes.js'
import { signedBytes as contextSignedBytes } from '../crypto/signature.js'

// The same domain separation as every other SMQTT signature: "smqtt/v1 envelope" 0x00 || ...
const CONTEXT = contextSignedBytes('envelope', new Uint8Array(0))
const MAX_TOPIC_BYTES = 0xffff

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
 * Lays out one buffer: context | header | topic length u16 | topic | ciphertext.
 * The AEAD's associated data is its middle (header + topic) and the signature covers it all,
 * so both bind the exact topic, and the whole thing costs one allocation.
 */
export function signedBytes(
  headerBytes: Uint8Array,
  topic: Uint8Array,
  ciphertextLength: number,
): { buffer: Uint8Array; aad: Uint8Array; ciphertextOffset: number } {
  if (topic.length > MAX_TOPIC_BYTES) throw new RangeError('topic is longer than 65535 bytes')
  const aadStart = CONTEXT.length
  const topicStart = aadStart + headerBytes.length + 2
  const ciphertextOffset = topicStart + topic.length
  const buffer = new Uint8Array(ciphertextOffset + ciphertextLength)
  buffer.set(CONTEXT, 0)
  buffer.set(headerBytes, aadStart)
  buffer[topicStart - 2] = topic.length >>> 8
  buffer[topicStart - 1] = topic.length & 0xff
  buffer.set(topic, topicStart)
  return { buffer, aad: buffer.subarray(aadStart, ciphertextOffset), ciphertextOffset }
}

/** The AEAD's associated data alone (header + topic), when the signature was checked elsewhere. */
export function associatedData(headerBytes: Uint8Array, topic: string): Uint8Array {
  return signedBytes(headerBytes, topicBytes(topic), 0).aad
}

export { MAX_TOPIC_BYTES }
