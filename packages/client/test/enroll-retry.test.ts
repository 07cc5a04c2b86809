// enroll() over a transport that loses the key server's first answer after the key server has
// committed the enrollment: the one retry gets the same enrollment back. Real key server over
// HTTPS with its SQLite store, the real node:https transport underneath.
import { type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import {
  type EnrollOptions,
  enroll,
  type KeyServerTransport,
  loadEnrollment,
  memoryStorage,
  nodeHttpsTransport,
  type TransportRequest,
  type TransportResponse,
} from '../src/index.js'
import type { ClientStorage } from '../src/storage.js'

let h: Harness
beforeEach(async () => {
  h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
})
afterEach(async () => {
  await h.close()
})

/** enroll() of `id` with `roles` through the key server, with a fresh token. */
async function enrollAs<S extends ClientStorage>(
  id: string,
  roles: string[],
  options: Omit<EnrollOptions<S>, 'keyServerUrl' | 'token' | 'id'>,
) {
  const response = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
  expect(response.status, response.text).toBe(201)
  return enroll({ keyServerUrl: h.url, token: (response.body as { token: string }).token, id, ...options })
}

const auditActions = async (subject: string) =>
  (
    (await h.admin('GET', '/v1/admin/audit?limit=1000')).body as {
      entries: { action: string; subject: string; outcome: string }[]
    }
  ).entries
    .filter((e) => e.subject === subject)
    .map((e) => `${e.action} ${e.outcome}`)

/**
 * The real transport, except that the first enrollment's answer is thrown away after it
 * arrived (the key server has committed) and replaced by `lose()`'s failure.
 */
function losingFirstAnswer(lose: () => Promise<TransportResponse>): {
  transport: KeyServerTransport
  sent: TransportRequest[]
} {
  const real = nodeHttpsTransport({ ca: h.caPem })
  const sent: TransportRequest[] = []
  return {
    sent,
    transport: {
      async request(request) {
        sent.push(request)
        const answer = await real.request(request)
        if (sent.length === 1) {
          expect(answer.status).toBe(200) // committed: only the answer is lost
          return lose()
        }
        return answer
      },
    },
  }
}

describe('enroll() retries once when the answer is lost', () => {
  test('a connection reset after the commit: the retry gets the same enrollment, with its certificate', async () => {
    const { transport, sent } = losingFirstAnswer(async () => {
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
    })
    const storage = memoryStorage()
    const enrollment = await enrollAs('thermostat-1', ['thermostat'], { storage, clientCertificate: true, transport })
    expect(sent).toHaveLength(2)
    expect(sent[1]?.body).toEqual(sent[0]?.body) // the very same request
    expect(enrollment.kid).toBe(1)
    expect(enrollment.certificatePem).toContain('BEGIN CERTIFICATE')
    expect(enrollment.tlsPrivateKeyPem).toContain('BEGIN PRIVATE KEY')
    expect((await loadEnrollment(storage))?.kid).toBe(1)
    // The device is a working principal: its signed requests are accepted.
    expect((await h.device(enrollment.identity, 'GET', '/v1/principal')).status).toBe(200)
    expect(await auditActions('thermostat-1')).toEqual(['enrollment-token.create ok', 'enroll ok', 'enroll.repeat ok'])
  })

  test('a 503 answer is retried the same way', async () => {
    const { transport, sent } = losingFirstAnswer(async () => ({
      status: 503,
      body: { error: { code: 'ERR_STORE_UNAVAILABLE', message: 'the key store cannot serve now; retry later' } },
    }))
    const enrollment = await enrollAs('app-1', ['app'], { storage: memoryStorage(), transport })
    expect(sent).toHaveLength(2)
    expect(enrollment.kid).toBe(1)
  })

  test('the retry is refused when the principal was revoked in between, and nothing is stored', async () => {
    const { transport, sent } = losingFirstAnswer(async () => {
      expect((await h.admin('POST', '/v1/admin/principals/app-2/revoke', {})).status).toBe(200)
      throw new Error('socket hang up')
    })
    const storage = memoryStorage()
    const refused = await enrollAs('app-2', ['app'], { storage, transport }).catch((err: unknown) => err)
    expect(sent).toHaveLength(2)
    expect(refused).toMatchObject({ code: 'ERR_ENROLLMENT_TOKEN_INVALID' })
    expect(await loadEnrollment(storage)).toBeUndefined()
  })

  test('a refusal from the key server is not retried', async () => {
    const real = nodeHttpsTransport({ ca: h.caPem })
    const sent: TransportRequest[] = []
    const refused = await enroll({
      keyServerUrl: h.url,
      token: 'not-a-real-token',
      id: 'app-3',
      storage: memoryStorage(),
      transport: {
        request(request) {
          sent.push(request)
          return real.request(request)
        },
      },
    }).catch((err: unknown) => err)
    expect(refused).toMatchObject({ code: 'ERR_ENROLLMENT_TOKEN_INVALID' })
    expect(sent).toHaveLength(1)
  })
})
