import { objectProblem } from './_strict-json.js'
import { SmqttError } from './errors.js'

/**
 * Parses the text of a JSON config file (a leading byte-order mark is allowed) or throws
 * `SmqttError('ERR_CONFIG_INVALID')` naming `source`. The one JSON reader the key server's and
 * the broker's config loaders share; each validates the result against its own schema.
 *
 * @example
 * ```ts
 * const document = parseConfigText(readFileSync(path, 'utf8'), `config file ${path}`)
 * ```
 */
export function parseConfigText(text: string, source = 'config'): unknown {
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''))
  } catch (cause) {
    throw new SmqttError('ERR_CONFIG_INVALID', `${source} is not valid JSON`, { cause })
  }
}

function invalid(at: string, expected: string): SmqttError {
  // Name the field and what it must be, never echo the value (it may be a password or a key).
  return new SmqttError('ERR_CONFIG_INVALID', `config ${at}: ${expected}`)
}

/**
 * Strict readers for the fields of a config document (the key server's and the broker's):
 * each returns the value with its type or throws `ERR_CONFIG_INVALID` naming the field's JSON
 * path (`$.listen.port`) and what it must be, never the value itself.
 *
 * @example
 * ```ts
 * const { object, integer } = configField
 * const listen = object(document.listen, '$.listen', ['host', 'port'])
 * const port = integer(listen.port, '$.listen.port', 0, 65_535)
 * ```
 */
export const configField = {
  /** The `ERR_CONFIG_INVALID` to throw for field `at`: names it and what it must be. */
  invalid(at: string, expected: string): SmqttError {
    return invalid(at, expected)
  },
  /** Absent fields take the default; an explicit `null` is a wrong type, not "use the default". */
  orDefault(value: unknown, fallback: unknown): unknown {
    return value === undefined ? fallback : value
  },
  /** A plain object with only the allowed keys. */
  object(value: unknown, at: string, allowed: readonly string[]): Record<string, unknown> {
    const problem = objectProblem(value, [], allowed)
    if (problem?.kind === 'unknown-field')
      throw invalid(`${at}.${problem.key}`, `unknown field (allowed: ${allowed.join(', ')})`)
    if (problem !== undefined) throw invalid(at, 'expected an object')
    return value as Record<string, unknown>
  },
  integer(value: unknown, at: string, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw invalid(at, `expected an integer from ${min} to ${max}`)
    }
    return value
  },
  boolean(value: unknown, at: string): boolean {
    if (typeof value !== 'boolean') throw invalid(at, 'expected true or false')
    return value
  },
  pathString(value: unknown, at: string): string {
    if (typeof value !== 'string' || value.length === 0 || value.includes('\0'))
      throw invalid(at, 'expected a non-empty path')
    return value
  },
  hostString(value: unknown, at: string): string {
    if (typeof value !== 'string' || value.length === 0 || value.length > 255 || /[\s/\0]/.test(value))
      throw invalid(at, 'expected a host name or IP address')
    return value
  },
}
