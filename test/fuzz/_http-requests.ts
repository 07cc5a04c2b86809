// Hostile HTTPS requests for every route of the key server (fast-check generators), and the
// campaign that sends them to the real key server from startHarness() and judges each answer:
// a 4xx with a typed `{ error: { code } }` body from ERROR_CODES, never a 5xx, never a hang, a
// 2xx only where the request was authorized. Used by keyserver-http.test.ts (short, CI) and
// keyserver-http.fuzz.ts (long).
import { request as httpsRequest } from 'node:https'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createEnrollmentRequest, ERROR_CODES, generateIdentity, type Identity, signRequest } from '@smqtt/core'
import { ADMIN_TOKEN, type Harness, SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import fc from 'fast-check'
import { memoryTable } from './_campaign.js'

/** The enrolled principal that signs the device requests; generated ids never name it. */
/**
 * The key server's request budgets lifted, as the MQTT fuzzer lifts the broker's rate limits, so
 * that every hostile request reaches the parsers and handlers rather than a 429 (the budgets have
 * attack tests of their own in test/attacks/keyserver-abuse.test.ts).
 */
export const FUZZ_SETTINGS = {
  principalRequestsPerSecond: 100_000,
  principalRequestBurst: 100_000,
  failedAuthPerAddressPerMinute: 100_000,
} as const

export const FUZZ_DEVICE = 'fuzz-device'

/** How a request authenticates: the sender signs `signed` and `stale-signature` at send time. */
export type Auth = 'none' | 'garbage-signature' | 'signed' | 'stale-signature' | 'admin' | 'garbage-token'

export interface HostileRequest {
  /** The row of the report: the route aimed at (`random path`, `wrong method` for the rest). */
  readonly route: string
  readonly method: string
  /** Path and query exactly as sent. */
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array | undefined
  readonly auth: Auth
}

// ---- bodies -------------------------------------------------------------------------------

const BODY_LIMIT = 65_536
const EDGE_NUMBERS = [0, -0, 1, -1, 2 ** 31, -(2 ** 31), 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e308, -1e308, 5e-324, 0.5]
/** Texts JSON.stringify never writes: bad literals, lone surrogates, BOM, huge exponents. */
const RAW_DOCUMENTS = [
  '',
  ' ',
  'null',
  'true',
  '0',
  '"x"',
  '[]',
  '{}',
  '1e999999',
  '-1e999999',
  '[1e-400]',
  'NaN',
  '{"a":Infinity}',
  '{"a":undefined}',
  '"\\ud800"',
  '{"\\ud800":1}',
  '\ufeff{}',
  '{"a":1,}',
  "{'a':1}",
  '{"a" 1}',
  '[1,2',
  '{"a":"\\u00"}',
  '\u0000',
  '{"__proto__":{"polluted":"yes"}}',
  '{"constructor":{"prototype":{"polluted":"yes"}}}',
  '[{"__proto__":{"polluted":"yes"}}]',
  '{"policy":{"__proto__":{"polluted":"yes"}}}',
  '{"policy":{"constructor":{"prototype":{"polluted":"yes"}}}}',
]

const enrollTemplate = (() => {
  const identity = generateIdentity('fuzz-template')
  return { ...createEnrollmentRequest(identity, 'A'.repeat(43), { roles: ['thermostat'] }) } as Record<string, unknown>
})()
const tokenTemplate = { principalId: 'fuzz-new', roles: ['thermostat'], ttlSeconds: 600 }
const policyTemplate = { policy: SMART_HOME_POLICY, expectedVersion: 1 }

const anyJson = fc.jsonValue({ maxDepth: 4 })
const hugeString = fc.integer({ min: 1_000, max: 120_000 }).map((n) => 'A'.repeat(n))
/** Nested arrays or objects as text (deeper than JSON.stringify could write back: its recursion is bounded). */
const deeplyNested = (maxDepth: number) =>
  fc
    .tuple(fc.integer({ min: 10, max: maxDepth }), fc.boolean())
    .map(([depth, arrays]) =>
      arrays ? '['.repeat(depth) + ']'.repeat(depth) : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
    )
const oddKey = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('constructor', 'prototype', 'toString', ''))
const fieldValue = fc.oneof(
  anyJson,
  hugeString,
  fc.constantFrom(...EDGE_NUMBERS),
  deeplyNested(2_000).map((text) => JSON.parse(text) as unknown),
)

function withField(object: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const copy = { ...object }
  Object.defineProperty(copy, key, { value, enumerable: true, writable: true, configurable: true })
  return copy
}

