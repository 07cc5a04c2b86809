// The key-server transport used when none is given, outside Node (browsers, and any runtime
// without the "node" condition): fetch. `ca` cannot apply: the platform's trust store decides.
import { fetchTransport, type KeyServerTransport } from './transport.js'

export function defaultTransport(_ca: string | undefined): KeyServerTransport {
  return fetchTransport()
}
