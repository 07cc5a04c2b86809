// The receive replay window must survive a restart: otherwise an envelope accepted before it
// is accepted again afterwards (replayed by a compromised or restarted broker) within the
// freshness limit. Saves are group commits: messages accepted while one save runs share the
// next, so a fast stream costs one storage write per batch, not per message.
import { isSmqttError, type ReplayWindow, SmqttError } from '@smqtt/core'
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

/** A {@link ReplayWindow} kept in client storage. */
export class SavedReplayWindow {
  readonly #window: ReplayWindow
  readonly #options: SavedReplayWindowOptions
  #dirty = false
  /** The latest save; later saves run after it, so storage never goes back to an older state. */
  #saving: Promise<void> = Promise.resolve()

  constructor(window: ReplayWindow, options: SavedReplayWindowOptions) {
    this.#window = window
    this.#options = options
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
    const text = JSON.stringify(this.#window.exportState(this.#options.keep))
    this.#saving = this.#saving
      .then(() => this.#options.storage.set(this.#options.key, text))
      .catch((err: unknown) => {
        this.#dirty = true
        this.#options.onError(err instanceof Error ? err : new Error(String(err)))
      })
    return this.#saving
  }
}
