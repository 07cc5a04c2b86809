// The key-server client speaks HTTPS through this small interface, so Node can use node:https
// (which takes a private CA) and a browser build can use fetch, with the same code above it.

/** One HTTPS request to the key server. */
export interface TransportRequest {
  readonly method: 'GET' | 'POST'
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: Uint8Array
  /** Milliseconds before the request is abandoned. */
  readonly timeoutMs: number
}

/** The response: status and the body parsed as JSON (undefined when it is not JSON). */
export interface TransportResponse {
  readonly status: number
  readonly body: unknown
  /**
   * Response headers, names in lower case. Optional for transports of your own: without them
   * (the `etag`) the freshness poll cannot send `If-None-Match`, so every poll gets the full
   * answer instead of a `304`; it still works.
   */
  readonly headers?: Readonly<Record<string, string>>
}

/**
 * How the client reaches the key server. Rejects on network failure or timeout; HTTP error
 * statuses resolve (the caller reads the error body).
 *
 * @example
 * ```ts
 * const transport: KeyServerTransport = { request: async (r) => ({ status: 200, body: {} }) }
 * ```
 */
export interface KeyServerTransport {
  request(request: TransportRequest): Promise<TransportResponse>
}

export function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined
  } catch {
    return undefined
  }
}

/**
 * A transport over the standard `fetch` (browsers, Deno, Bun). It cannot take a private CA:
 * the platform's trust store decides.
 *
 * @example
 * ```ts
 * secure(client, { ..., keyServer: { url, keyServerPublicKey, transport: fetchTransport() } })
 * ```
 */
export function fetchTransport(): KeyServerTransport {
  return {
    async request({ method, url, headers, body, timeoutMs }) {
      const response = await fetch(url, {
        method,
        headers,
        ...(body ? { body: body as NonNullable<RequestInit['body']> } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      })
      const responseHeaders: Record<string, string> = {}
      response.headers.forEach((value, name) => {
        responseHeaders[name.toLowerCase()] = value
      })
      return { status: response.status, body: parseJson(await response.text()), headers: responseHeaders }
    },
  }
}
