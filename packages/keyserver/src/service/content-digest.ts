// The digests that tell one bundle's or broker snapshot's content from another's.
import { sha256 } from '@smqtt/core'

/**
 * 16 bytes of SHA-256 over the JSON of `value` (byte arrays as base64url), base64url: a bundle
 * tag, or what tells one broker snapshot's content from the last (KeyServer.brokerSnapshot).
 */
export function digest(value: unknown): string {
  return digestJson(contentJson(value))
}

/** The JSON that {@link digest} hashes. */
export function contentJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    item instanceof Uint8Array ? Buffer.from(item).toString('base64url') : item,
  )
}

export function digestJson(json: string): string {
  return Buffer.from(sha256(new TextEncoder().encode(json)).subarray(0, 16)).toString('base64url')
}
