// The key-server transport used when none is given, on Node: node:https, which takes a private CA.
// Chosen through package.json "imports" (#default-transport), like core's #crypto-backend, so a
// browser bundle resolves the fetch one instead and never sees node:https.
import { nodeHttpsTransport } from './node-https-transport.js'
import type { KeyServerTransport } from './transport.js'

export function defaultTransport(ca: string | undefined): KeyServerTransport {
  return nodeHttpsTransport(ca === undefined ? {} : { ca })
}
