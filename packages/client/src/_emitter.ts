// A small typed event emitter with the Node EventEmitter surface users of mqtt.js know,
// without node:events, so the client runs in browsers unchanged.

/** Events by name, each with its listener's signature (as `SecureClientEvents`). */
// biome-ignore lint/suspicious/noExplicitAny: listener parameter lists vary per event
export type EventMap<Events> = { [E in keyof Events]: (...args: any[]) => void }

interface Entry {
  // biome-ignore lint/suspicious/noExplicitAny: see EventMap
  readonly listener: (...args: any[]) => void
  readonly once: boolean
}

/** The `on` / `once` / `off` surface of Node's EventEmitter, typed per event, without node:events. */
export class TypedEmitter<Events extends EventMap<Events>> {
  /** Lists are replaced, never changed in place: emit walks the one it got, with no copy per event. */
  readonly #listeners = new Map<keyof Events, readonly Entry[]>()

  on<E extends keyof Events>(event: E, listener: Events[E]): this {
    this.#add(event, { listener, once: false })
    return this
  }

  addListener<E extends keyof Events>(event: E, listener: Events[E]): this {
    return this.on(event, listener)
  }

  once<E extends keyof Events>(event: E, listener: Events[E]): this {
    this.#add(event, { listener, once: true })
    return this
  }

  off<E extends keyof Events>(event: E, listener: Events[E]): this {
    const list = this.#listeners.get(event)
    if (!list) return this
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i]?.listener === listener) {
        this.#listeners.set(event, [...list.slice(0, i), ...list.slice(i + 1)])
        break
      }
    }
    return this
  }

  removeListener<E extends keyof Events>(event: E, listener: Events[E]): this {
    return this.off(event, listener)
  }

  removeAllListeners(event?: keyof Events): this {
    if (event === undefined) this.#listeners.clear()
    else this.#listeners.delete(event)
    return this
  }

  listenerCount(event: keyof Events): number {
    return this.#listeners.get(event)?.length ?? 0
  }

  /** Calls the listeners in order. Like EventEmitter, an `error` nobody listens to is thrown. */
  protected emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): boolean {
    const list = this.#listeners.get(event)
    if (!list || list.length === 0) {
      if (event === 'error') throw args[0]
      return false
    }
    for (const entry of list) {
      if (entry.once) this.off(event, entry.listener as Events[E])
      entry.listener(...args)
    }
    return true
  }

  #add(event: keyof Events, entry: Entry): void {
    this.#listeners.set(event, [...(this.#listeners.get(event) ?? []), entry])
  }
}
