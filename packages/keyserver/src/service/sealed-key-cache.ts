// Epoch keys already sealed to each holder (issue 14, cliff 5). A re-key seals the new epoch
// for every holder and reuses the seals of the epochs still in their grace period, instead of
// sealing each of them again: its cost does not grow with the rotations of the last minutes.
//
// Keyed by slot (group and epoch: a pair a store never reuses for another key) and by key id
// (which fixes the principal's id and KEM key), so a hit is always the seal a fresh one would
// replace. Pruned to the live epochs on every directory rebuild; bounded in entries.
import { type PublicIdentity, type SealedEpochKey, sealEpochKey } from '@smqtt/core'

/**
 * Most seals kept, ~190 B each (X25519; `npm run bench:scale -- --only rekey` prints the heap):
 * 100,000 holders of a group through ten rotations within one grace period.
 */
export const MAX_SEALED_KEYS = 1_000_000

export interface EpochSlot {
  readonly group: number
  readonly epoch: number
}

const slotKey = (slot: EpochSlot) => `${slot.group}:${slot.epoch}`

interface Holders {
  readonly suite: number
  // By kid: `enc.sealedKey` (both base64url, so '.' cannot occur in either): one string per seal is
  // half the memory of a SealedEpochKey object.
  readonly sealed: Map<number, string>
}

export class SealedKeyCache {
  readonly #slots = new Map<string, Holders>()
  #size = 0

  constructor(private readonly maxEntries = MAX_SEALED_KEYS) {}

  /** Seals kept, across all slots. */
  get size(): number {
    return this.#size
  }

  /** `key` sealed to `recipient` for the slot: the seal made the first time, made now if none. */
  sealed(
    recipient: PublicIdentity & { readonly kid: number },
    slot: EpochSlot & { readonly suite: number },
    key: Uint8Array,
  ): SealedEpochKey {
    const name = slotKey(slot)
    const holders = this.#slots.get(name)
    const kept = holders?.suite === slot.suite ? holders.sealed.get(recipient.kid) : undefined
    if (kept !== undefined) {
      const dot = kept.indexOf('.')
      return {
        recipient: recipient.id,
        ...slot,
        kem: recipient.kem,
        enc: kept.slice(0, dot),
        sealedKey: kept.slice(dot + 1),
      }
    }
    const sealed = sealEpochKey(recipient, slot, key)
    if (this.#size >= this.maxEntries) this.#clear() // a fresh start costs one seal per holder
    let current = this.#slots.get(name)
    if (!current || current.suite !== slot.suite) {
      if (current) this.#size -= current.sealed.size
      current = { suite: slot.suite, sealed: new Map() }
      this.#slots.set(name, current)
    }
    if (!current.sealed.has(recipient.kid)) this.#size++
    current.sealed.set(recipient.kid, `${sealed.enc}.${sealed.sealedKey}`)
    return sealed
  }

  /** Forgets every slot but `live` (epochs deleted after their grace period, or withdrawn). */
  keepOnly(live: Iterable<EpochSlot>): void {
    const keep = new Set([...live].map(slotKey))
    for (const [name, holders] of this.#slots)
      if (!keep.has(name)) {
        this.#size -= holders.sealed.size
        this.#slots.delete(name)
      }
  }

  #clear(): void {
    this.#slots.clear()
    this.#size = 0
  }
}
