import { SequenceCounter, type SequenceStore } from '@smqtt/core'
import type { ClientStorage } from './storage.js'

/** Storage key of a principal's sequence reservation. */
export const sequenceKey = (id: string) => `seq:${id}`

function sequenceStore(storage: ClientStorage, id: string): SequenceStore {
  const key = sequenceKey(id)
  return {
    async load() {
      const text = await storage.get(key)
      return text === undefined ? undefined : Number(text)
    },
    save: (limit) => storage.set(key, String(limit)),
  }
}

// Two clients of one identity over one storage in one process must share a counter: two
// counters would each resume from the same saved limit and reuse sequence numbers (nonces).
const counters = new WeakMap<ClientStorage, Map<string, Promise<SequenceCounter>>>()

/** The one sequence counter of principal `id` in `storage`, opened on first use. */
export function sequenceCounterFor(storage: ClientStorage, id: string): Promise<SequenceCounter> {
  let byId = counters.get(storage)
  if (!byId) {
    byId = new Map()
    counters.set(storage, byId)
  }
  let counter = byId.get(id)
  if (!counter) {
    counter = SequenceCounter.open(sequenceStore(storage, id))
    // A failed open (storage down) must not be cached for ever.
    counter.catch(() => byId.delete(id))
    byId.set(id, counter)
  }
  return counter
}
