// A writer record is what a reader fetches, by key id, for the writers its key bundle does not
// list: in a group of 100,000 writers a bundle listing each would be megabytes, so a bundle lists
// a bounded number and a reader asks for the others on first sight (`POST /v1/writers`).
//
// A record carries, for one group, the same writer entries a bundle carries (kid -> principal,
// Ed25519 key, publish rights within the group), with the same checks, signed by the key server,
// so a subscriber verifies an envelope with a record exactly as with a bundle's entry. It is bound
// to the reader it was asked for and to the group's id and filter (the rights lie within that
// filter), and lives only until `notAfter` (minutes): a writer's narrowed rights reach the readers
// within that time, and a revoked writer is never in a record issued after its revocation (and is
// refused by every reader at once through the revocation list, whatever records it holds).
import { defaultBackend } from '#crypto-backend'
import { auint } from './_bytes.js'
import type { CryptoBackend } from './crypto/backend.js'
import type { SigningKeyPair } from './crypto/signature.js'
import { SmqttError } from './errors.js'
import { type KeyGroupWriter, type OpenedKeyGroupWriter, readWriters, writerEntryJson } from './key-bundle.js'
import {
  type DocumentKind,
  isValidPrincipalId,
  openSignedDocument,
  type SignedDocument,
  type StrictJsonReader,
  signDocument,
} from './signed-document.js'
import { isValidFilter } from './topic-filter.js'

const TYPE = 'smqtt.writer-record'
const VERSION = 1
const UINT32_MAX = 0xffff_ffff

/** Most writers one record (one `POST /v1/writers` answer) lists. */
export const MAX_RECORD_WRITERS = 256

/** Options of {@link createWriterRecord}. */
export interface CreateWriterRecordOptions {
  /** The principal id of the reader that asked. */
  reader: string
  group: number
  /** The group's MQTT topic filter: every writer's rights lie within it. */
  filter: string
  writers: readonly KeyGroupWriter[]
  /** Unix seconds: the record is valid for issuedAt - 60 <= now < notAfter. */
  issuedAt: number
  notAfter: number
  keyServer: SigningKeyPair
  backend?: CryptoBackend
}

/** A verified writer record. */
export interface OpenedWriterRecord {
  readonly reader: string
  readonly group: number
  readonly filter: string
  readonly issuedAt: number
  readonly notAfter: number
  readonly writers: ReadonlyMap<number, OpenedKeyGroupWriter>
}

/** Options of {@link openWriterRecord}. */
export interface OpenWriterRecordOptions {
  /** The key server's Ed25519 key, pinned at enrollment. */
  keyServerPublicKey: Uint8Array
  /** The principal id of the reader opening it. */
  reader: string
  /** Unix seconds. */
  now: number
  backend?: CryptoBackend
}

/**
 * Builds and signs a writer record for `reader`: the entries of `writers` in `group`, checked as
 * `createKeyBundle` checks a bundle's writers.
 *
 * @example
 * ```ts
 * const signed = createWriterRecord({ reader: 'app-1', group: 7, filter: 'home/+/thermostat/#',
 *   writers: [{ kid: 1000, principal: 'thermostat-1', signingKey,
 *     publish: { allow: ['home/+/thermostat/thermostat-1/#'], deny: [] } }],
 *   issuedAt: now, notAfter: now + 300, keyServer })
 * ```
 */
export function createWriterRecord(options: CreateWriterRecordOptions): SignedDocument {
  const { reader, group, filter, writers, issuedAt, notAfter, keyServer, backend = defaultBackend } = options
  if (!isValidPrincipalId(reader)) throw new TypeError('reader is not a valid principal id')
  auint(group, 'group', UINT32_MAX)
  auint(issuedAt, 'issuedAt', UINT32_MAX)
  auint(notAfter, 'notAfter', UINT32_MAX)
  if (issuedAt > notAfter) throw new RangeError('issuedAt is after notAfter')
  if (!isValidFilter(filter)) throw new TypeError('filter is not a valid topic filter')
  if (writers.length > MAX_RECORD_WRITERS) throw new RangeError(`more than ${MAX_RECORD_WRITERS} writers`)
  if (new Set(writers.map((w) => w.kid)).size !== writers.length) throw new RangeError('duplicate kid')
  const body = {
    type: TYPE,
    v: VERSION,
    reader,
    group,
    filter,
    issuedAt,
    notAfter,
    writers: writers.map((writer) => writerEntryJson(writer, group, filter)),
  }
  return signDocument(TYPE, body, keyServer, backend)
}

function parseWriterRecordBody(json: unknown, read: StrictJsonReader): OpenedWriterRecord {
  const body = read.object(json, 'record', [
    'type',
    'v',
    'reader',
    'group',
    'filter',
    'issuedAt',
    'notAfter',
    'writers',
  ])
  read.literal(body.type, 'type', TYPE)
  read.literal(body.v, 'v', VERSION)
  const reader = read.principal(body.reader, 'reader')
  const group = read.uint32(body.group, 'group')
  const filter = read.string(body.filter, 'filter', 65_535)
  if (!isValidFilter(filter)) read.fail('filter is not a valid topic filter')
  const issuedAt = read.uint32(body.issuedAt, 'issuedAt')
  const notAfter = read.uint32(body.notAfter, 'notAfter')
  if (issuedAt > notAfter) read.fail('issuedAt is after notAfter')
  if (read.array(body.writers, 'writers').length > MAX_RECORD_WRITERS)
    read.fail(`more than ${MAX_RECORD_WRITERS} writers`)
  const writers = readWriters(read, body.writers, 'writers', group, filter)
  return { reader, group, filter, issuedAt, notAfter, writers }
}

const writerRecordKind: DocumentKind<OpenedWriterRecord> = {
  type: TYPE,
  // A record is a detached part of a bundle: the same errors.
  malformed: 'ERR_BUNDLE_MALFORMED',
  signatureInvalid: 'ERR_BUNDLE_SIGNATURE_INVALID',
  parseBody: parseWriterRecordBody,
}

/**
 * Verifies a writer record under the pinned key-server key, parses it strictly and checks it is
 * for `reader` and valid at `now`. Throws `SmqttError` with `ERR_BUNDLE_SIGNATURE_INVALID`,
 * `ERR_BUNDLE_MALFORMED`, `ERR_BUNDLE_WRONG_RECIPIENT`, `ERR_BUNDLE_NOT_YET_VALID` or
 * `ERR_BUNDLE_EXPIRED`, in that order of checks; nothing else on any input. The caller checks
 * that the group and filter are those of the group it holds (`Keyring.addWriters`).
 *
 * @example
 * ```ts
 * const record = openWriterRecord(signed, { keyServerPublicKey, reader: identity.id, now })
 * ```
 */
export function openWriterRecord(signed: unknown, options: OpenWriterRecordOptions): OpenedWriterRecord {
  const { keyServerPublicKey, reader, now, backend = defaultBackend } = options
  auint(now, 'now', Number.MAX_SAFE_INTEGER)
  const record = openSignedDocument(signed, { kind: writerRecordKind, signingKey: keyServerPublicKey, backend })
  if (record.reader !== reader) throw new SmqttError('ERR_BUNDLE_WRONG_RECIPIENT')
  // A minute of clock skew, as bundles allow through their notBefore.
  if (now + 60 < record.issuedAt) throw new SmqttError('ERR_BUNDLE_NOT_YET_VALID')
  if (now >= record.notAfter) throw new SmqttError('ERR_BUNDLE_EXPIRED')
  return record
}
