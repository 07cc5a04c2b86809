// `npm start`: the whole system on embedded defaults, on loopback: the key server and the broker
// (Aedes with the SMQTT plugin). The first run creates a development deployment in .smqtt-dev/:
//   keyserver/  PKI, master key, admin token, SQLite; pushes to the broker over mqtts
//   broker/     the broker's enrolled identity (role `broker`, 0600), its TLS files (the dev
//               PKI's server certificate, valid for localhost/127.0.0.1/::1), config, audit log
// and a starter policy (thermostats, apps, locks). Later runs reuse it.
// Environment: SMQTT_DEV_DIR (default .smqtt-dev), SMQTT_LOG_LEVEL (default warn), and on the
// first run only (stored in the configs afterwards) SMQTT_KEYSERVER_PORT (8443),
// SMQTT_BROKER_PORT (8883), SMQTT_BROKER_WSS_PORT (8884), SMQTT_METRICS_PORT (9464). A port
// that is already taken ends the run with one line that names it and where to change it.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import {
  type BrokerConfigDocument,
  type LogLevel,
  loadBrokerConfig,
  type RunningBroker,
  startBroker,
} from '@smqtt/broker-plugin'
import { createEnrollmentRequest, exportIdentity, generateIdentity, type Identity, importIdentity } from '@smqtt/core'
import {
  BROKER_ROLE,
  initKeyServer,
  KeyServer,
  type KeyServerConfig,
  loadKeyServerConfig,
  MasterKey,
  openStore,
  type RunningKeyServer,
  startKeyServer,
} from '@smqtt/keyserver'
import { pino } from 'pino'

const root = resolve(import.meta.dirname, '..')
const devDir = resolve(root, process.env.SMQTT_DEV_DIR ?? '.smqtt-dev')
const keyServerDir = join(devDir, 'keyserver')
const configFile = join(keyServerDir, 'config.json')
const brokerDir = join(devDir, 'broker')
const brokerConfigFile = join(brokerDir, 'config.json')
const show = (path: string) => relative(process.cwd(), path) || '.'
const port = (name: string, fallback: number) => Number(process.env[name] ?? fallback)

/** The broker node's principal id in the development deployment. */
const BROKER_ID = 'smqtt-broker-1'
/** The key server's push principal and role (created by the key server; the plugin lets this role publish control topics). */
const PUSH_PRINCIPAL = { id: 'smqtt-keyserver', roles: ['keyserver'] }

