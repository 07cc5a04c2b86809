// Deployment files and HTTP hardening (issue 19): loose modes refused like master.key, an init
// that is all or nothing and never writes the CA key unsealed, security headers on every
// response, a 404 that echoes nothing, and request logs without query strings.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'
import { isSmqttError, sha256 } from '@smqtt/core'
import { ADMIN_TOKEN, type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { main } from '../src/cli.js'
import { loadKeyServerConfig } from '../src/config.js'
import { buildApp } from '../src/http/app.js'
import { initKeyServer, type RunningKeyServer, startKeyServer } from '../src/server.js'

const posix = process.platform !== 'win32'
let root: string
let deployment: string
let configFile: string

/** The error `fn` throws or rejects with (fails the test if it succeeds). */
async function errorOf(fn: () => unknown): Promise<Error> {
  try {
    await fn()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a refusal')
}

/** Runs `fn` with `path` at `mode`, then restores `restore`. */
async function withMode<T>(path: string, mode: number, restore: number, fn: () => Promise<T> | T): Promise<T> {
  chmodSync(path, mode)
  try {
    return await fn()
  } finally {
    chmodSync(path, restore)
  }
}

const quiet = () => pino({ level: 'silent' })

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'smqtt-deployment-'))
  deployment = join(root, 'keyserver')
  ;({ configFile } = await initKeyServer(deployment, { listen: { host: '127.0.0.1', port: 0 } }))
})

afterAll(() => {
  rmSync(root, { recursive: true, force: true })
})

describe.skipIf(!posix)('deployment file modes', () => {
  test('what init writes passes every rule: the key server starts from it', async () => {
    let server: RunningKeyServer | undefined
    try {
      server = await startKeyServer(loadKeyServerConfig(configFile), { logger: quiet() })
      expect(server.url).toMatch(/^https:/)
    } finally {
      await server?.close()
    }
  })

  test('a config file writable by group or others (0666) is refused', async () => {
    const err = await withMode(configFile, 0o666, 0o644, () => errorOf(() => loadKeyServerConfig(configFile)))
    expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
    expect(err.message).toContain(configFile)
    expect(err.message).toMatch(/mode 666.*chmod go-w/)
  })

  test('a deployment folder writable by group or others (0777) is refused', async () => {
    const err = await withMode(deployment, 0o777, 0o700, () => errorOf(() => loadKeyServerConfig(configFile)))
    expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
    expect(err.message).toContain(`mode 777), so they could redirect the server; run: chmod go-w ${deployment}`)
  })

  test('admin.token readable by others (0644) is refused by start and by the admin commands', async () => {
    const token = join(deployment, 'admin.token')
    await withMode(token, 0o644, 0o600, async () => {
      const err = await errorOf(() => startKeyServer(loadKeyServerConfig(configFile), { logger: quiet() }))
      expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
      expect(err.message).toContain(`$.adminTokenFile: ${token} is a secret`)
      expect(err.message).toContain(`(mode 644); run: chmod 600 ${token}`)
      await expect(main(['principals', '--config', configFile])).rejects.toThrow(/admin\.token.*chmod 600/)
    })
  })

  test('a TLS private key readable by others (0644) is refused', async () => {
    const key = join(deployment, 'pki', 'server.key')
    const err = await withMode(key, 0o644, 0o600, () =>
      errorOf(() => startKeyServer(loadKeyServerConfig(configFile), { logger: quiet() })),
    )
    expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
    expect(err.message).toContain(`$.tls.keyFile: ${key} is a secret`)
    expect(err.message).toContain(`chmod 600 ${key}`)
  })

  test('a CA certificate writable by others (0666) is refused: it would let them add a trust anchor', async () => {
    const ca = join(deployment, 'pki', 'ca.pem')
    const err = await withMode(ca, 0o666, 0o644, () =>
      errorOf(() => startKeyServer(loadKeyServerConfig(configFile), { logger: quiet() })),
    )
    expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
    expect(err.message).toContain(`$.tls.caFile: ${ca} is writable by group or others (mode 666)`)
  })

  test('the SQLite store is created owner-only, and one others may read or write (0644) is refused', async () => {
    const store = join(deployment, 'data', 'keyserver.db')
    expect(statSync(store).mode & 0o777).toBe(0o600)
    const err = await withMode(store, 0o644, 0o600, () =>
      errorOf(() => startKeyServer(loadKeyServerConfig(configFile), { logger: quiet() })),
    )
    expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
    expect(err.message).toContain(`$.store: ${store} is a secret`)
    expect(err.message).toContain(`chmod 600 ${store}`)
  })

  test('master.key goes through the same check, with its own code', async () => {
    const key = join(deployment, 'master.key')
    const err = await withMode(key, 0o640, 0o600, () =>
      errorOf(() => startKeyServer(loadKeyServerConfig(configFile), { logger: quiet() })),
    )
    expect(isSmqttError(err, 'ERR_MASTER_KEY_INVALID')).toBe(true)
    expect(err.message).toContain(`master key file ${key} is a secret`)
    expect(err.message).toContain(`(mode 640); run: chmod 600 ${key}`)
  })
})

