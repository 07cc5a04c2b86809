// The `smqtt-broker` config file: JSON, strictly validated (an unknown field is a typo that would
// otherwise silently fall back to a default), every relative path resolved against the file's
// own folder so the broker behaves the same whatever directory it is started from. Same shape
// and rules as the key server's config (packages/keyserver/src/config.ts).
//
// A plain-MQTT listener exists only behind `insecurePlainListener: true`: loading such a config
// logs nothing; the flag stays in the result so the broker can warn loudly when it listens.
import { resolve } from 'node:path'
import { configField, parseConfigText } from '@smqtt/core'
import { loadConfigFile } from '@smqtt/core/file-modes'
import { TLS_PROFILES, type TlsProfile } from '@smqtt/core/tls'
import { defaultVerifyWorkers } from '@smqtt/core/verify-pool'
import type { ConnectLimits } from './limits.js'
import type { EnforcementMode, LegacyUser } from './plugin-context.js'
import { DEFAULT_PUBLISH_RATE, type PublishRate } from './publish-rate.js'

const { orDefault, invalid, object, integer, boolean, pathString, hostString } = configField

/** A TCP listener address. */
export interface ListenAddress {
  readonly host: string
  readonly port: number
}

/** The broker's resolved configuration: absolute paths, every default filled in. */
export interface BrokerConfig {
  /** Absolute folder of the config file; relative paths in the file were resolved against it. */
  readonly baseDir: string
  readonly listeners: {
    /** MQTT over TLS: always on. */
    readonly mqtts: ListenAddress
    /**
     * MQTT over WebSocket over TLS, if configured. It asks for an (optional) client certificate
     * only with `clientCertificates: true`: Chromium cancels a WebSocket whose TLS handshake asks
     * for one, and browsers are what this listener is for; devices use mqtts.
     */
    readonly wss: (ListenAddress & { readonly path: string; readonly clientCertificates: boolean }) | undefined
    /** Plain MQTT (no TLS): only with `insecurePlainListener`. */
    readonly mqtt: ListenAddress | undefined
  }
  /** True when the config allows the plain listener (the broker logs it as INSECURE). */
  readonly insecurePlainListener: boolean
  /**
   * Server certificate and key (PEM), the CA that client certificates chain to, and the TLS
   * profile of the mqtts and wss listeners (`@smqtt/core/tls`): `intermediate` (TLS 1.2 and 1.3,
   * the default) or `modern` (TLS 1.3 only).
   */
  readonly tls: {
    readonly certFile: string
    readonly keyFile: string
    readonly caFile: string
    readonly profile: TlsProfile
  }
  readonly keyServer: {
    /** `https://` base URL of the key server. */
    readonly url: string
    /** CA of the key server's TLS certificate. */
    readonly caFile: string
    /** The key server's Ed25519 public key (32 bytes), pinned. */
    readonly publicKey: Uint8Array
    /** The broker's own enrolled identity (role `broker`): core `exportIdentity` JSON, mode 0600. */
    readonly identityFile: string
    readonly pullIntervalSeconds: number
  }
  readonly mode: EnforcementMode
  readonly sampleRate: number
  readonly banSeconds: number
  /** Signature verification worker threads; 0: on the event loop. */
  readonly verifyWorkers: number
  /** Per-principal PUBLISH rate limit; false: unlimited. */
  readonly publishRate: PublishRate | false
  readonly maxPacketBytes: number
  readonly topicLimits: { readonly maxBytes: number; readonly maxLevels: number }
  readonly connectLimits: ConnectLimits
  readonly legacyUsers: readonly LegacyUser[]
  /** Prometheus `/metrics` over plain HTTP; undefined when switched off (`"metrics": false`). */
  readonly metrics: ListenAddress | undefined
  /** Where audit entries go (pino, JSON lines); undefined: into the main log on stdout. */
  readonly auditLogFile: string | undefined
  readonly logLevel: LogLevel
  /**
   * Scale-out: subscriptions, retained messages and sessions shared with the other broker nodes
   * through Redis (`mqemitter-redis`, `aedes-persistence-redis`); undefined: this node alone.
   */
  readonly redis: RedisConfig | undefined
}

