// What the browser tests share: the page bundled the way a web app would bundle it, and Debian
// Chromium (headless, through playwright-core) trusting exactly one server key. Gate callers with
// toolAvailable(CHROMIUM) from ./_tools.js.
// esbuild and playwright-core are the ones packages/client and examples/smart-home depend on.
import { createHash, X509Certificate } from 'node:crypto'
import { build } from 'esbuild'
import { chromium, type Page } from 'playwright-core'
import { CHROMIUM } from './_tools.js'

/** esbuild, as a web app would bundle it: browser platform, the packages' `browser` condition. */
export async function bundleForBrowser(entry: string): Promise<Uint8Array> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['browser', 'source'],
    logLevel: 'silent',
  })
  const output = result.outputFiles[0]
  if (!output) throw new Error('esbuild produced no output')
  return output.contents
}

export interface HeadlessChromium {
  /** A fresh page; its uncaught errors land in `pageErrors`. */
  readonly page: Page
  readonly pageErrors: string[]
  close(): Promise<void>
}

/**
 * Launches headless Chromium trusting the key of `pinnedCertPem` (its SPKI pin), instead of
 * ignoring every certificate error.
 */
export async function launchChromium(pinnedCertPem: string): Promise<HeadlessChromium> {
  const spki = new X509Certificate(pinnedCertPem).publicKey.export({ type: 'spki', format: 'der' })
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
      `--ignore-certificate-errors-spki-list=${createHash('sha256').update(spki).digest('base64')}`,
    ],
  })
  try {
    const page = await browser.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))
    return { page, pageErrors, close: () => browser.close() }
  } catch (error) {
    await browser.close()
    throw error
  }
}
