import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { isSmqttError } from '@smqtt/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import {
  defaultConfigDocument,
  defaultKeyServerConfig,
  loadKeyServerConfig,
  parseKeyServerConfig,
} from '../src/config.js'

const baseDir = resolve('/etc/smqtt')

/** The error `parseKeyServerConfig` throws for `json`, which must be ERR_CONFIG_INVALID. */
function configError(json: unknown): string {
  try {
    parseKeyServerConfig(json, baseDir)
  } catch (err) {
    expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
    return (err as Error).message
  }
  return expect.fail(`accepted ${JSON.stringify(json)}`)
}

describe('defaults', () => {
  test('an empty document gives every default, paths resolved against the config folder', () => {
    expect(parseKeyServerConfig({}, baseDir)).toEqual({
      baseDir,
      listen: { host: '127.0.0.1', port: 8443 },
      tls: {
        certFile: join(baseDir, 'pki/server.pem'),
        keyFile: join(baseDir, 'pki/server.key'),
        caFile: join(baseDir, 'pki/ca.pem'),
        profile: 'intermediate',
      },
      store: `sqlite:${join(baseDir, 'data/keyserver.db')}`,
      masterKeyFile: join(baseDir, 'master.key'),
      adminTokenFile: join(baseDir, 'admin.token'),
      bundleTtlSeconds: 3600,
      revocationRetentionSeconds: 86_400,
      rotationLeadSeconds: 30,
      defaultGraceSeconds: 300,
      enrollmentTokenTtlSeconds: 86_400,
      clientCertificateValidityDays: 365,
      maxBodyBytes: 65_536,
      principalRequestsPerSecond: 5,
      principalRequestBurst: 50,
      failedAuthPerAddressPerMinute: 30,
      deadlines: { handshakeSeconds: 10, headersSeconds: 10, requestSeconds: 30, keepAliveSeconds: 5 },
      maxPendingConnectionsPerAddress: 100,
      insecureAllowPlainHttp: false,
    })
  })

  test('defaultKeyServerConfig is the default document resolved, and the document round-trips through JSON', () => {
    expect(defaultKeyServerConfig(baseDir)).toEqual(parseKeyServerConfig({}, baseDir))
    expect(parseKeyServerConfig(JSON.stringify(defaultConfigDocument()), baseDir)).toEqual(
      defaultKeyServerConfig(baseDir),
    )
  })

  test('a partial nested object keeps the defaults of its other fields', () => {
    const config = parseKeyServerConfig({ listen: { port: 9443 }, tls: { caFile: 'other-ca.pem' } }, baseDir)
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 9443 })
    expect(config.tls.certFile).toBe(join(baseDir, 'pki/server.pem'))
    expect(config.tls.caFile).toBe(join(baseDir, 'other-ca.pem'))
  })
})

describe('paths and stores', () => {
  test('relative paths resolve against the config folder, absolute paths stay', () => {
    const absolute = resolve('/var/lib/smqtt/master.key')
    const config = parseKeyServerConfig(
      { masterKeyFile: absolute, adminTokenFile: '../secrets/admin.token', tls: { keyFile: './k.pem' } },
      baseDir,
    )
    expect(config.masterKeyFile).toBe(absolute)
    expect(config.adminTokenFile).toBe(resolve(baseDir, '../secrets/admin.token'))
    expect(config.tls.keyFile).toBe(join(baseDir, 'k.pem'))
  })

  test('a relative baseDir is made absolute', () => {
    expect(parseKeyServerConfig({}, 'conf').baseDir).toBe(resolve('conf'))
    expect(parseKeyServerConfig({}, 'conf').masterKeyFile).toBe(resolve('conf', 'master.key'))
  })

  test('resolves sqlite paths against the config folder, keeps in-memory sqlite and postgres URLs', () => {
    const absolute = resolve('/var/lib/smqtt/ks.db')
    expect(parseKeyServerConfig({ store: 'sqlite:db/ks.db' }, baseDir).store).toBe(
      `sqlite:${join(baseDir, 'db/ks.db')}`,
    )
    expect(parseKeyServerConfig({ store: `sqlite:${absolute}` }, baseDir).store).toBe(`sqlite:${absolute}`)
    expect(parseKeyServerConfig({ store: 'sqlite::memory:' }, baseDir).store).toBe('sqlite::memory:')
    for (const url of ['postgres://ks:pw@db.internal:5432/smqtt', 'postgresql://db/smqtt?schema=keyserver']) {
      expect(parseKeyServerConfig({ store: url }, baseDir).store).toBe(url)
    }
  })

  test('refuses other stores, and never echoes a store value (it may hold a password)', () => {
    for (const store of ['mysql://db/x', 'sqlite:', 'sqlite://db', 'data/keyserver.db', 'postgres://[bad', 7]) {
      const message = configError({ store })
      expect(message).toContain('$.store')
    }
    expect(configError({ store: 'redis://user:s3cret@host' })).not.toContain('s3cret')
  })
})

