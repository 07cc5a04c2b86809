// The operator's commands, end to end: init a deployment, start it from its config, and drive
// it with the CLI over the real admin API.
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { freePort } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import { loadKeyServerConfig } from '../src/config.js'
import { type RunningKeyServer, startKeyServer } from '../src/server.js'
import { runCli } from './_cli.js'

let dir: string
let config: string
let server: RunningKeyServer

/** Runs the CLI in-process against the test deployment. */
const cli = (...args: string[]) => runCli([...args, '--config', config])

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'smqtt-cli-'))
  config = join(dir, 'keyserver', 'config.json')
  const init = await cli('init', '--dir', join(dir, 'keyserver'), '--port', String(await freePort()))
  expect(init.code).toBe(0)
  const logger = (await import('pino')).pino({ level: 'silent' })
  server = await startKeyServer(loadKeyServerConfig(config), { logger })
})

afterAll(async () => {
  await server?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('smqtt-keyserver', () => {
  test('init writes secrets with tight permissions, seals the CA key away, and refuses to run twice', async () => {
    const root = join(dir, 'keyserver')
    expect(statSync(join(root, 'master.key')).mode & 0o077).toBe(0)
    expect(statSync(join(root, 'admin.token')).mode & 0o077).toBe(0)
    expect(existsSync(join(root, 'pki', 'ca.key'))).toBe(false) // sealed in the store instead
    await expect(main(['init', '--dir', root])).rejects.toThrow(/already initialized/)
  })

  test('enroll, grant, principals, rotate, revoke and audit drive the running server', async () => {
    const enroll = await cli('enroll', 'thermostat-1', '--role', 'thermostat')
    expect(enroll.out).toMatch(/^[A-Za-z0-9_-]{43}$/) // the token alone, for TOKEN=$(smqtt-keyserver enroll …)

    // No key group yet: the server says publishes there would be refused (docs/policy.md).
    expect((await cli('grant', '--role', 'thermostat', '--publish', 'home/+/thermostat/%c/#')).out).toMatch(
      /^policy version 1\nwarning: rules\[0\]\.topics\[0\] "home\/\+\/thermostat\/%c\/#" allows publishing where no key group/,
    )
    const policyFile = join(dir, 'policy.json')
    const policy = JSON.parse((await cli('policy')).out) as { policy: { rules: unknown[]; groups: unknown[] } }
    expect(policy.policy.rules).toHaveLength(1)
    const withGroup = { ...policy.policy, groups: [{ id: 1, name: 'thermostats', filter: 'home/+/thermostat/#' }] }
    await import('node:fs').then((fs) => fs.writeFileSync(policyFile, JSON.stringify(withGroup)))
    expect((await cli('policy', '--set', policyFile)).out).toMatch(/^policy version 2/)

    expect((await cli('rotate', '1')).out).toMatch(/^group 1: epoch 2 activates /)
    expect((await cli('principals')).out).toBe('no principals enrolled')
    await expect(cli('revoke', 'nobody')).rejects.toThrow(/ERR_NOT_FOUND/)
    const audit = await cli('audit', '--limit', '50')
    expect(audit.out).toMatch(/enrollment-token\.create\tthermostat-1/)
    expect(audit.out).toMatch(/\tok\trotate\tgroup:1\t/)
  })

  test('usage errors are clear', async () => {
    await expect(main(['frobnicate'])).rejects.toThrow(/unknown command frobnicate/)
    await expect(cli('enroll', 'x')).rejects.toThrow(/enroll <id> --role R/)
    await expect(cli('grant', '--role', 'a', 'topic/#')).rejects.toThrow(/--publish or --subscribe/)
  })

  test('the real executable prints help for every command and exits 0', async () => {
    const bin = fileURLToPath(new URL('../src/bin.ts', import.meta.url))
    const tsx = fileURLToPath(new URL('../../../node_modules/.bin/tsx', import.meta.url))
    const run = promisify(execFile)
    const { stdout } = await run(tsx, ['--conditions=smqtt-source', bin, 'revoke', '--help'], { timeout: 20_000 })
    expect(stdout).toContain('revoke <id>')
    const failed = await run(tsx, ['--conditions=smqtt-source', bin, 'revoke', '--config', join(dir, 'missing.json')], {
      timeout: 20_000,
    }).catch((err: { code: number; stderr: string }) => err)
    expect(failed).toMatchObject({ code: 1 })
    expect((failed as { stderr: string }).stderr).toMatch(/^smqtt-keyserver: /)
    expect(readFileSync(config, 'utf8')).toContain('"store"')
  })
})
