// How a client certificate names its principal: one URI subject alternative name,
// `urn:smqtt:principal:<encodeURIComponent(id)>`. The key server writes it (CN is for humans);
// brokers read it from the certificate TLS has already verified. The rule lives here so both
// sides spell it the same way.
import { isValidPrincipalId } from './signed-document.js'

export const PRINCIPAL_URI_PREFIX = 'urn:smqtt:principal:'

/**
 * The URI naming principal `id` in its client certificate.
 *
 * @example
 * ```ts
 * principalUri('thermostat-1') // 'urn:smqtt:principal:thermostat-1'
 * ```
 */
export function principalUri(id: string): string {
  return PRINCIPAL_URI_PREFIX + encodeURIComponent(id)
}

/**
 * The principal a certificate's URI names, given all its URI subject alternative names; undefined
 * when there is none, more than one (ambiguous), or it is not the one canonical spelling of a
 * valid id (fail closed).
 *
 * @example
 * ```ts
 * principalIdFromUris(['urn:smqtt:principal:thermostat-1']) // 'thermostat-1'
 * ```
 */
export function principalIdFromUris(uris: readonly string[]): string | undefined {
  const ours = uris.filter((uri) => uri.startsWith(PRINCIPAL_URI_PREFIX))
  if (ours.length !== 1 || ours[0] === undefined) return undefined
  let id: string
  try {
    id = decodeURIComponent(ours[0].slice(PRINCIPAL_URI_PREFIX.length))
  } catch {
    return undefined
  }
  return isValidPrincipalId(id) && principalUri(id) === ours[0] ? id : undefined
}
