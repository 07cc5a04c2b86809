// @smqtt/client in a real browser: Debian Chromium (headless, through playwright-core) loads a
// page that bundles the client's browser entry with esbuild. Against the real key server
// (HTTPS, SQLite, dev PKI, CORS for the page's origin) and the real broker (startBroker: Aedes +
// plugin, wss:// listener), the page enrolls with a one-time token (fetch), keeps its identity
// in IndexedDB across a reload, connects over wss:// with a CONNECT password, decrypts what a
// Node thermostat publishes, publishes a command a Node lock verifies as coming from it, and
// refuses a replayed envelope the broker lets through (a QoS 1 DUP retransmission). Its private
// keys are non-extractable CryptoKeys: a script reading all of the origin's storage finds none.
// TLS: the page trusts exactly the dev server certificate's key (SPKI pin), nothing else.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createHttpsServer, type Server } from 'node:https'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { parseBrokerConfig, type RunningBroker, startBroker } from '@smqtt/broker-plugin'
import { createConnectPassword, exportIdentity, parseEnvelope } from '@smqtt/core'
import { ensureDevPki } from '@smqtt/keyserver'
import { enrollThrough, waitUntil, within } from '@smqtt/test-kit/client'
import type { Harness } from '@smqtt/test-kit/keyserver'
import mqtt, { type MqttClient } from 'mqtt'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { bundleForBrowser, type HeadlessChromium, launchChromium } from '../../../test/_browser.js'
import { CHROMIUM, toolAvailable } from '../../../test/_tools.js'
import { type SecureClient, secureConnectAsync } from '../src/index.js'
import { startLiveHarness } from './_live-harness.js'
import type { PageApi } from './browser/page.js'

const pageDir = join(dirname(fileURLToPath(import.meta.url)), 'browser')
const HOME = 'home/1'
const THERMOSTAT_TOPIC = `${HOME}/thermostat/thermostat-1/temp`
const LOCK_TOPIC = `${HOME}/lock/lock-front/cmd`

/** The page's handle, for page.evaluate callbacks (they run in the browser). */
declare const smqtt: PageApi

