// The receive replay window must survive a restart: otherwise an envelope accepted before it
// is accepted again afterwards (replayed by a compromised or restarted broker) within the
// freshness limit. Saves are group commits: messages accepted while one save runs share the
// next, so a fast stream costs one storage write per batch, not per message.
//
// The saved text is exactly JSON.stringify(window.exportState(keep)), but built from cached
// per-entry JSON: each save re-serializes only the entries the window reports changed, so a
// batch from a few of 10,000 senders does not pay for stringifying all of them.
import { isSmqttError, type ReplayFloorEntry, type ReplayWindow, type ReplayWindowEntry, SmqttError } from '@smqtt/core'
import type { ClientStorage } from './storage.js'

/** Storage key of a principal's receive replay state. */
export const replayKey = (id: string) => `replay:${id}`

/** What {@link SavedReplayWindow} needs besides the window. */
export interface SavedReplayWindowOptions {
  readonly storage: ClientStorage
  readonly key: string
  /** Which (group, epoch) windows are worth saving: those whose envelopes can still be opened. */
  readonly keep: (group: number, epoch: number) => boolean
  /** Told when a save fails (the state stays dirty and the next save retries) or a load resets. */
  readonly onError: (error: Error) => void
}

/** A (group, epoch) whose entries `keep` judges together, once per save. */
interface Epoch {
  readonly group: number
  readonly epoch: number
  kept: boolean
  entries: number
}

/** An entry's JSON, the (group, epoch) that decides whether it is saved, and its chunk. */
interface Fragment {
  readonly json: string
  readonly epoch: Epoch
  chunk: Chunk
}

/** A run of consecutive fragments with their joined text, so a save rejoins only the chunks that changed. */
interface Chunk {
  readonly fragments: Map<string, Fragment>
  /** The kept fragments joined; undefined when stale. */
  text: string | undefined
}

/** Entries per chunk: a save rejoins up to 2 chunks per changed entry and concatenates up to 2 N / CHUNK. */
const CHUNK = 64

/**
 * One list of the state (windows or floors) in exportState's order: entries are removed
 * anywhere but only appended at the end. Its text is a concatenation of chunk texts, which V8
 * keeps as a rope: flattened once, by the storage, instead of copied here on every save.
 */
class FragmentList {
  readonly #chunkSize: number
  readonly #index = new Map<string, Fragment>()
  #chunks: Chunk[] = []
  /** The whole list's text; undefined when stale. */
  #text: string | undefined

  constructor(chunkSize: number) {
    this.#chunkSize = chunkSize
  }

  clear(): void {
    this.#index.clear()
    this.#chunks = []
    this.#text = undefined
  }

  /** Removes `key`'s fragment; its (group, epoch), or undefined when `key` is not here. */
  remove(key: string): Epoch | undefined {
    const fragment = this.#index.get(key)
    if (fragment === undefined) return undefined
    this.#index.delete(key)
    fragment.chunk.fragments.delete(key)
    fragment.chunk.text = undefined
    this.#text = undefined
    return fragment.epoch
  }

  append(key: string, json: string, epoch: Epoch): void {
    let chunk = this.#chunks.at(-1)
    if (chunk === undefined || chunk.fragments.size >= this.#chunkSize) {
      chunk = { fragments: new Map(), text: undefined }
      this.#chunks.push(chunk)
    }
    const fragment: Fragment = { json, epoch, chunk }
    chunk.fragments.set(key, fragment)
    this.#index.set(key, fragment)
    chunk.text = undefined
    this.#text = undefined
  }

