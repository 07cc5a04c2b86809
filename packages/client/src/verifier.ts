// Where a secure client checks envelope signatures: on its event loop, or on worker threads.
import type { EnvelopeProperties } from '@smqtt/core'

/** What became of a signature handed to a {@link SignatureVerifier}; `unavailable`: not checked. */
export type SignatureVerdict = 'valid' | 'invalid' | 'unavailable'

/**
 * Checks envelope signatures off the event loop (a worker thread on Node). Verdicts may come back
 * in any order; the client finishes messages in arrival order itself.
 */
export interface SignatureVerifier {
  /** `properties`: the MQTT 5 properties received, for an envelope that binds some. */
  verify(
    signingKey: Uint8Array,
    topic: string,
    envelope: Uint8Array,
    done: (verdict: SignatureVerdict) => void,
    properties?: EnvelopeProperties,
  ): void
  /** This client is done with it. */
  release(): void
}
