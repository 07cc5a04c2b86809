import { defaultBackend } from '#crypto-backend'
import { abytes, auint } from '../_bytes.js'
import type { CryptoBackend } from '../crypto/backend.js'
import { SmqttError } from '../errors.js'
import { validateTopic } from '../topic-filter.js'
import { signedBytes, topicBytes } from './_signed-bytes.js'
import {
  checkSealerProperties,
  type EnvelopeProperties,
  encodeBoundProperties,
  sealerBinding,
} from './bound-properties.js'
import type { EpochKey } from './epoch-key.js'
import { senderNonce } from './epoch-key.js'
import { ENVELOPE_VERSION, encodeHeader, MAX_SEQ, SIGNATURE_LENGTH } from './header.js'
import type { AsyncEnvelopeSigner, EnvelopeSigner } from './signer.js'
import { SUITES } from './suites.js'

/** What to seal. `seq` must never repeat for this sender: take it from a {@link SequenceCounter}. */
export interface SealEnvelopeInput {
  /** The exact MQTT topic the envelope will be published to. */
  readonly topic: string
  readonly payload: Uint8Array
  /** The group's current epoch key; the topic must belong to that group. */
  readonly epochKey: EpochKey
  readonly signer: EnvelopeSigner
  readonly seq: number
  /** Unix seconds; defaults to now. */
  readonly sentAt?: number
  /** Set when publishing with the MQTT retain flag, so subscribers can apply the retained-message rules. */
  readonly retain?: boolean
  /**
   * MQTT 5 publish properties to bind: the caller publishes exactly these as the packet's
   * properties (user properties first, in this order). Binds content type, response topic and
   * correlation data whether given or not (an absent one is bound as absent, so nobody can add
   * it) and every user property given. Omit to bind nothing (the envelope is then v1 as before).
   */
  readonly properties?: EnvelopeProperties
}

/** What to seal with {@link sealEnvelopeAsync}: the same, signed by an {@link AsyncEnvelopeSigner}. */
export interface SealEnvelopeAsyncInput extends Omit<SealEnvelopeInput, 'signer'> {
  readonly signer: AsyncEnvelopeSigner
}

export interface SealEnvelopeOptions {
  readonly backend?: CryptoBackend
  /** Largest payload accepted, in bytes (default 4 MiB). */
  readonly maxPayloadBytes?: number
}

export const DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024

/**
 * Encrypts and signs a payload for one topic: AEAD under the sender's key derived from the
 * epoch key, with header and topic as associated data, then an Ed25519 signature over
 * header, topic and ciphertext so brokers can check the sender without the group key.
 *
 * @example
 * ```ts
 * const envelope = sealEnvelope({ topic: 'home/hall/thermostat/temp', payload, epochKey, signer, seq: await counter.next() })
 * client.publish('home/hall/thermostat/temp', envelope)
 * ```
 */
export function sealEnvelope(input: SealEnvelopeInput, options: SealEnvelopeOptions = {}): Uint8Array {
  const sealed = sealUnsigned(input, options)
  return withSignature(sealed, input.signer.sign(sealed.signedBytes))
}

/**
 * {@link sealEnvelope} signed by a key that signs asynchronously (a non-extractable WebCrypto
 * key): the same bytes for the same key, as Ed25519 signatures are deterministic.
 *
 * @example
 * ```ts
 * const envelope = await sealEnvelopeAsync({ topic, payload, epochKey, signer: createAsyncEnvelopeSigner({ kid, key: identity }), seq })
 * ```
 */
export async function sealEnvelopeAsync(
  input: SealEnvelopeAsyncInput,
  options: SealEnvelopeOptions = {},
): Promise<Uint8Array> {
  const sealed = sealUnsigned(input, options)
  // The signed bytes live in a buffer the next seal or verify reuses: sign a copy.
  const signature = await input.signer.sign(sealed.signedBytes.slice())
  abytes(signature, 'signature', SIGNATURE_LENGTH)
  return withSignature(sealed, signature)
}

/** Everything but the signature: header, ciphertext, and the bytes the signature must cover. */
function sealUnsigned(input: SealEnvelopeInput | SealEnvelopeAsyncInput, options: SealEnvelopeOptions) {
  const backend = options.backend ?? defaultBackend
  const { epochKey, signer, payload } = input
  abytes(payload, 'payload')
  auint(input.seq, 'seq', MAX_SEQ)
  if (payload.length > (options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES))
    throw new SmqttError('ERR_ENVELOPE_TOO_LARGE', `payload of ${payload.length} bytes exceeds the limit`)
  validateTopic(input.topic)
  const sentAt = input.sentAt ?? Math.floor(Date.now() / 1000)
  auint(sentAt, 'sentAt', 0xffff_ffff)
  const { properties } = input
  if (properties !== undefined) checkSealerProperties(properties)
  const binding = properties === undefined ? undefined : sealerBinding(properties)
  const bound = binding === undefined ? undefined : (encodeBoundProperties(binding, properties) as Uint8Array)

  const headerBytes = encodeHeader({
    version: ENVELOPE_VERSION,
    suite: epochKey.suite,
    retain: input.retain === true,
    group: epochKey.group,
    epoch: epochKey.epoch,
    sender: signer.kid,
    seq: input.seq,
    sentAt,
    properties: binding,
  })
  const { key, iv } = epochKey.senderKey(signer.kid)
  const ciphertextLength = payload.length + 16
  const { buffer, aad, ciphertextOffset } = signedBytes(headerBytes, topicBytes(input.topic), ciphertextLength, bound)
  const ciphertext = backend.aeadSeal(SUITES[epochKey.suite].aead, key, senderNonce(iv, input.seq), payload, aad)
  buffer.set(ciphertext, ciphertextOffset)
  return { headerBytes, ciphertext, signedBytes: buffer }
}

function withSignature(sealed: { headerBytes: Uint8Array; ciphertext: Uint8Array }, signature: Uint8Array): Uint8Array {
  const { headerBytes, ciphertext } = sealed
  const envelope = new Uint8Array(headerBytes.length + ciphertext.length + SIGNATURE_LENGTH)
  envelope.set(headerBytes, 0)
  envelope.set(ciphertext, headerBytes.length)
  envelope.set(signature, headerBytes.length + ciphertext.length)
  return envelope
}
