// A key bundle is what the key server hands one principal: for each key group it may use, the
// epoch keys (each sealed to the principal with HPKE) and the group's writers (key id -> Ed25519
// key and the topics of the group each may publish), in one document signed by the key server
// and valid for a time window.
//
// Each sealed key is bound, through HPKE's `info`, to the recipient, group, epoch and suite: a
// sealed key copied into another slot (even by someone holding the key-server signing key)
// does not open.
import { defaultBackend } from '#crypto-backend'
import { abytes, auint, concatBytes, toBase64Url, utf8 } from './_bytes.js'
import type { PublishRights } from './acl.js'
import type { CryptoBackend } from './crypto/backend.js'
import {
  HPKE_KEM_LENGTHS,
  HPKE_TAG_LENGTH,
  type HpkeKem,
  hpkeOpen,
  hpkeOpenWithAgreement,
  hpkeSeal,
  type X25519Agreement,
} from './crypto/hpke.js'
import { isValidEd25519PublicKey } from './crypto/keys.js'
import type { SigningKeyPair } from './crypto/signature.js'
import { SmqttError } from './errors.js'
import type { Identity, PublicIdentity } from './identity.js'
import {
  type DocumentKind,
  isValidPrincipalId,
  isWellFormedText,
  openSignedDocument,
  type SignedDocument,
  type StrictJsonReader,
  signDocument,
} from './signed-document.js'
import { filterCovers, isValidFilter } from './topic-filter.js'

/** Length of a group epoch key. */
export const EPOCH_KEY_LENGTH = 32

/** Most topic filters (allow and deny together) a bundle lists for one writer of one group. */
export const MAX_WRITER_FILTERS = 32

const TYPE = 'smqtt.key-bundle'
/** v2: each writer carries its publish rights within the group. */
const VERSION = 2
const UINT32_MAX = 0xffff_ffff
const KEMS: readonly HpkeKem[] = ['x25519', 'xwing']

/**
 * One epoch of a group, as the key server knows it: its key, which {@link createKeyBundle}
 * seals to the recipient, or the key already sealed to this recipient by {@link sealEpochKey}
 * (a re-key then seals only the new epoch, not every epoch still in its grace period).
 */
export type KeyBundleEpochInput = {
  epoch: number
  /** Unix seconds from which senders use this epoch. */
  activatesAt: number
  /** Unix seconds at which the grace period ends and the key should be forgotten. */
  retiresAt: number
} & (
  | {
      /** The epoch's 32-byte group key. */
      key: Uint8Array
    }
  | { sealed: SealedEpochKey }
)

/**
 * An epoch key sealed to one recipient for one slot (group, epoch, suite): what a bundle
 * carries for it. Reusable in the same recipient's later bundles as long as its KEM key is the
 * same; {@link createKeyBundle} refuses it in any other slot or for another recipient id.
 */
export interface SealedEpochKey {
  readonly recipient: string
  readonly group: number
  readonly epoch: number
  readonly suite: number
  readonly kem: HpkeKem
  /** base64url */
  readonly enc: string
  /** base64url */
  readonly sealedKey: string
}

/** A principal allowed to publish to a group, under its envelope key id. */
export interface KeyGroupWriter {
  readonly kid: number
  readonly principal: string
  readonly signingKey: Uint8Array
  /**
   * The topics of the group it may publish (`PolicyEvaluator.publishRightsIn`): at least one
   * allow filter, at most {@link MAX_WRITER_FILTERS} filters in all, each within the group's filter.
   */
  readonly publish: PublishRights
}

/** A writer as a subscriber holds it: who signs, with which key, on which topics. */
export interface OpenedKeyGroupWriter {
  readonly principal: string
  readonly signingKey: Uint8Array
  readonly publish: PublishRights
}

/** One key group in a bundle, as the key server knows it. */
export interface KeyBundleGroupInput {
  group: number
  name: string
  /** The group's MQTT topic filter, e.g. `home/+/thermostat/#`. */
  filter: string
  /** The envelope suite id the group uses. */
  suite: number
  epochs: readonly KeyBundleEpochInput[]
  writers: readonly KeyGroupWriter[]
}

