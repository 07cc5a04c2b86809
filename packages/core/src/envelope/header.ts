// The envelope's byte layout (docs/envelope.md is the reference):
//
//   version u8 | flags+suite u8 | group varint | epoch varint | sender varint | seq varint
//   | sentAt u32 BE | [bound-properties descriptor: mask u8, user property count u8]
//   | ciphertext (plaintext length + 16-byte tag) | Ed25519 signature (64)
//
// The descriptor is there only with flag 0x20, so envelopes binding no properties are the v1
// bytes they always were (and readers from before the flag refuse the others as malformed).
// Varints are unsigned LEB128 and must be minimal, so every header has exactly one encoding.
import { SmqttError } from '../errors.js'
import {
  bindingFromMask,
  bindingMask,
  KNOWN_BIND_BITS,
  MAX_BOUND_USER_PROPERTIES,
  type PropertyBinding,
} from './bound-properties.js'
import { isSuiteId, type SuiteId } from './suites.js'

export const ENVELOPE_VERSION = 1
export const SIGNATURE_LENGTH = 64
export const TAG_LENGTH = 16
const FLAG_RETAIN = 0x10
const FLAG_PROPERTIES = 0x20
const KNOWN_FLAGS = FLAG_RETAIN | FLAG_PROPERTIES
export const MAX_ID = 0xffff_ffff
export const MAX_SEQ = Number.MAX_SAFE_INTEGER

/** The authenticated, cleartext part of an envelope: who sent what, where, when. */
export interface EnvelopeHeader {
  readonly version: number
  readonly suite: SuiteId
  /** The sender published it as a retained message (a broker cannot fake this bit). */
  readonly retain: boolean
  /** Key group id (from policy). */
  readonly group: number
  /** Key epoch within the group. */
  readonly epoch: number
  /** Sender key id, assigned by the key server at enrollment. */
  readonly sender: number
  /** Sender's sequence number: unique per sender for ever, it also makes the nonce. */
  readonly seq: number
  /** Send time, unix seconds, from the sender's clock. */
  readonly sentAt: number
  /** The MQTT 5 properties the envelope binds (flag 0x20), or undefined when it binds none. */
  readonly properties?: PropertyBinding | undefined
}

/** A parsed envelope: the header and views into the bytes it came from (no copies). */
export interface ParsedEnvelope {
  readonly header: EnvelopeHeader
  readonly headerBytes: Uint8Array
  readonly ciphertext: Uint8Array
  readonly signature: Uint8Array
}

function varintLength(value: number): number {
  if (value < 0x80) return 1
  if (value < 0x4000) return 2
  if (value < 0x20_0000) return 3
  if (value < 0x1000_0000) return 4
  let length = 5
  for (let rest = Math.floor(value / 0x8_0000_0000); rest > 0; rest = Math.floor(rest / 0x80)) length++
  return length
}

function writeVarint(out: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    out[offset++] = (value % 0x80) | 0x80
    value = Math.floor(value / 0x80)
  }
  out[offset++] = value
  return offset
}

/** Encodes a header; the caller has validated the fields. */
export function encodeHeader(header: EnvelopeHeader): Uint8Array {
  const length =
    2 +
    varintLength(header.group) +
    varintLength(header.epoch) +
    varintLength(header.sender) +
    varintLength(header.seq) +
    4 +
    (header.properties ? 2 : 0)
  const out = new Uint8Array(length)
  out[0] = header.version
  out[1] = (header.retain ? FLAG_RETAIN : 0) | (header.properties ? FLAG_PROPERTIES : 0) | header.suite
  let offset = writeVarint(out, 2, header.group)
  offset = writeVarint(out, offset, header.epoch)
  offset = writeVarint(out, offset, header.sender)
  offset = writeVarint(out, offset, header.seq)
  // sentAt, uint32 big-endian (written by hand: a DataView per envelope costs more than the rest)
  out[offset] = header.sentAt >>> 24
  out[offset + 1] = (header.sentAt >>> 16) & 0xff
  out[offset + 2] = (header.sentAt >>> 8) & 0xff
  out[offset + 3] = header.sentAt & 0xff
  if (header.properties) {
    out[offset + 4] = bindingMask(header.properties)
    out[offset + 5] = header.properties.userProperties
  }
  return out
}