/** A valid body with one field (or a field of a nested object) removed, added or retyped. */
function mutated(template: Record<string, unknown>): fc.Arbitrary<Record<string, unknown>> {
  const keys = Object.keys(template)
  if (keys.length === 0) return fc.tuple(oddKey, fieldValue).map(([key, value]) => withField(template, key, value))
  const nested = keys.filter((key) => typeof template[key] === 'object' && template[key] !== null)
  const field = fc.constantFrom(...keys)
  const mutation: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
    fc.constant(template),
    field.map((key) => {
      const { [key]: _, ...rest } = template
      return rest
    }),
    fc.tuple(oddKey, fieldValue).map(([key, value]) => withField(template, key, value)),
    fc.tuple(field, fieldValue).map(([key, value]) => withField(template, key, value)),
  )
  if (nested.length === 0) return mutation
  return fc.oneof(
    { weight: 3, arbitrary: mutation },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(...nested)
        .chain((key) =>
          mutated(template[key] as Record<string, unknown>).map((inner) => withField(template, key, inner)),
        ),
    },
  )
}

const fraction = fc.double({ min: 0, max: 1, noNaN: true })

/** What is done to the JSON text on its way to bytes. */
const encoding: fc.Arbitrary<(text: string) => Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: fc.constant((text: string) => Buffer.from(text, 'utf8')) },
  {
    weight: 1,
    arbitrary: fraction.map((at) => (text: string) => Buffer.from(text.slice(0, Math.floor(text.length * at)))),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fraction, fc.constantFrom([0xff], [0xc3], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc0, 0xaf]))
      .map(([at, bad]) => (text: string) => {
        const bytes = Buffer.from(text, 'utf8')
        const cut = Math.floor(bytes.length * at)
        return Buffer.concat([bytes.subarray(0, cut), Buffer.from(bad), bytes.subarray(cut)])
      }),
  },
  {
    // A duplicate key (the first field again, with another value) or a prototype key, first in the object.
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('duplicate', '__proto__', 'constructor'), anyJson)
      .map(([kind, value]) => (text: string) => {
        if (!text.startsWith('{')) return Buffer.from(text)
        const first = /^\{"((?:[^"\\]|\\.)*)"/.exec(text)?.[1]
        const injected =
          kind === 'duplicate'
            ? `"${first ?? 'a'}":${JSON.stringify(value)}`
            : kind === '__proto__'
              ? '"__proto__":{"polluted":"yes"}'
              : '"constructor":{"prototype":{"polluted":"yes"}}'
        return Buffer.from(`{${injected}${text === '{}' ? '}' : `,${text.slice(1)}`}`)
      }),
  },
)

function hostileBody(template: Record<string, unknown> | undefined): fc.Arbitrary<Uint8Array> {
  const texts = fc.oneof(
    ...(template ? [{ weight: 6, arbitrary: mutated(template).map((body) => JSON.stringify(body)) }] : []),
    { weight: 2, arbitrary: anyJson.map((value) => JSON.stringify(value)) },
    { weight: 2, arbitrary: fc.constantFrom(...RAW_DOCUMENTS) },
    { weight: 1, arbitrary: deeplyNested(30_000) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: BODY_LIMIT - 16, max: 4 * BODY_LIMIT }).map((n) => `{"a":"${'x'.repeat(n)}"}`),
    },
  )
  return fc.tuple(texts, encoding).map(([text, encode]) => encode(text))
}

const CONTENT_TYPES = [
  'application/json; charset=utf-8',
  'application/JSON',
  'application/json; charset=utf-16',
  'application/jsonx',
  'application/json, text/plain',
  'text/plain',
  'text/json',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  '',
]
const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant<string | undefined>('application/json') },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.constantFrom(...CONTENT_TYPES) },
)

// ---- paths, query strings, credentials ------------------------------------------------------

