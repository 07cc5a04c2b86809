// Cross-origin access for browser apps (the browser build of @smqtt/client enrolls and fetches
// its bundle with fetch). Only the origins listed in the config get CORS headers; any other
// origin gets none, so its browser refuses to hand the answer to the page. Preflights are
// answered for the device API only: GET/POST with JSON and the request-signature headers. The
// admin API (bearer token, PUT/DELETE) stays out of reach of web pages.
import { REQUEST_SIGNATURE_HEADERS } from '@smqtt/core'
import type { FastifyInstance } from 'fastify'

const ALLOWED_METHODS = 'GET, POST'
// If-None-Match and ETag: the freshness poll (GET /v1/freshness) answers 304 while nothing changed.
const ALLOWED_HEADERS = ['content-type', 'if-none-match', ...Object.values(REQUEST_SIGNATURE_HEADERS)].join(', ')
/** How long a browser may cache a preflight answer. */
const PREFLIGHT_MAX_AGE_SECONDS = 600

/**
 * Adds CORS for exactly `origins` (e.g. `https://app.example.com`). No origins: no CORS at all.
 *
 * @example
 * ```ts
 * registerCors(app, ['https://home.example.com'])
 * ```
 */
export function registerCors(app: FastifyInstance, origins: readonly string[]): void {
  if (origins.length === 0) return
  const allowed = new Set(origins)
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin
    // Caches must not serve one origin's answer (with or without the headers) to another.
    reply.header('vary', 'origin')
    if (typeof origin !== 'string' || !allowed.has(origin)) return
    reply.header('access-control-allow-origin', origin)
    reply.header('access-control-expose-headers', 'etag')
    const preflight = request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined
    if (!preflight) return
    return reply
      .code(204)
      .header('access-control-allow-methods', ALLOWED_METHODS)
      .header('access-control-allow-headers', ALLOWED_HEADERS)
      .header('access-control-max-age', String(PREFLIGHT_MAX_AGE_SECONDS))
      .send()
  })
}
