import { defaultBackend } from '#crypto-backend'
import type { CryptoBackend } from '../crypto/backend.js'
import { SmqttError } from '../errors.js'
import type { ReplayCheckInput, ReplayWindow } from '../replay-window.js'
import { associatedData } from './_signed-bytes.js'
import { type EnvelopeProperties, type PropertyVerdict, propertyVerdict } from './bound-properties.js'
import { type EpochKey, senderNonce } from './epoch-key.js'
import { type EnvelopeHeader, type ParsedEnvelope, parseEnvelope } from './header.js'
import { SUITES } from './suites.js'
import {
  boundPropertiesOf,
  DEFAULT_MAX_ENVELOPE_BYTES,
  senderKeyOf,
  verifySignature,
  type WriterLookup,
} from './verify.js'

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
  /**
   * The MQTT 5 properties the PUBLISH packet carried (user properties in packet order): those
   * the envelope binds are checked, and all come back split in {@link OpenedEnvelope.properties}.
   */
  readonly properties?: EnvelopeProperties
}

export interface OpenedEnvelope {
  readonly header: EnvelopeHeader
  readonly payload: Uint8Array
  /**
   * The received properties: `verified` (bound by the sender, checked) and `unsigned` (anyone
   * on the path may have set them). Both empty when none were passed in the options.
   */
  readonly properties: PropertyVerdict
}

/**
 * An envelope that passed every check of {@link openEnvelope} but its signature: what a verifier
 * on another thread needs (`signingKey`, and the envelope and topic it was made from). Finish it
 * with {@link finishOpenEnvelopeUnsafe} once the signature is checked.
 */
export interface UnverifiedEnvelope {
  readonly header: EnvelopeHeader
  /** The sender's Ed25519 public key, under which the signature must hold. */
  readonly signingKey: Uint8Array
  readonly topic: string
  /** The MQTT 5 properties received with it (from the options), checked with the signature. */
  readonly properties: EnvelopeProperties | undefined
  /** @internal The canonical encoding of the bound properties; undefined when they cannot match. */
  readonly bound: Uint8Array | undefined
  /** @internal */
  readonly parsed: ParsedEnvelope
  /** @internal */
  readonly epochKey: EpochKey
  /** @internal */
  readonly replayInput: ReplayCheckInput
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
  const unverified = beginOpenEnvelope(bytes, topic, options)
  const backend = options.backend ?? defaultBackend
  const { valid, aad } = verifySignature(unverified.parsed, topic, unverified.signingKey, backend, unverified.bound)
  return finish(unverified, valid, aad, options)
}

/**
 * {@link openEnvelope} in two steps, for a receiver that checks signatures on other threads:
 * every check but the signature. Nothing is recorded in the replay window yet.
 *
 * @example
 * ```ts
 * const unverified = beginOpenEnvelope(payload, topic, options)
 * pool.verify(unverified.signingKey, topic, payload, (verdict) => {
 *   const { header, payload } = finishOpenEnvelopeUnsafe(unverified, verdict === 'valid', options)
 * })
 * ```
 */
