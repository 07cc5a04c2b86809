// CORS for browser apps: a key server started from a config file with `cors.origins` answers
// preflights and real requests of a listed origin with the CORS headers, and gives any other
// origin none (its browser then keeps the answer from the page). Without the field: no CORS.
// Over real HTTPS; config parsing is strict.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { isSmqttError, REQUEST_SIGNATURE_HEADERS } from '@smqtt/core'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { parseKeyServerConfig } from '../src/config.js'
import { initKeyServer, loadKeyServerConfig, type RunningKeyServer, startKeyServer } from '../src/index.js'

const APP = 'https://home.example.com'
const OTHER = 'https://evil.example.net'

interface Answer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
}

interface Started {
  readonly server: RunningKeyServer
  /** Each `init` makes its own development CA. */
  readonly ca: string
}

let dir: string
let withCors: Started
let withoutCors: Started

/** Starts a key server from `init`'s config file, with `cors` written into the file when given. */
async function start(name: string, cors?: { origins: string[] }): Promise<Started> {
  const { configFile } = await initKeyServer(join(dir, name), { listen: { host: '127.0.0.1', port: 0 } })
  if (cors) writeFileSync(configFile, JSON.stringify({ ...JSON.parse(readFileSync(configFile, 'utf8')), cors }))
  const config = loadKeyServerConfig(configFile)
  const server = await startKeyServer(config, { logger: pino({ level: 'silent' }) })
  return { server, ca: readFileSync(config.tls.caFile, 'utf8') }
}

function call({ server, ca }: Started, method: string, path: string, headers: Record<string, string>) {
  return new Promise<Answer>((resolvePromise, reject) => {
    const req = request(`${server.url}${path}`, { method, headers, ca, timeout: 10_000 }, (res) => {
      res.resume()
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers }))
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)))
    req.on('error', reject)
    req.end()
  })
}

const preflight = (server: Started, origin: string, method = 'GET') =>
  call(server, 'OPTIONS', '/v1/bundle', {
    origin,
    'access-control-request-method': method,
    'access-control-request-headers': Object.values(REQUEST_SIGNATURE_HEADERS).join(','),
  })

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'smqtt-ks-cors-'))
  withCors = await start('with', { origins: [APP, 'http://127.0.0.1:8080'] })
  withoutCors = await start('without')
}, 60_000)

afterAll(async () => {
  await withCors?.server.close()
  await withoutCors?.server.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('a listed origin', () => {
  test('gets its preflight answered for the device API: GET/POST, JSON and the signature headers', async () => {
    const answer = await preflight(withCors, APP)
    expect(answer.status).toBe(204)
    expect(answer.headers['access-control-allow-origin']).toBe(APP)
    expect(answer.headers.vary).toMatch(/origin/i)
    expect(answer.headers['access-control-allow-methods']).toBe('GET, POST')
    const allowedHeaders = String(answer.headers['access-control-allow-headers']).split(', ')
    expect(allowedHeaders).toEqual(
      expect.arrayContaining(['content-type', 'if-none-match', ...Object.values(REQUEST_SIGNATURE_HEADERS)]),
    )
    // The admin API's bearer token is not a header a page may send.
    expect(allowedHeaders).not.toContain('authorization')
  })

  test('gets the header on real answers, errors included (so the page can read the error code)', async () => {
    const health = await call(withCors, 'GET', '/v1/health', { origin: APP })
    expect(health.status).toBe(200)
    expect(health.headers['access-control-allow-origin']).toBe(APP)
    // The freshness poll's ETag must reach the page (it sends it back in If-None-Match).
    expect(health.headers['access-control-expose-headers']).toBe('etag')
    const unsigned = await call(withCors, 'GET', '/v1/bundle', { origin: APP })
    expect(unsigned.status).toBe(401)
    expect(unsigned.headers['access-control-allow-origin']).toBe(APP)
  })
})

describe('any other origin', () => {
  test('gets no CORS header, on preflights or answers', async () => {
    const answer = await preflight(withCors, OTHER)
    expect(answer.status).not.toBe(204)
    expect(answer.headers['access-control-allow-origin']).toBeUndefined()
    expect(answer.headers['access-control-allow-headers']).toBeUndefined()
    const health = await call(withCors, 'GET', '/v1/health', { origin: OTHER })
    expect(health.headers['access-control-allow-origin']).toBeUndefined()
    // Prefix and port tricks are different origins.
    for (const origin of [`${APP}.evil.net`, `${APP}:444`, 'http://home.example.com']) {
      const tricked = await call(withCors, 'GET', '/v1/health', { origin })
      expect(tricked.headers['access-control-allow-origin'], origin).toBeUndefined()
    }
  })

  test('without `cors` in the config, even the app origin gets nothing (secure by default)', async () => {
    const answer = await preflight(withoutCors, APP)
    expect(answer.status).not.toBe(204)
    expect(answer.headers['access-control-allow-origin']).toBeUndefined()
    const health = await call(withoutCors, 'GET', '/v1/health', { origin: APP })
    expect(health.status).toBe(200)
    expect(health.headers['access-control-allow-origin']).toBeUndefined()
  })
})

describe('config', () => {
  const baseDir = resolve('/etc/smqtt')
  const configError = (cors: unknown) => {
    try {
      parseKeyServerConfig({ cors }, baseDir)
    } catch (err) {
      expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
      return (err as Error).message
    }
    return expect.fail(`accepted ${JSON.stringify(cors)}`)
  }

  test('absent by default; exact origins accepted', () => {
    expect(parseKeyServerConfig({}, baseDir).cors).toBeUndefined()
    expect(parseKeyServerConfig({ cors: { origins: [APP, 'http://localhost:5173'] } }, baseDir).cors).toEqual({
      origins: [APP, 'http://localhost:5173'],
    })
  })

  test('anything but a list of exact origins is refused, naming the field', () => {
    for (const bad of ['*', `${APP}/`, `${APP}/app`, 'HTTPS://HOME.EXAMPLE.COM', 'ftp://files.example', 'null', 42])
      expect(configError({ origins: [APP, bad] })).toMatch(/\$\.cors\.origins\[1\]/)
    expect(configError({ origins: APP })).toMatch(/\$\.cors\.origins/)
    expect(configError({ origins: Array.from({ length: 101 }, (_, i) => `https://h${i}.example`) })).toMatch(
      /\$\.cors\.origins/,
    )
    expect(configError({ origins: [], allowAll: true })).toMatch(/\$\.cors\.allowAll/)
    expect(configError(true)).toMatch(/\$\.cors/)
  })
})