/** Options of {@link createKeyBundle}. */
export interface CreateKeyBundleOptions {
  recipient: PublicIdentity
  groups: readonly KeyBundleGroupInput[]
  /** Unix seconds: the bundle is valid for notBefore <= now < notAfter. */
  validity: { notBefore: number; notAfter: number }
  /** Unix seconds; defaults to now. */
  issuedAt?: number
  keyServer: SigningKeyPair
  backend?: CryptoBackend
}

/** An opened epoch: its key in the clear. */
export interface OpenedEpochKey {
  readonly epoch: number
  readonly key: Uint8Array
  readonly activatesAt: number
  readonly retiresAt: number
}

/** An opened key group. */
export interface OpenedKeyGroup {
  readonly group: number
  readonly name: string
  readonly filter: string
  readonly suite: number
  readonly epochs: readonly OpenedEpochKey[]
  readonly writers: ReadonlyMap<number, OpenedKeyGroupWriter>
}

/** A verified, decrypted key bundle. */
export interface OpenedKeyBundle {
  readonly principal: string
  readonly issuedAt: number
  readonly notBefore: number
  readonly notAfter: number
  readonly groups: readonly OpenedKeyGroup[]
}

/** Options of {@link openKeyBundle}. */
export interface OpenKeyBundleOptions {
  /** The key server's Ed25519 key, pinned at enrollment. */
  keyServerPublicKey: Uint8Array
  recipient: Identity
  /** Unix seconds. */
  now: number
  /** Payload size limit in bytes (default 1 MiB). */
  maxBytes?: number
  backend?: CryptoBackend
}

// HPKE info: a fixed label, then the slot the key belongs in. The recipient id comes last, so
// the fixed-width fields before it make the encoding unambiguous.
function groupKeyInfo(recipient: string, group: number, epoch: number, suite: number): Uint8Array {
  const slot = new Uint8Array(12)
  const view = new DataView(slot.buffer)
  view.setUint32(0, group)
  view.setUint32(4, epoch)
  view.setUint32(8, suite)
  return concatBytes(utf8('smqtt/v1 group-key'), new Uint8Array([0]), slot, utf8(recipient))
}

/**
 * Why a writer's `rights` cannot go in a bundle for a group with `groupFilter`, or undefined
 * when they can: what `createKeyBundle` refuses and `openKeyBundle` rejects.
 */
export function publishRightsProblem(rights: PublishRights, groupFilter: string): string | undefined {
  if (rights.allow.length === 0) return 'allows no topic'
  if (rights.allow.length + rights.deny.length > MAX_WRITER_FILTERS)
    return `has more than ${MAX_WRITER_FILTERS} filters`
  for (const filter of [...rights.allow, ...rights.deny])
    if (!isValidFilter(filter) || !filterCovers(groupFilter, filter))
      return `filter ${JSON.stringify(filter)} is not a valid filter within ${groupFilter}`
  return undefined
}

function assertUniqueNumbers(values: readonly number[], label: string): void {
  if (new Set(values).size !== values.length) throw new RangeError(`duplicate ${label}`)
}

/**
 * Builds and signs a key bundle for `recipient`, sealing each epoch key to its KEM key.
 *
 * @example
 * ```ts
 * const signed = createKeyBundle({
 *   recipient: device,
 *   groups: [{ group: 7, name: 'thermostats', filter: 'home/+/thermostat/#', suite: 1,
 *     epochs: [{ epoch: 300, key, activatesAt: now, retiresAt: now + 86_400 }],
 *     writers: [{ kid: 1000, principal: 'thermostat-1', signingKey,
 *       publish: { allow: ['home/+/thermostat/thermostat-1/#'], deny: [] } }] }],
 *   validity: { notBefore: now, notAfter: now + 3600 },
 *   keyServer,
 * })
 * ```
 */