/** Redis shared by the broker nodes of one deployment. */
export interface RedisConfig {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://…` (TLS). */
  readonly url: string
  /** Prefix of every Redis key and pub/sub channel of this deployment (default `smqtt:`). */
  readonly prefix: string
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const MODES: readonly EnforcementMode[] = ['full', 'sampled', 'binding']

/** The config file as written on disk (relative paths). `keyServer.url` and `keyServer.publicKey` are required. */
export interface BrokerConfigDocument {
  listeners?: {
    mqtts?: { host?: string; port?: number }
    wss?: { host?: string; port?: number; path?: string; clientCertificates?: boolean }
    mqtt?: { host?: string; port?: number }
  }
  insecurePlainListener?: boolean
  tls?: { certFile?: string; keyFile?: string; caFile?: string; profile?: TlsProfile }
  keyServer: { url: string; publicKey: string; caFile?: string; identityFile?: string; pullIntervalSeconds?: number }
  mode?: EnforcementMode
  sampleRate?: number
  banSeconds?: number
  verifyWorkers?: number
  publishRate?: { perSecond: number; burst?: number } | false
  maxPacketBytes?: number
  topicLimits?: { maxBytes?: number; maxLevels?: number }
  connectLimits?: {
    perAddress?: number
    perClientId?: number
    failuresBeforeBan?: number
    windowSeconds?: number
    banSeconds?: number
    connectTimeoutSeconds?: number
    maxUnauthenticatedPerAddress?: number
  }
  legacyUsers?: { username: string; principal: string; hash: string }[]
  metrics?: { host?: string; port?: number } | false
  auditLogFile?: string
  logLevel?: LogLevel
  redis?: { url: string; prefix?: string }
}

/** Defaults of every optional field (paths relative to the config file). */
export const BROKER_CONFIG_DEFAULTS = {
  mqtts: { host: '127.0.0.1', port: 8883 },
  wss: { host: '127.0.0.1', port: 8884, path: '/mqtt' },
  mqtt: { host: '127.0.0.1', port: 1883 },
  tls: {
    certFile: 'tls/server.pem',
    keyFile: 'tls/server.key',
    caFile: 'tls/ca.pem',
    profile: 'intermediate' as TlsProfile,
  },
  identityFile: 'identity.json',
  pullIntervalSeconds: 30,
  mode: 'full' as EnforcementMode,
  sampleRate: 0.05,
  banSeconds: 300,
  /** 1 with two or more cores, else 0 (computed on this machine when the module loads). */
  verifyWorkers: defaultVerifyWorkers(),
  publishRate: DEFAULT_PUBLISH_RATE,
  maxPacketBytes: 256 * 1024,
  topicLimits: { maxBytes: 65_535, maxLevels: 32 },
  metrics: { host: '127.0.0.1', port: 9464 },
  logLevel: 'info' as LogLevel,
  redisPrefix: 'smqtt:',
} as const

/**
 * Reads and validates a config file. Relative paths in it are resolved against its folder.
 * Throws `ERR_CONFIG_INVALID` if the file cannot be read, is not JSON, or does not validate.
 *
 * @example
 * ```ts
 * const config = loadBrokerConfig('/etc/smqtt/broker.json')
 * const broker = await startBroker(config)
 * ```
 */
export function loadBrokerConfig(path: string): BrokerConfig {
  return loadConfigFile(path, parseBrokerConfig)
}

/**
 * Validates a parsed config document (or its JSON text) and resolves it against `baseDir`.
 * Unknown fields and values of the wrong type or range throw `ERR_CONFIG_INVALID` with the
 * field's JSON path (e.g. `$.listeners.mqtts.port`) in the message.
 *
 * @example
 * ```ts
 * const config = parseBrokerConfig({ keyServer: { url: 'https://keys:8443', publicKey } }, '/etc/smqtt')
 * ```
 */
export function parseBrokerConfig(json: unknown, baseDir: string): BrokerConfig {
  if (typeof baseDir !== 'string') throw new TypeError('baseDir must be a string')
  const base = resolve(baseDir)
  const document = typeof json === 'string' ? parseConfigText(json) : json
  const D = BROKER_CONFIG_DEFAULTS
  const root = object(document, '$', [
    'listeners',
    'insecurePlainListener',
    'tls',
    'keyServer',
    'mode',
    'sampleRate',
    'banSeconds',
    'verifyWorkers',
    'publishRate',
    'maxPacketBytes',
    'topicLimits',
    'connectLimits',
    'legacyUsers',
    'metrics',
    'auditLogFile',
    'logLevel',
    'redis',
  ])
  const path = (value: unknown, at: string) => resolve(base, pathString(value, at))

  const listeners = object(orDefault(root.listeners, {}), '$.listeners', ['mqtts', 'wss', 'mqtt'])
  const insecurePlainListener = boolean(orDefault(root.insecurePlainListener, false), '$.insecurePlainListener')
  const mqtts = address(orDefault(listeners.mqtts, {}), '$.listeners.mqtts', D.mqtts)
  let wss: BrokerConfig['listeners']['wss']
  if (listeners.wss !== undefined) {
    const fields = object(listeners.wss, '$.listeners.wss', ['host', 'port', 'path', 'clientCertificates'])
    const { path: wsPath, clientCertificates, ...rest } = fields
    wss = {
      ...address(rest, '$.listeners.wss', D.wss),
      path: wsPathString(orDefault(wsPath, D.wss.path), '$.listeners.wss.path'),
      clientCertificates: boolean(orDefault(clientCertificates, false), '$.listeners.wss.clientCertificates'),
    }
  }
  let plain: ListenAddress | undefined
  if (listeners.mqtt !== undefined) {
    if (!insecurePlainListener)
      throw invalid(
        '$.listeners.mqtt',
        'a plain (unencrypted) MQTT listener needs "insecurePlainListener": true at the top level',
      )
    plain = address(listeners.mqtt, '$.listeners.mqtt', D.mqtt)
  }

  const tls = object(orDefault(root.tls, {}), '$.tls', ['certFile', 'keyFile', 'caFile', 'profile'])
  const caFile = path(orDefault(tls.caFile, D.tls.caFile), '$.tls.caFile')

  if (root.keyServer === undefined) throw invalid('$.keyServer', 'required: { "url", "publicKey" }')
  const ks = object(root.keyServer, '$.keyServer', [
    'url',
    'caFile',
    'publicKey',
    'identityFile',
    'pullIntervalSeconds',
  ])
  const url = typeof ks.url === 'string' && /^https:\/\/[^\s/]+/.test(ks.url) && URL.canParse(ks.url) ? ks.url : ''
  if (!url) throw invalid('$.keyServer.url', 'an https:// URL')
  const publicKey = typeof ks.publicKey === 'string' ? base64url(ks.publicKey) : undefined
  if (publicKey?.length !== 32)
    throw invalid('$.keyServer.publicKey', "the key server's Ed25519 public key, base64url (32 bytes)")

  const topicLimits = object(orDefault(root.topicLimits, {}), '$.topicLimits', ['maxBytes', 'maxLevels'])
  const limits = object(orDefault(root.connectLimits, {}), '$.connectLimits', [
    'perAddress',
    'perClientId',
    'failuresBeforeBan',
    'windowSeconds',
    'banSeconds',
    'connectTimeoutSeconds',
    'maxUnauthenticatedPerAddress',
  ])
  const connectLimits: Record<string, number> = {}
  for (const [key, value] of Object.entries(limits))
    connectLimits[key] = integer(value, `$.connectLimits.${key}`, 1, 1e6)

  const metrics = root.metrics === false ? undefined : address(orDefault(root.metrics, {}), '$.metrics', D.metrics)

  return {
    baseDir: base,
    listeners: { mqtts, wss, mqtt: plain },
    insecurePlainListener,
    tls: {
      certFile: path(orDefault(tls.certFile, D.tls.certFile), '$.tls.certFile'),
      keyFile: path(orDefault(tls.keyFile, D.tls.keyFile), '$.tls.keyFile'),
      caFile,
      profile: oneOf(orDefault(tls.profile, D.tls.profile), '$.tls.profile', TLS_PROFILES),
    },
    keyServer: {
      url,
      caFile: ks.caFile === undefined ? caFile : path(ks.caFile, '$.keyServer.caFile'),
      publicKey,
      identityFile: path(orDefault(ks.identityFile, D.identityFile), '$.keyServer.identityFile'),
      pullIntervalSeconds: integer(
        orDefault(ks.pullIntervalSeconds, D.pullIntervalSeconds),
        '$.keyServer.pullIntervalSeconds',
        1,
        86_400,
      ),
    },
    mode: oneOf(orDefault(root.mode, D.mode), '$.mode', MODES),
    sampleRate: fraction(orDefault(root.sampleRate, D.sampleRate), '$.sampleRate'),
    banSeconds: integer(orDefault(root.banSeconds, D.banSeconds), '$.banSeconds', 1, 30 * 86_400),
    verifyWorkers: integer(orDefault(root.verifyWorkers, D.verifyWorkers), '$.verifyWorkers', 0, 64),
    publishRate: root.publishRate === false ? false : publishRate(orDefault(root.publishRate, D.publishRate)),
    maxPacketBytes: integer(
      orDefault(root.maxPacketBytes, D.maxPacketBytes),
      '$.maxPacketBytes',
      1024,
      268_435_455, // MQTT's largest remaining length
    ),
    topicLimits: {
      maxBytes: integer(orDefault(topicLimits.maxBytes, D.topicLimits.maxBytes), '$.topicLimits.maxBytes', 1, 65_535),
      maxLevels: integer(orDefault(topicLimits.maxLevels, D.topicLimits.maxLevels), '$.topicLimits.maxLevels', 1, 128),
    },
    connectLimits,
    legacyUsers: legacyUsers(orDefault(root.legacyUsers, []), '$.legacyUsers'),
    metrics,
    auditLogFile: root.auditLogFile === undefined ? undefined : path(root.auditLogFile, '$.auditLogFile'),
    logLevel: oneOf(orDefault(root.logLevel, D.logLevel), '$.logLevel', LOG_LEVELS),
    redis: root.redis === undefined ? undefined : redisConfig(root.redis, '$.redis'),
  }
}

function publishRate(value: unknown): PublishRate {
  const fields = object(value, '$.publishRate', ['perSecond', 'burst'])
  if (fields.perSecond === undefined) throw invalid('$.publishRate.perSecond', 'required (or "publishRate": false)')
  const perSecond = integer(fields.perSecond, '$.publishRate.perSecond', 1, 1_000_000)
  // Default burst: two seconds' worth.
  const burst = integer(orDefault(fields.burst, 2 * perSecond), '$.publishRate.burst', 1, 10_000_000)
  return { perSecond, burst }
}

function redisConfig(value: unknown, at: string): RedisConfig {
  const fields = object(value, at, ['url', 'prefix'])
  const url = fields.url
  if (typeof url !== 'string' || !/^rediss?:\/\/[^\s/]+/.test(url) || !URL.canParse(url))
    throw invalid(`${at}.url`, 'a redis:// or rediss:// URL')
  const db = new URL(url).pathname.replace(/^\//, '')
  if (db !== '' && !/^\d{1,5}$/.test(db)) throw invalid(`${at}.url`, 'a redis:// URL whose path is a database number')
  const prefix = orDefault(fields.prefix, BROKER_CONFIG_DEFAULTS.redisPrefix)
  if (typeof prefix !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(prefix))
    throw invalid(`${at}.prefix`, 'expected 1 to 64 of A-Z a-z 0-9 _ . : -')
  return { url, prefix }
}

function legacyUsers(value: unknown, at: string): LegacyUser[] {
  if (!Array.isArray(value)) throw invalid(at, 'expected an array of { "username", "principal", "hash" }')
  const seen = new Set<string>()
  return value.map((entry, i) => {
    const user = object(entry, `${at}[${i}]`, ['username', 'principal', 'hash'])
    for (const key of ['username', 'principal', 'hash'] as const)
      if (typeof user[key] !== 'string' || user[key] === '') throw invalid(`${at}[${i}].${key}`, 'a non-empty string')
    if (!/^scrypt\$/.test(user.hash as string))
      throw invalid(`${at}[${i}].hash`, 'a hash from `smqtt-broker hash-password` (scrypt$…)')
    if (seen.has(user.username as string)) throw invalid(`${at}[${i}].username`, 'listed twice')
    seen.add(user.username as string)
    return { username: user.username as string, principal: user.principal as string, hash: user.hash as string }
  })
}

function address(value: unknown, at: string, fallback: ListenAddress): ListenAddress {
  const fields = object(value, at, ['host', 'port'])
  return {
    host: hostString(orDefault(fields.host, fallback.host), `${at}.host`),
    port: integer(orDefault(fields.port, fallback.port), `${at}.port`, 0, 65_535),
  }
}

function fraction(value: unknown, at: string): number {
  if (typeof value !== 'number' || !(value > 0 && value <= 1)) throw invalid(at, 'expected a number in (0, 1]')
  return value
}

function oneOf<T extends string>(value: unknown, at: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value))
    throw invalid(at, `expected one of ${allowed.join(', ')}`)
  return value as T
}

function wsPathString(value: unknown, at: string): string {
  if (typeof value !== 'string' || !/^\/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$/.test(value))
    throw invalid(at, 'expected a URL path starting with /')
  return value
}

function base64url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined
  return new Uint8Array(Buffer.from(text, 'base64url'))
}
