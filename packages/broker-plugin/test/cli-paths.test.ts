// Issue 13: under `npm run -w @smqtt/broker-plugin`, the CLI runs in the package folder; relative
// paths must resolve where the user typed them (npm's INIT_CWD), as in smqtt-keyserver.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { afterAll, expect, test, vi } from 'vitest'
import { main } from '../src/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'smqtt-broker-cli-paths-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

test('enroll --out and --ca resolve against INIT_CWD, not the process directory', async () => {
  mkdirSync(join(dir, 'broker'))
  writeFileSync(join(dir, 'broker', 'identity.json'), '{}')
  vi.stubEnv('INIT_CWD', dir)
  vi.stubEnv('npm_package_name', '@smqtt/broker-plugin')
  try {
    const io = { stdin: Readable.from(['token\n']), stdout: new Writable({ write: (_c, _e, done) => done() }) }
    await expect(
      main(['enroll', '--id', 'broker-1', '--key-server', 'https://127.0.0.1:1', '--ca', 'ca.pem'], io),
    ).rejects.toThrow(`${join(dir, 'broker', 'identity.json')} exists`)
  } finally {
    vi.unstubAllEnvs()
  }
})
