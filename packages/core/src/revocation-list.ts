// The revocation list: the revoked principals and envelope key ids that a key bundle still in
// use may list, in one document signed by the key server, with a version that only goes up.
// Brokers and subscribers keep the latest list they accepted and refuse an older one, so an
// attacker who replays yesterday's list cannot un-revoke a stolen device.
//
// The list does not grow with the fleet's history (issue 14, cliff 1): it carries a watermark,
// `prunedBefore`, and lists every revocation made at or after it. A revoked principal is left
// out of every bundle issued after its revocation, so its entry only matters to a holder of a
// bundle issued before the revocation; a client refuses every bundle issued before the
// watermark (ERR_BUNDLE_EXPIRED), so an entry older than the watermark can never be needed.
import { defaultBackend } from '#crypto-backend'
import { auint } from './_bytes.js'
import type { CryptoBackend } from './crypto/backend.js'
import type { SigningKeyPair } from './crypto/signature.js'
import { SmqttError } from './errors.js'
import {
  type DocumentKind,
  isValidPrincipalId,
  openSignedDocument,
  type SignedDocument,
  type StrictJsonReader,
  signDocument,
} from './signed-document.js'

const TYPE = 'smqtt.revocations'
const UINT32_MAX = 0xffff_ffff
const MAX_ENTRIES = 1_000_000

/** One revoked key: the principal, its envelope key id and when it was revoked (unix seconds). */
export interface RevocationEntry {
  readonly principal: string
  readonly kid: number
  readonly revokedAt: number
}

/** Options of {@link createRevocationList}. */
export interface CreateRevocationListOptions {
  /** Must grow with every list the key server publishes. */
  version: number
  entries: readonly RevocationEntry[]
  /**
   * Unix seconds: every revocation made at or after this time is in `entries` (older ones may
   * be too), and bundles issued before it must not be used. Defaults to 0 (nothing pruned).
   */
  prunedBefore?: number
  /** Unix seconds; defaults to now. */
  issuedAt?: number
  keyServer: SigningKeyPair
  backend?: CryptoBackend
}

interface ParsedRevocationList {
  version: number
  issuedAt: number
  prunedBefore: number
  entries: RevocationEntry[]
}

function parseRevocationListBody(json: unknown, read: StrictJsonReader): ParsedRevocationList {
  const body = read.object(json, 'revocation list', ['type', 'v', 'version', 'issuedAt', 'entries'], ['prunedBefore'])
  read.literal(body.type, 'type', TYPE)
  read.literal(body.v, 'v', 1)
  const version = read.uint32(body.version, 'version')
  const issuedAt = read.uint32(body.issuedAt, 'issuedAt')
  // Absent in lists signed before pruning existed: nothing was pruned from them.
  const prunedBefore = body.prunedBefore === undefined ? 0 : read.uint32(body.prunedBefore, 'prunedBefore')
  // A kid names one key of one principal, so it may appear once.
  const seenKids = new Set<number>()
  const entries = read.array(body.entries, 'entries', MAX_ENTRIES).map((value, i): RevocationEntry => {
    const path = `entries[${i}]`
    const fields = read.object(value, path, ['principal', 'kid', 'revokedAt'])
    const kid = read.uint32(fields.kid, `${path}.kid`)
    if (seenKids.has(kid)) read.fail(`duplicate kid ${kid}`)
    seenKids.add(kid)
    return Object.freeze({
      principal: read.principal(fields.principal, `${path}.principal`),
      kid,
      revokedAt: read.uint32(fields.revokedAt, `${path}.revokedAt`),
    })
  })
  return { version, issuedAt, prunedBefore, entries }
}

const revocationListKind: DocumentKind<ParsedRevocationList> = {
  type: TYPE,
  malformed: 'ERR_REVOCATION_LIST_MALFORMED',
  signatureInvalid: 'ERR_REVOCATION_LIST_SIGNATURE_INVALID',
  parseBody: parseRevocationListBody,
}

/**
 * Builds and signs a revocation list.
 *
 * @example
 * ```ts
 * const signed = createRevocationList({
 *   version: 42,
 *   entries: [{ principal: 'thermostat-hall', kid: 1000, revokedAt: now }],
 *   prunedBefore: now - 86_400, // revocations of the last day; older bundles are refused
 *   keyServer,
 * })
 * ```
 */
