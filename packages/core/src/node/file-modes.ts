// Deployment files checked before they are trusted (Node only: `@smqtt/core/file-modes`). One
// rule set for the key server and the broker, so `master.key`, `admin.token`, TLS private keys,
// the broker's identity, config files and the folders that hold them are all refused the same way:
//
// - a secret (a private key, a token, a master key) must be neither readable nor writable by
//   group or others: `chmod 600 FILE`;
// - a file that steers the server (a config file, a CA or certificate file) must not be writable
//   by group or others: whoever can write it can redirect the server or add a trust anchor;
// - the folder holding either must not be writable by group or others (unless sticky, as /tmp):
//   whoever can write it can replace the file.
//
// POSIX only: Windows reports synthetic modes, and its ACLs are the operator's to set.
import { readFileSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { parseConfigText } from '../config-text.js'
import { SmqttError } from '../errors.js'

/** What a file is, which decides the bits it may not have. */
export type DeploymentFileKind = 'secret' | 'config' | 'directory'

export interface DeploymentFileCheck {
  /** The error code to throw (default `ERR_CONFIG_INVALID`; the master key's file: `ERR_MASTER_KEY_INVALID`). */
  readonly code?: 'ERR_CONFIG_INVALID' | 'ERR_MASTER_KEY_INVALID'
  /** Names the file in the message, e.g. `config $.tls.keyFile:` or `master key file`. */
  readonly label?: string
  /** The file's mode if the caller has already stat()ed it. */
  readonly mode?: number
}

const SECRET_FORBIDDEN = 0o077
const WRITABLE_FORBIDDEN = 0o022
const STICKY = 0o1000

/**
 * Throws a typed `SmqttError` naming `path`, its mode and the `chmod` that fixes it when
 * `path` (or, for a file, the folder that holds it) is more open than its kind allows. A path
 * that does not exist passes: the read that follows reports it.
 *
 * @example
 * ```ts
 * assertDeploymentFileMode(config.tls.keyFile, 'secret', { label: 'config $.tls.keyFile:' })
 * ```
 */
export function assertDeploymentFileMode(
  path: string,
  kind: DeploymentFileKind,
  check: DeploymentFileCheck = {},
): void {
  if (process.platform === 'win32') return
  const { code = 'ERR_CONFIG_INVALID', label } = check
  const mode = check.mode ?? modeOf(path)
  if (mode === undefined) return
  const what = `${label ? `${label} ` : ''}${path}`
  const octal = (mode & 0o777).toString(8).padStart(3, '0')
  if (kind === 'secret' && (mode & SECRET_FORBIDDEN) !== 0)
    throw new SmqttError(
      code,
      `${what} is a secret but is readable or writable by group or others (mode ${octal}); run: chmod 600 ${path}`,
    )
  if (kind !== 'secret' && (mode & WRITABLE_FORBIDDEN) !== 0 && !(kind === 'directory' && (mode & STICKY) !== 0))
    throw new SmqttError(
      code,
      `${what} is writable by group or others (mode ${octal}), so they could redirect the server; run: chmod go-w ${path}`,
    )
  if (kind !== 'directory') {
    const folder = dirname(path)
    if (folder !== path)
      assertDeploymentFileMode(folder, 'directory', { code, label: `${label ? `${label} ` : ''}folder` })
  }
}

/**
 * Reads a deployment file as UTF-8 text once assertDeploymentFileMode has passed it. A file that
 * cannot be read throws the same typed error (`check.code`), naming it: `<label> <path> cannot be read`.
 *
 * @example
 * ```ts
 * const text = readDeploymentFile('/etc/smqtt/keyserver.json', 'config', { label: 'config file' })
 * ```
 */
export function readDeploymentFile(
  path: string,
  kind: Exclude<DeploymentFileKind, 'directory'>,
  check: DeploymentFileCheck = {},
): string {
  assertDeploymentFileMode(path, kind, check)
  try {
    return readFileSync(path, 'utf8')
  } catch (cause) {
    const { code = 'ERR_CONFIG_INVALID', label } = check
    throw new SmqttError(code, `${label ? `${label} ` : ''}${path} cannot be read`, { cause })
  }
}

/**
 * Reads a service's config file: checked as a deployment file (whoever can write it, or its
 * folder, can point the service at their own keys), parsed as JSON (`ERR_CONFIG_INVALID` naming
 * the file), then handed with its folder, for the relative paths in it, to `parse`.
 *
 * @example
 * ```ts
 * const config = loadConfigFile('/etc/smqtt/broker.json', parseBrokerConfig)
 * ```
 */
export function loadConfigFile<T>(path: string, parse: (document: unknown, folder: string) => T): T {
  const absolute = resolve(path)
  const text = readDeploymentFile(absolute, 'config', { label: 'config file' })
  return parse(parseConfigText(text, `config file ${absolute}`), dirname(absolute))
}

function modeOf(path: string): number | undefined {
  try {
    return statSync(path).mode
  } catch {
    return undefined // missing or unreadable: the caller's read reports it with its own message
  }
}
