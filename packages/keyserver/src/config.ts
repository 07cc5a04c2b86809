// The key server's config file: JSON, strictly validated (an unknown field is a typo that would
// otherwise silently fall back to a default), every relative path resolved against the file's
// own folder so the server behaves the same whatever directory it is started from.
//
// Plain HTTP exists only behind `insecureAllowPlainHttp: true`: TLS settings always resolve
// (to defaults if absent) and cannot be switched off any other way. Loading such a config logs
// nothing; the flag stays in the result so the server can warn loudly when it listens.
import { resolve } from 'node:path'
import { configField, parseConfigText } from '@smqtt/core'
import { loadConfigFile } from '@smqtt/core/file-modes'
import { TLS_PROFILES, type TlsProfile } from '@smqtt/core/tls'
import {
  DEFAULT_DEADLINES,
  DEFAULT_MAX_PENDING_CONNECTIONS_PER_ADDRESS,
  type KeyServerDeadlines,
} from './http/deadlines.js'
import { MAX_CLIENT_CERTIFICATE_DAYS } from './service/certificate-revocation-list.js'

const { orDefault, invalid, object, integer, boolean, pathString, hostString } = configField

/** The key server's resolved configuration: absolute paths, every default filled in. */
export interface KeyServerConfig {
  /** Absolute folder of the config file; relative paths in the file were resolved against it. */
  readonly baseDir: string
  readonly listen: { readonly host: string; readonly port: number }
  /**
   * Server certificate and key (PEM), the deployment CA that client certificates chain to, and
   * the TLS profile of the HTTPS listener (`@smqtt/core/tls`): `intermediate` (TLS 1.2 and 1.3,
   * the default) or `modern` (TLS 1.3 only).
   */
  readonly tls: {
    readonly certFile: string
    readonly keyFile: string
    readonly caFile: string
    readonly profile: TlsProfile
  }
  /**
   * The store URL for `openStore`: `sqlite:<absolute path>`, `sqlite::memory:`, or a
   * `postgres://` / `postgresql://` URL verbatim (it may hold a password: do not log it).
   */
  readonly store: string
  readonly masterKeyFile: string
  readonly adminTokenFile: string
  /** How long a key bundle stays valid. */
  readonly bundleTtlSeconds: number
  /**
   * How long a revocation stays on the signed revocation list; clients refuse bundles issued
   * before the list's watermark. Never less than `bundleTtlSeconds` + 60 in force.
   */
  readonly revocationRetentionSeconds: number
  /** How long before it becomes active the next epoch's key is handed out. */
  readonly rotationLeadSeconds: number
  /** How long a past epoch stays readable, unless policy says otherwise. */
  readonly defaultGraceSeconds: number
  readonly enrollmentTokenTtlSeconds: number
  readonly clientCertificateValidityDays: number
  /** Largest HTTP request body accepted. */
  readonly maxBodyBytes: number
  /** Signed requests per second one principal may make after its burst; past them, 429. */
  readonly principalRequestsPerSecond: number
  readonly principalRequestBurst: number
  /** Failed authentications per minute from one address (IPv6: one /64) before 429. */
  readonly failedAuthPerAddressPerMinute: number
  /** Slow-loris: TLS handshake, request headers, whole request, idle keep-alive (seconds). */
  readonly deadlines: KeyServerDeadlines
  /** Connections one address may hold before their first request completed; the next is closed at accept. */
  readonly maxPendingConnectionsPerAddress: number
  /** Serve plain HTTP instead of HTTPS. For tests and local experiments only; warn when set. */
  readonly insecureAllowPlainHttp: boolean
  /** Push bundles and snapshots over MQTT to this broker (absent: pull only). */
  readonly push: { readonly brokerUrl: string; readonly caFile: string } | undefined
  /** Browser origins allowed to call the device API (absent: none, no CORS headers at all). */
  readonly cors: { readonly origins: readonly string[] } | undefined
}

