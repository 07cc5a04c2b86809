import { SmqttError } from '@smqtt/core'
import type { FastifyInstance } from 'fastify'
import type { EnrollmentRequest, KeyServer } from '../service/key-server.js'
import type { KeyServerMetrics } from './metrics.js'
import { enrollBodySchema, errorResponses, signedDocumentSchema } from './schemas.js'

/** Routes for enrolled principals (signed requests) and the public ones a device needs first. */
export function registerDeviceRoutes(app: FastifyInstance, keyServer: KeyServer, metrics: KeyServerMetrics): void {
  app.get(
    '/v1/health',
    { schema: { tags: ['public'], response: { 200: { type: 'object', properties: { status: { type: 'string' } } } } } },
    async () => ({ status: 'ok' }),
  )

  app.get(
    '/v1/keyserver',
    {
      schema: {
        tags: ['public'],
        description: "The key server's Ed25519 public key (pin it at enrollment).",
        response: { 200: { type: 'object', properties: { publicKey: { type: 'string' } } } },
      },
    },
    async () => ({ publicKey: Buffer.from(keyServer.publicKey).toString('base64url') }),
  )

  app.post(
    '/v1/enroll',
    {
      schema: {
        tags: ['device'],
        description: 'Redeems a one-time enrollment token with proof of possession of the device key.',
        body: enrollBodySchema,
        response: {
          200: {
            type: 'object',
            properties: {
              principal: signedDocumentSchema,
              kid: { type: 'integer' },
              keyServerPublicKey: { type: 'string' },
              certificatePem: { type: 'string' },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (request) => keyServer.enroll(request.body as EnrollmentRequest, request.ip),
  )

  const device = { auth: 'device' as const }
  const security = [{ device: [] }]

  app.get(
    '/v1/bundle',
    {
      config: device,
      schema: {
        tags: ['device'],
        security,
        description: 'The caller’s signed key bundle.',
        response: { 200: { type: 'object', properties: { bundle: signedDocumentSchema } }, ...errorResponses },
      },
    },
    async (request) => {
      const stop = metrics.bundleSeconds.startTimer()
      try {
        return { bundle: await keyServer.bundleFor(request.principal as NonNullable<typeof request.principal>) }
      } finally {
        stop()
      }
    },
  )

  app.get(
    '/v1/revocations',
    {
      config: device,
      schema: {
        tags: ['device'],
        security,
        response: {
          200: { type: 'object', properties: { revocations: { anyOf: [signedDocumentSchema, { type: 'null' }] } } },
          ...errorResponses,
        },
      },
    },
    async () => ({ revocations: (await keyServer.revocationList()) ?? null }),
  )

  app.get(
    '/v1/principal',
    {
      config: device,
      schema: {
        tags: ['device'],
        security,
        description: 'The caller’s own signed principal record.',
        response: { 200: { type: 'object', properties: { principal: signedDocumentSchema } }, ...errorResponses },
      },
    },
    async (request) => ({
      principal: keyServer.signedPrincipalRecord(request.principal as NonNullable<typeof request.principal>),
    }),
  )

  app.get(
    '/v1/broker/snapshot',
    {
      config: device,
      schema: {
        tags: ['broker'],
        security,
        description:
          'The signed broker snapshot: policy, directory, live epochs. Principals with the broker role only.',
        response: { 200: { type: 'object', properties: { snapshot: signedDocumentSchema } }, ...errorResponses },
      },
    },
    async (request) => {
      if (!request.principal?.roles.includes(BROKER_ROLE))
        throw new SmqttError('ERR_FORBIDDEN', `only principals with the ${BROKER_ROLE} role may read the snapshot`)
      return { snapshot: await keyServer.brokerSnapshot() }
    },
  )
}

/** The role that lets a principal (a broker node) read the broker snapshot. */
export const BROKER_ROLE = 'broker'
