// Serves the homeowner app over HTTPS: the page, its esbuild bundle (@smqtt/client's browser
// entry, TypeScript sources through the `smqtt-source` condition) and /config.json, which tells the
// page where the key server and the wss:// listener are. The content security policy lets the
// page talk to exactly those two, and start mqtt.js's keepalive worker (a blob: URL).
import { createHash, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:https'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'
import type { AppConfig } from './app/config.js'

const appDir = join(import.meta.dirname, 'app')

export interface AppServer {
  /** `https://127.0.0.1:<port>`: what the key server must list in its CORS origins. */
  readonly origin: string
  /** Size of the page's bundle, gzip level 9. */
  readonly bundleGzipBytes: number
  /** Starts answering, with the deployment's TLS certificate and addresses. */
  serve(tls: { readonly key: string; readonly cert: string }, config: AppConfig): void
  close(): Promise<void>
}

/**
 * esbuild, as a web app would bundle it: browser platform, the packages' `browser` condition
 * (and `smqtt-source`, so the TypeScript sources). The browser tests bundle their pages with it too.
 */
export async function bundleForBrowser(entry: string): Promise<Uint8Array> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['browser', 'smqtt-source'],
    logLevel: 'silent',
  })
  const output = result.outputFiles[0]
  if (!output) throw new Error('esbuild produced no output')
  return output.contents
}

export async function startAppServer(): Promise<AppServer> {
  const script = await bundleForBrowser(join(appDir, 'app.ts'))
  const html = readFileSync(join(appDir, 'index.html'))
  let config: AppConfig | undefined
  const server = createServer((request, response) => {
    const files: Record<string, { type: string; body: Uint8Array | string } | undefined> = {
      '/': { type: 'text/html; charset=utf-8', body: html },
      '/app.js': { type: 'text/javascript', body: script },
      '/config.json': { type: 'application/json', body: JSON.stringify(config) },
    }
    const path = new URL(request.url ?? '/', 'https://app').pathname
    // Browsers ask for an icon by themselves; "none" is an answer, a 404 would be a console error.
    if (path === '/favicon.ico') {
      response.writeHead(204, { 'cache-control': 'max-age=86400' }).end()
      return
    }
    const file = files[path]
    if (!file || !config) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
      return
    }
    response
      .writeHead(200, {
        'content-type': file.type,
        'cache-control': 'no-store',
        // worker-src blob: mqtt.js runs its keepalive timer in a blob: worker, which background tabs do not throttle.
        'content-security-policy': `default-src 'self'; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self' ${config.keyServerUrl} ${new URL(config.brokerUrl).origin}`,
        'x-content-type-options': 'nosniff',
      })
      .end(file.body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('the app server has no address')
  return {
    origin: `https://127.0.0.1:${address.port}`,
    bundleGzipBytes: gzipSync(script, { level: 9 }).length,
    serve(tls, appConfig) {
      server.setSecureContext({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.3' })
      config = appConfig
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * Chromium's flags to trust exactly the development server certificate (by the SHA-256 of its
 * public key), instead of ignoring every certificate error.
 */
export function chromiumTrustFlag(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' })
  return `--ignore-certificate-errors-spki-list=${createHash('sha256').update(spki).digest('base64')}`
}