  /** A keep() verdict changed: every chunk may hold that (group, epoch). */
  rejudge(): void {
    for (const chunk of this.#chunks) chunk.text = undefined
    this.#text = undefined
  }

  text(): string {
    if (this.#text !== undefined) return this.#text
    // Merge neighbours that fit in one chunk, so removals cannot leave many small chunks behind.
    const chunks: Chunk[] = []
    let previous: Chunk | undefined
    for (const chunk of this.#chunks) {
      if (chunk.fragments.size === 0) continue
      if (previous !== undefined && previous.fragments.size + chunk.fragments.size <= this.#chunkSize) {
        for (const [key, fragment] of chunk.fragments) {
          previous.fragments.set(key, fragment)
          fragment.chunk = previous
        }
        previous.text = undefined
        continue
      }
      chunks.push(chunk)
      previous = chunk
    }
    this.#chunks = chunks
    let text = ''
    for (const chunk of chunks) {
      if (chunk.text === undefined) {
        const kept: string[] = []
        for (const fragment of chunk.fragments.values()) if (fragment.epoch.kept) kept.push(fragment.json)
        chunk.text = kept.join(',')
      }
      if (chunk.text !== '') text = text === '' ? chunk.text : `${text},${chunk.text}`
    }
    this.#text = text
    return text
  }
}

/**
 * JSON.stringify(window.exportState(keep)), at the cost of what changed since the last call: it
 * is the window's only {@link ReplayWindow.takeChanges} consumer. Internal: the saver and its tests.
 */
export class ReplayStateText {
  readonly #window: ReplayWindow
  readonly #windows: FragmentList
  readonly #floors: FragmentList
  readonly #epochs = new Map<string, Epoch>()

  /** `chunkSize`: tests make it small, to cross chunk boundaries with few entries. */
  constructor(window: ReplayWindow, chunkSize = CHUNK) {
    this.#window = window
    this.#windows = new FragmentList(chunkSize)
    this.#floors = new FragmentList(chunkSize)
  }

  /** The window's state as JSON.stringify(exportState(keep)) would write it. */
  text(keep: (group: number, epoch: number) => boolean): string {
    const { all, notBefore, changed } = this.#window.takeChanges()
    if (all) {
      this.#windows.clear()
      this.#floors.clear()
      this.#epochs.clear()
    }
    // keep() depends on the keys held, which change without the window knowing: ask again.
    for (const epoch of this.#epochs.values()) {
      const kept = keep(epoch.group, epoch.epoch)
      if (kept === epoch.kept) continue
      epoch.kept = kept
      this.#windows.rejudge()
      this.#floors.rejudge()
    }
    for (const { key, window, floor } of changed) {
      const removed = this.#windows.remove(key) ?? this.#floors.remove(key)
      if (removed !== undefined && --removed.entries === 0) this.#epochs.delete(`${removed.group}/${removed.epoch}`)
      if (window !== undefined)
        this.#windows.append(key, entryJson(window, `[${window[5].join(',')}]`), this.#epoch(window, keep))
      else if (floor !== undefined) this.#floors.append(key, entryJson(floor, `${floor[5]}`), this.#epoch(floor, keep))
    }
    return `{"v":1,"notBefore":${notBefore},"windows":[${this.#windows.text()}],"floors":[${this.#floors.text()}]}`
  }

  #epoch([group, epoch]: ReplayWindowEntry | ReplayFloorEntry, keep: (group: number, epoch: number) => boolean): Epoch {
    const key = `${group}/${epoch}`
    let found = this.#epochs.get(key)
    if (found === undefined) {
      found = { group, epoch, kept: keep(group, epoch), entries: 0 }
      this.#epochs.set(key, found)
    }
    found.entries++
    return found
  }
}

/**
 * An entry as JSON.stringify writes it (its elements are uints, finite numbers or null, whose
 * template-literal text is their JSON), about twice as fast. `last` is its last element's JSON.
 */
const entryJson = (entry: ReplayWindowEntry | ReplayFloorEntry, last: string): string =>
  `[${entry[0]},${entry[1]},${entry[2]},${entry[3]},${entry[4]},${last}]`

/** A {@link ReplayWindow} kept in client storage. */
export class SavedReplayWindow {
  readonly #window: ReplayWindow
  readonly #options: SavedReplayWindowOptions
  readonly #text: ReplayStateText
  #dirty = false
  /** The latest save; later saves run after it, so storage never goes back to an older state. */
  #saving: Promise<void> = Promise.resolve()

  constructor(window: ReplayWindow, options: SavedReplayWindowOptions) {
    this.#window = window
    this.#options = options
    this.#text = new ReplayStateText(window)
  }

  /** The window itself, for `openEnvelope`. */
  get window(): ReplayWindow {
    return this.#window
  }

  /**
   * Restores the saved state. Fails safe: a corrupt or unreadable state, or a missing one when
   * this client `ranBefore`, resets the window so that everything sent up to `now` (plus the
   * allowed clock skew) is refused, and is reported as ERR_REPLAY_STATE_INVALID.
   */
  async load(now: number, ranBefore: boolean): Promise<void> {
    try {
      const text = await this.#options.storage.get(this.#options.key)
      if (text === undefined && ranBefore)
        throw new SmqttError('ERR_REPLAY_STATE_INVALID', 'the saved replay state is missing')
      if (text === undefined)
        this.#dirty = true // first start: save an empty state, so "missing" means lost later
      else {
        this.#window.restoreState(JSON.parse(text), now)
        return
      }
    } catch (err) {
      this.#window.resetAfterLoss(now)
      this.#dirty = true
      this.#options.onError(
        isSmqttError(err)
          ? err
          : new SmqttError('ERR_REPLAY_STATE_INVALID', `the saved replay state is unreadable: ${String(err)}`),
      )
    }
    await this.save()
  }

  /** Something was accepted: the next {@link save} must write. */
  markDirty(): void {
    this.#dirty = true
  }

  /** Resolves once everything accepted so far is durable, or its save failed (reported). */
  save(): Promise<void> {
    if (!this.#dirty) return this.#saving
    this.#dirty = false
    const text = this.#text.text(this.#options.keep)
    this.#saving = this.#saving
      .then(() => this.#options.storage.set(this.#options.key, text))
      .catch((err: unknown) => {
        this.#dirty = true
        this.#options.onError(err instanceof Error ? err : new Error(String(err)))
      })
    return this.#saving
  }
}