describe('init is all or nothing', () => {
  test('a failed init leaves nothing behind, never an unsealed CA key, and can be re-run', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'smqtt-init-'))
    const dir = join(parent, 'keyserver')
    const log = vi.spyOn(console, 'log').mockImplementation(() => {})
    try {
      // An option that only fails at the end, once keys, PKI and store have been made.
      const err = await errorOf(() => main(['init', '--dir', dir, '--port', '99999']))
      expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
      expect(err.message).toContain('$.listen.port')
      expect(readdirSync(parent)).toEqual([])

      expect(await main(['init', '--dir', dir, '--port', '8443'])).toBe(0)
      expect(readdirSync(parent)).toEqual(['keyserver'])
      expect(readdirSync(dir).sort()).toEqual(['admin.token', 'config.json', 'data', 'master.key', 'pki'])
      expect(readdirSync(join(dir, 'pki')).sort()).toEqual(['ca.pem', 'server.key', 'server.pem'])
    } finally {
      log.mockRestore()
      rmSync(parent, { recursive: true, force: true })
    }
  })

  test('a folder that already holds files is refused before anything is written', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'smqtt-init-'))
    const dir = join(parent, 'keyserver')
    try {
      mkdirSync(join(dir, 'data'), { recursive: true, mode: 0o500 })
      await expect(initKeyServer(dir)).rejects.toThrow(/is not empty/)
      expect(readdirSync(parent)).toEqual(['keyserver'])
      expect(readdirSync(dir)).toEqual(['data'])
      expect(existsSync(join(dir, 'master.key'))).toBe(false)
      rmSync(join(dir, 'data'), { recursive: true })
      await initKeyServer(dir) // an empty folder is fine
      expect(existsSync(join(dir, 'config.json'))).toBe(true)
    } finally {
      rmSync(parent, { recursive: true, force: true })
    }
  })
})

describe('HTTP hardening', () => {
  let h: Harness
  beforeAll(async () => {
    h = await startHarness()
  })
  afterAll(() => h?.close())

  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }
  const expectSecurityHeaders = (headers: Record<string, unknown>) => {
    expect(headers['strict-transport-security']).toBe('max-age=31536000')
    expect(headers['x-content-type-options']).toBe('nosniff')
    expect(headers['cache-control']).toBe('no-store')
  }

  test('HSTS, nosniff and no-store on the response carrying an enrollment token, on refusals and on 404', async () => {
    const token = await h.app.inject({
      method: 'POST',
      url: '/v1/admin/enrollment-tokens',
      headers: auth,
      payload: { principalId: 'device-9', roles: ['app'] },
    })
    expect(token.statusCode, token.body).toBe(201)
    expectSecurityHeaders(token.headers)
    const refused = await h.app.inject({ method: 'GET', url: '/v1/admin/principals' })
    expect(refused.statusCode).toBe(401)
    expectSecurityHeaders(refused.headers)
    const missing = await h.app.inject({ method: 'GET', url: '/v1/nowhere' })
    expect(missing.statusCode).toBe(404)
    expectSecurityHeaders(missing.headers)
    const malformed = await h.app.inject({ method: 'POST', url: '/v1/admin/principals/%E0%A4%A/revoke' })
    expect(malformed.statusCode).toBe(400)
    expectSecurityHeaders(malformed.headers)
  })

  test("the HTTP parser's own refusals (400, 431) carry the same security headers", async () => {
    const { port } = new URL(h.url)
    const answer = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ca: h.caPem, servername: 'localhost' }, () =>
          socket.end(request),
        )
        let text = ''
        socket.on('data', (chunk) => {
          text += chunk
        })
        socket.on('close', () => resolve(text))
        socket.on('error', reject)
      })
    for (const [request, status] of [
      ['NOT HTTP AT ALL\r\n\r\n', 400],
      [`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
    ] as const) {
      const text = await answer(request)
      const [head = ''] = text.split('\r\n\r\n')
      const headers = Object.fromEntries(
        head
          .split('\r\n')
          .slice(1)
          .map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
      )
      expect(head.split('\r\n')[0]).toMatch(new RegExp(`^HTTP/1.1 ${status} `))
      expectSecurityHeaders(headers)
    }
  })

  test('the 404 body keeps ERR_NOT_FOUND but echoes neither the method nor the path', async () => {
    const response = await h.app.inject({ method: 'DELETE', url: '/v1/reflected-path-xyz?q=<script>' })
    expect(response.statusCode).toBe(404)
    expect(response.json()).toMatchObject({ error: { code: 'ERR_NOT_FOUND' } })
    expect(response.body).not.toContain('reflected-path-xyz')
    expect(response.body).not.toContain('DELETE')
    expect(response.body).not.toContain('script')
  })

  test('request logs carry the path without its query string', async () => {
    const lines: string[] = []
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk))
        done()
      },
    })
    const app = await buildApp({
      keyServer: h.keyServer,
      adminTokenHash: sha256(new TextEncoder().encode(ADMIN_TOKEN)),
      insecureAllowPlainHttp: true,
      logger: pino({ level: 'info' }, sink),
    })
    try {
      await app.inject({ method: 'GET', url: '/v1/revocations?token=query-secret-123' })
      await app.inject({ method: 'GET', url: '/v1/nowhere?token=query-secret-456' })
    } finally {
      await app.close()
    }
    const logged = lines.map((line) => JSON.parse(line) as { msg: string; req?: { url: string } })
    const urls = logged.filter((line) => line.msg === 'incoming request').map((line) => line.req?.url)
    expect(urls).toEqual(['/v1/revocations', '/v1/nowhere'])
    expect(lines.join('')).not.toContain('query-secret')
  })
})