/** Serves the page and its bundle over HTTPS on a loopback port; returns the server and its origin. */
async function servePage(tls: { key: string; cert: string }, script: Uint8Array) {
  const files = new Map([
    ['/', { type: 'text/html', body: readFileSync(join(pageDir, 'index.html')) as Uint8Array }],
    ['/page.js', { type: 'text/javascript', body: script }],
  ])
  const server = createHttpsServer(tls, (req, res) => {
    const file = files.get(req.url ?? '')
    res.writeHead(file ? 200 : 404, { 'content-type': file?.type ?? 'text/plain' }).end(file?.body ?? 'not found')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('page server has no address')
  return { server, origin: `https://127.0.0.1:${address.port}` }
}

describe.runIf(toolAvailable(CHROMIUM))('@smqtt/client in headless Chromium, over wss://', () => {
  let dir: string
  let h: Harness
  let broker: RunningBroker
  let pageServer: Server
  let origin: string
  let chromium: HeadlessChromium
  let page: Page
  let stopClock: (() => void) | undefined
  let bundleGzipBytes = 0
  const nodeClients: (SecureClient | MqttClient)[] = []

  /** A Node device enrolled through the client's own enroll() (memory storage). */
  const nodeDevice = (id: string, roles: string[]) => enrollThrough(h, id, roles)
  /** Node devices of the first test, used again by the last. */
  let thermostat: Awaited<ReturnType<typeof nodeDevice>>
  let lockClient: SecureClient
  /** What the Node lock received, with the sender it verified. */
  const commands: { text: string; sender: string | undefined }[] = []

  /** The payloads the broker routes on `topic` from now on. */
  async function captureOnBroker(topic: string): Promise<Uint8Array[]> {
    const wire: Uint8Array[] = []
    await new Promise<void>((resolve) =>
      broker.broker.subscribe(
        topic,
        (packet, done) => {
          wire.push(new Uint8Array(packet.payload as Buffer))
          done()
        },
        resolve,
      ),
    )
    return wire
  }

  async function connectNode(device: Awaited<ReturnType<typeof nodeDevice>>): Promise<SecureClient> {
    const client = await secureConnectAsync(broker.urls.mqtts, {
      ...device,
      keyServer: { url: h.url, ca: h.caPem, keyServerPublicKey: device.keyServerPublicKey },
      mqtt: { ca: h.caPem, reconnectPeriod: 0, connectTimeout: 10_000 },
    })
    nodeClients.push(client)
    return client
  }

  beforeAll(async () => {
    // The page's origin must be known before the key server starts (its CORS list), so the
    // dev PKI is made first, in the directory the harness then uses.
    dir = mkdtempSync(join(tmpdir(), 'smqtt-browser-'))
    const pki = await ensureDevPki(join(dir, 'pki'))
    const script = await bundleForBrowser(join(pageDir, 'page.ts'))
    bundleGzipBytes = gzipSync(script, { level: 9 }).length
    ;({ server: pageServer, origin } = await servePage({ key: pki.serverKeyPem, cert: pki.serverCertPem }, script))

    ;({ h, stopClock } = await startLiveHarness({ dir, corsOrigins: [origin] }))

    const brokerPrincipal = await h.enroll('broker-1', ['broker'])
    const identityFile = join(dir, 'broker-identity.json')
    writeFileSync(identityFile, JSON.stringify(exportIdentity(brokerPrincipal.identity)), { mode: 0o600 })
    broker = await startBroker(
      parseBrokerConfig(
        {
          // Browsers get no client-certificate request: Chromium would cancel the WebSocket.
          listeners: { mqtts: { port: 0 }, wss: { port: 0, path: '/mqtt' } },
          tls: { certFile: 'pki/server.pem', keyFile: 'pki/server.key', caFile: 'pki/ca.pem' },
          keyServer: {
            url: h.url,
            publicKey: Buffer.from(h.keyServer.publicKey).toString('base64url'),
            identityFile,
          },
          metrics: false,
        },
        dir,
      ),
      { logLevel: 'silent' },
    )

    // Trust exactly the dev server key (page, key server and broker share it), nothing else.
    chromium = await launchChromium(pki.serverCertPem)
    page = chromium.page
    await page.goto(`${origin}/`)
    await page.waitForFunction(() => typeof smqtt === 'object', undefined, { timeout: 10_000 })
    expect(chromium.pageErrors).toEqual([])
  }, 60_000)

  afterAll(async () => {
    stopClock?.()
    await page?.evaluate(() => smqtt.close()).catch(() => {})
    await chromium?.close()
    await Promise.all(nodeClients.map((c) => within(c.endAsync(true), 5_000, 'end node client').catch(() => {})))
    await broker?.close()
    await new Promise<void>((resolve) => (pageServer ? pageServer.close(() => resolve()) : resolve()))
    await h?.close() // removes `dir`
    if (dir) rmSync(dir, { recursive: true, force: true })
    if (bundleGzipBytes)
      console.log(
        `browser test page bundle (client + core + mqtt.js), gzip: ${(bundleGzipBytes / 1024).toFixed(1)} KiB`,
      )
  }, 30_000)

  test('enrolls, connects over wss://, decrypts, publishes verifiably and refuses a replay', async () => {
    thermostat = await nodeDevice('thermostat-1', ['thermostat'])

    // 1. Enrollment from the page: fetch to the key server (CORS), identity into IndexedDB.
    const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: 'app-browser', roles: ['app'] })
    const enrolled = await page.evaluate((args) => smqtt.enroll(args), {
      keyServerUrl: h.url,
      token: (token.body as { token: string }).token,
      id: 'app-browser',
    })
    expect(enrolled.id).toBe('app-browser')
    // The identity survives a reload: it lives in IndexedDB, not in the page's memory.
    await page.reload()
    await page.waitForFunction(() => typeof smqtt === 'object', undefined, { timeout: 10_000 })
    const storedIdentity = await page.evaluate(() => smqtt.stored('identity'))
    expect(JSON.parse(storedIdentity ?? '{}')).toMatchObject({ id: 'app-browser' })

    // The lock enrolls after the page, so its first bundle already holds the page's key; the
    // broker pulls its snapshot now rather than at its next interval.
    const lock = await nodeDevice('lock-front', ['lock'])
    expect(await broker.plugin.pull()).toBe(true)

    // 2. wss:// with the CONNECT password; keys fetched from the key server by the page.
    const wssUrl = broker.urls.wss as string
    expect(wssUrl).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/mqtt$/)
    await page.evaluate((args) => smqtt.connect(args), {
      brokerUrl: wssUrl,
      subscribe: `${HOME}/thermostat/#`,
      freshnessIntervalSeconds: 1,
    })

    // 3. Node thermostat -> browser: sealed, routed, opened in the page with the sender verified.
    const thermostatClient = await connectNode(thermostat)
    await thermostatClient.publishAsync(THERMOSTAT_TOPIC, '21.5', { qos: 1 })
    await page.waitForFunction(() => smqtt.received.length >= 1, undefined, { timeout: 10_000 })
    expect(await page.evaluate(() => smqtt.received)).toEqual([
      { topic: THERMOSTAT_TOPIC, text: '21.5', sender: 'thermostat-1', encrypted: true },
    ])

    // The page's freshness poll crosses CORS: its If-None-Match is allowed and the ETag it sends
    // back was readable (the key server answered 304).
    await page.waitForFunction(() => smqtt.freshness().checks >= 2, undefined, { timeout: 10_000 })
    expect(await page.evaluate(() => smqtt.freshness())).toMatchObject({ failures: 0, stale: false })
    expect((await h.admin('GET', '/metrics')).text).toMatch(
      /smqtt_keyserver_requests_total\{route="\/v1\/freshness",status="304"\} [1-9]/,
    )

    // 4. Browser -> Node lock: the lock verifies the page's principal as the sender.
    lockClient = await connectNode(lock)
    lockClient.on('message', (_topic, payload, info) =>
      commands.push({ text: new TextDecoder().decode(payload), sender: info.sender }),
    )
    await lockClient.subscribeAsync(LOCK_TOPIC, { qos: 1 })
    await page.evaluate((topic) => smqtt.publish(topic, 'lock'), LOCK_TOPIC)
    await waitUntil(() => commands.length >= 1, 'the lock command', 10_000)
    expect(commands).toEqual([{ text: 'lock', sender: 'app-browser' }])

    // 5. Replay: the thermostat's own session resends its envelope as a QoS 1 DUP, which the
    //    broker must let through (a lost PUBACK looks the same). The page refuses it.
    const wire = await captureOnBroker(THERMOSTAT_TOPIC)
    await thermostatClient.publishAsync(THERMOSTAT_TOPIC, '22.0', { qos: 1 })
    await page.waitForFunction(() => smqtt.received.length >= 2, undefined, { timeout: 10_000 })
    const captured = wire[0]
    if (!captured) throw new Error('the broker routed no thermostat envelope')
    await within(thermostatClient.endAsync(), 5_000, 'thermostat disconnect')
    const replayer = mqtt.connect(broker.urls.mqtts, {
      ca: h.caPem,
      clientId: 'thermostat-1',
      username: 'thermostat-1',
      password: createConnectPassword(thermostat.identity, 'thermostat-1'),
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    })
    nodeClients.push(replayer)
    await within(
      replayer.publishAsync(THERMOSTAT_TOPIC, Buffer.from(captured), { qos: 1, dup: true }),
      10_000,
      'replay',
    )
    await page.waitForFunction(() => smqtt.securityErrors.length >= 1, undefined, { timeout: 10_000 })
    expect(await page.evaluate(() => smqtt.securityErrors)).toEqual([{ code: 'ERR_REPLAY', topic: THERMOSTAT_TOPIC }])
    // Never delivered: the page still has exactly the two genuine readings.
    expect((await page.evaluate(() => smqtt.received)).map((m) => m.text)).toEqual(['21.5', '22.0'])
  }, 60_000)

  test('one identity in two tabs of one origin: the second is refused (ERR_IDENTITY_IN_USE); with IndexedDB rolled back, 10,000 envelopes reuse no (key, nonce) pair', async () => {
    const wssUrl = broker.urls.wss as string
    const second = await chromium.newTab()
    await second.goto(`${origin}/`)
    await second.waitForFunction(() => typeof smqtt === 'object', undefined, { timeout: 10_000 })
    const connect = { brokerUrl: wssUrl, subscribe: `${HOME}/thermostat/#` }

    // The first tab (connected by the test above) holds the identity's Web Lock: the second is
    // refused before it connects, so the first keeps its broker session.
    await expect(second.evaluate((args) => smqtt.connect(args), connect)).rejects.toThrow(/in use by another tab/)
    expect(await page.evaluate(() => smqtt.connected())).toBe(true)

    const wire = await captureOnBroker(LOCK_TOPIC)
    const floor = await page.evaluate(() => smqtt.stored('seq:app-browser'))
    expect(floor).toMatch(/^\d+$/)
    await page.evaluate((topic) => smqtt.publishMany(topic, 5_000), LOCK_TOPIC)
    await page.evaluate(() => smqtt.close()) // the tab lets go of the identity
    // IndexedDB as a backup taken before those 5,000 had it; then the second tab runs the identity.
    await second.evaluate((value) => smqtt.restore('seq:app-browser', value), floor as string)
    await second.evaluate((args) => smqtt.connect(args), connect)
    await second.evaluate((topic) => smqtt.publishMany(topic, 5_000), LOCK_TOPIC)
    await second.evaluate(() => smqtt.close())

    await waitUntil(() => wire.length >= 10_000, 'every envelope routed', 30_000)
    const pairs = new Set(
      wire.map((bytes) => {
        const { header } = parseEnvelope(bytes)
        return `${header.group}/${header.epoch}/${header.sender}/${header.seq}`
      }),
    )
    expect(pairs.size).toBe(10_000)
    expect(chromium.pageErrors).toEqual([])
  }, 120_000)

  test('script injection reading storage finds no private key: keys are non-extractable CryptoKeys', async () => {
    // The attacker's script runs in the page and reads every IndexedDB record and localStorage
    // entry of the origin (a reload first: what is read comes from storage, not from memory).
    await page.reload()
    await page.waitForFunction(() => typeof smqtt === 'object', undefined, { timeout: 10_000 })
    const found = await page.evaluate(() => smqtt.readAllStorage())
    const record = (key: string) =>
      found.find((f) => f.where === 'indexedDB:smqtt-browser-test/client' && f.key === key)
    const identity = JSON.parse(record('identity')?.value as string) as Record<string, unknown>
    expect(Object.keys(identity).sort()).toEqual(['agreementKey', 'id', 'kem', 'signingKey', 'type', 'v'])
    expect(identity).toMatchObject({ type: 'smqtt.public-identity', id: 'app-browser', kem: 'x25519' })
    const privateKey = (algorithm: string, usages: string[]) => ({
      cryptoKey: true,
      type: 'private',
      algorithm,
      extractable: false,
      usages,
      exported: [], // exportKey rejected pkcs8, jwk, raw and spki
    })
    expect(record('identity-keys')?.value).toEqual({
      signing: privateKey('Ed25519', ['sign']),
      agreement: privateKey('X25519', ['deriveBits']),
    })
    // Nothing else holds a key: no other CryptoKey, no secret field, no PEM private key.
    const everything = JSON.stringify(found)
    expect(everything.match(/"cryptoKey":true/g)).toHaveLength(2)
    expect(everything).not.toMatch(/signingSeed|agreementSecret|PRIVATE KEY/)

    // Still the device: a CONNECT password signed in WebCrypto, its bundle opened with the
    // X25519 step in WebCrypto, a reading received, a command the Node lock verifies.
    await page.evaluate((args) => smqtt.connect(args), {
      brokerUrl: broker.urls.wss as string,
      subscribe: `${HOME}/thermostat/#`,
    })
    const thermostatClient = await connectNode(thermostat)
    await thermostatClient.publishAsync(THERMOSTAT_TOPIC, '23.0', { qos: 1 })
    await page.waitForFunction(() => smqtt.received.length >= 1, undefined, { timeout: 10_000 })
    expect(await page.evaluate(() => smqtt.received)).toEqual([
      { topic: THERMOSTAT_TOPIC, text: '23.0', sender: 'thermostat-1', encrypted: true },
    ])
    await page.evaluate((topic) => smqtt.publish(topic, 'unlock'), LOCK_TOPIC)
    await waitUntil(() => commands.some((c) => c.text === 'unlock'), 'the unlock command', 10_000)
    expect(commands.filter((c) => c.text === 'unlock')).toEqual([{ text: 'unlock', sender: 'app-browser' }])
    expect(chromium.pageErrors).toEqual([])
  }, 60_000)
})