/** The config file as written on disk (relative paths, store as a string). Every field is optional. */
export interface KeyServerConfigDocument {
  listen?: { host?: string; port?: number }
  tls?: { certFile?: string; keyFile?: string; caFile?: string; profile?: TlsProfile }
  /** `sqlite:<path>` (relative to the config file), `sqlite::memory:`, or `postgres://…` / `postgresql://…`. */
  store?: string
  masterKeyFile?: string
  adminTokenFile?: string
  bundleTtlSeconds?: number
  revocationRetentionSeconds?: number
  rotationLeadSeconds?: number
  defaultGraceSeconds?: number
  enrollmentTokenTtlSeconds?: number
  clientCertificateValidityDays?: number
  maxBodyBytes?: number
  principalRequestsPerSecond?: number
  principalRequestBurst?: number
  failedAuthPerAddressPerMinute?: number
  deadlines?: { handshakeSeconds?: number; headersSeconds?: number; requestSeconds?: number; keepAliveSeconds?: number }
  maxPendingConnectionsPerAddress?: number
  insecureAllowPlainHttp?: boolean
  /** `mqtts://` or `wss://` broker URL; `caFile` defaults to tls.caFile. Plain `mqtt://` only with `insecurePlainMqtt`. */
  push?: { brokerUrl: string; caFile?: string; insecurePlainMqtt?: boolean }
  /** Exact origins (`https://host[:port]`) of browser apps allowed to enroll and fetch bundles. */
  cors?: { origins: string[] }
}

const MINUTE = 60
const DAY = 86_400

/**
 * The config file `init` writes: every field at its default, paths relative to the file.
 *
 * @example
 * ```ts
 * writeFileSync('keyserver.json', `${JSON.stringify(defaultConfigDocument(), null, 2)}\n`)
 * ```
 */
export function defaultConfigDocument(): Required<Omit<KeyServerConfigDocument, 'push' | 'cors'>> {
  return {
    listen: { host: '127.0.0.1', port: 8443 },
    tls: { certFile: 'pki/server.pem', keyFile: 'pki/server.key', caFile: 'pki/ca.pem' },
    store: 'sqlite:data/keyserver.db',
    masterKeyFile: 'master.key',
    adminTokenFile: 'admin.token',
    bundleTtlSeconds: 3600,
    revocationRetentionSeconds: DAY,
    rotationLeadSeconds: 30,
    defaultGraceSeconds: 300,
    enrollmentTokenTtlSeconds: DAY,
    clientCertificateValidityDays: 365,
    maxBodyBytes: 65_536,
    principalRequestsPerSecond: 5,
    principalRequestBurst: 50,
    failedAuthPerAddressPerMinute: 30,
    deadlines: { ...DEFAULT_DEADLINES },
    maxPendingConnectionsPerAddress: DEFAULT_MAX_PENDING_CONNECTIONS_PER_ADDRESS,
    insecureAllowPlainHttp: false,
  }
}

/**
 * The resolved default configuration for a config file in `baseDir`.
 *
 * @example
 * ```ts
 * const config = defaultKeyServerConfig('/etc/smqtt') // config.masterKeyFile === '/etc/smqtt/master.key'
 * ```
 */
export function defaultKeyServerConfig(baseDir: string): KeyServerConfig {
  return parseKeyServerConfig(defaultConfigDocument(), baseDir)
}

/**
 * Reads and validates a config file. Relative paths in it are resolved against its folder.
 * Throws `ERR_CONFIG_INVALID` if the file cannot be read, is not JSON, or does not validate, or
 * (POSIX) if it or its folder is writable by group or others.
 *
 * @example
 * ```ts
 * const config = loadKeyServerConfig('/etc/smqtt/keyserver.json')
 * if (config.insecureAllowPlainHttp) log.warn('PLAIN HTTP: every token and key travels in clear')
 * ```
 */
export function loadKeyServerConfig(path: string): KeyServerConfig {
  return loadConfigFile(path, parseKeyServerConfig)
}

/**
 * Validates a parsed config document (or its JSON text) and resolves it against `baseDir`.
 * Unknown fields and values of the wrong type or range throw `ERR_CONFIG_INVALID`, with the
 * field's JSON path (e.g. `$.listen.port`) in the message.
 *
 * @example
 * ```ts
 * const config = parseKeyServerConfig({ listen: { port: 9443 } }, '/etc/smqtt')
 * ```
 */
