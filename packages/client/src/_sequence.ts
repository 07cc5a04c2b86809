import { isSmqttError, SequenceCounter, type SequenceSource, SmqttError } from '@smqtt/core'
import { perStorage } from './_per-storage.js'
import type { KeyServerClient } from './key-server-client.js'
import type { ClientStorage } from './storage.js'

/** Storage key of the highest sequence number a principal was given (a floor for the next range). */
export const sequenceKey = (id: string) => `seq:${id}`

/**
 * A run's first range is small and each next one twice the last, up to the key server's limit:
 * a device that restarts often and sends little spends few numbers per run (its sequence numbers,
 * and so its envelopes, stay short), while a chatty one soon asks rarely.
 */
const FIRST_RANGE = 4_096
const LARGEST_RANGE = 65_536

/**
 * Ranges come from the key server, the one place a second running copy of this identity, or a
 * copy restored from an old backup, cannot roll back. The highest number given is also kept in
 * storage and sent as a floor, so a key server restored from an old backup is covered too
 * unless both are rolled back together.
 */
function keyServerSequenceSource(storage: ClientStorage, id: string, keyServer: KeyServerClient): SequenceSource {
  const key = sequenceKey(id)
  let size = FIRST_RANGE
  return {
    async reserve() {
      const saved = Number((await storage.get(key)) ?? 0)
      // A corrupt floor costs nothing: the key server's own floor still holds.
      const atLeast = Number.isSafeInteger(saved) && saved >= 0 ? saved : 0
      let range: { start: number; end: number }
      try {
        range = await keyServer.reserveSequence(atLeast, size)
      } catch (err) {
        if (isSmqttError(err)) throw err
        throw new SmqttError('ERR_SEQUENCE_UNAVAILABLE', undefined, { cause: err })
      }
      await storage.set(key, String(range.end))
      size = Math.min(size * 2, LARGEST_RANGE)
      return range
    },
  }
}

// Clients of one identity over one storage in one process share a counter: each counter asks
// for ranges of its own, so two would be safe, but they would also waste a range per client.
const countersIn = perStorage<SequenceCounter>()

/** The one sequence counter of principal `id` in `storage`, made on first use. */
export function sequenceCounterFor(storage: ClientStorage, id: string, keyServer: KeyServerClient): SequenceCounter {
  const byId = countersIn(storage)
  let counter = byId.get(id)
  if (!counter) {
    counter = new SequenceCounter(keyServerSequenceSource(storage, id, keyServer))
    byId.set(id, counter)
  }
  return counter
}
