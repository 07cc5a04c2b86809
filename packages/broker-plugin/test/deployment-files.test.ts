// Deployment files of the broker (issue 19): loose modes refused like identity.json already is,
// and the one-time enrollment token taken from a file or stdin, never from the command line.
import { chmodSync, copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { isSmqttError } from '@smqtt/core'
import { BROKER_IDENTITY_FILE, brokerConfigFor, brokerFolder } from '@smqtt/test-kit/broker'
import { type Harness, startHarness } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import { type BrokerConfigDocument, loadBrokerConfig, startBroker } from '../src/index.js'

const posix = process.platform !== 'win32'
let h: Harness
let dir: string

/** Writes a broker config in `folder` (default: the test folder) and returns its path. */
function writeConfig(name: string, extra: Partial<BrokerConfigDocument> = {}, folder = dir): string {
  const doc = brokerConfigFor(h, {
    listeners: { mqtts: { host: '127.0.0.1', port: 0 } },
    keyServer: { caFile: `${h.dir}/pki/ca.pem`, identityFile: join(dir, BROKER_IDENTITY_FILE) },
    metrics: false,
    ...extra,
  })
  const file = join(folder, `${name}.json`)
  writeFileSync(file, JSON.stringify(doc, null, 2), { mode: 0o644 })
  return file
}

function errorOf(fn: () => unknown): Error {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a refusal')
}

const silent = () => ({ stdin: Readable.from([]), stdout: new Writable({ write: (_c, _e, done) => done() }) })
const token = async (id: string) =>
  (
    (await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles: ['broker'] })).body as {
      token: string
    }
  ).token

beforeAll(async () => {
  h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000)
  dir = await brokerFolder(h, 'smqtt-broker-files-')
})

afterAll(async () => {
  await h?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe.skipIf(!posix)('broker deployment file modes', () => {
  test('a config file writable by group or others (0666) is refused', () => {
    const file = writeConfig('loose-config')
    chmodSync(file, 0o666)
    const err = errorOf(() => loadBrokerConfig(file))
    expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
    expect(err.message).toContain(`config file ${file} is writable by group or others (mode 666)`)
    expect(err.message).toContain(`chmod go-w ${file}`)
  })

  test('a config folder writable by group or others (0777) is refused', () => {
    const folder = join(dir, 'open-folder')
    mkdirSync(folder)
    chmodSync(folder, 0o777)
    const err = errorOf(() => loadBrokerConfig(writeConfig('in-open-folder', {}, folder)))
    expect(isSmqttError(err, 'ERR_CONFIG_INVALID')).toBe(true)
    expect(err.message).toContain(`folder ${folder} is writable by group or others (mode 777)`)
  })

  /** A config whose TLS `file` is a copy of the dev PKI's, in mode `mode`; returns the copy's path too. */
  function withLooseTlsFile(file: 'keyFile' | 'caFile', mode: number) {
    const pki = {
      certFile: `${h.dir}/pki/server.pem`,
      keyFile: `${h.dir}/pki/server.key`,
      caFile: `${h.dir}/pki/ca.pem`,
    }
    const original = pki[file]
    const copy = join(dir, `loose-${basename(original)}`)
    copyFileSync(original, copy)
    chmodSync(copy, mode)
    return { copy, config: loadBrokerConfig(writeConfig(`loose-${file}`, { tls: { ...pki, [file]: copy } })) }
  }

  test('a TLS private key readable by others (0644) is refused', async () => {
    const { copy: key, config } = withLooseTlsFile('keyFile', 0o644)
    await expect(startBroker(config)).rejects.toThrow(
      `config $.tls.keyFile: ${key} is a secret but is readable or writable by group or others (mode 644); run: chmod 600 ${key}`,
    )
  })

  test('a trust anchor (CA file) writable by others (0666) is refused', async () => {
    const { copy: ca, config } = withLooseTlsFile('caFile', 0o666)
    await expect(startBroker(config)).rejects.toThrow(`config $.tls.caFile: ${ca} is writable by group or others`)
  })
})

describe('smqtt-broker enroll takes the token from a file or stdin only', () => {
  const argv = (id: string, out: string) => [
    'enroll',
    '--id',
    id,
    '--key-server',
    h.url,
    '--ca',
    `${h.dir}/pki/ca.pem`,
    '--out',
    out,
  ]

  test('--token is refused with a pointer to --token-file and stdin; nothing is written', async () => {
    const out = join(dir, 'broker-token-flag', 'identity.json')
    await expect(main([...argv('broker-2', out), '--token', await token('broker-2')], silent())).rejects.toThrow(
      /--token is refused: .* visible .* `ps`.*--token-file FILE \(or - for stdin\)/,
    )
    // Also when the token starts with '-' (1 in 64 random tokens), and written as --token=VALUE.
    for (const flag of [['--token', '-dash-first-token'], ['--token=-dash-first-token']])
      await expect(main([...argv('broker-2', out), ...flag], silent())).rejects.toThrow(/--token is refused/)
    expect(existsSync(out)).toBe(false)
  })

  test.skipIf(!posix)('--token-file FILE enrolls; a token file others can read is refused', async () => {
    const out = join(dir, 'broker-3', 'identity.json')
    const file = join(dir, 'broker-3.token')
    writeFileSync(file, `${await token('broker-3')}\n`, { mode: 0o644 })
    chmodSync(file, 0o644)
    await expect(main([...argv('broker-3', out), '--token-file', file], silent())).rejects.toThrow(
      `--token-file ${file} is a secret but is readable or writable by group or others (mode 644); run: chmod 600 ${file}`,
    )
    chmodSync(file, 0o600)
    expect(await main([...argv('broker-3', out), '--token-file', file], silent())).toBe(0)
    expect(existsSync(out)).toBe(true)
  })

  test('--token-file - reads stdin', async () => {
    const out = join(dir, 'broker-4', 'identity.json')
    const stdin = Readable.from([`${await token('broker-4')}\n`])
    expect(await main([...argv('broker-4', out), '--token-file', '-'], { ...silent(), stdin })).toBe(0)
    expect(existsSync(out)).toBe(true)
  })
})