export function beginOpenEnvelope(bytes: Uint8Array, topic: string, options: OpenEnvelopeOptions): UnverifiedEnvelope {
  if (bytes instanceof Uint8Array && bytes.length > (options.maxEnvelopeBytes ?? DEFAULT_MAX_ENVELOPE_BYTES))
    throw new SmqttError('ERR_ENVELOPE_TOO_LARGE', `envelope of ${bytes.length} bytes exceeds the limit`)
  const parsed = parseEnvelope(bytes)
  const { header } = parsed
  if (options.isRevoked?.(header.sender)) throw revoked(header)
  // Only a message the sender itself marked retained gets the retained rules: a broker that
  // sets the retain flag on a captured live message does not get around the replay window.
  const replayInput: ReplayCheckInput = {
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
  if (!epochKey)
    throw new SmqttError('ERR_UNKNOWN_EPOCH', `no key for group ${header.group} epoch ${header.epoch}`, {
      details: { group: header.group, epoch: header.epoch },
    })
  // A group's suite is fixed by the key server; an envelope may not pick a different one.
  if (epochKey.suite !== header.suite)
    throw new SmqttError('ERR_ENVELOPE_UNSUPPORTED', `suite ${header.suite} is not the suite of group ${header.group}`)
  const signingKey = senderKeyOf(parsed, options.keys.writerKey)
  const { properties } = options
  return {
    header,
    signingKey,
    topic,
    properties,
    bound: boundPropertiesOf(parsed, properties),
    parsed,
    epochKey,
    replayInput,
  }
}

/** Checks an {@link UnverifiedEnvelope}'s signature on this thread. */
export function checkEnvelopeSignature(
  unverified: UnverifiedEnvelope,
  backend: CryptoBackend = defaultBackend,
): boolean {
  const { parsed, topic, signingKey, bound } = unverified
  return verifySignature(parsed, topic, signingKey, backend, bound).valid
}

/**
 * The second step of {@link beginOpenEnvelope}. **Unsafe**: it trusts `signatureValid` as the
 * caller states it, so passing `true` for an unchecked envelope lets any reader of the group
 * forge messages as any writer (the group key seals, only the signature tells writers apart).
 * Pass the verdict of {@link checkEnvelopeSignature} or of a verifier that ran it on
 * `unverified.signingKey`; anything else should call {@link openEnvelope}.
 *
 * Given whether the signature held (checked by the
 * caller under `unverified.signingKey`, and with `unverified.properties` when `header.properties`
 * says the envelope binds some; {@link checkEnvelopeSignature} does both), checks the sender's
 * rights, decrypts and records the message in the replay window. Finish envelopes in the order they were received. The replay
 * and revocation checks run again here, so a copy accepted meanwhile, or a sender revoked
 * meanwhile, is refused.
 *
 * @throws SmqttError `ERR_ENVELOPE_SIGNATURE_INVALID` when `signatureValid` is false, else as {@link openEnvelope}.
 */
export function finishOpenEnvelopeUnsafe(
  unverified: UnverifiedEnvelope,
  signatureValid: boolean,
  options: OpenEnvelopeOptions,
): OpenedEnvelope {
  const { parsed, topic, bound } = unverified
  // Received properties that cannot match the bound ones: no signature over them can hold.
  const valid = signatureValid && bound !== undefined
  return finish(unverified, valid, associatedData(parsed.headerBytes, topic, bound), options)
}

function finish(
  { header, parsed, topic, epochKey, replayInput, properties }: UnverifiedEnvelope,
  signatureValid: boolean,
  aad: Uint8Array,
  options: OpenEnvelopeOptions,
): OpenedEnvelope {
  if (!signatureValid) throw new SmqttError('ERR_ENVELOPE_SIGNATURE_INVALID')
  // After the signature, so the sender is authenticated: a writer signing honestly on a topic
  // the policy does not give it (which only a broker that skips the ACL would deliver).
  if (options.keys.writerMayPublish?.(header.group, header.sender, topic) === false)
    throw new SmqttError('ERR_SENDER_NOT_PERMITTED', `sender ${header.sender} may not publish on ${topic}`, {
      details: { group: header.group, kid: header.sender, topic },
    })
  const { key, iv } = epochKey.senderKey(header.sender)
  const backend = options.backend ?? defaultBackend
  const payload = backend.aeadOpen(SUITES[header.suite].aead, key, senderNonce(iv, header.seq), parsed.ciphertext, aad)
  if (!payload) throw new SmqttError('ERR_ENVELOPE_DECRYPTION_FAILED')
  if (options.isRevoked?.(header.sender)) throw revoked(header)
  options.replay?.accept(replayInput) // checks again: a copy may have been accepted meanwhile
  return { header, payload, properties: propertyVerdict(header.properties, properties) }
}

function revoked({ group, sender }: EnvelopeHeader): SmqttError {
  return new SmqttError('ERR_SENDER_REVOKED', undefined, { details: { group, kid: sender } })
}
