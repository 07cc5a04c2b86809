import { abytes, auint, utf8 } from '../_bytes.js'
import { hkdf } from '../crypto/kdf.js'
import { MAX_ID } from './header.js'
import { isSuiteId, type SuiteId } from './suites.js'

const SENDER_SALT = utf8('smqtt/v1 sender')
const KEY_LENGTH = 32
const IV_LENGTH = 12

/** The per-sender AEAD key and nonce base, derived from an epoch key. */
export interface SenderKey {
  readonly key: Uint8Array
  readonly iv: Uint8Array
}

/**
 * One epoch's key of one key group. Every sender gets its own AEAD key and nonce base derived
 * from it (HKDF over suite, group, epoch and sender id), so two senders can never use the same
 * (key, nonce) pair even if their sequence numbers coincide, and a suite change yields new keys.
 *
 * @example
 * ```ts
 * const epochKey = new EpochKey({ group: 7, epoch: 3, suite: 1, key: opened.key })
 * ```
 */
export class EpochKey {
  readonly group: number
  readonly epoch: number
  readonly suite: SuiteId
  readonly #key: Uint8Array
  // Derivation costs a few microseconds: the senders used most recently are kept, at most
  // MAX_CACHED_SENDER_KEYS (~420 B each), so a subscriber hearing a whole fleet in one group
  // does not hold a key per device for the epoch's lifetime (42 MB at 100,000).
  readonly #senders = new Map<number, SenderKey>()

  constructor(init: { group: number; epoch: number; suite: SuiteId; key: Uint8Array }) {
    auint(init.group, 'group', MAX_ID)
    auint(init.epoch, 'epoch', MAX_ID)
    if (!isSuiteId(init.suite)) throw new RangeError(`unknown suite ${init.suite}`)
    abytes(init.key, 'key', KEY_LENGTH)
    this.group = init.group
    this.epoch = init.epoch
    this.suite = init.suite
    this.#key = init.key.slice()
  }

  /** The AEAD key and nonce base of one sender in this epoch. */
  senderKey(sender: number): SenderKey {
    let derived = this.#senders.get(sender)
    if (derived) {
      // Most recently used last (a Map keeps insertion order).
      this.#senders.delete(sender)
      this.#senders.set(sender, derived)
    } else {
      auint(sender, 'sender', MAX_ID)
      const info = new Uint8Array(13)
      const view = new DataView(info.buffer)
      info[0] = this.suite
      view.setUint32(1, this.group)
      view.setUint32(5, this.epoch)
      view.setUint32(9, sender)
      const okm = hkdf(this.#key, SENDER_SALT, info, KEY_LENGTH + IV_LENGTH)
      derived = { key: okm.subarray(0, KEY_LENGTH), iv: okm.subarray(KEY_LENGTH) }
      this.#senders.set(sender, derived)
      if (this.#senders.size > MAX_CACHED_SENDER_KEYS) this.#senders.delete(this.#senders.keys().next().value as number)
    }
    return derived
  }

  /** How many senders' keys are cached now (at most 1,024, the least recently used dropped first). */
  get cachedSenderKeys(): number {
    return this.#senders.size
  }
}

/** The most sender keys one epoch key caches: the least recently used one goes first. */
export const MAX_CACHED_SENDER_KEYS = 1_024

/** nonce = iv XOR (seq as a 96-bit big-endian integer), as in TLS 1.3 and OSCORE. */
export function senderNonce(iv: Uint8Array, seq: number): Uint8Array {
  const nonce = iv.slice()
  let rest = seq
  for (let i = IV_LENGTH - 1; rest > 0; i--) {
    nonce[i] = (nonce[i] as number) ^ (rest % 256)
    rest = Math.floor(rest / 256)
  }
  return nonce
}
