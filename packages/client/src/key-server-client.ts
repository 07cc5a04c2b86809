import {
  type EnrollmentRequest,
  ERROR_CODES,
  type Identity,
  type SignedDocument,
  SmqttError,
  type SmqttErrorCode,
  signRequest,
} from '@smqtt/core'
import { defaultTransport } from '#default-transport'
import type { KeyServerTransport } from './transport.js'

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
  readonly #identity: Identity | undefined
  #transport: KeyServerTransport | undefined

  constructor(connection: KeyServerConnection, identity?: Identity) {
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
    return ((await this.#request('GET', '/v1/bundle')) as { bundle?: unknown } | undefined)?.bundle
  }

  /** The signed revocation list, or null when nothing was ever revoked (not yet verified). */
  async revocations(): Promise<unknown> {
    return ((await this.#request('GET', '/v1/revocations')) as { revocations?: unknown } | undefined)?.revocations
  }

  async #request(method: 'GET' | 'POST', path: string, body?: Uint8Array, signed = true): Promise<unknown> {
    const url = new URL(path.replace(/^\//, ''), this.#connection.url.replace(/\/?$/, '/'))
    const headers: Record<string, string> = body ? { 'content-type': 'application/json' } : {}
    if (signed) {
      if (!this.#identity) throw new TypeError('signed key server requests need an identity')
      Object.assign(
        headers,
        signRequest(this.#identity.id, this.#identity, {
          method,
          path: url.pathname + url.search,
          body: body ?? new Uint8Array(0),
        }),
      )
    }
    this.#transport ??= this.#connection.transport ?? defaultTransport(this.#connection.ca)
    const transport = this.#transport
    const response = await transport.request({
      method,
      url: url.href,
      headers,
      ...(body ? { body } : {}),
      timeoutMs: this.#connection.timeoutMs ?? 10_000,
    })
    if (response.status === 200) return response.body
    const error = (response.body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error
    const message = `key server answered ${response.status}${typeof error?.message === 'string' ? `: ${error.message}` : ''}`
    if (isErrorCode(error?.code)) throw new SmqttError(error.code, message)
    throw new Error(message)
  }
}
