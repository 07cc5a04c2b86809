// The policy and key group commands of smqtt-keyserver (issue 13, "the first hour"): add and
// remove key groups, validate a policy file offline, explain what a principal may do; and
// relative paths resolved where the user typed them (INIT_CWD under `npm run -w`).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { main } from '../src/cli.js'
import { loadKeyServerConfig } from '../src/config.js'
import { type RunningKeyServer, startKeyServer } from '../src/server.js'
import { runCli } from './_cli.js'

let dir: string
let server: RunningKeyServer

/** Runs the CLI in-process with INIT_CWD = the test folder, as `npm run -w` would from there. */
async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  vi.stubEnv('INIT_CWD', dir)
  vi.stubEnv('npm_package_name', '@smqtt/keyserver')
  try {
    return await runCli([...args, '--config', 'ks/config.json'])
  } finally {
    vi.unstubAllEnvs()
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'smqtt-cli-policy-'))
  // Relative --dir: before the fix it landed in the process's cwd (the package folder under npm).
  expect((await cli('init', '--dir', 'ks', '--port', String(await freePort()))).code).toBe(0)
  const logger = (await import('pino')).pino({ level: 'silent' })
  server = await startKeyServer(loadKeyServerConfig(join(dir, 'ks', 'config.json')), { logger })
})

afterAll(async () => {
  await server?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('smqtt-keyserver policy tools', () => {
  test('group add, groups and group remove change the key groups of the running server', async () => {
    expect((await cli('groups')).out).toBe('no key groups: add one with `group add`')
    expect(
      (await cli('group', 'add', '7', '--filter', 'sensors/#', '--name', 'sensors', '--rotate', '86400')).out,
    ).toBe(
      [
        'policy version 1',
        'warning: key group 7 "sensors" (sensors/#): no allow rule reaches it, so nobody reads or writes it',
        'added key group 7 "sensors" (sensors/#): its first epoch is active',
      ].join('\n'),
    )
    expect((await cli('grant', '--role', 'sensor', '--publish', 'sensors/%c/#')).out).toBe('policy version 2')
    expect((await cli('groups')).out).toBe('    7  sensors  sensors/#  rotates every 86400 s')
    await expect(cli('group', 'add', '7', '--filter', 'other/#')).rejects.toThrow(/key group 7 exists/)
    await expect(cli('group', 'add', '8', '--filter', 'a/#', '--filter', 'b/#')).rejects.toThrow(/one --filter/)
    await expect(cli('group', 'add', '8', '--filter', 'sensors/x/#')).rejects.toThrow(
      /ERR_POLICY_INVALID: groups\[1\]\.filter: shares topics with groups\[0\]\.filter/,
    )
    expect((await cli('group', 'remove', '7')).out).toMatch(
      /^policy version 3\nwarning: rules\[0\]\.topics\[0\] "sensors\/%c\/#" allows publishing where no key group[^\n]*\nremoved key group 7/,
    )
    await expect(cli('group', 'remove', '7')).rejects.toThrow(/no key group 7/)
  })

  test('policy validate prints every error with its path and exits 1, or "valid" and offline warnings', async () => {
    writeFileSync(
      join(dir, 'bad.json'),
      JSON.stringify({
        version: 1,
        rules: [
          { effect: 'permit', actions: ['publish'], topics: ['a/#'] },
          { effect: 'allow', actions: ['publish'], topics: ['a/%x'] },
        ],
        groups: [{ id: 1, name: 'g', filter: 'a/#', rotate: 60 }],
        plaintext: ['b/#/c'],
      }),
    )
    const bad = await cli('policy', 'validate', 'bad.json') // relative to INIT_CWD
    expect(bad.code).toBe(1)
    expect(bad.out.split('\n')).toEqual([
      "error: rules[0].effect: must be 'allow' or 'deny'",
      'error: rules[1].topics[0]: unknown substitution at index 2; only %c and %u exist',
      'error: groups[0]: unknown field "rotate"',
      "error: plaintext[0]: topic filter has '#' before the last level at index 2",
    ])
    writeFileSync(
      join(dir, 'good.json'),
      JSON.stringify({
        $schema: '../node_modules/@smqtt/keyserver/policy.schema.json',
        version: 1,
        rules: [{ effect: 'allow', actions: ['publish'], topics: ['a/%c'], roles: ['r'] }],
        groups: [],
        plaintext: [],
      }),
    )
    expect(await cli('policy', 'validate', 'good.json')).toEqual({
      code: 0,
      out: 'valid\nwarning: rules[0].topics[0] "a/%c" allows publishing where no key group and no plaintext filter reaches: the broker refuses every publish there (add a key group or a plaintext filter)',
    })
  })

  test('policy explain asks the server, or reads a file offline', async () => {
    const policy = {
      version: 1,
      rules: [
        { effect: 'allow', actions: ['publish'], topics: ['home/+/thermostat/%c/#'], roles: ['thermostat'] },
        { effect: 'deny', actions: ['publish'], topics: ['home/+/thermostat/%c/firmware'], roles: ['thermostat'] },
        { effect: 'allow', actions: ['subscribe'], topics: ['home/+/thermostat/#'], roles: ['app'] },
      ],
      groups: [{ id: 1, name: 'thermostats', filter: 'home/+/thermostat/#' }],
      plaintext: [],
    }
    writeFileSync(join(dir, 'home.json'), JSON.stringify(policy))
    const expected = [
      'principal thermostat-1 (active), roles: thermostat',
      'publish:',
      '  allow home/+/thermostat/thermostat-1/#   rules[0] (role thermostat)',
      '    except home/+/thermostat/thermostat-1/firmware   rules[1] deny (role thermostat)',
      'subscribe:',
      '  nothing',
      'key groups:',
      '  1 thermostats (home/+/thermostat/#): writes via rules[0]',
      '    signs for: home/+/thermostat/thermostat-1/# except home/+/thermostat/thermostat-1/firmware',
      'plaintext:',
      '  none',
    ]
    const offline = await cli('policy', 'explain', 'thermostat-1', '--file', 'home.json', '--role', 'thermostat')
    expect(offline.out).toBe([expected[0]?.replace(' (active)', ''), ...expected.slice(1)].join('\n'))

    const current = (await cli('policy')).out
    const version = (JSON.parse(current) as { version: number }).version
    expect((await cli('policy', '--set', 'home.json')).out).toBe(`policy version ${version + 1}`)
    const { token } = await server.keyServer.createEnrollmentToken(
      { principalId: 'thermostat-1', roles: ['thermostat'] },
      'test',
    )
    const { createEnrollmentRequest, generateIdentity } = await import('@smqtt/core')
    await server.keyServer.enroll(createEnrollmentRequest(generateIdentity('thermostat-1'), token), '127.0.0.1')
    expect((await cli('policy', 'explain', 'thermostat-1')).out).toBe(expected.join('\n'))
    await expect(cli('policy', 'explain', 'nobody')).rejects.toThrow(/ERR_NOT_FOUND/)
  })

  test('the help lists the new commands', async () => {
    const out: string[] = []
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      out.push(String(chunk))
      return true
    })
    try {
      await main(['--help'])
    } finally {
      spy.mockRestore()
    }
    const help = out.join('')
    for (const usage of [
      'group add <id> --filter F',
      'group remove <id>',
      'groups',
      'policy validate FILE',
      'policy explain <id>',
    ])
      expect(help).toContain(usage)
  })
})
