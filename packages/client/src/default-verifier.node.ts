// Signatures checked on a worker thread on Node (#default-verifier, like #default-transport): a
// subscriber's event loop also reads TLS and parses MQTT, and Ed25519 verification is most of its
// cost per message, so a busy stream is verified on a second core. One pool serves every secure
// client of the process (a gateway may run hundreds), and its thread starts only on the first
// burst worth handing off: a device receiving a message a minute never starts it.
import { defaultVerifyWorkers, VerifyPool } from '@smqtt/core/verify-pool'
import type { SignatureVerifier } from './verifier.js'

let shared: { pool: VerifyPool; users: number } | undefined

/** The process's shared verifier, or undefined when this machine has a single core. */
export function acquireVerifier(): SignatureVerifier | undefined {
  const workers = defaultVerifyWorkers()
  if (workers < 1) return undefined
  shared ??= { pool: new VerifyPool({ workers, lazy: true, eventLoopShare: 0.4 }), users: 0 }
  const { pool } = shared
  shared.users++
  let released = false
  return {
    verify: (signingKey, topic, envelope, done, properties) =>
      pool.verify(signingKey, topic, envelope, done, properties),
    release: () => {
      if (released || shared?.pool !== pool) return
      released = true
      if (--shared.users > 0) return
      shared = undefined
      void pool.close()
    },
  }
}

/** The shared pool, if started (tests: watch its thread, kill it). */
export function sharedVerifyPool(): VerifyPool | undefined {
  return shared?.pool
}
