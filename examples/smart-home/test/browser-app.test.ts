// The homeowner app in a real browser (Debian Chromium, headless, through playwright-core),
// against the example's deployment with a wss:// listener and the real Node thermostat and
// front door lock: the page enrolls with the token from its URL, shows the thermostat's reading
// live, and its Lock/Unlock buttons make the lock's firmware change state and report it back.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type HeadlessChromium, launchChromium } from '../../../test/_browser.js'
import { CHROMIUM, toolAvailable } from '../../../test/_tools.js'
import { type House, startHouse } from '../browser/house.js'
import { type AppServer, startAppServer } from '../browser/server.js'
import { waitUntil } from '../src/_wait.js'
import { type Deployment, startDeployment } from '../src/deployment.js'

const APP_ID = 'homeowner-browser'
const BOUND_MS = 10_000

describe.runIf(toolAvailable(CHROMIUM))('the homeowner app in headless Chromium', () => {
  let dir: string
  let app: AppServer
  let deployment: Deployment
  let house: House
  let chromium: HeadlessChromium
  let page: Page

  /** Polls the status line, so a failure shows what the page says instead. */
  const expectConnected = () =>
    expect.poll(() => page.locator('#status').textContent(), { timeout: BOUND_MS }).toBe(`connected as ${APP_ID}`)

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'smqtt-home-app-test-'))
    app = await startAppServer()
    deployment = await startDeployment(dir, { wss: true, corsOrigins: [app.origin] })
    house = await startHouse(deployment, dir)
    app.serve(deployment.serverTls, {
      keyServerUrl: deployment.keyServerUrl,
      brokerUrl: deployment.wssUrl as string,
      appId: APP_ID,
    })
    chromium = await launchChromium(deployment.serverTls.cert)
    page = chromium.page
  }, 60_000)

  afterAll(async () => {
    await chromium?.close()
    await house?.close()
    await deployment?.close()
    await app?.close()
    if (dir) rmSync(dir, { recursive: true, force: true })
    if (app)
      console.log(
        `homeowner app bundle (app + @smqtt/client + core + mqtt.js), gzip: ${(app.bundleGzipBytes / 1024).toFixed(1)} KiB`,
      )
  }, 30_000)

  test('enrolls with the token from its URL and shows the thermostat reading live', async () => {
    const issued = await deployment.admin('POST', '/v1/admin/enrollment-tokens', {
      principalId: APP_ID,
      roles: ['app'],
    })
    expect(issued.status).toBe(201)
    await page.goto(`${app.origin}/#token=${(issued.body as { token: string }).token}`)
    await expectConnected()
    // The one-time token does not stay in the address bar (or the history).
    expect(page.url()).toBe(`${app.origin}/`)

    await house.publishReading(23.4)
    await expect
      .poll(() => page.locator('#temperatures li').allTextContents(), { timeout: BOUND_MS })
      .toEqual([`${house.thermostat.id}: 23.4 °C`])
    expect(await page.locator('#refused li').count()).toBe(0)
    expect(chromium.pageErrors).toEqual([])
    // Nothing in the console either: no CSP violation (mqtt.js's blob: timer worker), no 404 (favicon).
    expect(chromium.consoleErrors).toEqual([])
  })

  test('Lock and Unlock reach the real door lock, verified as sent by the app', async () => {
    await page.getByRole('button', { name: 'Lock', exact: true }).click()
    await waitUntil(() => house.lockState() === 'locked', BOUND_MS, 'the lock to lock')
    await expect.poll(() => page.locator('#lock-state').textContent(), { timeout: BOUND_MS }).toBe('locked')

    await page.getByRole('button', { name: 'Unlock' }).click()
    await waitUntil(() => house.lockState() === 'unlocked', BOUND_MS, 'the lock to unlock')
    await expect.poll(() => page.locator('#lock-state').textContent(), { timeout: BOUND_MS }).toBe('unlocked')
    expect(house.commands).toEqual([
      { command: 'lock', sender: APP_ID },
      { command: 'unlock', sender: APP_ID },
    ])
  })

  test('after a reload it reconnects from IndexedDB, with no token', async () => {
    await page.reload()
    await expectConnected()
    expect(await page.locator('#enroll').isHidden()).toBe(true)
    // The retained reading and lock state arrive again, sealed and verified.
    await expect
      .poll(() => page.locator('#temperatures li').allTextContents(), { timeout: BOUND_MS })
      .toEqual([`${house.thermostat.id}: 23.4 °C`])
    await expect.poll(() => page.locator('#lock-state').textContent(), { timeout: BOUND_MS }).toBe('unlocked')
  })
})