describe('validation', () => {
  test('refuses unknown fields, naming them, at the top level and nested', () => {
    expect(configError({ lsiten: { port: 1 } })).toContain('$.lsiten')
    expect(configError({ listen: { prot: 1 } })).toContain('$.listen.prot')
    expect(configError({ tls: { cert: 'x' } })).toContain('$.tls.cert')
    expect(configError({ tls: { profile: 'old' } })).toContain('$.tls.profile: expected one of intermediate, modern')
    expect(parseKeyServerConfig({ tls: { profile: 'modern' } }, baseDir).tls.profile).toBe('modern')
    expect(configError(JSON.parse('{ "__proto__": { "insecureAllowPlainHttp": true } }'))).toContain('$.__proto__')
  })

  test('refuses a document or nested object that is not an object', () => {
    for (const json of [null, [], 42, true, '"text"', '[1]']) expect(configError(json)).toContain('$')
    expect(configError({ listen: [] })).toContain('$.listen')
    expect(configError({ tls: 'pki' })).toContain('$.tls')
  })

  test('refuses text that is not JSON', () => {
    expect(configError('{ "listen": ')).toMatch(/JSON/)
  })

  test('refuses wrong types, naming the JSON path', () => {
    const cases: [unknown, string][] = [
      [{ listen: { port: '8443' } }, '$.listen.port'],
      [{ listen: { host: 8443 } }, '$.listen.host'],
      [{ tls: { certFile: 1 } }, '$.tls.certFile'],
      [{ masterKeyFile: ['master.key'] }, '$.masterKeyFile'],
      [{ adminTokenFile: {} }, '$.adminTokenFile'],
      [{ bundleTtlSeconds: '3600' }, '$.bundleTtlSeconds'],
      [{ insecureAllowPlainHttp: 'true' }, '$.insecureAllowPlainHttp'],
      [{ insecureAllowPlainHttp: 1 }, '$.insecureAllowPlainHttp'],
    ]
    for (const [json, path] of cases) expect(configError(json)).toContain(path)
  })

  test('refuses null instead of taking the default', () => {
    expect(configError({ insecureAllowPlainHttp: null })).toContain('$.insecureAllowPlainHttp')
    expect(configError({ tls: null })).toContain('$.tls')
    expect(configError({ listen: { port: null } })).toContain('$.listen.port')
  })

  test('refuses numbers out of range or not integers', () => {
    const cases: [unknown, string][] = [
      [{ listen: { port: 65_536 } }, '$.listen.port'],
      [{ listen: { port: -1 } }, '$.listen.port'],
      [{ listen: { port: 443.5 } }, '$.listen.port'],
      [{ bundleTtlSeconds: 0 }, '$.bundleTtlSeconds'],
      [{ revocationRetentionSeconds: 0 }, '$.revocationRetentionSeconds'],
      [{ rotationLeadSeconds: -1 }, '$.rotationLeadSeconds'],
      [{ defaultGraceSeconds: 1e12 }, '$.defaultGraceSeconds'],
      [{ enrollmentTokenTtlSeconds: 1 }, '$.enrollmentTokenTtlSeconds'],
      [{ clientCertificateValidityDays: 0 }, '$.clientCertificateValidityDays'],
      [{ maxBodyBytes: 10 }, '$.maxBodyBytes'],
      [{ maxBodyBytes: Number.NaN }, '$.maxBodyBytes'],
    ]
    for (const [json, path] of cases) expect(configError(json)).toContain(path)
  })

  test('refuses empty paths and hosts', () => {
    expect(configError({ masterKeyFile: '' })).toContain('$.masterKeyFile')
    expect(configError({ tls: { keyFile: 'a\u0000b' } })).toContain('$.tls.keyFile')
    expect(configError({ listen: { host: '' } })).toContain('$.listen.host')
    expect(configError({ listen: { host: 'a b' } })).toContain('$.listen.host')
  })

  test('accepts port 0 (an ephemeral port, for tests) and IPv6 hosts', () => {
    expect(parseKeyServerConfig({ listen: { host: '::', port: 0 } }, baseDir).listen).toEqual({ host: '::', port: 0 })
  })
})

