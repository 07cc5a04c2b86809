// What the browser tests share: the page bundled the way a web app would bundle it, and Debian
// Chromium (headless, through playwright-core) trusting exactly one server key. Gate callers with
// toolAvailable(CHROMIUM) from ./_tools.js.
// The bundling and the certificate pin are the smart-home app server's own, so the tests run the
// browser exactly as `npm run app -w @smqtt/example-smart-home` does.
import { chromium, type Page } from 'playwright-core'
import { bundleForBrowser, chromiumTrustFlag } from '../examples/smart-home/browser/server.js'
import { CHROMIUM } from './_tools.js'

export { bundleForBrowser }

export interface HeadlessChromium {
  /** A fresh page; its uncaught errors land in `pageErrors`. */
  readonly page: Page
  readonly pageErrors: string[]
  /** What a user would see in the console as errors: logged errors (CSP violations among them) and failed requests. */
  readonly consoleErrors: string[]
  /** Another tab of the same profile: same origin storage (IndexedDB, Web Locks) as `page`. */
  newTab(): Promise<Page>
  close(): Promise<void>
}

/**
 * Launches headless Chromium trusting the key of `pinnedCertPem` (its SPKI pin), instead of
 * ignoring every certificate error.
 */
export async function launchChromium(pinnedCertPem: string): Promise<HeadlessChromium> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM.probe[0],
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      chromiumTrustFlag(pinnedCertPem),
    ],
  })
  try {
    const context = await browser.newContext()
    const pageErrors: string[] = []
    const consoleErrors: string[] = []
    const newTab = async () => {
      const tab = await context.newPage()
      tab.on('pageerror', (err) => pageErrors.push(err.message))
      tab.on('console', (message) => {
        if (message.type() === 'error') consoleErrors.push(message.text())
      })
      tab.on('response', (response) => {
        if (response.status() >= 400) consoleErrors.push(`${response.status()} ${response.url()}`)
      })
      return tab
    }
    return { page: await newTab(), pageErrors, consoleErrors, newTab, close: () => browser.close() }
  } catch (error) {
    await browser.close()
    throw error
  }
}
