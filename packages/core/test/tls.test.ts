// The TLS server options every SMQTT listener spreads (`@smqtt/core/tls`), on a real loopback
// TLS server: what a client can negotiate with each profile. The listeners themselves are
// scanned from outside by sslscan in test/interop/tls-scan.test.ts.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, createServer, type TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { TLS12_SUITES, TLS13_SUITES, type TlsProfile, tlsServerOptions } from '../src/node/tls.js'

describe('tlsServerOptions', () => {
  test('intermediate: TLS 1.2 and 1.3, the 3 TLS 1.3 and 6 ECDHE AEAD TLS 1.2 suites, 3 groups, client order, no renegotiation', () => {
    expect(tlsServerOptions()).toEqual({
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      ciphers: [
        'TLS_AES_128_GCM_SHA256',
        'TLS_AES_256_GCM_SHA384',
        'TLS_CHACHA20_POLY1305_SHA256',
        'ECDHE-ECDSA-AES128-GCM-SHA256',
        'ECDHE-RSA-AES128-GCM-SHA256',
        'ECDHE-ECDSA-AES256-GCM-SHA384',
        'ECDHE-RSA-AES256-GCM-SHA384',
        'ECDHE-ECDSA-CHACHA20-POLY1305',
        'ECDHE-RSA-CHACHA20-POLY1305',
      ].join(':'),
      ecdhCurve: 'X25519:P-256:P-384',
      honorCipherOrder: false,
      secureOptions: 0x40000000, // SSL_OP_NO_RENEGOTIATION
    })
    expect(tlsServerOptions('modern')).toMatchObject({ minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' })
    expect(() => tlsServerOptions('old' as TlsProfile)).toThrow(/unknown TLS profile "old"/)
  })
})

// An RSA certificate (the development PKI's is ECDSA): the ECDHE-RSA half of the list.
describe('a TLS server with an RSA certificate', () => {
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-tls-'))
  let pems: { key: string; cert: string }
  beforeAll(() => {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=localhost',
        '-days',
        '1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    )
    pems = { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') }
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  /** What a client offering `options` negotiates with a server on `profile`, or the error. */
  async function negotiate(
    profile: TlsProfile,
    options: { ciphers?: string; maxVersion?: 'TLSv1.2' | 'TLSv1.3'; ecdhCurve?: string },
  ) {
    const server = createServer({ ...pems, ...tlsServerOptions(profile) }, (socket) => socket.end())
    server.on('tlsClientError', () => {})
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    try {
      return await new Promise<{ version: string | null; cipher: string } | { error: string }>((resolve) => {
        const socket: TLSSocket = connect(
          { host: '127.0.0.1', port, rejectUnauthorized: false, minVersion: 'TLSv1.2', ...options },
          () => {
            resolve({ version: socket.getProtocol(), cipher: socket.getCipher().name })
            socket.destroy()
          },
        )
        socket.on('error', (err) => resolve({ error: err.message }))
      })
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  }

  test('intermediate negotiates each ECDHE-RSA suite on TLS 1.2, and nothing else there', async () => {
    for (const suite of TLS12_SUITES.filter((s) => s.startsWith('ECDHE-RSA-')))
      expect(await negotiate('intermediate', { ciphers: suite, maxVersion: 'TLSv1.2' })).toEqual({
        version: 'TLSv1.2',
        cipher: suite,
      })
    for (const refused of [
      'ECDHE-RSA-AES128-SHA256',
      'ECDHE-RSA-AES256-SHA',
      'DHE-RSA-AES128-GCM-SHA256',
      'AES128-GCM-SHA256',
    ])
      expect(await negotiate('intermediate', { ciphers: refused, maxVersion: 'TLSv1.2' })).toHaveProperty('error')
  })

  test('a group outside X25519/P-256/P-384 is refused, on both versions', async () => {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      expect(await negotiate('intermediate', { maxVersion, ecdhCurve: 'P-521' })).toHaveProperty('error')
      expect(await negotiate('intermediate', { maxVersion, ecdhCurve: 'X25519' })).toHaveProperty('version', maxVersion)
    }
  })

  test('modern refuses TLS 1.2 and serves TLS 1.3 with its three suites', async () => {
    expect(await negotiate('modern', { maxVersion: 'TLSv1.2' })).toHaveProperty('error')
    for (const suite of TLS13_SUITES)
      expect(await negotiate('modern', { ciphers: suite })).toEqual({ version: 'TLSv1.3', cipher: suite })
  })
})
