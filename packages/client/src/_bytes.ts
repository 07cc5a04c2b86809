// Byte helpers that work in browsers too (no Buffer unless the platform has it).

export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)
export const fromUtf8 = (bytes: Uint8Array): string => new TextDecoder('utf-8', { fatal: true }).decode(bytes)

export function toBase64Url(bytes: Uint8Array): string {
  let binary = ''
  for (const byte of bytes) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** Decodes base64url without padding; undefined for anything else. */
export function fromBase64Url(text: string): Uint8Array | undefined {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'))
  return Uint8Array.from(binary, (c) => c.charCodeAt(0))
}

/**
 * The payload type mqtt.js expects. On Node a Buffer view over the same memory (no copy);
 * elsewhere mqtt.js's bundled Buffer polyfill takes the Uint8Array.
 */
export function toWire(bytes: Uint8Array): Buffer {
  const NodeBuffer = (globalThis as { Buffer?: typeof Buffer }).Buffer
  return NodeBuffer ? NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : (bytes as Buffer)
}

/**
 * `bytes` as the kind of object mqtt.js delivered `wire` as, so `message` hands out what a plain
 * mqtt.js client would: a Node Buffer on Node, the Buffer polyfill mqtt.js bundles in browsers
 * (taken from the payload itself, so no Buffer is bundled here). A view, no copy.
 */
export function likeWire(wire: unknown, bytes: Uint8Array): Buffer {
  const Kind = (wire as { constructor?: unknown } | undefined)?.constructor as
    | { isBuffer?: unknown; from?: unknown }
    | undefined
  if (wire instanceof Uint8Array && typeof Kind?.isBuffer === 'function' && typeof Kind.from === 'function')
    return (Kind as typeof Buffer).from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return toWire(bytes)
}
