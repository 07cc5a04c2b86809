// What smqtt-pub and smqtt-sub share: the options that pick an identity and a broker, loading
// (or first enrolling) the identity from its storage folder, and connecting through the public
// client API (secureConnectAsync), so the tools seal and verify exactly as an application does.

import { readFile } from 'node:fs/promises'
import type { ParseArgsConfig } from 'node:util'
import { isSmqttError } from '@smqtt/core'
import { resolveCallerPath } from '@smqtt/core/caller-path'
import {
  type Enrollment,
  enroll,
  fileStorage,
  loadEnrollment,
  type SecureClient,
  type StringStorage,
  secureConnectAsync,
} from '../index.js'

/** Exit codes shared by both tools (smqtt-sub adds 27 for -W). */
export const EXIT = {
  ok: 0,
  /** A message was refused or not acknowledged (pub); every subscription was refused (sub). */
  refused: 1,
  usage: 2,
  /** No connection: identity, enrollment, key server, broker or login. */
  connect: 3,
} as const

/** Thrown for a command line that cannot run; the tool prints its usage line and exits 2. */
export class UsageError extends Error {}

/** Thrown where the tool cannot get connected; exits 3. */
export class ConnectError extends Error {}

/** Where output goes (the process's streams; a test may pass its own). */
export interface ToolIo {
  readonly stdin: NodeJS.ReadableStream
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WritableStream
}

export const processIo: ToolIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }

/** The options both tools take (parseArgs spec). No option carries a secret: those come from files or stdin. */
export const COMMON_OPTIONS = {
  help: { type: 'boolean' },
  state: { type: 'string' },
  'token-file': { type: 'string' },
  id: { type: 'string' },
  'key-server': { type: 'string' },
  cafile: { type: 'string' },
  url: { type: 'string', short: 'L' },
  host: { type: 'string', short: 'h' },
  port: { type: 'string', short: 'p' },
  'client-id': { type: 'string', short: 'i' },
  username: { type: 'string', short: 'u' },
  'password-file': { type: 'string' },
  'no-key-login': { type: 'boolean' },
  qos: { type: 'string', short: 'q' },
  'connect-timeout': { type: 'string' },
  debug: { type: 'boolean', short: 'd' },
} as const satisfies NonNullable<ParseArgsConfig['options']>

/** The help text of the common options (both tools print it under their own). */
export const COMMON_HELP = `Identity (a folder made by enroll(); one running tool per folder):
  --state DIR             the identity's storage folder (required)
  --token-file FILE|-     enroll into DIR first if it holds no identity, with the one-time
                          token in FILE (- reads stdin); needs --id and --key-server
  --id ID                 the principal id to enroll as
  --key-server URL         the key server (default: the one recorded at enrollment)
  --cafile FILE           CA certificate (PEM) of the broker's and the key server's TLS
Broker:
  -L, --url URL           mqtts://host:port, mqtt://host:port, wss://host:port/path, ...
  -h, --host HOST         instead of -L (default localhost); TLS when --cafile is given
  -p, --port PORT         default 8883 with --cafile, else 1883
  -i, --client-id ID      MQTT client id (default: the principal id; an SMQTT broker requires that)
Login (default: a key-proof CONNECT password, as an SMQTT broker expects):
  --no-key-login          send no password (a third-party broker without authentication)
  -u, --username NAME     the broker's own username (then no key-proof password)
  --password-file FILE|-  the broker's own password, from FILE or stdin (-)
Other:
  -q, --qos 0|1|2         QoS (default 0)
  --connect-timeout SEC   wait this long for the connection and the keys (default 15)
  -d, --debug             print connection and key events on stderr
  --help                  print this help and exit 0`

export type CommonValues = {
  [K in keyof typeof COMMON_OPTIONS]?: (typeof COMMON_OPTIONS)[K] extends { type: 'boolean' } ? boolean : string
}

/** A whole number in [min, max] from an option, or a UsageError naming it. */
export function integerOption(value: string | undefined, name: string, fallback: number, min: number, max: number) {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`${name} must be a whole number from ${min} to ${max}, not "${value}"`)
  return n
}

export function qosOption(values: CommonValues): 0 | 1 | 2 {
  return integerOption(values.qos, '-q', 0, 0, 2) as 0 | 1 | 2
}

