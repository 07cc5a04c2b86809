import { perStorage } from './_per-storage.js'
import type { ClientStorage } from './storage.js'

interface Held {
  users: number
  readonly lock: Promise<(() => Promise<void>) | undefined>
}

// Clients of one identity in one process share the storage lock: the lock keeps out other
// processes (and tabs), which would reserve their own sequence ranges and fight over the broker
// session; clients in this process already share one sequence counter.
const heldIn = perStorage<Held>()

/**
 * Holds the lock of identity `id` in `storage` for one more client of this process and resolves
 * to that client's release (idempotent). Rejects with `ERR_IDENTITY_IN_USE` while another
 * process or tab holds it; a storage without `lock` locks nothing.
 */
export async function holdIdentity(storage: ClientStorage, id: string): Promise<() => Promise<void>> {
  const byId = heldIn(storage)
  let entry = byId.get(id)
  if (!entry) {
    const lock = storage.lock ? storage.lock(`identity:${id}`) : Promise.resolve(undefined)
    const created: Held = { users: 0, lock }
    lock.catch(() => {
      if (byId.get(id) === created) byId.delete(id) // refused: the next client asks again
    })
    byId.set(id, created)
    entry = created
  }
  const mine = entry
  mine.users++
  try {
    await mine.lock
  } catch (err) {
    mine.users--
    throw err
  }
  let releasing: Promise<void> | undefined
  return () => {
    releasing ??= (async () => {
      if (--mine.users > 0) return
      if (byId.get(id) === mine) byId.delete(id)
      await (await mine.lock)?.()
    })()
    return releasing
  }
}
