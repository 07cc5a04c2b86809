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
