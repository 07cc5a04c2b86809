// Where a secure client checks envelope signatures: on its event loop, or on worker threads.

/** What became of a signature handed to a {@link SignatureVerifier}; `unavailable`: not checked. */
export type SignatureVerdict = 'valid' | 'invalid' | 'unavailable'

/**
 * Checks envelope signatures off the event loop (a worker thread on Node). Verdicts may come back
 * in any order; the client finishes messages in arrival order itself.
 */
export interface SignatureVerifier {
  verify(signingKey: Uint8Array, topic: string, envelope: Uint8Array, done: (verdict: SignatureVerdict) => void): void
  /** This client is done with it. */
  release(): void
}