export function createKeyBundle(options: CreateKeyBundleOptions): SignedDocument {
  const { recipient, groups, validity, keyServer, backend = defaultBackend } = options
  const issuedAt = options.issuedAt ?? Math.floor(Date.now() / 1000)
  if (!isValidPrincipalId(recipient.id)) throw new TypeError('recipient.id is not a valid principal id')
  auint(issuedAt, 'issuedAt', UINT32_MAX)
  auint(validity.notBefore, 'validity.notBefore', UINT32_MAX)
  auint(validity.notAfter, 'validity.notAfter', UINT32_MAX)
  if (validity.notBefore > validity.notAfter) throw new RangeError('validity.notBefore is after validity.notAfter')
  assertUniqueNumbers(
    groups.map((g) => g.group),
    'group',
  )

  const body = {
    type: TYPE,
    v: VERSION,
    principal: recipient.id,
    issuedAt,
    notBefore: validity.notBefore,
    notAfter: validity.notAfter,
    groups: groups.map((group) => {
      auint(group.group, 'group', UINT32_MAX)
      auint(group.suite, 'suite', UINT32_MAX)
      // The same rules the clients' parser applies, checked on the inputs so the key server never
      // signs what clients refuse (cheaper than re-parsing the serialized bundle every time).
      if (!isWellFormedText(group.name, 256)) throw new TypeError(`group ${group.group} name is not well-formed text`)
      if (!isValidFilter(group.filter)) throw new TypeError(`group ${group.group} filter is not a valid topic filter`)
      assertUniqueNumbers(
        group.epochs.map((e) => e.epoch),
        `epoch in group ${group.group}`,
      )
      assertUniqueNumbers(
        group.writers.map((w) => w.kid),
        `kid in group ${group.group}`,
      )
      return {
        group: group.group,
        name: group.name,
        filter: group.filter,
        suite: group.suite,
        epochs: group.epochs.map((epoch) => {
          auint(epoch.activatesAt, 'activatesAt', UINT32_MAX)
          auint(epoch.retiresAt, 'retiresAt', UINT32_MAX)
          const sealed =
            'sealed' in epoch
              ? checkedSlot(epoch.sealed, recipient, group, epoch.epoch)
              : sealEpochKey(
                  recipient,
                  { group: group.group, epoch: epoch.epoch, suite: group.suite },
                  epoch.key,
                  backend,
                )
          return {
            epoch: epoch.epoch,
            activatesAt: epoch.activatesAt,
            retiresAt: epoch.retiresAt,
            enc: sealed.enc,
            sealedKey: sealed.sealedKey,
            kem: sealed.kem,
          }
        }),
        writers: group.writers.map((writer) => writerEntryJson(writer, group.group, group.filter)),
      }
    }),
  }
  return signDocument(TYPE, body, keyServer, backend)
}

/**
 * Seals an epoch key to `recipient` for one slot, as {@link createKeyBundle} does for each epoch.
 *
 * @example
 * ```ts
 * const sealed = sealEpochKey(device, { group: 7, epoch: 300, suite: 1 }, key)
 * createKeyBundle({ ..., groups: [{ ..., epochs: [{ epoch: 300, activatesAt, retiresAt, sealed }] }] })
 * ```
 */
export function sealEpochKey(
  recipient: PublicIdentity,
  slot: { group: number; epoch: number; suite: number },
  key: Uint8Array,
  backend: CryptoBackend = defaultBackend,
): SealedEpochKey {
  if (!isValidPrincipalId(recipient.id)) throw new TypeError('recipient.id is not a valid principal id')
  auint(slot.group, 'group', UINT32_MAX)
  auint(slot.epoch, 'epoch', UINT32_MAX)
  auint(slot.suite, 'suite', UINT32_MAX)
  abytes(key, 'epoch key', EPOCH_KEY_LENGTH)
  const { enc, ciphertext } = hpkeSeal({
    kem: recipient.kem,
    recipientPublicKey: recipient.agreementKey,
    info: groupKeyInfo(recipient.id, slot.group, slot.epoch, slot.suite),
    plaintext: key,
    backend,
  })
  return {
    recipient: recipient.id,
    ...slot,
    kem: recipient.kem,
    enc: toBase64Url(enc),
    sealedKey: toBase64Url(ciphertext),
  }
}

