// Assembles a running key server from a config: master key, store, CA, service, HTTPS app,
// and the periodic job. The CLI's `start`, the project's `npm start` and the tests use this.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { cryptoBackend, sha256 } from '@smqtt/core'
import { assertDeploymentFileMode } from '@smqtt/core/file-modes'
import type { FastifyInstance } from 'fastify'
import { type Logger, pino } from 'pino'
import { defaultConfigDocument, defaultKeyServerConfig, type KeyServerConfig, parseKeyServerConfig } from './config.js'
import { buildApp } from './http/app.js'
import { MasterKey } from './master-key.js'
import { CertificateAuthority } from './pki/certificate-authority.js'
import { createDevPkiMaterial, INTERMEDIATE_COMMON_NAME } from './pki/dev-pki.js'
import { renewServerCertificate, type ServerCertificateRenewal } from './pki/server-certificate-renewal.js'
import { KeyServer } from './service/key-server.js'
import { type MqttPush, startMqttPush } from './service/mqtt-push.js'
import { openStore } from './store/open-store.js'

/** The name of the root CA's private key among the store's sealed secrets. */
const CA_KEY_SECRET = 'ca.private-key'
/**
 * The issuing intermediate CA, certificate and key in one sealed secret (JSON), so two processes
 * that create it at once cannot pair one's certificate with the other's key.
 */
const INTERMEDIATE_SECRET = 'ca.intermediate'
const TICK_MS = 5_000
// A server certificate from another CA is the operator's to renew: warn this long before it expires.
const EXPIRY_WARNING_MS = 30 * 86_400_000

export interface RunningKeyServer {
  readonly url: string
  readonly keyServer: KeyServer
  readonly app: FastifyInstance
  close(): Promise<void>
}

/**
 * Starts the key server described by `config` and listens.
 *
 * @example
 * ```ts
 * const server = await startKeyServer(loadKeyServerConfig('./keyserver/config.json'))
 * process.on('SIGTERM', () => server.close())
 * ```
 */
