// How secure() logs a wrapped mqtt.js client in (src/_connect-login.ts), seen from the broker's
// side of the socket: a plain Aedes broker on TCP that records every connection and CONNECT.
// mqtt.js builds its first CONNECT, without credentials, inside mqtt.connect(); secure() called
// in the same tick must restart that attempt before anything leaves, then log in with a
// key-proof password, and only once this process holds the identity's lock.
import { createServer, type Server } from 'node:net'
import { generateIdentity, isConnectPassword } from '@smqtt/core'
import { waitUntil } from '@smqtt/test-kit/client'
import { Aedes } from 'aedes'
import mqtt from 'mqtt'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { type ClientStorage, memoryStorage, type SecureClient, secure } from '../src/index.js'

let broker: Aedes
let server: Server
let url: string
/** TCP connections the broker accepted, and the credentials of each CONNECT it read. */
let connections: number
let logins: { clientId: string; username: string | undefined; password: string | undefined }[]
const clients: SecureClient[] = []

beforeEach(async () => {
  connections = 0
  logins = []
  broker = await Aedes.createBroker()
  broker.authenticate = (client, username, password, done) => {
    logins.push({ clientId: client.id, username, password: password?.toString('utf8') })
    done(null, true)
  }
  server = createServer((socket) => {
    connections++
    broker.handle(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('no address')
  url = `mqtt://127.0.0.1:${address.port}`
})
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => {})))
  await new Promise<void>((resolve) => broker.close(() => resolve()))
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

const identity = generateIdentity('thermostat-1')
const options = (storage: ClientStorage) => ({
  identity,
  kid: 1,
  storage,
  // Keys are not what these tests look at: a key server that is not there.
  keyServer: { url: 'https://127.0.0.1:1', keyServerPublicKey: new Uint8Array(32) },
})
const wrap = (storage: ClientStorage, extra: mqtt.IClientOptions = {}) => {
  const client = secure(mqtt.connect(url, { clientId: identity.id, reconnectPeriod: 0, ...extra }), options(storage))
  client.on('error', () => {})
  client.on('keyServerError', () => {})
  clients.push(client)
  return client
}
const connectedOnce = (client: SecureClient) =>
  new Promise<void>((resolve) => (client.connected ? resolve() : client.once('connect', () => resolve())))

test("secure(mqtt.connect(url, { clientId })): mqtt.js's credential-less first CONNECT never leaves; the one CONNECT sent carries a key-proof password", async () => {
  const client = wrap(memoryStorage())
  await connectedOnce(client)
  expect(connections).toBe(1)
  expect(logins).toHaveLength(1)
  expect(logins[0]?.clientId).toBe('thermostat-1')
  expect(logins[0]?.username).toBe('thermostat-1')
  expect(isConnectPassword(logins[0]?.password ?? '')).toBe(true)
})

test('every reconnect gets a fresh key-proof password (each nonce is accepted once)', async () => {
  const client = wrap(memoryStorage(), { reconnectPeriod: 50 })
  await connectedOnce(client)
  // The broker drops the connection: mqtt.js reconnects after 50 ms.
  for (const c of Object.values((broker as unknown as { clients: Record<string, { close(): void }> }).clients))
    c.close()
  await waitUntil(() => logins.length >= 2 && client.connected, 'a reconnect')
  expect(new Set(logins.map((l) => l.password)).size).toBe(logins.length)
  expect(logins.every((l) => isConnectPassword(l.password ?? ''))).toBe(true)
})

test("secure() sends no CONNECT before this process holds the identity's lock", async () => {
  let grant: (release: () => Promise<void>) => void = () => {}
  const storage: ClientStorage = {
    ...memoryStorage(),
    lock: () => new Promise((resolve) => (grant = resolve)),
  }
  const client = wrap(storage)
  await new Promise((resolve) => setTimeout(resolve, 300))
  expect(connections).toBe(0) // not even a TCP connection
  grant(async () => {})
  await connectedOnce(client)
  expect(connections).toBe(1)
  expect(logins).toHaveLength(1)
})

test('a client with credentials of its own keeps them (connectPassword applies only to clients without)', async () => {
  const client = wrap(memoryStorage(), { username: 'legacy-user', password: 'its own' })
  await connectedOnce(client)
  expect(logins).toEqual([{ clientId: 'thermostat-1', username: 'legacy-user', password: 'its own' }])
})

test('with a list of servers, the restarted first attempt goes to the first one listed, not the next', async () => {
  const { port } = new URL(url)
  // The second server is a port nothing listens on: an attempt there would never connect.
  const nowhere = createServer()
  await new Promise<void>((resolve) => nowhere.listen(0, '127.0.0.1', resolve))
  const { port: closed } = nowhere.address() as { port: number }
  await new Promise((resolve) => nowhere.close(resolve))
  const client = wrap(memoryStorage(), {
    servers: [
      { host: '127.0.0.1', port: Number(port) },
      { host: '127.0.0.1', port: closed },
    ],
  })
  await connectedOnce(client)
  expect(connections).toBe(1)
})
