// What the plugin remembers per MQTT connection, on the Aedes client object itself (under a
// symbol, so it collides with nothing Aedes or another plugin sets).
import type { Client } from 'aedes'

/** How a session authenticated. */
export type AuthenticationMethod = 'certificate' | 'connect-password' | 'legacy-password'

/** The authenticated principal of one MQTT session. */
export interface Session {
  readonly principalId: string
  readonly method: AuthenticationMethod
  /** Serial of the client certificate, when the session authenticated with one. */
  readonly certificateSerial?: string
}

const SESSION = Symbol.for('smqtt.session')
const CONNECT = Symbol.for('smqtt.connect')

interface Tagged {
  [SESSION]?: Session
  [CONNECT]?: { clientId: string; clean: boolean }
}

/**
 * The authenticated principal of `client`, or undefined before (or without) authentication.
 *
 * @example
 * ```ts
 * broker.on('clientReady', (client) => log.info({ principal: sessionOf(client)?.principalId }))
 * ```
 */
export function sessionOf(client: Client | null | undefined): Session | undefined {
  return client ? (client as unknown as Tagged)[SESSION] : undefined
}

export function setSession(client: Client, session: Session): void {
  ;(client as unknown as Tagged)[SESSION] = session
}

/** The client id exactly as sent in CONNECT (Aedes replaces an empty one with a random id). */
export function connectInfoOf(client: Client): { clientId: string; clean: boolean } | undefined {
  return (client as unknown as Tagged)[CONNECT]
}

export function setConnectInfo(client: Client, info: { clientId: string; clean: boolean }): void {
  ;(client as unknown as Tagged)[CONNECT] = info
}

/** The peer address, for rate limits and the audit log. */
export function addressOf(client: Client): string {
  return (client.conn as { remoteAddress?: string }).remoteAddress ?? 'unknown'
}
