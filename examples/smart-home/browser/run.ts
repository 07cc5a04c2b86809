// `npm run app -w @smqtt/example-smart-home`: the homeowner app in your browser. Starts the
// example's deployment (key server with CORS for the app's origin, broker with a wss://
// listener), the hall thermostat (a reading every 3 s) and the front door lock in this process,
// issues a one-time enrollment token for the browser and serves the app over HTTPS with the
// development certificate. Open the printed URL; Ctrl+C stops everything and deletes the state.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startDeployment } from '../src/deployment.js'
import { startHouse } from './house.js'
import { chromiumTrustFlag, startAppServer } from './server.js'

const APP_ID = 'homeowner-browser'
const READING_EVERY_MS = 3_000

const dir = mkdtempSync(join(tmpdir(), 'smqtt-home-app-'))
const app = await startAppServer()
const deployment = await startDeployment(dir, { wss: true, corsOrigins: [app.origin] })
const house = await startHouse(deployment, dir)
const issued = await deployment.admin('POST', '/v1/admin/enrollment-tokens', { principalId: APP_ID, roles: ['app'] })
if (issued.status !== 201) throw new Error(`token refused: ${JSON.stringify(issued.body)}`)
const token = (issued.body as { token: string }).token
app.serve(deployment.serverTls, {
  keyServerUrl: deployment.keyServerUrl,
  brokerUrl: deployment.wssUrl as string,
  appId: APP_ID,
})

let celsius = 21
const readings = setInterval(() => {
  celsius = Math.round((celsius + (Math.random() - 0.5) * 0.4) * 10) / 10
  house.publishReading(celsius).catch((err: unknown) => console.error(`thermostat: ${String(err)}`))
}, READING_EVERY_MS)

console.log(`
SMQTT smart home in the browser (state in ${dir})
  key server  ${deployment.keyServerUrl}   (CORS: ${app.origin})
  broker      ${deployment.wssUrl}   (MQTT over WebSocket over TLS)
  app         ${app.origin}/#token=${token}
              (bundle ${(app.bundleGzipBytes / 1024).toFixed(1)} KiB gzip; the token enrolls ${APP_ID} once)

The certificates come from the development CA (${join(dir, 'keyserver', 'pki', 'ca.pem')}).
Trust that CA in a browser profile, or start Chromium pinned to the dev server key:
  chromium --user-data-dir=${join(dir, 'chromium')} ${chromiumTrustFlag(deployment.serverTls.cert)} '${app.origin}/#token=${token}'

Ctrl+C stops everything.`)

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  clearInterval(readings)
  await house.close()
  await deployment.close()
  await app.close()
  rmSync(dir, { recursive: true, force: true })
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void stop())
