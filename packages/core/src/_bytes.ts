// Byte helpers shared inside core. Not exported from the package.

/** Throws TypeError unless `value` is a Uint8Array (of `length`, when given: RangeError). */
export function abytes(value: unknown, label: string, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${label} must be a Uint8Array`)
  if (length !== undefined && value.length !== length)
    throw new RangeError(`${label} must be ${length} bytes, got ${value.length}`)
}

/** Throws TypeError/RangeError unless `value` is an integer in [0, max]. */
export function auint(value: unknown, label: string, max: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError(`${label} must be an integer`)
  if (value < 0 || value > max) throw new RangeError(`${label} must be in [0, ${max}], got ${value}`)
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0
  for (const p of parts) length += p.length
  const out = new Uint8Array(length)
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

/** Constant-time equality for equal-length secrets; false for different lengths. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number)
  return diff === 0
}

const encoder = new TextEncoder()
const strictDecoder = new TextDecoder('utf-8', { fatal: true })

export function utf8(text: string): Uint8Array {
  return encoder.encode(text)
}

/** Strict UTF-8 decoding: returns undefined on invalid input instead of replacing characters. */
export function fromUtf8(bytes: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(bytes)
  } catch {
    return undefined
  }
}

export function toHex(bytes: Uint8Array): string {
  let out = ''
  for (const b of bytes) out += b.toString(16).padStart(2, '0')
  return out
}

export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new TypeError('invalid hex string')
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return out
}

const B64URL_CODES = utf8('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_')
/** Each ASCII code's 6-bit value in base64url, -1 outside the alphabet. */
const B64URL_VALUES = new Int8Array(128).fill(-1)
B64URL_CODES.forEach((code, value) => {
  B64URL_VALUES[code] = value
})
const asciiDecoder = new TextDecoder()

/** base64url without padding, the form used in JSON documents. Writes ASCII codes, decodes once. */
export function toBase64Url(bytes: Uint8Array): string {
  const out = new Uint8Array(Math.ceil((bytes.length * 4) / 3))
  let o = 0
  let i = 0
  for (; i + 2 < bytes.length; i += 3) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8) | (bytes[i + 2] as number)
    out[o++] = B64URL_CODES[n >>> 18] as number
    out[o++] = B64URL_CODES[(n >>> 12) & 63] as number
    out[o++] = B64URL_CODES[(n >>> 6) & 63] as number
    out[o++] = B64URL_CODES[n & 63] as number
  }
  const rest = bytes.length - i
  if (rest > 0) {
    const n = ((bytes[i] as number) << 16) | (rest === 2 ? (bytes[i + 1] as number) << 8 : 0)
    out[o++] = B64URL_CODES[n >>> 18] as number
    out[o++] = B64URL_CODES[(n >>> 12) & 63] as number
    if (rest === 2) out[o++] = B64URL_CODES[(n >>> 6) & 63] as number
  }
  return asciiDecoder.decode(out.subarray(0, o))
}

/**
 * Strict base64url decoding (no padding, no other alphabet); undefined on bad input. One pass
 * over the text: a broker snapshot's payload is 19 MB at 100,000 principals.
 */
export function fromBase64Url(text: string): Uint8Array | undefined {
  if (typeof text !== 'string') return undefined
  const length = text.length
  const rest = length % 4
  if (rest === 1) return undefined
  const out = new Uint8Array(((length - rest) / 4) * 3 + (rest === 0 ? 0 : rest - 1))
  const value = (i: number) => {
    const code = text.charCodeAt(i)
    return code < 128 ? (B64URL_VALUES[code] as number) : -1
  }
  let o = 0
  let i = 0
  for (; i + 4 <= length; i += 4) {
    const a = value(i)
    const b = value(i + 1)
    const c = value(i + 2)
    const d = value(i + 3)
    if ((a | b | c | d) < 0) return undefined
    const n = (a << 18) | (b << 12) | (c << 6) | d
    out[o++] = n >>> 16
    out[o++] = (n >>> 8) & 255
    out[o++] = n & 255
  }
  if (rest === 0) return out
  const a = value(i)
  const b = value(i + 1)
  const c = rest === 3 ? value(i + 2) : 0
  if ((a | b | c) < 0) return undefined
  // The bits past the last byte must be zero, so each byte string has exactly one text form.
  if (rest === 2 ? (b & 15) !== 0 : (c & 3) !== 0) return undefined
  out[o++] = (a << 2) | (b >>> 4)
  if (rest === 3) out[o] = ((b & 15) << 4) | (c >>> 2)
  return out
}