/** A starter policy: thermostats write temperatures, apps read them and command locks. */
const DEV_POLICY = {
  version: 1,
  rules: [
    { effect: 'allow', actions: ['publish'], topics: ['home/+/thermostat/%c/#'], roles: ['thermostat'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/+/thermostat/#', 'home/+/lock/+/state'], roles: ['app'] },
    { effect: 'allow', actions: ['publish'], topics: ['home/+/lock/+/cmd'], roles: ['app'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/+/lock/%c/cmd'], roles: ['lock'] },
    { effect: 'allow', actions: ['publish'], topics: ['home/+/lock/%c/state'], roles: ['lock'] },
  ],
  groups: [
    { id: 1, name: 'thermostats', filter: 'home/+/thermostat/#', rotateEverySeconds: 86_400 },
    { id: 2, name: 'lock-commands', filter: 'home/+/lock/+/cmd' },
    { id: 3, name: 'lock-states', filter: 'home/+/lock/+/state' },
  ],
  plaintext: [],
}

if (!existsSync(configFile)) {
  const created = await initKeyServer(keyServerDir, {
    listen: { host: '127.0.0.1', port: port('SMQTT_KEYSERVER_PORT', 8443) },
    push: { brokerUrl: `mqtts://127.0.0.1:${port('SMQTT_BROKER_PORT', 8883)}` },
  })
  console.log(
    `created a development deployment in ${show(devDir)} (key server public key ${created.keyServerPublicKey})`,
  )
}
if (!existsSync(brokerConfigFile)) {
  await createDevBroker(loadKeyServerConfig(configFile))
  console.log(`created the broker of the development deployment in ${show(brokerDir)} (principal ${BROKER_ID})`)
}

/**
 * The broker's side of the deployment, through the key server's domain object (the server is
 * not running yet): its push principal, a starter policy if there is none, the broker principal
 * enrolled with a one-time token like any device, its identity file, TLS files and config.
 */
async function createDevBroker(keyServerConfig: KeyServerConfig): Promise<void> {
  mkdirSync(join(brokerDir, 'tls'), { recursive: true, mode: 0o700 })
  const identityFile = join(brokerDir, 'identity.json')
  const masterKey = MasterKey.fromEnvOrFile({ file: keyServerConfig.masterKeyFile })
  const store = await openStore(keyServerConfig.store)
  let publicKey: string
  try {
    const keyServer = await KeyServer.open({ store, masterKey, settings: keyServerConfig })
    publicKey = Buffer.from(keyServer.publicKey).toString('base64url')
    await keyServer.servicePrincipal(PUSH_PRINCIPAL.id, PUSH_PRINCIPAL.roles)
    if (keyServer.policy.version === 0) await keyServer.setPolicy(DEV_POLICY, 'npm-start')
    // The identity is written before enrolling, so a run interrupted in between can finish.
    let identity: Identity
    if (existsSync(identityFile)) identity = importIdentity(JSON.parse(readFileSync(identityFile, 'utf8')))
    else {
      identity = generateIdentity(BROKER_ID)
      writeFileSync(identityFile, `${JSON.stringify(exportIdentity(identity), null, 2)}\n`, { mode: 0o600 })
    }
    const enrolled = (await keyServer.listPrincipals()).find((p) => p.id === BROKER_ID)
    if (!enrolled) {
      const { token } = await keyServer.createEnrollmentToken(
        { principalId: BROKER_ID, roles: [BROKER_ROLE] },
        'npm-start',
      )
      await keyServer.enroll(createEnrollmentRequest(identity, token), '127.0.0.1')
    } else if (Buffer.compare(Buffer.from(enrolled.signingKey), Buffer.from(identity.signingKey)) !== 0)
      throw new Error(`${BROKER_ID} is enrolled with another key than ${show(identityFile)}: delete ${show(devDir)}`)
  } finally {
    await store.close()
  }

  copyCertificatesToBroker()

  const host = keyServerConfig.listen.host === '0.0.0.0' ? '127.0.0.1' : keyServerConfig.listen.host
  const config: BrokerConfigDocument = {
    listeners: {
      mqtts: { host: '127.0.0.1', port: port('SMQTT_BROKER_PORT', 8883) },
      wss: { host: '127.0.0.1', port: port('SMQTT_BROKER_WSS_PORT', 8884), path: '/mqtt' },
    },
    tls: { certFile: 'tls/server.pem', keyFile: 'tls/server.key', caFile: 'tls/ca.pem' },
    keyServer: {
      url: `https://${host}:${keyServerConfig.listen.port}`,
      publicKey,
      caFile: 'tls/ca.pem',
      identityFile: 'identity.json',
    },
    mode: 'full',
    metrics: { host: '127.0.0.1', port: port('SMQTT_METRICS_PORT', 9464) },
    auditLogFile: 'logs/audit.log',
  }
  writeFileSync(brokerConfigFile, `${JSON.stringify(config, null, 2)}\n`, { flag: 'wx' })

  // A deployment made before the broker joined `npm start` has no push yet.
  const keyServerDocument = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>
  if (keyServerDocument.push === undefined) {
    keyServerDocument.push = { brokerUrl: `mqtts://127.0.0.1:${config.listeners?.mqtts?.port}` }
    writeFileSync(configFile, `${JSON.stringify(keyServerDocument, null, 2)}\n`)
  }
}

/**
 * The dev PKI's server certificate covers localhost, 127.0.0.1 and ::1: the broker reuses it
 * (the file holds the leaf followed by the intermediate CA, the chain both servers send). Copied
 * again whenever the key server renewed it (it does at start when a third of its 90 days is left,
 * or when the root issued it before the intermediate existed), so the broker never serves the
 * old one past the key server. The root (ca.pem) too, which `pki upgrade` re-certifies.
 */
function copyCertificatesToBroker(): void {
  const [ca, brokerCa] = [join(keyServerDir, 'pki', 'ca.pem'), join(brokerDir, 'tls', 'ca.pem')]
  if (!existsSync(brokerCa) || !readFileSync(brokerCa).equals(readFileSync(ca))) copyFileSync(ca, brokerCa)
  const [pem, key] = [join(keyServerDir, 'pki', 'server.pem'), join(keyServerDir, 'pki', 'server.key')]
  const [brokerPem, brokerKey] = [join(brokerDir, 'tls', 'server.pem'), join(brokerDir, 'tls', 'server.key')]
  if (existsSync(brokerPem) && readFileSync(brokerPem).equals(readFileSync(pem))) return
  writeFileSync(brokerKey, readFileSync(key), { mode: 0o600 })
  copyFileSync(pem, brokerPem)
}

const logLevel = (process.env.SMQTT_LOG_LEVEL ?? 'warn') as LogLevel
const logger = pino({ level: logLevel })
const keyServerConfig = loadKeyServerConfig(configFile)
// The key server first: the broker pulls its first snapshot from it. The key server's push
// keeps retrying until the broker is up and knows the push principal.
let keyServer: RunningKeyServer
try {
  keyServer = await startKeyServer(keyServerConfig, { logger })
} catch (err) {
  exitIfPortBusy(err)
  throw err
}
let broker: RunningBroker
try {
  copyCertificatesToBroker()
  broker = await startBroker(loadBrokerConfig(brokerConfigFile), { logLevel })
} catch (err) {
  await keyServer.close()
  exitIfPortBusy(err)
  throw err
}

/**
 * A busy port is the usual reason a second `npm start` fails: one line that says which port,
 * whose, and where to choose another, instead of a stack trace. Exits 1.
 */
function exitIfPortBusy(err: unknown): void {
  const { code, port } = err as { code?: unknown; port?: unknown }
  if (code !== 'EADDRINUSE') return
  const brokerDocument = JSON.parse(readFileSync(brokerConfigFile, 'utf8')) as BrokerConfigDocument
  const where: [number | undefined, string, string, string][] = [
    [keyServerConfig.listen.port, 'key server', `listen.port in ${show(configFile)}`, 'SMQTT_KEYSERVER_PORT'],
    [
      brokerDocument.listeners?.mqtts?.port,
      'broker, mqtts',
      `listeners.mqtts.port in ${show(brokerConfigFile)} and push.brokerUrl in ${show(configFile)}`,
      'SMQTT_BROKER_PORT',
    ],
    [
      brokerDocument.listeners?.wss?.port,
      'broker, wss',
      `listeners.wss.port in ${show(brokerConfigFile)}`,
      'SMQTT_BROKER_WSS_PORT',
    ],
    [
      (brokerDocument.metrics || undefined)?.port,
      'broker, metrics',
      `metrics.port in ${show(brokerConfigFile)}`,
      'SMQTT_METRICS_PORT',
    ],
  ]
  const [, service, setting, variable] = where.find(([p]) => p === port) ?? [
    port,
    'a listener',
    'the configs',
    'SMQTT_*_PORT',
  ]
  console.error(
    `npm start: port ${String(port)} (${service}) is already in use: is another npm start running? Stop it, or choose another port: ${setting} (${variable} applies only when a deployment is created, e.g. a second one with SMQTT_DEV_DIR=.smqtt-dev-2)`,
  )
  process.exit(1)
}

// npm runs workspace scripts in the workspace's folder: give the CLI an absolute path.
const cli = (command: string) => `npm run -s cli -w @smqtt/keyserver -- ${command} --config ${configFile}`
const { urls } = broker
console.log(`
SMQTT key server listening on ${keyServer.url} (SQLite, development PKI, loopback only)
  CA certificate: ${show(join(keyServerDir, 'pki', 'ca.pem'))}
  admin token:    ${show(join(keyServerDir, 'admin.token'))}
  OpenAPI:        ${keyServer.url}/openapi.json
SMQTT broker (Aedes + SMQTT plugin, ${keyServerConfig.push ? 'snapshots pulled and pushed' : 'snapshots pulled'})
  mqtts:          ${urls.mqtts}
  wss:            ${urls.wss ?? '(off)'}
  metrics:        ${urls.metrics ?? '(off)'}
  config:         ${show(brokerConfigFile)} (audit log in ${show(join(brokerDir, 'logs', 'audit.log'))})

Try, in another terminal:
  ${cli('enroll thermostat-1 --role thermostat')}    # prints a one-time token
  ${cli('principals')}
  ${cli('grant --role app --subscribe "home/+/thermostat/#"')}
  ${cli('audit')}
  curl -s ${urls.metrics ?? ''} | grep smqtt_broker

Then connect a device with @smqtt/client (Node):
  const ca = readFileSync('${join(keyServerDir, 'pki', 'ca.pem')}', 'utf8')
  const storage = fileStorage('./thermostat-1')
  const enrollment = (await loadEnrollment(storage)) ??
    (await enroll({ keyServerUrl: '${keyServer.url}', ca, token: '<the token>', id: 'thermostat-1', storage }))
  const client = await secureConnectAsync('${urls.mqtts}', {
    ...enrollment, storage, mqtt: { ca },
    keyServer: { url: '${keyServer.url}', ca, keyServerPublicKey: enrollment.keyServerPublicKey },
  })
  await client.publishAsync('home/hall/thermostat/thermostat-1/temp', '21.5')

Ctrl-C stops both; the deployment stays in ${show(devDir)} (delete it to start afresh).
`)

let stopping = false
const stop = () => {
  if (stopping) return
  stopping = true
  // The key server first (its push client leaves cleanly), then the broker.
  keyServer
    .close()
    .then(() => broker.close())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    )
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
