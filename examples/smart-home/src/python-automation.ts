// The house's automation is written in Python (python/automation.py, on paho-mqtt and the
// repository's Python library, python/src): it reads the thermostats and locks the back door when
// the hall gets warm. Here it is started as a process of its own, enrolled like every device with
// a one-time token from the operator, and watched through the JSON lines it prints.
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { within } from './_wait.js'
import type { Deployment } from './deployment.js'

/** Debian's interpreter: the one with PyNaCl and paho-mqtt installed (python3-nacl, python3-paho-mqtt). */
export const PYTHON = process.env.SMQTT_PYTHON ?? '/usr/bin/python3'
const repository = fileURLToPath(new URL('../../../', import.meta.url))
const SCRIPT = join(repository, 'examples/smart-home/python/automation.py')
const LIBRARY = join(repository, 'python/src')

/** The automation's principal: an app (it reads thermostats and commands locks, nothing else). */
export const AUTOMATION = { id: 'python-automation', roles: ['app'] } as const

/** One line the automation printed: `event` and its fields (see python/automation.py). */
export interface AutomationEvent {
  readonly event: string
  readonly [field: string]: unknown
}

export interface PythonAutomation {
  readonly id: string
  readonly events: AutomationEvent[]
  waitFor(match: (event: AutomationEvent) => boolean, ms: number, what: string): Promise<AutomationEvent>
  /** Closes its standard input (it disconnects and exits), then waits for the exit. */
  close(): Promise<void>
}

/** Whether Python ≥ 3.11 with PyNaCl and paho-mqtt is there to run the automation. */
export function pythonAutomationAvailable(): boolean {
  const probe = 'import sys, nacl.bindings, paho.mqtt.client; sys.exit(0 if sys.version_info >= (3, 11) else 3)'
  const result = spawnSync(PYTHON, ['-c', probe], { stdio: 'ignore', timeout: 10_000 })
  return !result.error && result.status === 0
}

/**
 * Issues the automation's token, starts it, and resolves once it is connected and subscribed.
 *
 * @example
 * ```ts
 * const automation = await startPythonAutomation(deployment, dir, { lock: 'back-door', warmAbove: 21.6 })
 * await automation.waitFor((e) => e.event === 'command', 5_000, 'the lock command')
 * ```
 */
export async function startPythonAutomation(
  deployment: Deployment,
  dir: string,
  options: { readonly lockCommandTopic: string; readonly warmAbove: number; readonly subscribe: readonly string[] },
): Promise<PythonAutomation> {
  const issued = await deployment.admin('POST', '/v1/admin/enrollment-tokens', {
    principalId: AUTOMATION.id,
    roles: AUTOMATION.roles,
  })
  if (issued.status !== 201) throw new Error(`token for ${AUTOMATION.id} refused: ${JSON.stringify(issued.body)}`)
  const home = join(dir, 'devices', AUTOMATION.id)
  mkdirSync(home, { recursive: true })
  const ca = join(home, 'ca.pem')
  writeFileSync(ca, deployment.ca)
  const broker = new URL(deployment.brokerUrl)
  const config = {
    id: AUTOMATION.id,
    token: (issued.body as { token: string }).token,
    keyServerUrl: deployment.keyServerUrl,
    keyServerPublicKey: Buffer.from(deployment.keyServerPublicKey).toString('hex'),
    ca,
    storage: join(home, 'state'),
    brokerHost: broker.hostname,
    brokerPort: Number(broker.port),
    subscribe: options.subscribe,
    lockCommandTopic: options.lockCommandTopic,
    warmAbove: options.warmAbove,
  }
  const child: ChildProcessWithoutNullStreams = spawn(PYTHON, [SCRIPT, JSON.stringify(config)], {
    env: { ...process.env, PYTHONPATH: LIBRARY, PYTHONDONTWRITEBYTECODE: '1' },
  })
  const events: AutomationEvent[] = []
  const stderr: string[] = []
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      events.push(JSON.parse(line) as AutomationEvent)
    } catch {
      stderr.push(line)
    }
  })
  createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line))
  let ended = false
  void exited.then(() => {
    ended = true
  })

  const waitFor = async (match: (event: AutomationEvent) => boolean, ms: number, what: string) => {
    const deadline = Date.now() + ms
    for (;;) {
      const found = events.find(match)
      if (found) return found
      const failed = events.find((e) => e.event === 'error')
      if (failed || ended || Date.now() > deadline)
        throw new Error(
          `${AUTOMATION.id}: ${failed ? String(failed.message) : ended ? 'exited' : 'timed out'} waiting for ${what}` +
            (stderr.length > 0 ? `\n${stderr.slice(-10).join('\n')}` : ''),
        )
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  const close = async () => {
    if (ended) return
    child.stdin.end()
    await within(exited, 5_000, `${AUTOMATION.id} to exit`).catch(() => {
      child.kill('SIGKILL')
    })
  }
  try {
    await waitFor((e) => e.event === 'subscribed', 20_000, 'it to connect and subscribe')
  } catch (err) {
    await close()
    throw err
  }
  return { id: AUTOMATION.id, events, waitFor, close }
}
