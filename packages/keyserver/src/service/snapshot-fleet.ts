// What a broker snapshot lists of the store (principals, epochs, the revocation list's version),
// kept current from the store's change log (issue 14): a change re-reads the principals and
// groups it names, not the fleet. At 100,000 principals a rebuild of the snapshot's content read
// every row again, ~1.3 s of the key server per change, most of it SQLite rows and the garbage
// they leave; now the content is assembled from what is held. A policy change, a log that no
// longer reaches back, or a burst of changes reads everything again, as the directory does.
import type { EpochRecord, KeyStore, PrincipalRecord } from '../store/key-store.js'
import { changesSince } from './directory.js'

/** The listed rows, as the store would answer them now (see {@link SnapshotFleet.listed}). */
export interface ListedFleet {
  /** Ordered by kid. */
  readonly principals: readonly PrincipalRecord[]
  /** Ordered by group, then epoch. */
  readonly epochs: readonly EpochRecord[]
  readonly revocations: number
}

export class SnapshotFleet {
  readonly #store: KeyStore
  #seq = 0
  /** Every principal read, by kid in kid order (revoked ones too, until they are read again). */
  #principals = new Map<number, PrincipalRecord>()
  /** Each group's epochs, ordered by epoch. */
  readonly #epochs = new Map<number, EpochRecord[]>()
  #revocations = 0
  #built = false
  /** One refresh at a time: two would apply the same changes over each other. */
  #refreshing: Promise<void> | undefined

  constructor(store: KeyStore) {
    this.#store = store
  }

  /**
   * What a snapshot lists at `now`: principals not revoked, or revoked at or after
   * `revokedSince`; epochs not retired by `now`. Reads only what the log says changed since
   * the last call.
   */
  async listed(now: number, revokedSince: number): Promise<ListedFleet> {
    this.#refreshing ??= this.#refresh(revokedSince).finally(() => {
      this.#refreshing = undefined
    })
    await this.#refreshing
    const principals: PrincipalRecord[] = []
    for (const [kid, p] of this.#principals) {
      if (p.status !== 'revoked' || (p.statusChangedAt !== undefined && p.statusChangedAt >= revokedSince))
        principals.push(p)
      // Revocation is final: one past the window is never listed again, so it is not kept either.
      else this.#principals.delete(kid)
    }
    const epochs: EpochRecord[] = []
    for (const group of [...this.#epochs.keys()].sort((a, b) => a - b))
      for (const e of this.#epochs.get(group) ?? []) if (e.retiresAt === undefined || e.retiresAt > now) epochs.push(e)
    return { principals, epochs, revocations: this.#revocations }
  }

  async #refresh(revokedSince: number): Promise<void> {
    const changed = this.#built ? await changesSince(this.#store, this.#seq) : undefined
    if (changed === undefined) return this.#rebuild(revokedSince)
    for (const kid of changed.kids) {
      const principal = await this.#store.getPrincipalByKid(kid)
      if (principal === undefined) this.#principals.delete(kid)
      else this.#principals.set(kid, principal)
    }
    // A kid below one held and not held itself (a row a tool wrote with a chosen kid) would list out of order.
    const kids = [...this.#principals.keys()]
    if (kids.some((kid, i) => i > 0 && kid < (kids[i - 1] as number)))
      this.#principals = new Map([...this.#principals].sort(([a], [b]) => a - b))
    if (changed.groups === 'all') await this.#readEpochs(undefined)
    else for (const group of changed.groups) await this.#readEpochs(group)
    if (changed.revocations) this.#revocations = (await this.#store.getRevocationList())?.version ?? 0
    this.#seq = changed.last
  }

  /** Everything read afresh; the log position first, so a change committed meanwhile is read again next time. */
  async #rebuild(revokedSince: number): Promise<void> {
    const { latest } = await this.#store.listDirectoryChanges(0, 0)
    this.#principals = new Map((await this.#store.listPrincipals({ revokedSince })).map((p) => [p.kid, p]))
    this.#epochs.clear()
    await this.#readEpochs(undefined)
    this.#revocations = (await this.#store.getRevocationList())?.version ?? 0
    this.#seq = latest
    this.#built = true
  }

  /** Reads one group's epochs, or (undefined) every group's. */
  async #readEpochs(group: number | undefined): Promise<void> {
    const read = await this.#store.listEpochs(group)
    if (group === undefined) this.#epochs.clear()
    else this.#epochs.delete(group)
    for (const e of read) {
      const list = this.#epochs.get(e.group)
      if (list) list.push(e)
      else this.#epochs.set(e.group, [e])
    }
  }
}
