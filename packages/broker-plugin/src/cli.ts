// smqtt-broker: the operator's command line. `start` runs Aedes with the SMQTT plugin from a
// config file (see config.ts and the README's table); `hash-password` makes the scrypt hash of a
// legacy username/password account for `legacyUsers`. Same shape as smqtt-keyserver's CLI.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { dirname } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { parseArgs } from 'node:util'
import { createEnrollmentRequest, exportIdentity, generateIdentity } from '@smqtt/core'
import { resolveCallerPath } from '@smqtt/core/caller-path'
import { assertDeploymentFileMode } from '@smqtt/core/file-modes'
import { hashLegacyPassword } from './authenticate.js'
import { loadBrokerConfig } from './config.js'
import { startBroker } from './server.js'

const HELP: Record<string, string> = {
  start:
    'start [--config FILE]\n  Starts the broker: mqtts:// (and wss://, metrics) listeners from FILE (default ./broker/config.json).\n  SIGINT/SIGTERM: stops accepting, closes every client and the broker, then exits.',
  enroll:
    'enroll --id ID --key-server URL --ca FILE [--out FILE] [--token-file FILE|-]\n  Enrolls this broker as principal ID with a one-time token from `smqtt-keyserver enroll ID --role broker`,\n  read from FILE (first line; mode 0600 or stricter) or from stdin (the default, or `-`), never from the\n  command line: writes its identity to FILE (default ./broker/identity.json, mode 0600)\n  and prints the key server public key for "keyServer.publicKey" (compare it with the one `init` printed).',
  'hash-password':
    'hash-password\n  Reads a password from stdin (one line, or everything until EOF) and prints its scrypt hash\n  for a "legacyUsers" entry: { "username": "...", "principal": "...", "hash": "<this>" }.',
}

function usage(): string {
  return `usage: smqtt-broker <command> [options]   (every command takes --help)\n\n${Object.values(HELP).join('\n\n')}\n`
}

/** A usage or input error: printed without a stack trace. */
/** Why `--token` is refused (argv is visible to every user in `ps`), and what to do instead. */
const TOKEN_IN_ARGV =
  '--token is refused: a token in the command line is visible to every user in `ps`. ' +
  'Pipe it in (… | smqtt-broker enroll …) or give --token-file FILE (or - for stdin).'

export class CliError extends Error {}

/** Where the CLI reads and writes (tests pass their own). */
export interface CliIo {
  readonly stdin: Readable
  readonly stdout: Writable
}

/**
 * Runs one command. Resolves with the exit code, or -1 when a server keeps running.
 *
 * @example
 * ```ts
 * process.exitCode = await main(['hash-password'])
 * ```
 */