/** Characters Node lets through in a header value. */
const headerText = fc.string({
  unit: fc
    .oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }))
    .map((c) => String.fromCharCode(c)),
  maxLength: 200,
})
/** Characters Node lets through in a request path (raw latin-1 included), or percent-encoded unicode. */
const pathText = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0x21, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => encodeURIComponent(s)),
  fc.constantFrom('..', '.', '%2e%2e', '%2f', '%00', '%zz', '%', '%c0%af', '%ed%a0%80', '~', '*'),
  fc.integer({ min: 129, max: 4_000 }).map((n) => 'x'.repeat(n)),
)
const principalIdParam = pathText.filter((id) => id !== FUZZ_DEVICE && id !== '')
const groupParam = fc.oneof(
  fc.constantFrom('0', '1', '2', '3', '-1', '1e3', '0x1', '9999999999', '99999999999', '00000000001', ' 1'),
  pathText.filter((text) => text !== ''),
)
const queryString = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '?',
      '?afterId=1&limit=5',
      '?limit=99999',
      '?limit=0',
      '?afterId=-1',
      '?afterId=1e3',
      '?afterId=999999999999999',
      '?limit=1&limit=2',
      '?limit[]=1',
      '?unknown=1',
      '?__proto__[polluted]=yes',
      '?constructor[prototype][polluted]=yes',
      '?__proto__.polluted=yes',
      '?%zz',
      '?a=%ff%fe',
      '#fragment',
    ),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.tuple(pathText, pathText), { maxLength: 6 })
      .map((pairs) => `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`),
  },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 12_000 }).map((n) => `?limit=${'9'.repeat(n)}`) },
)

const base64url = (bytes: number) =>
  fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString('base64url'))
const maybe = (text: fc.Arbitrary<string>) => fc.option(text, { nil: undefined, freq: 4 })
/** Signature headers that look right, are half right, or are noise. */
const garbageSignature = fc
  .record({
    'smqtt-principal': maybe(fc.oneof(fc.constant(FUZZ_DEVICE), fc.constant('nobody'), headerText)),
    'smqtt-timestamp': maybe(
      fc.oneof(fc.nat().map(String), fc.constantFrom('-1', '1e9', '9999999999999', ''), headerText),
    ),
    'smqtt-nonce': maybe(fc.oneof(base64url(16), base64url(15), headerText)),
    'smqtt-signature': maybe(fc.oneof(base64url(64), base64url(63), headerText)),
  })
  .map(
    (headers) =>
      Object.fromEntries(Object.entries(headers).filter(([, value]) => value !== undefined)) as Record<string, string>,
  )
const garbageToken = fc
  .oneof(
    headerText.map((token) => `Bearer ${token}`),
    fc.constantFrom(
      ADMIN_TOKEN,
      `bearer ${ADMIN_TOKEN}`,
      `Bearer ${ADMIN_TOKEN}x`,
      `Bearer ${ADMIN_TOKEN.slice(0, -1)}`,
      `Bearer  ${ADMIN_TOKEN}`,
      `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}`,
      'Bearer ',
      '',
    ),
    headerText,
  )
  .map((authorization) => ({ authorization }))

const credentials = (auth: Auth): fc.Arbitrary<Record<string, string>> =>
  auth === 'garbage-signature'
    ? garbageSignature
    : auth === 'garbage-token'
      ? garbageToken
      : fc.constant(auth === 'admin' ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {})

// ---- routes -------------------------------------------------------------------------------

interface Route {
  readonly method: string
  readonly template: string
  readonly path: fc.Arbitrary<string>
  readonly body?: Record<string, unknown>
  readonly auths: readonly Auth[]
}

const fixed = (path: string) => fc.constant(path)
const PUBLIC: readonly Auth[] = ['none', 'none', 'garbage-signature', 'garbage-token']
const DEVICE: readonly Auth[] = ['signed', 'signed', 'none', 'garbage-signature', 'stale-signature']
const ADMIN: readonly Auth[] = ['admin', 'admin', 'none', 'garbage-token', 'garbage-signature']

