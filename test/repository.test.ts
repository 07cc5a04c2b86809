// The README promises two commands; CI must run exactly the test one.
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import semver from 'semver'
import { expect, test } from 'vitest'

const root = (path: string) => readFileSync(fileURLToPath(new URL(`../${path}`, import.meta.url)), 'utf8')

function readmeCommand(heading: string): string {
  const readme = root('README.md')
  const section = readme.slice(readme.indexOf(`**${heading}**`))
  const match = /```sh\n(.+)\n```/.exec(section)
  if (!match?.[1]) throw new Error(`no command under **${heading}** in README.md`)
  return match[1]
}

test('.ci/run runs exactly the README test command', () => {
  const ciCommands = root('.ci/run')
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('#') && !/^(set|cd) /.test(line))
  expect(ciCommands).toEqual([readmeCommand('Test')])
})

test('the README run command installs first and starts the main job', () => {
  expect(readmeCommand('Run')).toBe('npm ci && npm start')
  expect(JSON.parse(root('package.json')).scripts.start).toBeTruthy()
})

test('every installed package supports the Node versions the README promises (npm ci prints no EBADENGINE)', () => {
  const supported = JSON.parse(root('package.json')).engines.node as string // ">=20.19"
  const oldest = semver.minVersion(supported)?.version as string
  const lock = JSON.parse(root('package-lock.json')) as {
    packages: Record<string, { engines?: { node?: string } | string[]; optional?: boolean }>
  }
  const refusing = Object.entries(lock.packages)
    .filter(([path, entry]) => path.startsWith('node_modules/') && !entry.optional)
    .filter(([, entry]) => {
      const wanted = Array.isArray(entry.engines) ? undefined : entry.engines?.node
      return wanted !== undefined && !semver.satisfies(oldest, wanted)
    })
    .map(([path, entry]) => `${path} wants node ${(entry.engines as { node: string }).node}`)
  expect(refusing).toEqual([])
})

test('the unit tier (scripts/test-unit.sh) lists test files that exist and start no service', () => {
  const listed = [...root('scripts/test-unit.sh').matchAll(/^ {2}(packages\/\S+?)\/? \\?$/gm)].map(
    (m) => m[1] as string,
  )
  expect(listed.length).toBeGreaterThan(10)
  const files = listed.flatMap((path) =>
    path.endsWith('.test.ts')
      ? [path]
      : readdirSync(fileURLToPath(new URL(`../${path}`, import.meta.url)))
          .filter((name) => name.endsWith('.test.ts'))
          .map((name) => `${path}/${name}`),
  )
  // What starts a service or connects to one: none of it belongs in the unit tier (a local
  // command such as openssl making a test certificate, or a TLS socket on loopback inside the
  // test's own process, is fine).
  const services =
    /startHarness|startBroker|startKeyServer|@smqtt\/test-kit\/(keyserver|broker|client|use-stack)|^import (?!type )[^\n]*from '(mqtt|aedes)'|playwright|ioredis|PostgresStore|freePort/m
  for (const file of files) expect([file, services.exec(root(file))?.[0]]).toEqual([file, undefined])
})