export async function startKeyServer(
  config: KeyServerConfig,
  options: { logger?: Logger } = {},
): Promise<RunningKeyServer> {
  const logger = options.logger ?? pino({ name: 'smqtt-keyserver' })
  checkDeploymentFiles(config)
  const masterKey = MasterKey.fromEnvOrFile({ file: config.masterKeyFile })
  const store = await openStore(config.store)
  try {
    const authorities = await loadDeploymentAuthorities(store, masterKey, config)
    const certificateAuthority = authorities?.issuing
    if (!authorities) logger.warn('no CA key in the store: enrollment will issue no client certificates')
    else {
      if (authorities.issuing === authorities.root)
        logger.warn(
          { caFile: config.tls.caFile },
          'one-level PKI (made before intermediates): the root issues the leaves and mqtts sends it; `smqtt-keyserver pki upgrade` moves to two levels (and changes ca.pem)',
        )
      if (!config.insecureAllowPlainHttp) {
        // Before the listener reads the files: a leaf due for renewal (or still from the root) is re-issued now.
        const renewal = await renewServerCertificate(authorities.issuing, {
          certFile: config.tls.certFile,
          keyFile: config.tls.keyFile,
          formerIssuer: authorities.root,
        })
        logRenewal(logger, config.tls.certFile, renewal)
      }
    }
    const keyServer = await KeyServer.open({
      store,
      masterKey,
      logger,
      settings: config,
      ...(certificateAuthority ? { certificateAuthority } : {}),
    })
    const adminTokenHash = sha256(new TextEncoder().encode(readFileSync(config.adminTokenFile, 'utf8').trim()))
    const app = await buildApp({
      keyServer,
      adminTokenHash,
      logger,
      maxBodyBytes: config.maxBodyBytes,
      deadlines: config.deadlines,
      maxPendingConnectionsPerAddress: config.maxPendingConnectionsPerAddress,
      ...(config.cors ? { corsOrigins: config.cors.origins } : {}),
      ...(config.insecureAllowPlainHttp
        ? { insecureAllowPlainHttp: true }
        : {
            tls: {
              key: readFileSync(config.tls.keyFile, 'utf8'),
              cert: readFileSync(config.tls.certFile, 'utf8'),
              profile: config.tls.profile,
            },
          }),
    })
    await app.listen({ host: config.listen.host, port: config.listen.port })
    const address = app.server.address()
    const port = typeof address === 'object' && address ? address.port : config.listen.port
    const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host
    const url = `${config.insecureAllowPlainHttp ? 'http' : 'https'}://${host}:${port}`

    let ticking = false
    const timer = setInterval(() => {
      if (ticking) return // a slow store must not pile up ticks
      ticking = true
      keyServer
        .tick()
        .catch((err: unknown) => logger.error({ err }, 'periodic rotation job failed'))
        .finally(() => {
          ticking = false
        })
    }, TICK_MS)
    timer.unref()
    let push: MqttPush | undefined
    let closing = false
    if (config.push) {
      const { brokerUrl, caFile } = config.push
      const mqttOptions = { ca: readFileSync(caFile, 'utf8'), connectTimeout: 10_000 }
      // Not awaited, and retried: the key server serves pulls while the broker is unreachable,
      // and a broker started before it knows the push principal refuses the first CONNECTs.
      const connect = async (delayMs: number, attempt = 1): Promise<void> => {
        if (closing) return
        try {
          push = await startMqttPush(keyServer, { brokerUrl, logger, mqttOptions })
          if (closing) await push.close()
          else logger.info({ brokerUrl }, 'pushing key bundles and snapshots over MQTT')
        } catch (err) {
          // The first refusals are expected when the broker starts after the key server.
          logger[attempt > 3 ? 'warn' : 'info'](
            { err, brokerUrl, retryInMs: delayMs },
            'push: cannot connect to the broker yet; clients and brokers pull meanwhile',
          )
          setTimeout(() => void connect(Math.min(delayMs * 2, 30_000), attempt + 1), delayMs).unref()
        }
      }
      void connect(250)
    }
    logger.info({ url, store: store.kind }, 'key server listening')
    return {
      url,
      keyServer,
      app,
      async close() {
        closing = true
        clearInterval(timer)
        await push?.close()
        await app.close()
        await store.close()
      },
    }
  } catch (err) {
    await store.close()
    throw err
  }
}

/**
 * `smqtt-keyserver pki renew`: re-issues the server certificate in `certFile`/`keyFile` (default:
 * the key server's own, `tls.certFile`/`tls.keyFile`) from the deployment CA sealed in the store,
 * when due or with `force`. Works on files while the key server runs; it reads them at start only.
 *
 * @example
 * ```ts
 * await renewDeploymentCertificate(loadKeyServerConfig('keyserver/config.json'), { certFile: 'broker/tls/server.pem', keyFile: 'broker/tls/server.key' })
 * ```
 */
export async function renewDeploymentCertificate(
  config: KeyServerConfig,
  options: { certFile?: string; keyFile?: string; force?: boolean } = {},
): Promise<ServerCertificateRenewal> {
  if ((options.certFile === undefined) !== (options.keyFile === undefined))
    throw new Error('give both --cert and --key, or neither (the key server’s own certificate)')
  const certFile = options.certFile ?? config.tls.certFile
  const keyFile = options.keyFile ?? config.tls.keyFile
  assertDeploymentFileMode(keyFile, 'secret', { label: 'the certificate key:' })
  const masterKey = MasterKey.fromEnvOrFile({ file: config.masterKeyFile })
  const store = await openStore(config.store)
  let authorities: DeploymentAuthorities | undefined
  try {
    authorities = await loadDeploymentAuthorities(store, masterKey, config)
  } finally {
    await store.close()
  }
  if (!authorities) throw new Error('no CA key in the store: this deployment has no CA to renew certificates from')
  return renewServerCertificate(authorities.issuing, {
    certFile,
    keyFile,
    formerIssuer: authorities.root,
    ...(options.force ? { force: true } : {}),
  })
}