/** Every route of the key server (as listed by /openapi.json, plus /metrics, /openapi.json and /policy.schema.json). */
export const ROUTES: readonly Route[] = [
  { method: 'GET', template: '/v1/health', path: fixed('/v1/health'), auths: PUBLIC },
  { method: 'GET', template: '/v1/keyserver', path: fixed('/v1/keyserver'), auths: PUBLIC },
  { method: 'GET', template: '/v1/crl', path: fixed('/v1/crl'), auths: PUBLIC },
  { method: 'GET', template: '/openapi.json', path: fixed('/openapi.json'), auths: PUBLIC },
  { method: 'GET', template: '/policy.schema.json', path: fixed('/policy.schema.json'), auths: PUBLIC },
  { method: 'POST', template: '/v1/enroll', path: fixed('/v1/enroll'), body: enrollTemplate, auths: PUBLIC },
  { method: 'GET', template: '/v1/bundle', path: fixed('/v1/bundle'), auths: DEVICE },
  { method: 'GET', template: '/v1/revocations', path: fixed('/v1/revocations'), auths: DEVICE },
  { method: 'GET', template: '/v1/freshness', path: fixed('/v1/freshness'), auths: DEVICE },
  { method: 'GET', template: '/v1/principal', path: fixed('/v1/principal'), auths: DEVICE },
  { method: 'GET', template: '/v1/broker/snapshot', path: fixed('/v1/broker/snapshot'), auths: DEVICE },
  {
    method: 'POST',
    template: '/v1/admin/enrollment-tokens',
    path: fixed('/v1/admin/enrollment-tokens'),
    body: tokenTemplate,
    auths: ADMIN,
  },
  { method: 'GET', template: '/v1/admin/principals', path: fixed('/v1/admin/principals'), auths: ADMIN },
  {
    method: 'GET',
    template: '/v1/admin/principals/:id',
    path: principalIdParam.map((id) => `/v1/admin/principals/${id}`),
    auths: ADMIN,
  },
  {
    method: 'POST',
    template: '/v1/admin/principals/:id/disable',
    path: principalIdParam.map((id) => `/v1/admin/principals/${id}/disable`),
    auths: ADMIN,
  },
  {
    method: 'POST',
    template: '/v1/admin/principals/:id/revoke',
    path: principalIdParam.map((id) => `/v1/admin/principals/${id}/revoke`),
    auths: ADMIN,
  },
  {
    method: 'GET',
    template: '/v1/admin/principals/:id/explain',
    path: principalIdParam.map((id) => `/v1/admin/principals/${id}/explain`),
    auths: ADMIN,
  },
  { method: 'GET', template: '/v1/admin/policy', path: fixed('/v1/admin/policy'), auths: ADMIN },
  { method: 'PUT', template: '/v1/admin/policy', path: fixed('/v1/admin/policy'), body: policyTemplate, auths: ADMIN },
  {
    method: 'POST',
    template: '/v1/admin/groups/:group/rotate',
    path: groupParam.map((group) => `/v1/admin/groups/${group}/rotate`),
    auths: ADMIN,
  },
  { method: 'GET', template: '/v1/admin/audit', path: fixed('/v1/admin/audit'), auths: ADMIN },
  { method: 'GET', template: '/metrics', path: fixed('/metrics'), auths: ADMIN },
]

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'PROPFIND', 'TRACE', 'FOO']
const ALL_AUTHS: readonly Auth[] = ['none', 'garbage-signature', 'signed', 'admin', 'garbage-token']

function routeRequest(route: Route): fc.Arbitrary<HostileRequest> {
  const withBody = route.body !== undefined
  return fc
    .record({
      path: route.path,
      query: queryString,
      auth: fc.constantFrom(...route.auths),
      // Bodies on GET too: a signature covers the raw body, whatever the method.
      body: withBody ? hostileBody(route.body) : fc.option(hostileBody(undefined), { nil: undefined, freq: 5 }),
      contentType,
    })
    .chain((r) =>
      credentials(r.auth).map((auth) => ({
        route: `${route.method} ${route.template}`,
        method: route.method,
        path: r.path + r.query,
        headers: {
          ...auth,
          ...(r.body !== undefined && r.contentType !== undefined ? { 'content-type': r.contentType } : {}),
        },
        body: r.body,
        auth: r.auth,
      })),
    )
}

const randomPath = fc
  .array(
    fc.oneof(fc.constantFrom('v1', 'admin', 'principals', 'bundle', 'enroll', 'openapi.json', 'metrics', ''), pathText),
    {
      maxLength: 6,
    },
  )
  .map((segments) => `/${segments.join('/')}`)

/** A route's path with another method, or any path with any method. */
const strayRequest: fc.Arbitrary<HostileRequest> = fc
  .record({
    label: fc.constantFrom('random path', 'wrong method'),
    route: fc.constantFrom(...ROUTES),
    randomPath,
    method: fc.constantFrom(...METHODS),
    auth: fc.constantFrom(...ALL_AUTHS),
    body: fc.option(hostileBody(undefined), { nil: undefined, freq: 2 }),
  })
  .chain((r) =>
    fc
      .tuple(r.label === 'random path' ? fc.constant(r.randomPath) : r.route.path, credentials(r.auth))
      .map(([path, auth]) => ({
        route: r.label,
        method: r.method,
        path,
        headers: { ...auth, ...(r.body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: r.body,
        auth: r.auth,
      })),
  )

/** One hostile request: most aim at a real route, the rest at wrong methods and random paths. */
export const hostileRequest: fc.Arbitrary<HostileRequest> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...ROUTES).chain(routeRequest) },
  { weight: 1, arbitrary: strayRequest },
)

