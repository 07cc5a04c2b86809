import { defaultBackend } from '#crypto-backend'
import type { CryptoBackend } from '../crypto/backend.js'
import { SmqttError } from '../errors.js'
import type { ReplayWindow } from '../replay-window.js'
import { type EpochKey, senderNonce } from './epoch-key.js'
import { type EnvelopeHeader, parseEnvelope } from './header.js'
import { SUITES } from './suites.js'
import { checkSignature, DEFAULT_MAX_ENVELOPE_BYTES, type WriterLookup } from './verify.js'

/** The keys a subscriber holds: epoch keys and writers' public keys, per group. */
export interface EnvelopeKeys {
  epochKey(group: number, epoch: number): EpochKey | undefined
  writerKey: WriterLookup
  /**
   * Whether writer `sender` of `group` may publish on `topic`: its publish rights from the key
   * bundle. Keyrings built from bundles implement it; keys without it (test fixtures, vectors)
   * skip the check.
   */
  writerMayPublish?(group: number, sender: number, topic: string): boolean
}

export interface OpenEnvelopeOptions {
  readonly keys: EnvelopeKeys
  /** Replay and freshness state; omit only where replays are harmless. */
  readonly replay?: ReplayWindow
  /** The delivery carried the MQTT retain flag (it came from the broker's retained store). */
  readonly retained?: boolean
  /** True when the sender key id is revoked (from the latest revocation list). */
  readonly isRevoked?: (sender: number) => boolean
  /** Unix seconds; defaults to now. */
  readonly now?: number
  readonly maxEnvelopeBytes?: number
  readonly backend?: CryptoBackend
}

export interface OpenedEnvelope {
  readonly header: EnvelopeHeader
  readonly payload: Uint8Array
}

/**
 * Verifies, checks for replay and decrypts an envelope received on `topic`. Cheap checks
 * come first (structure, revocation, replay, keys), then the signature, then the sender's right
 * to publish on `topic`, then decryption; the replay window records the message only once it is
 * authentic.
 *
 * @example
 * ```ts
 * const { header, payload } = openEnvelope(packet.payload, packet.topic, { keys: keyring, replay })
 * ```
 */
export function openEnvelope(bytes: Uint8Array, topic: string, options: OpenEnvelopeOptions): OpenedEnvelope {
  if (bytes instanceof Uint8Array && bytes.length > (options.maxEnvelopeBytes ?? DEFAULT_MAX_ENVELOPE_BYTES))
    throw new SmqttError('ERR_ENVELOPE_TOO_LARGE', `envelope of ${bytes.length} bytes exceeds the limit`)
  const backend = options.backend ?? defaultBackend
  const parsed = parseEnvelope(bytes)
  const { header } = parsed
  if (options.isRevoked?.(header.sender)) throw new SmqttError('ERR_SENDER_REVOKED')
  // Only a message the sender itself marked retained gets the retained rules: a broker that
  // sets the retain flag on a captured live message does not get around the replay window.
  const replayInput = {
    group: header.group,
    epoch: header.epoch,
    sender: header.sender,
    seq: header.seq,
    sentAt: header.sentAt,
    now: options.now ?? Math.floor(Date.now() / 1000),
    retained: header.retain && options.retained === true,
  }
  options.replay?.check(replayInput)
  const epochKey = options.keys.epochKey(header.group, header.epoch)
  if (!epochKey) throw new SmqttError('ERR_UNKNOWN_EPOCH', `no key for group ${header.group} epoch ${header.epoch}`)
  // A group's suite is fixed by the key server; an envelope may not pick a different one.
  if (epochKey.suite !== header.suite)
    throw new SmqttError('ERR_ENVELOPE_UNSUPPORTED', `suite ${header.suite} is not the suite of group ${header.group}`)
  const { aad } = checkSignature(parsed, topic, options.keys.writerKey, backend)
  // After the signature, so the sender is authenticated: a writer signing honestly on a topic
  // the policy does not give it (which only a broker that skips the ACL would deliver).
  if (options.keys.writerMayPublish?.(header.group, header.sender, topic) === false)
    throw new SmqttError('ERR_SENDER_NOT_PERMITTED', `sender ${header.sender} may not publish on ${topic}`)
  const { key, iv } = epochKey.senderKey(header.sender)
  const payload = backend.aeadOpen(SUITES[header.suite].aead, key, senderNonce(iv, header.seq), parsed.ciphertext, aad)
  if (!payload) throw new SmqttError('ERR_ENVELOPE_DECRYPTION_FAILED')
  options.replay?.accept(replayInput)
  return { header, payload }
}