/** The deployment's root and the CA that issues its leaves (the same one in a one-level PKI). */
interface DeploymentAuthorities {
  readonly root: CertificateAuthority
  readonly issuing: CertificateAuthority
}

/**
 * The root (`tls.caFile` and the sealed root key) and its intermediate (sealed in the store),
 * creating the intermediate when the store has none and the root may certify one. A root made
 * before two levels (path length 0) may not: it goes on issuing until `pki upgrade`.
 */
async function loadDeploymentAuthorities(
  store: Awaited<ReturnType<typeof openStore>>,
  masterKey: MasterKey,
  config: KeyServerConfig,
): Promise<DeploymentAuthorities | undefined> {
  const sealedRootKey = await store.getSecret(CA_KEY_SECRET)
  if (!sealedRootKey) return undefined
  const root = await CertificateAuthority.load(
    readFileSync(config.tls.caFile, 'utf8'),
    masterKey.open(CA_KEY_SECRET, sealedRootKey),
  )
  let sealed = await store.getSecret(INTERMEDIATE_SECRET)
  if (!sealed) {
    if (!root.mayCertifyAuthorities) return { root, issuing: root }
    const material = await root.issueIntermediateAuthority({ commonName: INTERMEDIATE_COMMON_NAME })
    const candidate = masterKey.seal(INTERMEDIATE_SECRET, encodeIntermediate(material))
    // Another process sharing the store may have made one first: use whichever was stored.
    sealed = (await store.insertSecret(INTERMEDIATE_SECRET, candidate))
      ? candidate
      : await store.getSecret(INTERMEDIATE_SECRET)
    if (!sealed) throw new Error(`the store refused ${INTERMEDIATE_SECRET} but holds none`)
  }
  const { certificatePem, privateKeyPkcs8 } = decodeIntermediate(masterKey.open(INTERMEDIATE_SECRET, sealed))
  if (!(await root.hasIssued(certificatePem)))
    throw new Error(`the intermediate CA in the store is not certified by ${config.tls.caFile}`)
  return { root, issuing: await CertificateAuthority.load(certificatePem, privateKeyPkcs8) }
}

function encodeIntermediate(material: { certificatePem: string; privateKeyPkcs8: Uint8Array }): Uint8Array {
  const document = {
    certificatePem: material.certificatePem,
    privateKeyPkcs8: Buffer.from(material.privateKeyPkcs8).toString('base64'),
  }
  return new TextEncoder().encode(JSON.stringify(document))
}

function decodeIntermediate(bytes: Uint8Array): { certificatePem: string; privateKeyPkcs8: Uint8Array } {
  const document = JSON.parse(new TextDecoder().decode(bytes)) as { certificatePem: string; privateKeyPkcs8: string }
  return {
    certificatePem: document.certificatePem,
    privateKeyPkcs8: new Uint8Array(Buffer.from(document.privateKeyPkcs8, 'base64')),
  }
}

export interface PkiUpgrade {
  /** True when the root had path length 0 and `tls.caFile` now holds its new certificate. */
  readonly rootRecertified: boolean
  /** The key server's own certificate after the upgrade. */
  readonly renewal: ServerCertificateRenewal
}

/**
 * `smqtt-keyserver pki upgrade`: moves a deployment made before two levels to a root and an
 * issuing intermediate. A root with path length 0 cannot certify an intermediate, so it is
 * re-certified first: a new certificate for the same key, subject, validity and name constraints,
 * written over `tls.caFile` (the old file is kept beside it as `.one-level`). Every peer that
 * pins the old ca.pem must then get the new one. Then the intermediate is made (sealed in the
 * store) and the key server's certificate re-issued from it. Run it with the key server stopped.
 *
 * @example
 * ```ts
 * const { rootRecertified } = await upgradeDeploymentPki(loadKeyServerConfig('keyserver/config.json'))
 * ```
 */
