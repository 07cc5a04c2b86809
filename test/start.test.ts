// `npm start` (the README's run command, after install) brings up a working stack on loopback.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const devDir = mkdtempSync(join(tmpdir(), 'smqtt-start-'))
let child: ChildProcess | undefined

afterAll(async () => {
  child?.kill('SIGTERM')
  await new Promise((resolve) => (child?.exitCode !== null ? resolve(undefined) : child?.once('exit', resolve)))
  rmSync(devDir, { recursive: true, force: true })
})

async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise((resolve) => probe.close(resolve))
  return port
}

test('npm start creates a development deployment and serves HTTPS on loopback', async () => {
  const port = await freePort()
  child = spawn(join(root, 'node_modules/.bin/tsx'), ['--conditions=source', 'scripts/start.ts'], {
    cwd: root,
    env: { ...process.env, SMQTT_DEV_DIR: devDir, SMQTT_KEYSERVER_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const deadline = Date.now() + 25_000
  while (!output.includes('listening on') && Date.now() < deadline && child.exitCode === null)
    await new Promise((resolve) => setTimeout(resolve, 100))
  expect(output).toContain(`key server listening on https://127.0.0.1:${port}`)

  const ca = readFileSync(join(devDir, 'keyserver', 'pki', 'ca.pem'), 'utf8')
  const health = await new Promise<string>((resolve, reject) => {
    const req = request(`https://127.0.0.1:${port}/v1/health`, { ca, timeout: 5000 }, (res) => {
      let body = ''
      res.on('data', (chunk) => {
        body += chunk
      })
      res.on('end', () => resolve(body))
    })
    req.on('error', reject)
    req.end()
  })
  expect(JSON.parse(health)).toEqual({ status: 'ok' })
}, 40_000)