export function parseKeyServerConfig(json: unknown, baseDir: string): KeyServerConfig {
  if (typeof baseDir !== 'string') throw new TypeError('baseDir must be a string')
  const base = resolve(baseDir)
  const document = typeof json === 'string' ? parseConfigText(json) : json
  const defaults = defaultConfigDocument()
  const root = object(document, '$', [
    'listen',
    'tls',
    'store',
    'masterKeyFile',
    'adminTokenFile',
    'bundleTtlSeconds',
    'revocationRetentionSeconds',
    'rotationLeadSeconds',
    'defaultGraceSeconds',
    'enrollmentTokenTtlSeconds',
    'clientCertificateValidityDays',
    'maxBodyBytes',
    'principalRequestsPerSecond',
    'principalRequestBurst',
    'failedAuthPerAddressPerMinute',
    'deadlines',
    'maxPendingConnectionsPerAddress',
    'insecureAllowPlainHttp',
    'push',
    'cors',
  ])
  const listen = object(orDefault(root.listen, {}), '$.listen', ['host', 'port'])
  const tls = object(orDefault(root.tls, {}), '$.tls', ['certFile', 'keyFile', 'caFile', 'profile'])
  const path = (value: unknown, at: string) => resolve(base, pathString(value, at))
  // A top-level whole number: absent, its default; present, within [min, max].
  const integerSetting = (key: keyof typeof defaults, min: number, max: number) =>
    integer(orDefault(root[key], defaults[key]), `$.${key}`, min, max)
  return {
    baseDir: base,
    listen: {
      host: hostString(orDefault(listen.host, defaults.listen.host), '$.listen.host'),
      port: integer(orDefault(listen.port, defaults.listen.port), '$.listen.port', 0, 65_535),
    },
    tls: {
      certFile: path(orDefault(tls.certFile, defaults.tls.certFile), '$.tls.certFile'),
      keyFile: path(orDefault(tls.keyFile, defaults.tls.keyFile), '$.tls.keyFile'),
      caFile: path(orDefault(tls.caFile, defaults.tls.caFile), '$.tls.caFile'),
      profile: tlsProfile(orDefault(tls.profile, 'intermediate')),
    },
    store: storeUrl(orDefault(root.store, defaults.store), '$.store', base),
    masterKeyFile: path(orDefault(root.masterKeyFile, defaults.masterKeyFile), '$.masterKeyFile'),
    adminTokenFile: path(orDefault(root.adminTokenFile, defaults.adminTokenFile), '$.adminTokenFile'),
    bundleTtlSeconds: integerSetting('bundleTtlSeconds', 1, 30 * DAY),
    revocationRetentionSeconds: integerSetting('revocationRetentionSeconds', 1, 365 * DAY),
    rotationLeadSeconds: integerSetting('rotationLeadSeconds', 0, DAY),
    defaultGraceSeconds: integerSetting('defaultGraceSeconds', 0, 30 * DAY),
    enrollmentTokenTtlSeconds: integerSetting('enrollmentTokenTtlSeconds', MINUTE, 30 * DAY),
    // The CA/Browser Forum's cap on TLS leaves; no renewal path yet, so not shorter by default.
    clientCertificateValidityDays: integerSetting('clientCertificateValidityDays', 1, MAX_CLIENT_CERTIFICATE_DAYS),
    maxBodyBytes: integerSetting('maxBodyBytes', 1024, 16 * 1024 * 1024),
    principalRequestsPerSecond: integerSetting('principalRequestsPerSecond', 1, 100_000),
    principalRequestBurst: integerSetting('principalRequestBurst', 1, 100_000),
    failedAuthPerAddressPerMinute: integerSetting('failedAuthPerAddressPerMinute', 1, 1_000_000),
    deadlines: deadlineSettings(orDefault(root.deadlines, {})),
    maxPendingConnectionsPerAddress: integerSetting('maxPendingConnectionsPerAddress', 1, 1_000_000),
    insecureAllowPlainHttp: boolean(
      orDefault(root.insecureAllowPlainHttp, defaults.insecureAllowPlainHttp),
      '$.insecureAllowPlainHttp',
    ),
    push:
      root.push === undefined
        ? undefined
        : pushSettings(root.push, path, path(orDefault(tls.caFile, defaults.tls.caFile), '$.tls.caFile')),
    cors: root.cors === undefined ? undefined : corsSettings(root.cors),
  }
}