export async function upgradeDeploymentPki(config: KeyServerConfig): Promise<PkiUpgrade> {
  const masterKey = MasterKey.fromEnvOrFile({ file: config.masterKeyFile })
  const store = await openStore(config.store)
  let rootRecertified = false
  try {
    const sealedRootKey = await store.getSecret(CA_KEY_SECRET)
    if (!sealedRootKey) throw new Error('no CA key in the store: this deployment has no CA to upgrade')
    const rootPem = readFileSync(config.tls.caFile, 'utf8')
    const root = await CertificateAuthority.load(rootPem, masterKey.open(CA_KEY_SECRET, sealedRootKey))
    if (!root.mayCertifyAuthorities && !(await store.getSecret(INTERMEDIATE_SECRET))) {
      writeFileSync(`${config.tls.caFile}.one-level`, rootPem, { mode: 0o644 })
      const staging = `${config.tls.caFile}.upgrade-${process.pid}`
      writeFileSync(staging, await root.recertifyRoot(), { mode: 0o644, flag: 'wx' })
      await rename(staging, config.tls.caFile)
      rootRecertified = true
    }
    await loadDeploymentAuthorities(store, masterKey, config)
  } finally {
    await store.close()
  }
  return { rootRecertified, renewal: await renewDeploymentCertificate(config) }
}

function logRenewal(logger: Logger, certFile: string, renewal: ServerCertificateRenewal): void {
  const notAfter = renewal.notAfter.toISOString()
  if (renewal.renewed) logger.info({ certFile, reason: renewal.reason, notAfter }, 'server certificate renewed')
  else if (renewal.reason === 'other-issuer' && renewal.notAfter.getTime() - Date.now() < EXPIRY_WARNING_MS)
    logger.warn({ certFile, notAfter }, 'server certificate (not from the deployment CA) expires within 30 days')
}

/**
 * `smqtt-keyserver init`: a new deployment in `dir` — master key, admin token, development
 * PKI, config and store with the key server's identity and the CA key sealed inside (it is never
 * written to a file). All or nothing: everything is built in a private sibling folder that is
 * renamed to `dir` only at the end, so a failed init leaves nothing behind and can be re-run.
 * Refuses a `dir` that already has a config or holds any file.
 *
 * @example
 * ```ts
 * const { configFile, adminToken } = await initKeyServer('./deployment/keyserver')
 * ```
 */
export async function initKeyServer(dir: string, options: InitOptions = {}): Promise<InitResult> {
  const target = resolve(dir)
  const configFile = join(target, 'config.json')
  if (existsSync(configFile))
    throw new Error(`${configFile} exists: this directory is already initialized (refusing to overwrite)`)
  if (existsSync(target) && readdirSync(target).length > 0)
    throw new Error(`${target} is not empty: init makes a new deployment folder (choose another --dir)`)
  const parent = dirname(target)
  await mkdir(parent, { recursive: true, mode: 0o700 })
  const staging = await mkdtemp(join(parent, `.${basename(target)}.init-`)) // mode 0700
  try {
    const result = await populateDeployment(staging, options)
    // rename(2) replaces an empty folder and fails on one that gained files meanwhile.
    await rename(staging, target)
    return { ...result, configFile }
  } catch (err) {
    await rm(staging, { recursive: true, force: true })
    throw err
  }
}

export interface InitOptions {
  readonly listen?: { host: string; port: number }
  readonly push?: { brokerUrl: string; insecurePlainMqtt?: boolean }
  /**
   * DNS names and IP addresses the deployment's servers are reached by, besides localhost,
   * 127.0.0.1 and ::1 (and `listen.host` when it is not a wildcard): the server certificate
   * names them, and the CA may vouch for nothing else (name constraints). Fixed for the CA's life.
   */
  readonly serverNames?: readonly string[]
}

