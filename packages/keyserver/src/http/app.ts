// buildApp() makes the HTTPS application without listening, so tests use inject() and the
// CLI decides where to listen. Device routes authenticate by proof of possession (signed
// requests), admin routes by a bearer token whose hash is all the server keeps.

import { STATUS_CODES } from 'node:http'
import swagger from '@fastify/swagger'
import { constantTimeEqual, SmqttError, sha256 } from '@smqtt/core'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { KeyServer } from '../service/key-server.js'
import type { PrincipalRecord } from '../store/key-store.js'
import { registerAdminRoutes } from './admin-routes.js'
import { registerCors } from './cors.js'
import { registerDeviceRoutes } from './device-routes.js'
import { errorResponse } from './error-response.js'
import { KeyServerMetrics } from './metrics.js'

export interface BuildAppOptions {
  readonly keyServer: KeyServer
  /** SHA-256 of the admin token. */
  readonly adminTokenHash: Uint8Array
  /** TLS server key and certificate (PEM). Required unless insecureAllowPlainHttp. */
  readonly tls?: { readonly key: string; readonly cert: string }
  /** Plain HTTP: only for tests behind a TLS-terminating proxy. Logged loudly. */
  readonly insecureAllowPlainHttp?: boolean
  readonly maxBodyBytes?: number
  /** Browser origins (`https://host[:port]`) allowed to call the device API; default none. */
  readonly corsOrigins?: readonly string[]
  readonly logger?: Logger
  readonly metrics?: KeyServerMetrics
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The exact request body bytes (null for a request without a body). */
    rawBody: Uint8Array | null
    principal: PrincipalRecord | undefined
  }
  interface FastifyContextConfig {
    /** Who may call the route: anyone, an enrolled principal (signed request), or the admin. */
    auth?: 'none' | 'device' | 'admin'
  }
}

/**
 * Builds the key server's HTTP application.
 *
 * @example
 * ```ts
 * const app = await buildApp({ keyServer, adminTokenHash, tls: { key, cert } })
 * await app.listen({ host: '127.0.0.1', port: 8443 })
 * ```
 */
export async function buildApp(options: BuildAppOptions): Promise<FastifyInstance> {
  if (!options.tls && !options.insecureAllowPlainHttp)
    throw new TypeError('the key server needs TLS (tls.key, tls.cert); plain HTTP only with insecureAllowPlainHttp')
  const metrics = options.metrics ?? new KeyServerMetrics()
  const refuse = (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const { status, body } = errorResponse(err)
    if (status >= 500) request.log.error({ err }, 'request failed')
    metrics.refusals.inc({ code: body.error.code })
    return reply.status(status).send(body)
  }
  const app = Fastify({
    ...(options.tls ? { https: { key: options.tls.key, cert: options.tls.cert, minVersion: 'TLSv1.2' as const } } : {}),
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: options.maxBodyBytes ?? 65_536,
    // Unknown fields are refused, not silently dropped; no type coercion of untrusted input.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    return503OnClosing: true,
    // Found by test/fuzz/keyserver-http.test.ts: the router's refusals (a path that is not valid
    // percent-encoding, a parameter over the length limit) and the HTTP parser's (unknown method,
    // malformed request line, headers too large) answered with Fastify's own untyped bodies.
    frameworkErrors: refuse,
    clientErrorHandler: (err, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
      const { body } = errorResponse(
        new SmqttError('ERR_REQUEST_INVALID', `malformed HTTP request (${err.code ?? 'parse error'})`),
      )
      metrics.refusals.inc({ code: body.error.code })
      const text = JSON.stringify(body)
      if (socket.writable)
        socket.write(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(text)}\r\n` +
            `Content-Type: application/json\r\nConnection: close\r\n\r\n${text}`,
        )
      socket.destroy(err)
    },
  }) as unknown as FastifyInstance
  if (options.insecureAllowPlainHttp && !options.tls)
    app.log.warn('INSECURE: the key server is serving plain HTTP (insecureAllowPlainHttp)')

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'SMQTT key server',
        version: '1',
        description: 'Enrollment, key bundles, revocation lists; admin API.',
      },
      components: {
        securitySchemes: {
          admin: { type: 'http', scheme: 'bearer' },
          device: {
            type: 'apiKey',
            in: 'header',
            name: 'smqtt-signature',
            description: 'Signed request: smqtt-principal, smqtt-timestamp, smqtt-nonce, smqtt-signature headers',
          },
        },
      },
    },
  })

  registerCors(app, options.corsOrigins ?? [])
  app.decorateRequest('rawBody', null)
  app.decorateRequest('principal', undefined)
  // JSON only, and the exact bytes are kept: device signatures cover the raw body.
  app.removeAllContentTypeParsers()
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    request.rawBody = new Uint8Array(body as Buffer)
    parseJson(request, (body as Buffer).toString('utf8'), (err, value) => {
      done(err ? new SmqttError('ERR_REQUEST_INVALID', `malformed JSON: ${err.message}`) : null, value)
    })
  })

  app.addHook('preHandler', async (request) => {
    const auth = request.routeOptions.config.auth ?? 'none'
    if (auth === 'device') request.principal = await authenticateDevice(options.keyServer, request)
    if (auth === 'admin') await authenticateAdmin(options, request)
  })

  app.setErrorHandler(refuse)
  app.setNotFoundHandler(async (request, reply) => {
    metrics.refusals.inc({ code: 'ERR_NOT_FOUND' })
    return reply
      .status(404)
      .send({ error: { code: 'ERR_NOT_FOUND', message: `no route ${request.method} ${request.url}` } })
  })
  app.addHook('onResponse', async (request, reply) => {
    metrics.requests.inc({ route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) })
  })

  options.keyServer.onChange((change) => metrics.changes.inc({ kind: change.kind }))
  registerDeviceRoutes(app, options.keyServer, metrics)
  registerAdminRoutes(app, options.keyServer, metrics)
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
  return app
}

function authenticateDevice(keyServer: KeyServer, request: FastifyRequest): Promise<PrincipalRecord> {
  return keyServer.authenticateRequest(
    request.headers,
    { method: request.method, path: request.url, body: request.rawBody ?? new Uint8Array(0) },
    request.ip,
  )
}

async function authenticateAdmin(options: BuildAppOptions, request: FastifyRequest): Promise<void> {
  const header = request.headers.authorization
  const token = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : ''
  // An address over its failures is refused before the token is even compared: it may be guessable.
  await options.keyServer.failedAuth.check(request.ip)
  if (token && constantTimeEqual(sha256(new TextEncoder().encode(token)), options.adminTokenHash)) return
  throw await options.keyServer.failedAuth.failed(
    request.ip,
    // The path only: the query is the attacker's to fill (it once made each failure a 29 KB row).
    {
      action: 'auth.failed',
      subject: 'admin',
      reason: token ? 'wrong admin token' : 'no admin token',
      route: request.url.split('?')[0] ?? '',
    },
    new SmqttError('ERR_UNAUTHENTICATED', 'admin token missing or wrong'),
  )
}