const MAX_CORS_ORIGINS = 100

function deadlineSettings(value: unknown): KeyServerDeadlines {
  const fields = ['handshakeSeconds', 'headersSeconds', 'requestSeconds', 'keepAliveSeconds'] as const
  const given = object(value, '$.deadlines', [...fields])
  const seconds = (key: (typeof fields)[number]) =>
    integer(orDefault(given[key], DEFAULT_DEADLINES[key]), `$.deadlines.${key}`, 1, 3600)
  const deadlines = {
    handshakeSeconds: seconds('handshakeSeconds'),
    headersSeconds: seconds('headersSeconds'),
    requestSeconds: seconds('requestSeconds'),
    keepAliveSeconds: seconds('keepAliveSeconds'),
  }
  // Node refuses a headers deadline longer than the request's (the request includes its headers).
  if (deadlines.headersSeconds > deadlines.requestSeconds)
    throw invalid('$.deadlines.headersSeconds', 'at most $.deadlines.requestSeconds')
  return deadlines
}

function corsSettings(value: unknown) {
  const cors = object(value, '$.cors', ['origins'])
  if (!Array.isArray(cors.origins) || cors.origins.length > MAX_CORS_ORIGINS)
    throw invalid('$.cors.origins', `expected a list of at most ${MAX_CORS_ORIGINS} origins`)
  const origins = cors.origins.map((origin: unknown, i) => {
    // Exactly what a browser sends in Origin: scheme, host, optional port; no path, no wildcard.
    const parsed = typeof origin === 'string' && URL.canParse(origin) ? new URL(origin) : undefined
    if (!parsed || !['https:', 'http:'].includes(parsed.protocol) || parsed.origin !== origin)
      throw invalid(`$.cors.origins[${i}]`, 'an origin such as "https://app.example.com" (no path, no wildcard)')
    return origin
  })
  return { origins }
}

function pushSettings(value: unknown, path: (value: unknown, at: string) => string, defaultCa: string) {
  const push = object(value, '$.push', ['brokerUrl', 'caFile', 'insecurePlainMqtt'])
  const plainAllowed =
    push.insecurePlainMqtt === undefined ? false : boolean(push.insecurePlainMqtt, '$.push.insecurePlainMqtt')
  const url = typeof push.brokerUrl === 'string' ? push.brokerUrl : ''
  const scheme = /^(mqtts|wss|mqtt|ws):\/\/[^\s]+$/.exec(url)?.[1]
  if (!scheme) throw invalid('$.push.brokerUrl', 'an mqtts:// or wss:// URL')
  if ((scheme === 'mqtt' || scheme === 'ws') && !plainAllowed)
    throw invalid('$.push.brokerUrl', 'an mqtts:// or wss:// URL (plain MQTT only with insecurePlainMqtt: true)')
  return { brokerUrl: url, caFile: push.caFile === undefined ? defaultCa : path(push.caFile, '$.push.caFile') }
}

function storeUrl(value: unknown, at: string, base: string): string {
  const expected = 'expected "sqlite:<path>", "sqlite::memory:" or a "postgres://" URL'
  if (typeof value !== 'string') throw invalid(at, expected)
  if (value.startsWith('sqlite:')) {
    const file = value.slice('sqlite:'.length)
    if (file === ':memory:') return value
    // 'sqlite://x' reads as the path '//x': refuse it rather than guess what was meant.
    if (file.startsWith('//')) throw invalid(at, expected)
    return `sqlite:${resolve(base, pathString(file, at))}`
  }
  if (value.startsWith('postgres://') || value.startsWith('postgresql://')) {
    if (!URL.canParse(value)) throw invalid(at, 'the postgres URL does not parse')
    return value
  }
  throw invalid(at, expected)
}

function tlsProfile(value: unknown): TlsProfile {
  if (typeof value !== 'string' || !(TLS_PROFILES as readonly string[]).includes(value))
    throw invalid('$.tls.profile', `expected one of ${TLS_PROFILES.join(', ')}`)
  return value as TlsProfile
}