export interface InitResult {
  readonly configFile: string
  readonly adminToken: string
  readonly keyServerPublicKey: string
}

async function populateDeployment(
  dir: string,
  options: InitOptions,
): Promise<{ adminToken: string; keyServerPublicKey: string }> {
  const config = defaultKeyServerConfig(dir)
  const listen = options.listen ?? config.listen
  const masterKey = MasterKey.generate()
  masterKey.writeFile(config.masterKeyFile)
  const adminToken = Buffer.from(cryptoBackend.randomBytes(32)).toString('base64url')
  writeFileSync(config.adminTokenFile, `${adminToken}\n`, { mode: 0o600, flag: 'wx' })
  // The CA key stays in memory until it is sealed into the store: no plaintext copy on disk.
  const listenName = listen.host === '0.0.0.0' || listen.host === '::' ? [] : [listen.host]
  const pki = await createDevPkiMaterial({ serverNames: [...listenName, ...(options.serverNames ?? [])] })
  const intermediate = { certificatePem: pki.intermediatePem, privateKeyPkcs8: pki.intermediateKeyPkcs8 }
  await mkdir(dirname(config.tls.caFile), { recursive: true, mode: 0o700 })
  writeFileSync(config.tls.caFile, pki.caPem, { flag: 'wx', mode: 0o644 })
  writeFileSync(config.tls.certFile, pki.serverCertPem, { flag: 'wx', mode: 0o644 })
  writeFileSync(config.tls.keyFile, pki.serverKeyPem, { flag: 'wx', mode: 0o600 })
  await mkdir(dirname(storePath(config.store) ?? join(dir, 'x')), { recursive: true, mode: 0o700 })
  const written = { ...defaultConfigDocument(), listen, ...(options.push ? { push: options.push } : {}) }
  const store = await openStore(config.store)
  let keyServerPublicKey: string
  try {
    await store.insertSecret(CA_KEY_SECRET, masterKey.seal(CA_KEY_SECRET, pki.caKeyPkcs8))
    await store.insertSecret(INTERMEDIATE_SECRET, masterKey.seal(INTERMEDIATE_SECRET, encodeIntermediate(intermediate)))
    const keyServer = await KeyServer.open({ store, masterKey })
    keyServerPublicKey = Buffer.from(keyServer.publicKey).toString('base64url')
  } finally {
    await store.close()
  }
  // Last: the config must load as written (e.g. a --port out of range is refused here).
  parseKeyServerConfig(written, dir)
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(written, null, 2)}\n`, { flag: 'wx', mode: 0o644 })
  return { adminToken, keyServerPublicKey }
}

/**
 * The files the key server trusts, refused when more open than their kind allows (see
 * `@smqtt/core/file-modes`); `loadKeyServerConfig` checks the config file, `MasterKey` its own file.
 */
function checkDeploymentFiles(config: KeyServerConfig): void {
  assertDeploymentFileMode(config.adminTokenFile, 'secret', { label: 'config $.adminTokenFile:' })
  assertDeploymentFileMode(config.tls.caFile, 'config', { label: 'config $.tls.caFile:' })
  if (config.push) assertDeploymentFileMode(config.push.caFile, 'config', { label: 'config $.push.caFile:' })
  // The store holds the sealed keys, who is enrolled and the audit log: whoever can write it can
  // enroll a principal of their own.
  const store = storePath(config.store)
  if (store) assertDeploymentFileMode(store, 'secret', { label: 'config $.store:' })
  if (config.insecureAllowPlainHttp) return
  assertDeploymentFileMode(config.tls.keyFile, 'secret', { label: 'config $.tls.keyFile:' })
  assertDeploymentFileMode(config.tls.certFile, 'config', { label: 'config $.tls.certFile:' })
}

function storePath(url: string): string | undefined {
  return url.startsWith('sqlite:') && url !== 'sqlite::memory:' ? url.slice('sqlite:'.length) : undefined
}
