// JSON schemas shared by the routes: they validate requests (unknown fields refused) and
// describe the API in the OpenAPI document served at /openapi.json.

export const signedDocumentSchema = {
  type: 'object',
  required: ['payload', 'signature'],
  additionalProperties: false,
  properties: { payload: { type: 'string', maxLength: 1_500_000 }, signature: { type: 'string', maxLength: 128 } },
} as const

export const errorSchema = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
} as const

export const errorResponses = { '4xx': errorSchema, '5xx': errorSchema } as const

const b64url = { type: 'string', pattern: '^[A-Za-z0-9_-]*$', maxLength: 4096 } as const
const role = { type: 'string', minLength: 1, maxLength: 64 } as const
const principalId = { type: 'string', minLength: 1, maxLength: 128 } as const

export const publicIdentitySchema = {
  type: 'object',
  required: ['type', 'v', 'id', 'kem', 'signingKey', 'agreementKey'],
  additionalProperties: false,
  properties: {
    type: { const: 'smqtt.public-identity' },
    v: { const: 1 },
    id: principalId,
    kem: { enum: ['x25519', 'xwing'] },
    signingKey: b64url,
    agreementKey: b64url,
  },
} as const

export const enrollBodySchema = {
  type: 'object',
  required: ['token', 'identity', 'proof'],
  additionalProperties: false,
  properties: {
    token: { type: 'string', minLength: 1, maxLength: 256 },
    identity: publicIdentitySchema,
    proof: b64url,
    roles: { type: 'array', items: role, maxItems: 64 },
    tlsPublicKey: b64url,
  },
} as const

export const principalViewSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    kid: { type: 'integer' },
    roles: { type: 'array', items: { type: 'string' } },
    status: { enum: ['active', 'disabled', 'revoked'] },
    kem: { type: 'string' },
    signingKey: { type: 'string' },
    createdAt: { type: 'integer' },
    statusChangedAt: { type: ['integer', 'null'] },
    certificateSerial: { type: ['string', 'null'] },
  },
} as const

export const tokenBodySchema = {
  type: 'object',
  required: ['principalId', 'roles'],
  additionalProperties: false,
  properties: {
    principalId,
    roles: { type: 'array', items: role, maxItems: 64 },
    ttlSeconds: { type: 'integer', minimum: 1, maximum: 2_592_000 },
  },
} as const

export const policyBodySchema = {
  type: 'object',
  required: ['policy'],
  additionalProperties: false,
  // The policy itself is validated by parsePolicy, which names the exact path of a problem.
  properties: { policy: { type: 'object' }, expectedVersion: { type: 'integer', minimum: 0 } },
} as const

export const idParamsSchema = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: { id: { type: 'string', minLength: 1, maxLength: 128 } },
} as const

export const groupParamsSchema = {
  type: 'object',
  required: ['group'],
  additionalProperties: false,
  properties: { group: { type: 'string', pattern: '^[0-9]{1,10}$' } },
} as const

export const auditQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    afterId: { type: 'string', pattern: '^[0-9]{1,15}$' },
    limit: { type: 'string', pattern: '^[0-9]{1,4}$' },
  },
} as const