// A sealed key given for a slot must have been sealed for it: one put anywhere else would not
// open (HPKE's info binds the slot), so this catches the caller's mistake before signing it.
function checkedSlot(
  sealed: SealedEpochKey,
  recipient: PublicIdentity,
  group: KeyBundleGroupInput,
  epoch: number,
): SealedEpochKey {
  if (
    sealed.recipient !== recipient.id ||
    sealed.kem !== recipient.kem ||
    sealed.group !== group.group ||
    sealed.epoch !== epoch ||
    sealed.suite !== group.suite
  )
    throw new RangeError(`the sealed key given for group ${group.group} epoch ${epoch} was sealed for another slot`)
  return sealed
}

// A bundle as parsed, before any epoch key is opened: an OpenedKeyBundle with sealed epochs.
interface SealedEpoch extends Omit<OpenedEpochKey, 'key'> {
  kem: HpkeKem
  enc: Uint8Array
  sealedKey: Uint8Array
}

interface ParsedKeyBundle extends Omit<OpenedKeyBundle, 'groups'> {
  groups: (Omit<OpenedKeyGroup, 'epochs'> & { epochs: SealedEpoch[] })[]
}

function parseKeyBundleBody(json: unknown, read: StrictJsonReader): ParsedKeyBundle {
  const body = read.object(json, 'bundle', ['type', 'v', 'principal', 'issuedAt', 'notBefore', 'notAfter', 'groups'])
  read.literal(body.type, 'type', TYPE)
  read.literal(body.v, 'v', VERSION)
  const principal = read.principal(body.principal, 'principal')
  const issuedAt = read.uint32(body.issuedAt, 'issuedAt')
  const notBefore = read.uint32(body.notBefore, 'notBefore')
  const notAfter = read.uint32(body.notAfter, 'notAfter')
  if (notBefore > notAfter) read.fail('notBefore is after notAfter')

  const seenGroups = new Set<number>()
  const groups = read.array(body.groups, 'groups').map((value, g) => {
    const path = `groups[${g}]`
    const fields = read.object(value, path, ['group', 'name', 'filter', 'suite', 'epochs', 'writers'])
    const group = read.uint32(fields.group, `${path}.group`)
    if (seenGroups.has(group)) read.fail(`duplicate group ${group}`)
    seenGroups.add(group)
    const filter = read.string(fields.filter, `${path}.filter`, 65_535)

    const seenEpochs = new Set<number>()
    const epochs = read.array(fields.epochs, `${path}.epochs`).map((value, e): SealedEpoch => {
      const at = `${path}.epochs[${e}]`
      const epochFields = read.object(value, at, ['epoch', 'activatesAt', 'retiresAt', 'enc', 'sealedKey', 'kem'])
      const epoch = read.uint32(epochFields.epoch, `${at}.epoch`)
      if (seenEpochs.has(epoch)) read.fail(`duplicate epoch ${epoch} in group ${group}`)
      seenEpochs.add(epoch)
      const activatesAt = read.uint32(epochFields.activatesAt, `${at}.activatesAt`)
      const retiresAt = read.uint32(epochFields.retiresAt, `${at}.retiresAt`)
      if (activatesAt > retiresAt) read.fail(`${at}.activatesAt is after retiresAt`)
      const kem = read.oneOf(epochFields.kem, `${at}.kem`, KEMS)
      const enc = read.bytes(epochFields.enc, `${at}.enc`, HPKE_KEM_LENGTHS[kem].enc)
      const sealedKey = read.bytes(epochFields.sealedKey, `${at}.sealedKey`, EPOCH_KEY_LENGTH + HPKE_TAG_LENGTH)
      return { epoch, activatesAt, retiresAt, kem, enc, sealedKey }
    })

    const writers = readWriters(read, fields.writers, `${path}.writers`, group, filter)

    return {
      group,
      name: read.string(fields.name, `${path}.name`, 256),
      filter,
      suite: read.uint32(fields.suite, `${path}.suite`),
      epochs,
      writers,
    }
  })
  return { principal, issuedAt, notBefore, notAfter, groups }
}