// ---- sending and judging ------------------------------------------------------------------

/** Per-request bound: a request without an answer by then is a hang. */
const REQUEST_TIMEOUT_MS = 15_000
/** Paths anyone may read: a 2xx there needs no credentials. */
const PUBLIC_PATHS = new Set(['/v1/health', '/v1/keyserver', '/v1/crl', '/openapi.json', '/policy.schema.json'])

export interface Answer {
  /** HTTP status; 0 when no answer came (hang or connection reset). */
  readonly status: number
  readonly text: string
  readonly failure?: string
  readonly ms: number
}

export interface Target {
  readonly h: Harness
  readonly device: Identity
}

/**
 * Sends a request as is on a connection of its own (so a request that upsets the HTTP parser
 * cannot spoil the next one's answer), signing it first as FUZZ_DEVICE when its auth says so.
 */
export function send(target: Target, request: HostileRequest): Promise<Answer> {
  const body = request.body ?? new Uint8Array(0)
  const now = target.h.clock.now - (request.auth === 'stale-signature' ? 3_600 : 0)
  const signature =
    request.auth === 'signed' || request.auth === 'stale-signature'
      ? signRequest(FUZZ_DEVICE, target.device, { method: request.method, path: request.path, body }, { now })
      : {}
  const started = performance.now()
  return new Promise((resolve) => {
    const done = (answer: Omit<Answer, 'ms'>) => resolve({ ...answer, ms: performance.now() - started })
    const req = httpsRequest(
      `${target.h.url}${request.path}`,
      {
        method: request.method,
        // Explicit length: Node sends a GET body with neither length nor chunking otherwise.
        headers: {
          ...request.headers,
          ...signature,
          ...(request.body === undefined ? {} : { 'content-length': String(request.body.length) }),
        },
        ca: target.h.caPem,
        agent: false,
        timeout: REQUEST_TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => done({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', (err) => done({ status: 0, text: '', failure: `response: ${err.message}` }))
      },
    )
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)))
    req.on('error', (err) => done({ status: 0, text: '', failure: err.message }))
    req.end(request.body === undefined ? undefined : Buffer.from(request.body))
  })
}

/** What is wrong with an answer, or undefined if it is what the key server must answer. */
export function judge(request: HostileRequest, answer: Answer): string | undefined {
  if (answer.failure !== undefined)
    return closedOnUnreadBody(request, answer) ? undefined : `no answer: ${answer.failure}`
  if (answer.status >= 200 && answer.status < 300) {
    const pathname = request.path.split(/[?#]/)[0] ?? ''
    const authorized = request.auth === 'signed' || request.auth === 'admin' || PUBLIC_PATHS.has(pathname)
    return authorized && request.route !== 'POST /v1/enroll' ? undefined : `${answer.status} without authorization`
  }
  if (answer.status < 400 || answer.status >= 500) return `status ${answer.status}: ${answer.text.slice(0, 200)}`
  if (request.method === 'HEAD') return undefined // no body by definition
  const code = errorCode(answer.text)
  return code !== undefined && code in ERROR_CODES
    ? undefined
    : `untyped ${answer.status} body: ${answer.text.slice(0, 200)}`
}

/** Methods whose body Fastify reads; it answers the others (GET, HEAD, TRACE, unknown) without waiting for one. */
const READS_BODY = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

/**
 * HTTP lets a server answer before the whole request body arrived and close the connection; a
 * body it does not read (on a bodyless method, or past the limit) can then reset the connection
 * under the answer. A transport race of the hostile client's making, not a hang.
 */
function closedOnUnreadBody(request: HostileRequest, answer: Answer): boolean {
  const unread = request.body !== undefined && (!READS_BODY.has(request.method) || request.body.length > BODY_LIMIT)
  return unread && !answer.failure?.startsWith('no answer within')
}

/** The `error.code` of an error body, or undefined if the body is not one. */
export function errorCode(text: string): string | undefined {
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } } | null)?.error?.code
    return typeof code === 'string' ? code : undefined
  } catch {
    return undefined
  }
}

// V8's gc, so memory samples measure what is retained rather than garbage not yet collected.
setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

export interface RouteStats {
  requests: number
  readonly statuses: Map<number, number>
  readonly codes: Set<string>
  ms: number
  maxMs: number
}

export interface MemorySample {
  readonly requests: number
  readonly heapUsed: number
  readonly rss: number
}