export function createRevocationList(options: CreateRevocationListOptions): SignedDocument {
  const { version, entries, keyServer, prunedBefore = 0, backend = defaultBackend } = options
  const issuedAt = options.issuedAt ?? Math.floor(Date.now() / 1000)
  auint(version, 'version', UINT32_MAX)
  auint(issuedAt, 'issuedAt', UINT32_MAX)
  auint(prunedBefore, 'prunedBefore', UINT32_MAX)
  const kids = new Set<number>()
  const body = {
    type: TYPE,
    v: 1,
    version,
    issuedAt,
    // Left out when 0, so a list without pruning reads as it always did.
    ...(prunedBefore === 0 ? {} : { prunedBefore }),
    entries: entries.map(({ principal, kid, revokedAt }) => {
      if (!isValidPrincipalId(principal)) throw new TypeError(`invalid principal id in revocation entry`)
      auint(kid, 'kid', UINT32_MAX)
      auint(revokedAt, 'revokedAt', UINT32_MAX)
      if (kids.has(kid)) throw new RangeError(`duplicate kid ${kid}`)
      kids.add(kid)
      return { principal, kid, revokedAt }
    }),
  }
  return signDocument(TYPE, body, keyServer, backend)
}

/**
 * The latest revocation list this process accepted. Starts empty (nothing revoked, no version).
 *
 * @example
 * ```ts
 * const revocations = new RevocationList()
 * revocations.accept(signedList, { keyServerPublicKey })
 * if (revocations.isRevokedKid(header.kid)) throw new SmqttError('ERR_SENDER_REVOKED')
 * ```
 */
export class RevocationList {
  #version: number | undefined
  #issuedAt: number | undefined
  #prunedBefore = 0
  #payload: string | undefined
  #entries: readonly RevocationEntry[] = []
  #kids = new Map<number, RevocationEntry>()
  #principals = new Set<string>()

  /** Version of the accepted list; undefined until one is accepted. */
  get version(): number | undefined {
    return this.#version
  }

  /** `issuedAt` of the accepted list (unix seconds); undefined until one is accepted. */
  get issuedAt(): number | undefined {
    return this.#issuedAt
  }

  /**
   * The accepted list's watermark (unix seconds; 0 when none): it lists every revocation made at
   * or after this time, and says nothing about older ones, so a key bundle issued before it must
   * not be used (its writers may include a principal revoked, and pruned, since).
   */
  get prunedBefore(): number {
    return this.#prunedBefore
  }

  /**
   * Whether a key bundle issued at `issuedAt` (unix seconds) may be used with this list: false
   * when it was issued before the watermark.
   */
  coversBundleIssuedAt(issuedAt: number): boolean {
    return issuedAt >= this.#prunedBefore
  }

  /** Entries of the accepted list. */
  get entries(): readonly RevocationEntry[] {
    return this.#entries
  }

  /**
   * Verifies `signed` under the pinned key-server key, parses it strictly and makes it current.
   * Returns true when the list changed, false when it is the one already held. A lower version,
   * or the same version with different content (a key server never signs two lists under one
   * version, so that is an attack or a bug), throws `ERR_REVOCATION_LIST_ROLLBACK`. Throws
   * `ERR_REVOCATION_LIST_SIGNATURE_INVALID` / `ERR_REVOCATION_LIST_MALFORMED` for the rest; on
   * any throw the held list is unchanged.
   *
   * @example
   * ```ts
   * if (revocations.accept(await response.json(), { keyServerPublicKey })) closeRevokedSessions()
   * ```
   */
  accept(
    signed: unknown,
    options: { keyServerPublicKey: Uint8Array; maxBytes?: number; backend?: CryptoBackend },
  ): boolean {
    const list = openSignedDocument(signed, {
      kind: revocationListKind,
      signingKey: options.keyServerPublicKey,
      backend: options.backend ?? defaultBackend,
      ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }),
    })
    // openSignedDocument checked `signed` has this shape; the exact payload text is the content.
    const payload = (signed as SignedDocument).payload
    if (this.#version !== undefined) {
      if (list.version < this.#version) throw new SmqttError('ERR_REVOCATION_LIST_ROLLBACK')
      if (list.version === this.#version) {
        if (payload === this.#payload) return false
        throw new SmqttError(
          'ERR_REVOCATION_LIST_ROLLBACK',
          `two different revocation lists carry version ${list.version}; keeping the first`,
        )
      }
    }
    this.#version = list.version
    this.#issuedAt = list.issuedAt
    this.#prunedBefore = list.prunedBefore
    this.#payload = payload
    this.#entries = Object.freeze(list.entries)
    this.#kids = new Map(list.entries.map((entry) => [entry.kid, entry]))
    this.#principals = new Set(list.entries.map((entry) => entry.principal))
    return true
  }

  /** True when envelope key id `kid` is revoked. */
  isRevokedKid(kid: number): boolean {
    return this.#kids.has(kid)
  }

  /** True when principal `id` is on the list (the key server lists every key id of a revoked principal). */
  isRevokedPrincipal(id: string): boolean {
    return this.#principals.has(id)
  }

  /** The entry revoking `kid`, if any (e.g. to accept messages sent before `revokedAt`). */
  revocationOf(kid: number): RevocationEntry | undefined {
    return this.#kids.get(kid)
  }
}
