// buildApp() makes the HTTPS application without listening, so tests use inject() and the
// CLI decides where to listen. Device routes authenticate by proof of possession (signed
// requests), admin routes by a bearer token whose hash is all the server keeps.

import { STATUS_CODES } from 'node:http'
import swagger from '@fastify/swagger'
import { constantTimeEqual, SmqttError, sha256 } from '@smqtt/core'
import { boundedLog } from '@smqtt/core/bounded-log'
import { type TlsProfile, tlsServerOptions } from '@smqtt/core/tls'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { POLICY_SCHEMA } from '../policy-schema.js'
import type { KeyServer } from '../service/key-server.js'
import type { PrincipalRecord } from '../store/key-store.js'
import { registerAdminRoutes } from './admin-routes.js'
import { registerCors } from './cors.js'
import {
  DEFAULT_DEADLINES,
  DEFAULT_MAX_PENDING_CONNECTIONS_PER_ADDRESS,
  fastifyDeadlineOptions,
  guardConnections,
  type KeyServerDeadlines,
  serverDeadlineOptions,
} from './deadlines.js'
import { registerDeviceRoutes } from './device-routes.js'
import { errorResponse } from './error-response.js'
import { KeyServerMetrics } from './metrics.js'

export interface BuildAppOptions {
  readonly keyServer: KeyServer
  /** SHA-256 of the admin token. */
  readonly adminTokenHash: Uint8Array
  /**
   * TLS server key and certificate (PEM), and the TLS profile (default `intermediate`: TLS 1.2
   * and 1.3; `modern`: TLS 1.3 only). Required unless insecureAllowPlainHttp.
   */
  readonly tls?: { readonly key: string; readonly cert: string; readonly profile?: TlsProfile }
  /** Plain HTTP: only for tests behind a TLS-terminating proxy. Logged loudly. */
  readonly insecureAllowPlainHttp?: boolean
  readonly maxBodyBytes?: number
  /** Browser origins (`https://host[:port]`) allowed to call the device API; default none. */
  readonly corsOrigins?: readonly string[]
  readonly logger?: Logger
  readonly metrics?: KeyServerMetrics
  /** TLS handshake, request headers, whole request, keep-alive (defaults: 10, 10, 30, 5 s). */
  readonly deadlines?: Partial<KeyServerDeadlines>
  /** Connections one address may hold before their first request completed (default 100). */
  readonly maxPendingConnectionsPerAddress?: number
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
  const secure = Boolean(options.tls)
  const refuse = (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    setSecurityHeaders(reply, secure) // also for the router's refusals, which run no hooks
    const { status, body } = errorResponse(err)
    if (status >= 500) request.log.error({ err }, 'request failed')
    metrics.refusals.inc({ code: body.error.code })
    return reply.status(status).send(body)
  }
  const deadlines: KeyServerDeadlines = { ...DEFAULT_DEADLINES, ...options.deadlines }
  const app = Fastify({
    // Versions, suites, groups, client order, no renegotiation: the same on every SMQTT listener.
    ...(options.tls
      ? {
          https: {
            key: options.tls.key,
            cert: options.tls.cert,
            ...tlsServerOptions(options.tls.profile),
            ...serverDeadlineOptions(deadlines),
          },
        }
      : { http: serverDeadlineOptions(deadlines) }),
    // Slow-loris: handshake, headers, whole request and idle keep-alive all have deadlines (deadlines.ts).
    ...fastifyDeadlineOptions(deadlines),
    // The request serializer logs the path without its query string: a query is the caller's to
    // fill, and may carry what must not reach a log.
    ...(options.logger
      ? { loggerInstance: options.logger.child({}, { serializers: { req: serializeRequest } }) }
      : { logger: false }),
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
      // Written by hand (the parser gave up before Fastify saw a request), with the same headers.
      const headers = Object.entries({ ...securityHeaders(secure), 'content-type': 'application/json' })
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join('')
      if (socket.writable)
        socket.write(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(text)}\r\n` +
            `${headers}Connection: close\r\n\r\n${text}`,
        )
      socket.destroy(err)
    },
  }) as unknown as FastifyInstance
  const maxPendingPerAddress = options.maxPendingConnectionsPerAddress ?? DEFAULT_MAX_PENDING_CONNECTIONS_PER_ADDRESS
  const logRefusal = boundedLog(
    (address: string, reason: string) =>
      app.log.warn(
        {
          event: 'connection-refused',
          address,
          reason,
          ...(reason === 'pending-cap' ? { max: maxPendingPerAddress } : {}),
        },
        'connection closed before a request',
      ),
    (count) => app.log.warn({ event: 'refusals-suppressed', count }, `${count} more connections closed`),
  )
  guardConnections(app.server, {
    tls: Boolean(options.tls),
    deadlines,
    maxPendingPerAddress,
    onRefused(address, reason) {
      metrics.connectionsRefused.inc({ reason })
      logRefusal(address, reason)
    },
  })
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

  app.addHook('onRequest', async (_request, reply) => {
    setSecurityHeaders(reply, secure)
  })
  app.setErrorHandler(refuse)
  // The body does not echo the method and path: nothing the caller sent is reflected back.
  app.setNotFoundHandler(async (_request, reply) => {
    metrics.refusals.inc({ code: 'ERR_NOT_FOUND' })
    setSecurityHeaders(reply, secure)
    return reply.status(404).send({ error: { code: 'ERR_NOT_FOUND', message: 'no such route' } })
  })
  app.addHook('onResponse', async (request, reply) => {
    metrics.requests.inc({ route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) })
  })

  options.keyServer.onChange((change) => metrics.changes.inc({ kind: change.kind }))
  registerDeviceRoutes(app, options.keyServer, metrics)
  registerAdminRoutes(app, options.keyServer, metrics)
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
  // The policy format, for editors and `$schema` (docs/policy.md).
  app.get('/policy.schema.json', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('application/schema+json').send(POLICY_SCHEMA),
  )
  return app
}

/**
 * On every response: HSTS (HTTPS only: browsers ignore it over HTTP), no MIME sniffing, and no
 * caching — API answers carry enrollment tokens, key bundles and admin data, so no-store applies
 * to all of them rather than to a list that could miss one.
 */
function securityHeaders(secure: boolean): Record<string, string> {
  return {
    ...(secure ? { 'strict-transport-security': 'max-age=31536000' } : {}),
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
  }
}

function setSecurityHeaders(reply: FastifyReply, secure: boolean): void {
  reply.headers(securityHeaders(secure))
}

/** Fastify's request log fields, with the path only (no query string). */
function serializeRequest(request: FastifyRequest): Record<string, unknown> {
  return {
    method: request.method,
    url: request.url.split('?')[0],
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
  }
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
