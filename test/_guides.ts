// Runs a guide as a reader would (see docs.test.ts): a sandbox clone, a fresh `npm start` on free
// ports, then every block of the guide in one bash script (_docs.ts). One test file per guide
// (test/guides/), so the four minutes of guides run beside the rest of the suite.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '@smqtt/test-kit/keyserver'
import { afterEach, expect, test } from 'vitest'
import { type DocBlock, docBlocks, docScript } from './_docs.js'

const root = fileURLToPath(new URL('..', import.meta.url))
/** What a reader's clone holds that the guides use. */
const CHECKOUT = ['package.json', 'package-lock.json', 'node_modules', 'packages', 'scripts', 'examples', 'docs']
const DOCUMENTED_PORTS = {
  8443: 'SMQTT_KEYSERVER_PORT',
  8883: 'SMQTT_BROKER_PORT',
  8884: 'SMQTT_BROKER_WSS_PORT',
  9464: 'SMQTT_METRICS_PORT',
} as const

const running: ChildProcess[] = []
const sandboxes: string[] = []

/** Stops `child` and everything it started (it leads a process group of its own). */
async function stop(child: ChildProcess): Promise<void> {
  const group = (signal: NodeJS.Signals) => {
    try {
      process.kill(-(child.pid as number), signal)
    } catch {
      // already gone
    }
  }
  const exited =
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise((resolve) => child.once('exit', resolve))
  group('SIGTERM')
  const force = setTimeout(() => group('SIGKILL'), 5_000)
  await exited
  await new Promise((resolve) => setTimeout(resolve, 500)) // its children, after their leader
  group('SIGKILL')
  clearTimeout(force)
}

/** A reader's clone: links to this checkout's files, and room for a deployment of its own. */
function sandbox(): string {
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-docs-'))
  sandboxes.push(dir)
  for (const entry of CHECKOUT) symlinkSync(join(root, entry), join(dir, entry))
  return dir
}

/** `npm start` in `dir` on free ports; resolves once it says where it listens. */
async function npmStart(dir: string, env: NodeJS.ProcessEnv): Promise<string> {
  const { child, output } = launch('npm', ['start'], dir, env)
  const deadline = Date.now() + 60_000
  while (!output().includes('Ctrl-C stops both') && Date.now() < deadline && child.exitCode === null)
    await new Promise((resolve) => setTimeout(resolve, 100))
  if (!output().includes('Ctrl-C stops both')) throw new Error(`npm start did not come up:\n${output()}`)
  return output()
}

/** Starts `command` leading a process group of its own (see stop), stdout and stderr collected together. */
function launch(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  running.push(child)
  let text = ''
  const collect = (chunk: Buffer) => {
    text += chunk
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  return { child, output: () => text }
}

/** Runs `guide` (a path from the repository root) as a reader would; returns its output. */
async function runGuide(guide: string, timeoutMs: number): Promise<string> {
  const dir = sandbox()
  const ports = Object.fromEntries(
    await Promise.all(Object.keys(DOCUMENTED_PORTS).map(async (port) => [port, await freePort()] as const)),
  ) as Record<keyof typeof DOCUMENTED_PORTS, number>
  const env: NodeJS.ProcessEnv = { ...process.env, SMQTT_DEV_DIR: join(dir, '.smqtt-dev'), CI: 'true' }
  for (const [documented, variable] of Object.entries(DOCUMENTED_PORTS))
    env[variable] = String(ports[Number(documented) as keyof typeof DOCUMENTED_PORTS])
  await npmStart(dir, env)

  const ownKeyServerPort = await freePort()
  const onFreePorts = (block: DocBlock): DocBlock => ({
    ...block,
    code: block.code.replace(/\b(8443|8883|8884|9443|9464)\b/g, (port: string) =>
      String(port === '9443' ? ownKeyServerPort : ports[Number(port) as 8443]),
    ),
  })
  const blocks = docBlocks(readFileSync(join(root, guide), 'utf8'), guide).map(onFreePorts)
  const script = docScript(blocks, guide)
  const { child, output: collected } = launch('bash', ['-c', script], dir, env)
  const timer = setTimeout(() => void stop(child), timeoutMs)
  const status = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  clearTimeout(timer)
  const output = collected()
  const failed = [...output.matchAll(/::block (\S+)::/g)].at(-1)?.[1]
  if (status !== 0) throw new Error(`${guide}: block ${failed} failed (exit ${status}):\n${output.slice(-6_000)}`)
  // SMQTT_DOCS_TEST_OUTPUT=1 shows each step's output (the walk a reader would see).
  if (process.env.SMQTT_DOCS_TEST_OUTPUT) console.log(output)
  return output
}

/** The guides a newcomer follows, each run against a fresh `npm start` of its own. */
export const GUIDES = ['README.md', 'docs/getting-started.md', 'docs/tools.md', 'docs/existing-broker.md']

/** The test that runs `guide` (one per file: each file is a worker of its own). */
export function guideTest(guide: (typeof GUIDES)[number]): void {
  afterEach(async () => {
    for (const child of running.splice(0)) await stop(child)
    for (const dir of sandboxes.splice(0)) rmSync(dir, { recursive: true, force: true })
  })
  test(`${guide} runs as written against a fresh npm start`, { timeout: 300_000 }, async () => {
    const output = await runGuide(guide, 260_000)
    expect(output).toContain(`::${guide} done::`)
  })
}