/** A group's writers as a bundle or a writer record lists them, read strictly (kid -> writer). */
export function readWriters(
  read: StrictJsonReader,
  value: unknown,
  path: string,
  group: number,
  filter: string,
): Map<number, OpenedKeyGroupWriter> {
  const writers = new Map<number, OpenedKeyGroupWriter>()
  read.array(value, path).forEach((value, w) => {
    const at = `${path}[${w}]`
    const writerFields = read.object(value, at, ['kid', 'principal', 'signingKey', 'publish'])
    const kid = read.uint32(writerFields.kid, `${at}.kid`)
    if (writers.has(kid)) read.fail(`duplicate kid ${kid} in group ${group}`)
    const signingKey = read.bytes(writerFields.signingKey, `${at}.signingKey`, 32)
    if (!isValidEd25519PublicKey(signingKey)) read.fail(`${at}.signingKey is not a valid Ed25519 key`)
    const principal = read.principal(writerFields.principal, `${at}.principal`)
    writers.set(kid, {
      principal,
      signingKey,
      publish: readRights(read, writerFields.publish, `${at}.publish`, filter),
    })
  })
  return writers
}

/** A writer entry as a bundle or a writer record carries it, checked as `createKeyBundle` checks it. */
export function writerEntryJson(
  writer: KeyGroupWriter,
  group: number,
  groupFilter: string,
): { kid: number; principal: string; signingKey: string; publish: PublishRights } {
  auint(writer.kid, 'kid', UINT32_MAX)
  abytes(writer.signingKey, 'writer signingKey', 32)
  if (!isValidPrincipalId(writer.principal)) throw new TypeError(`writer ${writer.kid} principal is not a valid id`)
  if (!isValidEd25519PublicKey(writer.signingKey))
    throw new TypeError(`writer ${writer.kid} signingKey is not a valid Ed25519 key`)
  const problem = publishRightsProblem(writer.publish, groupFilter)
  if (problem !== undefined) throw new TypeError(`writer ${writer.kid} of group ${group} ${problem}`)
  return {
    kid: writer.kid,
    principal: writer.principal,
    signingKey: toBase64Url(writer.signingKey),
    publish: { allow: [...writer.publish.allow], deny: [...writer.publish.deny] },
  }
}

function readRights(read: StrictJsonReader, value: unknown, path: string, groupFilter: string): PublishRights {
  const fields = read.object(value, path, ['allow', 'deny'])
  const filters = (list: unknown, at: string) =>
    read.array(list, at, MAX_WRITER_FILTERS).map((f, i) => read.string(f, `${at}[${i}]`, 65_535))
  const rights = { allow: filters(fields.allow, `${path}.allow`), deny: filters(fields.deny, `${path}.deny`) }
  const problem = publishRightsProblem(rights, groupFilter)
  if (problem !== undefined) read.fail(`${path} ${problem}`)
  return rights
}

const keyBundleKind: DocumentKind<ParsedKeyBundle> = {
  type: TYPE,
  malformed: 'ERR_BUNDLE_MALFORMED',
  signatureInvalid: 'ERR_BUNDLE_SIGNATURE_INVALID',
  parseBody: parseKeyBundleBody,
}

/**
 * Verifies a key bundle under the pinned key-server key, parses it strictly, checks it is for
 * `recipient` and valid at `now`, and opens every epoch key. Throws `SmqttError` with
 * `ERR_BUNDLE_SIGNATURE_INVALID`, `ERR_BUNDLE_MALFORMED`, `ERR_BUNDLE_WRONG_RECIPIENT`,
 * `ERR_BUNDLE_NOT_YET_VALID`, `ERR_BUNDLE_EXPIRED` or `ERR_HPKE_OPEN_FAILED`, in that order of
 * checks; nothing else on any input.
 *
 * @example
 * ```ts
 * const bundle = openKeyBundle(await response.json(), {
 *   keyServerPublicKey, recipient: identity, now: Math.floor(Date.now() / 1000),
 * })
 * for (const group of bundle.groups) keyStore.add(group)
 * ```
 */