/** The whole of stdin as bytes. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)
  return new Uint8Array(Buffer.concat(chunks))
}

/** A secret from a file, or stdin for `-`: its first non-empty line, trimmed (so a CLI's whole output works). */
async function readSecret(path: string, io: ToolIo, what: string): Promise<string> {
  let text: string
  try {
    text = path === '-' ? Buffer.from(await readAll(io.stdin)).toString('utf8') : await readFile(path, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read the ${what} from ${path}: ${(err as Error).message}`)
  }
  const line = text.split(/\r?\n/).find((l) => l.trim() !== '')
  if (line === undefined) throw new UsageError(`${path === '-' ? 'stdin' : path} holds no ${what}`)
  return line.trim()
}

/** Which options read stdin (at most one may). */
export function stdinReaders(values: CommonValues): string[] {
  return [
    ...(values['token-file'] === '-' ? ['--token-file -'] : []),
    ...(values['password-file'] === '-' ? ['--password-file -'] : []),
  ]
}

/** The broker URL from -L, or -h/-p like mosquitto (TLS when --cafile is given). */
export function brokerUrl(values: CommonValues): string {
  if (values.url !== undefined) {
    if (values.host !== undefined || values.port !== undefined) throw new UsageError('give -L or -h/-p, not both')
    let url: URL
    try {
      url = new URL(values.url)
    } catch {
      throw new UsageError(`-L ${values.url} is not a URL`)
    }
    if (!['mqtt:', 'mqtts:', 'ws:', 'wss:'].includes(url.protocol))
      throw new UsageError(`-L must be mqtt://, mqtts://, ws:// or wss://, not ${url.protocol}//`)
    return values.url
  }
  const tls = values.cafile !== undefined
  const port = integerOption(values.port, '-p', tls ? 8883 : 1883, 1, 65_535)
  const host = values.host ?? 'localhost'
  return `${tls ? 'mqtts' : 'mqtt'}://${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** A connected secure client, and what it was made from. */
export interface Connected {
  readonly client: SecureClient
  readonly enrollment: Enrollment
  readonly url: string
}

/**
 * Loads the identity from `--state` (enrolling it first with `--token-file`), then connects and
 * loads its keys. Throws UsageError for options that cannot work, ConnectError otherwise.
 */
export async function connectTool(values: CommonValues, io: ToolIo, tool: string): Promise<Connected> {
  if (values.state === undefined) throw new UsageError('--state DIR is required')
  const url = brokerUrl(values)
  const timeoutMs = integerOption(values['connect-timeout'], '--connect-timeout', 15, 1, 3_600) * 1000
  if (values.username === undefined && values['password-file'] !== undefined)
    throw new UsageError('--password-file needs -u')
  if (values['no-key-login'] && values.username !== undefined)
    throw new UsageError('give -u or --no-key-login, not both')
  if (stdinReaders(values).length > 1) throw new UsageError('only one option may read stdin')
  const readCa = async () => {
    if (values.cafile === undefined) return undefined
    try {
      return await readFile(values.cafile, 'utf8')
    } catch (err) {
      throw new UsageError(`cannot read --cafile: ${(err as Error).message}`)
    }
  }
  const ca = await readCa()
  const password =
    values['password-file'] === undefined ? undefined : await readSecret(values['password-file'], io, 'password')
  const debug = (line: string) => values.debug && io.stderr.write(`${tool}: ${line}\n`)

  const storage: StringStorage = fileStorage(values.state)
  const enrollment = await identityIn(storage, values, ca, io, debug)
  const keyServerUrl = values['key-server'] ?? enrollment.keyServerUrl
  debug(`identity ${enrollment.identity.id} (kid ${enrollment.kid}), key server ${keyServerUrl}, broker ${url}`)
  let client: SecureClient
  try {
    client = await secureConnectAsync(url, {
      identity: enrollment.identity,
      kid: enrollment.kid,
      storage,
      keyServer: {
        url: keyServerUrl,
        ...(ca === undefined ? {} : { ca }),
        keyServerPublicKey: enrollment.keyServerPublicKey,
      },
      connectPassword: !values['no-key-login'] && values.username === undefined,
      timeoutMs,
      mqtt: {
        reconnectPeriod: 0,
        connectTimeout: timeoutMs,
        ...(ca === undefined ? {} : { ca }),
        ...(values['client-id'] === undefined ? {} : { clientId: values['client-id'] }),
        ...(values.username === undefined ? {} : { username: values.username }),
        ...(password === undefined ? {} : { password }),
      },
    })
  } catch (err) {
    throw new ConnectError(`cannot connect to ${url} as ${enrollment.identity.id}: ${oneLine(err)}`)
  }
  // From here on, each tool reports what matters to it (a refused publish, a lost connection);
  // the socket errors behind those, and any during the goodbye, only with -d.
  client.on('error', (err) => debug(oneLine(err)))
  client.on('keyServerError', (err) => debug(`key server: ${oneLine(err)}`))
  client.on('storageError', (err) => io.stderr.write(`${tool}: storage: ${oneLine(err)}\n`))
  client.on('keysUpdated', (info) => debug(`keys updated (${info.source})`))
  client.on('freshness', (event) =>
    io.stderr.write(
      `${tool}: ${event.fresh ? 'keys confirmed current again' : 'cannot confirm the keys are current (key server unreachable)'}\n`,
    ),
  )
  return { client, enrollment, url }
}

async function identityIn(
  storage: StringStorage,
  values: CommonValues,
  ca: string | undefined,
  io: ToolIo,
  debug: (line: string) => void,
): Promise<Enrollment> {
  let stored: Enrollment | undefined
  try {
    stored = await loadEnrollment(storage)
  } catch (err) {
    throw new ConnectError(`cannot load the identity in ${values.state}: ${oneLine(err)}`)
  }
  if (stored) {
    if (values.id !== undefined && values.id !== stored.identity.id)
      throw new UsageError(`${values.state} holds ${stored.identity.id}, not ${values.id}`)
    if (values['token-file'] !== undefined) debug(`${values.state} already holds an identity: the token is not used`)
    return stored
  }
  if (values['token-file'] === undefined)
    throw new UsageError(`${values.state} holds no identity: enroll with --token-file, --id and --key-server`)
  if (values.id === undefined || values['key-server'] === undefined)
    throw new UsageError('enrolling needs --id and --key-server')
  const token = await readSecret(values['token-file'], io, 'token')
  try {
    const enrolled = await enroll({
      keyServerUrl: values['key-server'],
      ...(ca === undefined ? {} : { ca }),
      token,
      id: values.id,
      storage,
    })
    debug(`enrolled ${values.id} into ${values.state}`)
    return enrolled
  } catch (err) {
    throw new ConnectError(`cannot enroll ${values.id} at ${values['key-server']}: ${oneLine(err)}`)
  }
}

/** An error as one line: an SmqttError with its code first. */
export function oneLine(err: unknown): string {
  if (isSmqttError(err)) return `${err.code}: ${err.message}`
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message
  }
  return String(err)
}

/** Prints what went wrong and returns the exit code for it. */
export function exitCodeFor(err: unknown, io: ToolIo, tool: string, usage: string): number {
  if (err instanceof UsageError || (err as { code?: unknown })?.code?.toString().startsWith('ERR_PARSE_ARGS')) {
    io.stderr.write(`${tool}: ${(err as Error).message}\n${usage}\nRun ${tool} --help for every option.\n`)
    return EXIT.usage
  }
  io.stderr.write(`${tool}: ${err instanceof ConnectError ? err.message : oneLine(err)}\n`)
  return err instanceof ConnectError ? EXIT.connect : EXIT.refused
}

/**
 * Run from the repository through `npm run pub|sub -w @smqtt/client`, npm starts the tool in
 * packages/client: go back to where the user typed the command, so relative paths mean what they
 * meant there (the rule of every SMQTT command line, `resolveCallerPath`).
 */
export function enterCallerDirectory(): void {
  process.chdir(resolveCallerPath('.'))
}

/** How long a finished tool waits for its handles to close on their own before it exits anyway. */
const EXIT_GRACE_MS = 3_000

/** Sets the exit code once `run` settles; exits regardless after a grace period if a handle lingers. */
export function exitAfter(run: Promise<number>): void {
  run.then(
    (code) => {
      process.exitCode = code
      setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref()
    },
    (err: unknown) => {
      process.stderr.write(`${oneLine(err)}\n`)
      process.exit(EXIT.refused)
    },
  )
}
