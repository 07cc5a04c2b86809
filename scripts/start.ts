// `npm start`: the whole system on embedded defaults, on loopback. First run creates a
// development deployment in .smqtt-dev/ (PKI, master key, admin token, SQLite); later runs
// reuse it. Environment: SMQTT_DEV_DIR (default .smqtt-dev), SMQTT_KEYSERVER_PORT (first run only).
import { existsSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { initKeyServer, loadConfig, startKeyServer } from '@smqtt/keyserver'
import { pino } from 'pino'

const root = resolve(import.meta.dirname, '..')
const devDir = resolve(root, process.env.SMQTT_DEV_DIR ?? '.smqtt-dev')
const keyServerDir = join(devDir, 'keyserver')
const configFile = join(keyServerDir, 'config.json')
const show = (path: string) => relative(process.cwd(), path) || '.'

if (!existsSync(configFile)) {
  const port = Number(process.env.SMQTT_KEYSERVER_PORT ?? 8443)
  const created = await initKeyServer(keyServerDir, { listen: { host: '127.0.0.1', port } })
  console.log(
    `created a development deployment in ${show(devDir)} (key server public key ${created.keyServerPublicKey})`,
  )
}

const logger = pino({ level: process.env.SMQTT_LOG_LEVEL ?? 'warn' })
const keyServer = await startKeyServer(loadConfig(configFile), { logger })
const cli = `npm run -s cli -w @smqtt/keyserver -- --config ${configFile}`
console.log(`
SMQTT key server listening on ${keyServer.url} (SQLite, development PKI, loopback only)
  CA certificate: ${show(join(keyServerDir, 'pki', 'ca.pem'))}
  admin token:    ${show(join(keyServerDir, 'admin.token'))}
  OpenAPI:        ${keyServer.url}/openapi.json

Try, in another terminal:
  ${cli.replace('-- --config', '-- grant --role thermostat --publish "home/+/thermostat/%c/#" --config')}
  ${cli.replace('-- --config', '-- enroll thermostat-1 --role thermostat --config')}
  ${cli.replace('-- --config', '-- principals --config')}
  ${cli.replace('-- --config', '-- audit --config')}

Ctrl-C stops it; the deployment stays in ${show(devDir)} (delete it to start afresh).
`)

const stop = () => {
  keyServer.close().then(
    () => process.exit(0),
    () => process.exit(1),
  )
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
