import {
  type EnrollmentRequest,
  ERROR_CODES,
  type Identity,
  type NonExtractableIdentity,
  type SignedDocument,
  SmqttError,
  type SmqttErrorCode,
  signRequestAsync,
} from '@smqtt/core'
import { defaultTransport } from '#default-transport'
import type { KeyServerTransport, TransportResponse } from './transport.js'

/** Where the key server is and how to reach it. */
export interface KeyServerConnection {
  /** Base URL, e.g. `https://keys.example.com`. */
  readonly url: string
  /** PEM of the CA that issued the key server's TLS certificate (Node transport only). */
  readonly ca?: string
  /** Defaults to node:https on Node, fetch elsewhere (package.json `#default-transport`). */
  readonly transport?: KeyServerTransport
  /** Per request, default 10 000 ms. */
  readonly timeoutMs?: number
}

/** What `POST /v1/enroll` answers. */
export interface EnrollResponse {
  readonly principal: SignedDocument
  readonly kid: number
  /** base64url Ed25519 key of the key server. */
  readonly keyServerPublicKey: string
  readonly certificatePem?: string
}

/** What `GET /v1/freshness` answers when something may have changed (see KeyServerClient.freshness). */
export interface FreshnessAnswer {
  /** Version of the key server's revocation list, 0 when nothing was ever revoked. */
  readonly revocations: number
  /** Tag of the bundle this principal would get now (compare with the one of the bundle held). */
  readonly bundle: string
  /** The answer's ETag, for the next poll's If-None-Match (absent when the transport gives no headers). */
  readonly etag?: string
}

function isErrorCode(code: unknown): code is SmqttErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)
}

/**
 * The device side of the key server's HTTPS API. Device requests are signed with the
 * principal's Ed25519 key (no shared secret). HTTP errors with an SMQTT error body become
 * `SmqttError` with the server's code; network failures and timeouts reject with `Error`.
 *
 * @example
 * ```ts
 * const keys = new KeyServerClient({ url, ca }, identity)
 * const { bundle } = await keys.bundle()
 * ```
 */
export class KeyServerClient {
  readonly #connection: KeyServerConnection
  readonly #identity: Identity | NonExtractableIdentity | undefined
  #transport: KeyServerTransport | undefined

  constructor(connection: KeyServerConnection, identity?: Identity | NonExtractableIdentity) {
    if (typeof connection.url !== 'string') throw new TypeError('keyserver.url must be a string')
    this.#connection = connection
    this.#identity = identity
  }

  /** Redeems an enrollment token (unsigned: the body carries its own proof of possession). */
  async enroll(request: EnrollmentRequest): Promise<EnrollResponse> {
    const body = await this.#request('POST', '/v1/enroll', new TextEncoder().encode(JSON.stringify(request)), false)
    const result = body as Partial<EnrollResponse> | undefined
    if (
      typeof result?.kid !== 'number' ||
      typeof result.keyServerPublicKey !== 'string' ||
      typeof result.principal !== 'object'
    )
      throw new SmqttError('ERR_IDENTITY_MALFORMED', 'the key server sent a malformed enrollment response')
    return result as EnrollResponse
  }

  /** This principal's signed key bundle (not yet verified: see `openKeyBundle`). */
  async bundle(): Promise<unknown> {
    return (await this.bundleWithTag()).bundle
  }