describe('deadlines and the per-address cap', () => {
  test('a partial deadlines object keeps the other defaults; out of range or headers past the request is refused', () => {
    const config = parseKeyServerConfig(
      { deadlines: { requestSeconds: 60 }, maxPendingConnectionsPerAddress: 500 },
      baseDir,
    )
    expect(config.deadlines).toEqual({
      handshakeSeconds: 10,
      headersSeconds: 10,
      requestSeconds: 60,
      keepAliveSeconds: 5,
    })
    expect(config.maxPendingConnectionsPerAddress).toBe(500)
    expect(configError({ deadlines: { headersSeconds: 40 } })).toMatch(/\$\.deadlines\.headersSeconds/)
    expect(configError({ deadlines: { handshakeSeconds: 0 } })).toMatch(/\$\.deadlines\.handshakeSeconds/)
    expect(configError({ deadlines: { idleSeconds: 5 } })).toMatch(/\$\.deadlines/)
    expect(configError({ maxPendingConnectionsPerAddress: 0 })).toMatch(/maxPendingConnectionsPerAddress/)
  })
})

describe('insecureAllowPlainHttp', () => {
  test('is the only switch for plain HTTP: TLS settings always resolve, and the flag is kept', () => {
    const config = parseKeyServerConfig({ insecureAllowPlainHttp: true }, baseDir)
    expect(config.insecureAllowPlainHttp).toBe(true)
    expect(config.tls.certFile).toBe(join(baseDir, 'pki/server.pem'))
    expect(parseKeyServerConfig({}, baseDir).insecureAllowPlainHttp).toBe(false)
    for (const json of [{ tls: false }, { tls: null }, { tls: {}, plainHttp: true }]) configError(json)
  })
})

describe('loadKeyServerConfig', () => {
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'smqtt-config-'))
  })

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  test('resolves paths against the folder of the file, not the working directory', () => {
    mkdirSync(join(dir, 'etc'))
    const file = join(dir, 'etc', 'keyserver.json')
    writeFileSync(file, JSON.stringify({ store: 'sqlite:db.sqlite', masterKeyFile: 'keys/master.key' }))
    const config = loadKeyServerConfig(file)
    expect(config.baseDir).toBe(join(dir, 'etc'))
    expect(config.store).toBe(`sqlite:${join(dir, 'etc', 'db.sqlite')}`)
    expect(config.masterKeyFile).toBe(join(dir, 'etc', 'keys', 'master.key'))
  })

  test('loads the default document as written by init, with or without a byte order mark', () => {
    const file = join(dir, 'keyserver.json')
    writeFileSync(file, `\uFEFF${JSON.stringify(defaultConfigDocument(), null, 2)}\n`)
    expect(loadKeyServerConfig(file)).toEqual(defaultKeyServerConfig(dir))
  })

  test('keeps insecureAllowPlainHttp for the server to warn about', () => {
    const file = join(dir, 'keyserver.json')
    writeFileSync(file, JSON.stringify({ insecureAllowPlainHttp: true }))
    expect(loadKeyServerConfig(file).insecureAllowPlainHttp).toBe(true)
  })

  test('refuses a missing file, a file that is not JSON, and an invalid document', () => {
    const code = (fn: () => unknown) => {
      try {
        fn()
      } catch (err) {
        return isSmqttError(err) ? err.code : 'other'
      }
      return 'none'
    }
    expect(code(() => loadKeyServerConfig(join(dir, 'absent.json')))).toBe('ERR_CONFIG_INVALID')
    writeFileSync(join(dir, 'bad.json'), '{ listen: 1 }')
    expect(code(() => loadKeyServerConfig(join(dir, 'bad.json')))).toBe('ERR_CONFIG_INVALID')
    writeFileSync(join(dir, 'unknown.json'), '{ "listen": { "hots": "x" } }')
    expect(() => loadKeyServerConfig(join(dir, 'unknown.json'))).toThrow(/\$\.listen\.hots/)
  })
})
