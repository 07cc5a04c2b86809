import type { AeadAlgorithm } from '../crypto/backend.js'

/**
 * Envelope suites. The suite id travels in every envelope; signatures are always Ed25519 and
 * key derivation always HKDF-SHA256, so a suite only chooses the AEAD.
 */
export const SUITES = {
  /** Default: ChaCha20-Poly1305 + Ed25519. Fast everywhere, constant time without AES-NI. */
  1: { name: 'SMQTT-CHACHA20POLY1305-ED25519', aead: 'chacha20-poly1305' },
  /** AES-256-GCM + Ed25519, for deployments that require AES (FIPS-style policies). */
  2: { name: 'SMQTT-AES256GCM-ED25519', aead: 'aes-256-gcm' },
} as const satisfies Record<number, { name: string; aead: AeadAlgorithm }>

/** A suite id this implementation accepts. */
export type SuiteId = keyof typeof SUITES

export const DEFAULT_SUITE: SuiteId = 1

export function isSuiteId(value: number): value is SuiteId {
  return Object.hasOwn(SUITES, value)
}