export async function main(
  argv: readonly string[],
  io: CliIo = { stdin: process.stdin, stdout: process.stdout },
): Promise<number> {
  const print = (text: string) => io.stdout.write(`${text}\n`)
  const [command, ...rest] = argv
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    io.stdout.write(usage())
    return command ? 0 : 2
  }
  const help = HELP[command]
  if (!help) throw new CliError(`unknown command ${command}\n\n${usage()}`)
  let values: {
    help?: boolean
    config?: string
    id?: string
    'key-server'?: string
    ca?: string
    out?: string
    'token-file'?: string
  }
  // Refused before parsing: a token that starts with '-' would stop parseArgs with another error.
  if (command === 'enroll' && rest.some((arg) => arg === '--token' || arg.startsWith('--token=')))
    throw new CliError(TOKEN_IN_ARGV)
  try {
    values = parseArgs({
      args: [...rest],
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        ...(command === 'start' ? { config: { type: 'string', default: 'broker/config.json' } } : {}),
        ...(command === 'enroll'
          ? {
              id: { type: 'string' },
              'key-server': { type: 'string' },
              ca: { type: 'string' },
              out: { type: 'string', default: 'broker/identity.json' },
              'token-file': { type: 'string' },
            }
          : {}),
      },
    }).values as typeof values
  } catch (err) {
    throw new CliError(`${err instanceof Error ? err.message : String(err)}\n\n${help}`)
  }
  if (values.help) {
    print(help)
    return 0
  }
  switch (command) {
    case 'start': {
      const broker = await startBroker(loadBrokerConfig(resolveCallerPath(values.config ?? 'broker/config.json')))
      const stop = () => {
        broker.close().then(
          () => process.exit(0),
          () => process.exit(1),
        )
      }
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
      return -1 // keep running
    }
    case 'enroll': {
      const { id, ca } = values
      const url = values['key-server']
      if (!id || !url || !ca) throw new CliError(`give --id, --key-server and --ca\n\n${help}`)
      const out = resolveCallerPath(values.out ?? 'broker/identity.json')
      if (existsSync(out)) throw new CliError(`${out} exists: refusing to overwrite an identity`)
      const token = await readToken(values['token-file'], io.stdin)
      if (!token) throw new CliError('no enrollment token (pipe it in, or give --token-file FILE)')
      const identity = generateIdentity(id)
      const answer = await postJson(
        new URL('/v1/enroll', url),
        readFileSync(resolveCallerPath(ca)),
        createEnrollmentRequest(identity, token),
      )
      const keyServerPublicKey = (answer as { keyServerPublicKey?: unknown }).keyServerPublicKey
      if (typeof keyServerPublicKey !== 'string') throw new CliError('the key server answered without its public key')
      mkdirSync(dirname(out), { recursive: true, mode: 0o700 })
      writeFileSync(out, `${JSON.stringify(exportIdentity(identity), null, 2)}\n`, { mode: 0o600, flag: 'wx' })
      print(`enrolled ${id}; identity written to ${out} (mode 0600)`)
      print(`key server public key: ${keyServerPublicKey}`)
      return 0
    }
    case 'hash-password': {
      if ((io.stdin as { isTTY?: boolean }).isTTY)
        process.stderr.write('password (one line; it is echoed — pipe it in to keep it off the screen): ')
      const password = await readPassword(io.stdin)
      if (password.length === 0) throw new CliError('no password on stdin')
      print(await hashLegacyPassword(password))
      return 0
    }
  }
  return 2
}

/** The token's first line from `file` (a secret: mode 0600 or stricter), or from stdin for none or `-`. */
async function readToken(file: string | undefined, stdin: Readable): Promise<string> {
  if (file === undefined || file === '-') return (await readPassword(stdin)).trim()
  const path = resolveCallerPath(file)
  assertDeploymentFileMode(path, 'secret', { label: '--token-file' })
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new CliError(`cannot read --token-file ${path}: ${(err as Error).message}`)
  }
  return (text.split(/\r?\n/)[0] ?? '').trim()
}

/** The first line of stdin (without its line break), or all of it when it has none. */
async function readPassword(stdin: Readable): Promise<string> {
  let text = ''
  for await (const chunk of stdin) {
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8')
    if (/\r?\n/.test(text)) break
  }
  return text.split(/\r?\n/)[0] ?? ''
}

/** POSTs JSON over HTTPS; resolves with the parsed answer, rejects with the key server's error. */
function postJson(url: URL, ca: Buffer, body: unknown): Promise<unknown> {
  const payload = JSON.stringify(body)
  return new Promise((resolvePromise, reject) => {
    const req = request(
      url,
      { method: 'POST', ca, timeout: 15_000, headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown
          try {
            parsed = text ? JSON.parse(text) : undefined
          } catch {
            return reject(new CliError(`the key server answered HTTP ${res.statusCode} with something not JSON`))
          }
          if ((res.statusCode ?? 500) >= 400) {
            const error = (parsed as { error?: { code: string; message: string } } | undefined)?.error
            reject(new CliError(error ? `${error.code}: ${error.message}` : `HTTP ${res.statusCode}`))
          } else resolvePromise(parsed)
        })
      },
    )
    req.on('timeout', () => req.destroy(new CliError('the key server did not answer within 15 s')))
    req.on('error', (err) =>
      reject(
        err instanceof CliError ? err : new CliError(`cannot reach the key server at ${url.origin}: ${err.message}`),
      ),
    )
    req.end(payload)
  })
}