  /**
   * The bundle and its tag as `freshness()` reports it (undefined from a key server without
   * the freshness endpoint). The tag is taken before the bundle is built: never newer than it.
   */
  async bundleWithTag(): Promise<{ bundle: unknown; tag: string | undefined }> {
    const body = (await this.#request('GET', '/v1/bundle')) as { bundle?: unknown; tag?: unknown } | undefined
    return { bundle: body?.bundle, tag: typeof body?.tag === 'string' ? body.tag : undefined }
  }

  /**
   * Polls `GET /v1/freshness`: the revocation list version and this principal's bundle tag now,
   * or `undefined` when `etag` (from an earlier answer) is still current (a `304`).
   */
  async freshness(etag?: string): Promise<FreshnessAnswer | undefined> {
    const response = await this.#exchange(
      'GET',
      '/v1/freshness',
      undefined,
      true,
      etag === undefined ? {} : { 'if-none-match': etag },
    )
    if (response.status === 304) return undefined
    const body = this.#ok(response) as { revocations?: unknown; bundle?: unknown } | undefined
    const revocations = body?.revocations
    if (typeof revocations !== 'number' || !Number.isSafeInteger(revocations) || typeof body?.bundle !== 'string')
      throw new Error('the key server sent a malformed freshness answer')
    const answer = { revocations, bundle: body.bundle }
    const header = response.headers?.etag
    return header === undefined ? answer : { ...answer, etag: header }
  }

  /**
   * A signed record of the writers among `kids` (at most 256) of `group`, for senders this
   * principal's bundle does not list (not yet verified: see `openWriterRecord`).
   */
  async writers(group: number, kids: readonly number[]): Promise<unknown> {
    const body = new TextEncoder().encode(JSON.stringify({ group, kids }))
    return ((await this.#request('POST', '/v1/writers', body)) as { record?: unknown } | undefined)?.record
  }

  /** The signed revocation list, or null when nothing was ever revoked (not yet verified). */
  async revocations(): Promise<unknown> {
    return ((await this.#request('GET', '/v1/revocations')) as { revocations?: unknown } | undefined)?.revocations
  }

  /**
   * Reserves the next `size` envelope sequence numbers for this run (at most 65,536), above
   * `atLeast` and above every range the key server handed this principal before.
   */
  async reserveSequence(atLeast: number, size: number): Promise<{ start: number; end: number }> {
    const body = new TextEncoder().encode(JSON.stringify({ atLeast, size }))
    const range = (await this.#request('POST', '/v1/sequence', body)) as { start?: unknown; end?: unknown } | undefined
    if (!Number.isSafeInteger(range?.start) || !Number.isSafeInteger(range?.end))
      throw new SmqttError('ERR_REQUEST_INVALID', 'the key server sent a malformed sequence range')
    return { start: range?.start as number, end: range?.end as number }
  }

  async #request(method: 'GET' | 'POST', path: string, body?: Uint8Array, signed = true): Promise<unknown> {
    return this.#ok(await this.#exchange(method, path, body, signed))
  }

  async #exchange(
    method: 'GET' | 'POST',
    path: string,
    body: Uint8Array | undefined,
    signed: boolean,
    extraHeaders: Record<string, string> = {},
  ): Promise<TransportResponse> {
    const url = new URL(path.replace(/^\//, ''), this.#connection.url.replace(/\/?$/, '/'))
    const headers: Record<string, string> = { ...extraHeaders, ...(body ? { 'content-type': 'application/json' } : {}) }
    if (signed) {
      if (!this.#identity) throw new TypeError('signed key server requests need an identity')
      Object.assign(
        headers,
        await signRequestAsync(this.#identity.id, this.#identity, {
          method,
          path: url.pathname + url.search,
          body: body ?? new Uint8Array(0),
        }),
      )
    }
    this.#transport ??= this.#connection.transport ?? defaultTransport(this.#connection.ca)
    const transport = this.#transport
    return transport.request({
      method,
      url: url.href,
      headers,
      ...(body ? { body } : {}),
      timeoutMs: this.#connection.timeoutMs ?? 10_000,
    })
  }

  /** The body of a 200; an `SmqttError` with the server's code (or an `Error`) for anything else. */
  #ok(response: TransportResponse): unknown {
    if (response.status === 200) return response.body
    const error = (response.body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error
    const message = `key server answered ${response.status}${typeof error?.message === 'string' ? `: ${error.message}` : ''}`
    if (isErrorCode(error?.code)) throw new SmqttError(error.code, message)
    throw new Error(message)
  }
}