export function openKeyBundle(signed: unknown, options: OpenKeyBundleOptions): OpenedKeyBundle {
  const { recipient, backend = defaultBackend } = options
  const bundle = verifiedBundle(signed, options)
  return openedBundle(bundle, (group, { epoch, kem, enc, sealedKey }) => {
    // A key sealed for another KEM cannot be ours: same failure as any other that won't open.
    if (kem !== recipient.kem) throw new SmqttError('ERR_HPKE_OPEN_FAILED')
    return hpkeOpen({
      kem,
      recipientSecretKey: recipient.agreementSecret,
      enc,
      info: groupKeyInfo(recipient.id, group.group, epoch, group.suite),
      ciphertext: sealedKey,
      backend,
    })
  })
}

/** Options of {@link openKeyBundleWithAgreement}. */
export interface OpenKeyBundleWithAgreementOptions extends Omit<OpenKeyBundleOptions, 'recipient'> {
  /** An X25519 recipient whose private key is an operation (a non-extractable WebCrypto key). */
  recipient: PublicIdentity & { readonly agree: X25519Agreement }
}

/**
 * {@link openKeyBundle} for a recipient whose X25519 private key never leaves WebCrypto: the
 * same checks in the same order, the same errors; only each key's Diffie-Hellman step is
 * `recipient.agree`.
 *
 * @example
 * ```ts
 * const bundle = await openKeyBundleWithAgreement(signed, { keyServerPublicKey, recipient, now })
 * ```
 */
export async function openKeyBundleWithAgreement(
  signed: unknown,
  options: OpenKeyBundleWithAgreementOptions,
): Promise<OpenedKeyBundle> {
  const { recipient, backend = defaultBackend } = options
  const bundle = verifiedBundle(signed, options)
  const keys = new Map<SealedEpoch, Uint8Array>()
  await Promise.all(
    bundle.groups.flatMap((group) =>
      group.epochs.map(async (sealed) => {
        if (sealed.kem !== 'x25519' || recipient.kem !== 'x25519') return
        const info = groupKeyInfo(recipient.id, group.group, sealed.epoch, group.suite)
        const { agree, agreementKey: recipientPublicKey } = recipient
        const { enc, sealedKey: ciphertext } = sealed
        // A key that does not open is left out here and refused below, as openKeyBundle refuses it.
        const key = await hpkeOpenWithAgreement({ agree, recipientPublicKey, enc, info, ciphertext, backend }).catch(
          () => undefined,
        )
        if (key) keys.set(sealed, key)
      }),
    ),
  )
  return openedBundle(bundle, (_group, sealed) => {
    const key = keys.get(sealed)
    if (!key) throw new SmqttError('ERR_HPKE_OPEN_FAILED')
    return key
  })
}

// The checks before any key is opened: signature, recipient, validity.
function verifiedBundle(
  signed: unknown,
  options: Omit<OpenKeyBundleOptions, 'recipient'> & { recipient: Pick<PublicIdentity, 'id'> },
): ParsedKeyBundle {
  const { keyServerPublicKey, recipient, now, backend = defaultBackend } = options
  auint(now, 'now', Number.MAX_SAFE_INTEGER)
  const bundle = openSignedDocument(signed, {
    kind: keyBundleKind,
    signingKey: keyServerPublicKey,
    backend,
    ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }),
  })
  if (bundle.principal !== recipient.id) throw new SmqttError('ERR_BUNDLE_WRONG_RECIPIENT')
  if (now < bundle.notBefore) throw new SmqttError('ERR_BUNDLE_NOT_YET_VALID')
  if (now >= bundle.notAfter) throw new SmqttError('ERR_BUNDLE_EXPIRED')
  return bundle
}

function openedBundle(
  bundle: ParsedKeyBundle,
  open: (group: Omit<ParsedKeyBundle['groups'][number], 'epochs'>, sealed: SealedEpoch) => Uint8Array,
): OpenedKeyBundle {
  const groups = bundle.groups.map(({ epochs, ...group }) => ({
    ...group,
    epochs: epochs.map((sealed) => ({
      epoch: sealed.epoch,
      key: open(group, sealed),
      activatesAt: sealed.activatesAt,
      retiresAt: sealed.retiresAt,
    })),
  }))
  return {
    principal: bundle.principal,
    issuedAt: bundle.issuedAt,
    notBefore: bundle.notBefore,
    notAfter: bundle.notAfter,
    groups,
  }
}
