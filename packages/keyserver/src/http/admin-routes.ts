import type { FastifyInstance } from 'fastify'
import type { KeyServer } from '../service/key-server.js'
import { explainPrincipal } from '../service/policy-review.js'
import { principalContext } from '../service/policy-state.js'
import type { PrincipalRecord } from '../store/key-store.js'
import type { KeyServerMetrics } from './metrics.js'
import {
  auditQuerySchema,
  errorResponses,
  groupParamsSchema,
  idParamsSchema,
  policyBodySchema,
  principalViewSchema,
  signedDocumentSchema,
  tokenBodySchema,
} from './schemas.js'

function principalView(p: PrincipalRecord) {
  return {
    id: p.id,
    kid: p.kid,
    roles: p.roles,
    status: p.status,
    kem: p.kem,
    signingKey: Buffer.from(p.signingKey).toString('base64url'),
    createdAt: p.createdAt,
    statusChangedAt: p.statusChangedAt ?? null,
    certificateSerial: p.certificateSerial ?? null,
  }
}

/** The operator's API: bearer token, every call audited by the service. */
export function registerAdminRoutes(app: FastifyInstance, keyServer: KeyServer, metrics: KeyServerMetrics): void {
  const admin = { auth: 'admin' as const }
  const security = [{ admin: [] }]
  const tags = ['admin']

  app.post(
    '/v1/admin/enrollment-tokens',
    {
      config: admin,
      schema: {
        tags,
        security,
        body: tokenBodySchema,
        response: {
          201: { type: 'object', properties: { token: { type: 'string' }, expiresAt: { type: 'integer' } } },
          ...errorResponses,
        },
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(
          await keyServer.createEnrollmentToken(
            request.body as { principalId: string; roles: string[]; ttlSeconds?: number },
            'admin',
          ),
        ),
  )

  app.get(
    '/v1/admin/principals',
    {
      config: admin,
      schema: {
        tags,
        security,
        response: {
          200: { type: 'object', properties: { principals: { type: 'array', items: principalViewSchema } } },
          ...errorResponses,
        },
      },
    },
    async () => ({ principals: (await keyServer.listPrincipals()).map(principalView) }),
  )

  app.get(
    '/v1/admin/principals/:id',
    {
      config: admin,
      schema: { tags, security, params: idParamsSchema, response: { 200: principalViewSchema, ...errorResponses } },
    },
    async (request) => principalView(await keyServer.getPrincipal((request.params as { id: string }).id)),
  )

  app.post(
    '/v1/admin/principals/:id/disable',
    {
      config: admin,
      schema: { tags, security, params: idParamsSchema, response: { 204: { type: 'null' }, ...errorResponses } },
    },
    async (request, reply) => {
      await keyServer.disablePrincipal((request.params as { id: string }).id, 'admin')
      return reply.status(204).send()
    },
  )

  app.post(
    '/v1/admin/principals/:id/revoke',
    {
      config: admin,
      schema: {
        tags,
        security,
        params: idParamsSchema,
        description: 'Revokes: new signed revocation list, readable groups re-keyed, brokers told.',
        response: { 200: { type: 'object', properties: { revocations: signedDocumentSchema } }, ...errorResponses },
      },
    },
    async (request) => ({
      revocations: await keyServer.revokePrincipal((request.params as { id: string }).id, 'admin'),
    }),
  )

  app.get(
    '/v1/admin/principals/:id/explain',
    {
      config: admin,
      schema: {
        tags,
        security,
        params: idParamsSchema,
        description:
          "What the principal may publish and subscribe under the current policy and which rule says so, the key groups it reads and writes, the plaintext filters it may use, and the policy's warnings about it (see docs/policy.md).",
        response: { 200: { type: 'object', additionalProperties: true }, ...errorResponses },
      },
    },
    async (request) => {
      const principal = await keyServer.getPrincipal((request.params as { id: string }).id)
      return {
        status: principal.status,
        policyVersion: keyServer.policy.version,
        ...explainPrincipal(keyServer.policy.evaluator, principalContext(principal)),
      }
    },
  )

  app.get(
    '/v1/admin/policy',
    {
      config: admin,
      schema: {
        tags,
        security,
        response: {
          200: {
            type: 'object',
            properties: { version: { type: 'integer' }, policy: { type: 'object', additionalProperties: true } },
          },
          ...errorResponses,
        },
      },
    },
    async () => ({ version: keyServer.policy.version, policy: keyServer.policy.policy }),
  )

  app.put(
    '/v1/admin/policy',
    {
      config: admin,
      schema: {
        tags,
        security,
        body: policyBodySchema,
        response: {
          200: {
            type: 'object',
            properties: { version: { type: 'integer' }, warnings: { type: 'array', items: { type: 'string' } } },
          },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const body = request.body as { policy: unknown; expectedVersion?: number }
      return keyServer.setPolicy(body.policy, 'admin', body.expectedVersion)
    },
  )

  app.post(
    '/v1/admin/groups/:group/rotate',
    {
      config: admin,
      schema: {
        tags,
        security,
        params: groupParamsSchema,
        response: {
          200: {
            type: 'object',
            properties: { group: { type: 'integer' }, epoch: { type: 'integer' }, activatesAt: { type: 'integer' } },
          },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const group = Number((request.params as { group: string }).group)
      const epoch = await keyServer.rotateGroup(group, { immediate: false, actor: 'admin', reason: 'on demand' })
      return { group, epoch: epoch.epoch, activatesAt: epoch.activatesAt }
    },
  )

  app.get(
    '/v1/admin/audit',
    {
      config: admin,
      schema: {
        tags,
        security,
        querystring: auditQuerySchema,
        response: {
          200: {
            type: 'object',
            properties: { entries: { type: 'array', items: { type: 'object', additionalProperties: true } } },
          },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const query = request.query as { afterId?: string; limit?: string }
      const limit = Math.min(Number(query.limit ?? 100), 1000)
      return { entries: await keyServer.audit.list({ afterId: Number(query.afterId ?? 0), limit }) }
    },
  )

  app.get('/metrics', { config: admin, schema: { hide: true } }, async (_request, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  )
}
