// A second `npm start` while the first runs (or anything else on its ports) must say which port
// is taken, whose it is and where to choose another: one line, exit 1, no stack trace.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '@smqtt/test-kit/keyserver'
import { afterAll, expect, test } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const devDir = mkdtempSync(join(tmpdir(), 'smqtt-start-busy-'))
let squatter: Server | undefined

afterAll(async () => {
  await new Promise((resolve) => (squatter ? squatter.close(resolve) : resolve(undefined)))
  rmSync(devDir, { recursive: true, force: true })
})

test('npm start on a busy key server port prints one line naming the port and how to change it, and exits 1', async () => {
  squatter = createServer()
  await new Promise<void>((resolve) => squatter?.listen(0, '127.0.0.1', resolve))
  const busy = (squatter.address() as { port: number }).port
  const child = spawn(join(root, 'node_modules/.bin/tsx'), ['--conditions=smqtt-source', 'scripts/start.ts'], {
    cwd: root,
    env: {
      ...process.env,
      SMQTT_DEV_DIR: devDir,
      SMQTT_KEYSERVER_PORT: String(busy),
      SMQTT_BROKER_PORT: String(await freePort()),
      SMQTT_BROKER_WSS_PORT: String(await freePort()),
      SMQTT_METRICS_PORT: String(await freePort()),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  child.stdout.resume()
  const timer = setTimeout(() => child.kill('SIGKILL'), 40_000)
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  clearTimeout(timer)
  expect(code, stderr).toBe(1)
  const lines = stderr.trim().split('\n')
  expect(lines, stderr).toHaveLength(1)
  expect(lines[0]).toMatch(new RegExp(`^npm start: port ${busy} \\(key server\\) is already in use`))
  expect(lines[0]).toContain('listen.port in ')
  expect(lines[0]).toContain('SMQTT_KEYSERVER_PORT')
  expect(stderr).not.toMatch(/\n\s+at |EADDRINUSE/)
}, 60_000)