function malformed(reason: string): SmqttError {
  return new SmqttError('ERR_ENVELOPE_MALFORMED', `malformed envelope: ${reason}`)
}

/** A strict, allocation-light cursor over untrusted bytes. */
class Reader {
  offset = 0
  constructor(readonly bytes: Uint8Array) {}

  varint(label: string, max: number): number {
    let value = 0
    let scale = 1
    for (let i = 0; i < 8; i++) {
      const byte = this.bytes[this.offset++]
      if (byte === undefined) throw malformed(`${label} is truncated`)
      value += (byte & 0x7f) * scale
      if ((byte & 0x80) === 0) {
        if (byte === 0 && i > 0) throw malformed(`${label} is not minimally encoded`)
        if (value > max) throw malformed(`${label} is out of range`)
        return value
      }
      scale *= 0x80
    }
    throw malformed(`${label} is too long`)
  }
}

/**
 * Splits an envelope into header, ciphertext and signature. Checks structure only: no keys,
 * no crypto. Any input either parses or throws SmqttError.
 */
export function parseEnvelope(bytes: Uint8Array): ParsedEnvelope {
  if (!(bytes instanceof Uint8Array)) throw malformed('not a byte array')
  if (bytes.length < 2) throw malformed('too short')
  const version = bytes[0] as number
  if (version !== ENVELOPE_VERSION)
    throw new SmqttError('ERR_ENVELOPE_UNSUPPORTED', `unsupported envelope version ${version}`)
  const flagsAndSuite = bytes[1] as number
  const suite = flagsAndSuite & 0x0f
  if (!isSuiteId(suite)) throw new SmqttError('ERR_ENVELOPE_UNSUPPORTED', `unsupported envelope suite ${suite}`)
  if ((flagsAndSuite & 0xf0 & ~KNOWN_FLAGS) !== 0) throw malformed('unknown flag bits are set')
  const reader = new Reader(bytes)
  reader.offset = 2
  const group = reader.varint('group', MAX_ID)
  const epoch = reader.varint('epoch', MAX_ID)
  const sender = reader.varint('sender', MAX_ID)
  const seq = reader.varint('seq', MAX_SEQ)
  const timeOffset = reader.offset
  const bound = (flagsAndSuite & FLAG_PROPERTIES) !== 0
  const headerEnd = timeOffset + 4 + (bound ? 2 : 0)
  if (bytes.length < headerEnd + TAG_LENGTH + SIGNATURE_LENGTH) throw malformed('too short for tag and signature')
  const sentAt = new DataView(bytes.buffer, bytes.byteOffset + timeOffset, 4).getUint32(0)
  const properties = bound ? readBinding(bytes[timeOffset + 4] as number, bytes[timeOffset + 5] as number) : undefined
  const signatureStart = bytes.length - SIGNATURE_LENGTH
  const retain = (flagsAndSuite & FLAG_RETAIN) !== 0
  return {
    header: properties
      ? { version, suite, retain, group, epoch, sender, seq, sentAt, properties }
      : { version, suite, retain, group, epoch, sender, seq, sentAt },
    headerBytes: bytes.subarray(0, headerEnd),
    ciphertext: bytes.subarray(headerEnd, signatureStart),
    signature: bytes.subarray(signatureStart),
  }
}

/** The bound-properties descriptor: known mask bits only, at most 16 user properties, not empty. */
function readBinding(mask: number, userProperties: number): PropertyBinding {
  if ((mask & ~KNOWN_BIND_BITS) !== 0) throw malformed('unknown bound-property bits are set')
  if (userProperties > MAX_BOUND_USER_PROPERTIES) throw malformed('too many bound user properties')
  if (mask === 0 && userProperties === 0) throw malformed('the properties flag is set but binds nothing')
  return bindingFromMask(mask, userProperties)
}
