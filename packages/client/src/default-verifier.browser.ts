// Outside Node, signatures are checked on the event loop: a Web Worker would need a separate
// script that every application bundler handles differently, and a browser app receives far
// fewer messages than one core verifies (~20,000/s natively, ~400/s with the portable backend).
import type { SignatureVerifier } from './verifier.js'

export function acquireVerifier(): SignatureVerifier | undefined {
  return undefined
}
