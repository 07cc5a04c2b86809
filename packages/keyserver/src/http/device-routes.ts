import { MAX_RECORD_WRITERS, SmqttError, SNAPSHOT_ACCEPT_DELTA_HEADER, SNAPSHOT_NOTICE_HEADER } from '@smqtt/core'
import type { FastifyInstance } from 'fastify'
import type { EnrollmentRequest, KeyServer } from '../service/key-server.js'
import type { KeyServerMetrics } from './metrics.js'
import { enrollBodySchema, errorResponses, signedDocumentSchema } from './schemas.js'

/** The most sequence numbers one `POST /v1/sequence` reserves. */
export const MAX_SEQUENCE_RANGE = 65_536

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

  app.get(
    '/v1/crl',
    {
      schema: {
        tags: ['public'],
        description:
          'The deployment CA’s certificate revocation list (DER, RFC 5280): the client certificates of revoked principals, and of disabled ones on hold. For brokers other than SMQTT’s, which check certificates only; SMQTT’s broker refuses such principals by their status. nextUpdate is 7 days after issue; re-issued at least every minute and after each change. 404 when the key server has no CA.',
        response: {
          200: {
            description: 'The CRL, DER',
            content: { 'application/pkix-crl': { schema: { type: 'string', format: 'binary' } } },
          },
          ...errorResponses,
        },
      },
    },
    async (_request, reply) => {
      const der = await keyServer.certificateRevocationList()
      if (!der) throw new SmqttError('ERR_NOT_FOUND', 'this key server has no CA, so no CRL')
      return reply.type('application/pkix-crl').send(Buffer.from(der))
    },
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
        description:
          'The caller’s signed key bundle, and its tag as `GET /v1/freshness` reports it (taken before the bundle: a change in between only makes the next poll fetch once more).',
        response: {
          200: { type: 'object', properties: { bundle: signedDocumentSchema, tag: { type: 'string' } } },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const stop = metrics.bundleSeconds.startTimer()
      try {
        return await keyServer.bundleWithTag(request.principal as NonNullable<typeof request.principal>)
      } finally {
        stop()
      }
    },
  )

  app.post(
    '/v1/writers',
    {
      config: device,
      schema: {
        tags: ['device'],
        security,
        description:
          'Signed records of writers of a key group the caller holds the key of, by envelope key id: for the writers its bundle does not list (a bundle lists at most `bundleInlineWriters` per group). Each entry is what a bundle would carry (principal, Ed25519 key, publish rights within the group); the record is bound to the caller, the group and its filter, and valid for a few minutes. Ids that are not writers of the group (never enrolled, revoked, without publish rights there) are left out.',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['group', 'kids'],
          properties: {
            group: { type: 'integer', minimum: 0, maximum: 0xffff_ffff },
            kids: {
              type: 'array',
              minItems: 1,
              maxItems: MAX_RECORD_WRITERS,
              items: { type: 'integer', minimum: 0, maximum: 0xffff_ffff },
            },
          },
        },
        response: { 200: { type: 'object', properties: { record: signedDocumentSchema } }, ...errorResponses },
      },
    },
    async (request) => {
      const { group, kids } = request.body as { group: number; kids: number[] }
      return {
        record: await keyServer.writerRecordFor(
          request.principal as NonNullable<typeof request.principal>,
          group,
          kids,
        ),
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

  // ---- freshness: what bounds revocation even when a broker drops every push ----
  app.get(
    '/v1/freshness',
    {
      config: device,
      schema: {
        tags: ['device'],
        security,
        description:
          'What the caller polls (every 30 s by default) to learn that its revocation list or its key bundle changed: the revocation list’s version (0 when none) and the tag of the bundle it would get now, with an `ETag` made of both. `If-None-Match` with the current ETag is answered `304` with no body.',
        headers: {
          type: 'object',
          properties: { 'if-none-match': { type: 'string', maxLength: 256 } },
        },
        response: {
          200: {
            type: 'object',
            required: ['revocations', 'bundle'],
            properties: { revocations: { type: 'integer', minimum: 0 }, bundle: { type: 'string' } },
          },
          304: { description: 'Nothing changed since the ETag sent in If-None-Match.', type: 'null' },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const freshness = await keyServer.freshnessFor(request.principal as NonNullable<typeof request.principal>)
      const etag = `"${freshness.revocations}.${freshness.bundle}"`
      // Per principal and short-lived: no shared cache may keep it, and every use revalidates.
      reply.header('etag', etag).header('cache-control', 'private, no-cache')
      if (matchesEtag(request.headers['if-none-match'], etag)) return reply.code(304).send()
      return freshness
    },
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

  app.post(
    '/v1/sequence',
    {
      config: device,
      schema: {
        tags: ['device'],
        security,
        description:
          'Reserves the caller’s next range of envelope sequence numbers, above `atLeast` and above every range reserved for it before: each run of a device seals only with numbers no other run (or restored copy) was given.',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['atLeast', 'size'],
          properties: {
            atLeast: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
            // Bounded so a device cannot burn its own number space (and envelope bytes) in a few calls.
            size: { type: 'integer', minimum: 1, maximum: MAX_SEQUENCE_RANGE },
          },
        },
        response: {
          200: { type: 'object', properties: { start: { type: 'integer' }, end: { type: 'integer' } } },
          ...errorResponses,
        },
      },
    },
    async (request) =>
      keyServer.reserveSequence(
        request.principal as NonNullable<typeof request.principal>,
        (request.body as { atLeast: number }).atLeast,
        (request.body as { size: number }).size,
      ),
  )

  app.get(
    '/v1/broker/snapshot',
    {
      config: device,
      schema: {
        tags: ['broker'],
        security,
        description:
          "The signed broker snapshot: policy, directory, live epochs. Principals with the broker role only. Its `ETag` is a digest of the content (not of its issuedAt), also signed into the snapshot as `tag`: `If-None-Match` with it is answered `304` with no body while the content is unchanged, and with a signed notice (`{ issuedAt, tag }`, the document as JSON) in the `Smqtt-Snapshot-Notice` header, so a broker's snapshot is vouched current by the key server's signature without fetching it again. A broker that sends `Smqtt-Accept-Delta: 1` and names a recent content is answered `{ delta }` (what changed since, signed) while the change is small.",
        response: {
          200: {
            description:
              'The snapshot; or, to a broker that sent `Smqtt-Accept-Delta: 1` with the ETag of a recent content in If-None-Match, a signed delta from that content, while small.',
            type: 'object',
            properties: { snapshot: signedDocumentSchema, delta: signedDocumentSchema },
          },
          304: {
            description:
              'The content is the one the ETag sent in If-None-Match names; `Smqtt-Snapshot-Notice` vouches for it, signed.',
            type: 'null',
          },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      if (!request.principal?.roles.includes(BROKER_ROLE))
        throw new SmqttError('ERR_FORBIDDEN', `only principals with the ${BROKER_ROLE} role may read the snapshot`)
      const header = request.headers['if-none-match']
      const known =
        typeof header === 'string' ? /^(?:W\/)?"([A-Za-z0-9_-]{1,64})"$/.exec(header.trim())?.[1] : undefined
      const deltas = request.headers[SNAPSHOT_ACCEPT_DELTA_HEADER] === '1'
      const answer = await keyServer.brokerSnapshotUnless(known, { deltas })
      reply.header('etag', `"${answer.tag}"`).header('cache-control', 'private, no-cache')
      if ('notice' in answer)
        return reply.code(304).header(SNAPSHOT_NOTICE_HEADER, JSON.stringify(answer.notice)).send()
      return 'delta' in answer ? { delta: answer.delta } : { snapshot: answer.snapshot }
    },
  )
}

/** Whether an `If-None-Match` header (a list of entity tags, or `*`) names `etag`; weak tags compare too. */
function matchesEtag(header: string | string[] | undefined, etag: string): boolean {
  if (typeof header !== 'string') return false
  return header.split(',').some((candidate) => {
    const tag = candidate.trim()
    return tag === '*' || tag === etag || tag === `W/${etag}`
  })
}

/** The role that lets a principal (a broker node) read the broker snapshot. */
export const BROKER_ROLE = 'broker'