export interface CampaignReport {
  readonly requests: number
  readonly byRoute: Map<string, RouteStats>
  /** Answers that break the contract, with the request that got them (first 20). */
  readonly problems: readonly string[]
  readonly problemCount: number
  readonly memory: readonly MemorySample[]
  readonly healthChecks: number
  readonly seconds: number
}

/**
 * Sends every batch through `concurrency` parallel requests; after each batch asserts that
 * /v1/health answers 200 and samples memory (after a full gc).
 */
export async function runCampaign(
  target: Target,
  batches: Iterable<readonly HostileRequest[]>,
  options: { readonly concurrency: number; readonly onBatch?: (done: number) => void },
): Promise<CampaignReport> {
  const started = Date.now()
  const byRoute = new Map<string, RouteStats>()
  const problems: string[] = []
  let problemCount = 0
  let requests = 0
  let healthChecks = 0
  const sample = (): MemorySample => {
    collectGarbage()
    const { heapUsed, rss } = process.memoryUsage()
    return { requests, heapUsed, rss }
  }
  const memory: MemorySample[] = [sample()]
  for (const batch of batches) {
    let next = 0
    const worker = async () => {
      while (next < batch.length) {
        const request = batch[next++] as HostileRequest
        const answer = await send(target, request)
        const stats = byRoute.get(request.route) ?? {
          requests: 0,
          statuses: new Map(),
          codes: new Set(),
          ms: 0,
          maxMs: 0,
        }
        stats.requests++
        stats.statuses.set(answer.status, (stats.statuses.get(answer.status) ?? 0) + 1)
        const code = errorCode(answer.text)
        if (code !== undefined) stats.codes.add(code)
        stats.ms += answer.ms
        stats.maxMs = Math.max(stats.maxMs, answer.ms)
        byRoute.set(request.route, stats)
        const problem = judge(request, answer)
        if (problem === undefined) continue
        problemCount++
        if (problems.length < 20) problems.push(`${problem} <- ${describeRequest(request)}`)
      }
    }
    await Promise.all(Array.from({ length: options.concurrency }, worker))
    requests += batch.length
    const health = await target.h.request('GET', '/v1/health')
    if (health.status !== 200) throw new Error(`/v1/health answered ${health.status} after ${requests} requests`)
    healthChecks++
    memory.push(sample())
    options.onBatch?.(requests)
  }
  return { requests, byRoute, problems, problemCount, memory, healthChecks, seconds: (Date.now() - started) / 1000 }
}

/** A request in one line, short enough for a test failure message. */
export function describeRequest(request: HostileRequest): string {
  const body =
    request.body === undefined
      ? ''
      : ` body(${request.body.length}): ${Buffer.from(request.body.subarray(0, 120)).toString('utf8')}`
  return `${request.method} ${request.path.slice(0, 200)} [${request.auth}] ${JSON.stringify(request.headers).slice(0, 200)}${body}`
}

/** The report as markdown: one row per route (requests, statuses, codes, time), then memory. */
export function markdownReport(report: CampaignReport): string {
  const rows = [...report.byRoute].sort(([a], [b]) => a.localeCompare(b))
  const statuses = (stats: RouteStats) =>
    [...stats.statuses]
      .sort(([a], [b]) => a - b)
      .map(([status, n]) => `${status === 0 ? 'reset' : status}×${n}`)
      .join(', ')
  return [
    '| route | requests | statuses | codes seen | mean ms | max ms |',
    '| --- | ---: | --- | --- | ---: | ---: |',
    ...rows.map(
      ([route, s]) =>
        `| ${route} | ${s.requests} | ${statuses(s)} | ${[...s.codes].sort().join(', ')} | ${(s.ms / s.requests).toFixed(1)} | ${s.maxMs.toFixed(0)} |`,
    ),
    `| **all** | **${report.requests}** | | | | |`,
    '',
    '`reset`: the server answered before reading a body it ignores (GET, unknown method, over the limit) and closed the connection under the answer.',
    '',
    `Answers breaking the contract (5xx, untyped 4xx, 2xx without authorization, no answer): ${report.problemCount}.`,
    '',
    ...memoryTable(
      '| requests sent | RSS (key server and sender, one process) | V8 heap used after gc |',
      report.memory,
      (m) => m.requests,
    ),
    '',
    `/v1/health answered 200 after each of the ${report.healthChecks} batches. Duration ${report.seconds.toFixed(0)} s.`,
  ].join('\n')
}
