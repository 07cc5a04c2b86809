// Runs a client program written by others (mosquitto_pub/sub, the Paho script) with a kill
// timer, collecting its output; tests wait for a line (e.g. "subscribed") before going on.
import { type ChildProcess, spawn } from 'node:child_process'
import { within } from '@smqtt/test-kit/broker'

export interface Finished {
  /** Exit code; null when the kill timer (or a signal) ended it. */
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  readonly timedOut: boolean
}

export interface Running {
  readonly exited: Promise<Finished>
  /** Resolves with the first stdout line matching `pattern`, once it is printed. */
  line(pattern: RegExp, what: string, ms?: number): Promise<string>
}

const running = new Set<ChildProcess>()

/** Starts `command`; SIGKILL after `timeoutMs` so no test waits on a stuck client. */
export function start(command: string, args: readonly string[], timeoutMs = 15_000): Running {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  let stdout = ''
  let stderr = ''
  let timedOut = false
  let closed = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill('SIGKILL')
  }, timeoutMs)
  child.stdout?.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr?.on('data', (chunk) => {
    stderr += chunk
  })
  const exited = new Promise<Finished>((resolve) => {
    child.once('error', (err) => {
      stderr += String(err)
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      closed = true
      running.delete(child)
      resolve({ code, stdout, stderr, timedOut })
    })
  })
  return {
    exited,
    line: (pattern, what, ms = 10_000) =>
      within(
        (async () => {
          for (;;) {
            const found = stdout.split('\n').find((l) => pattern.test(l))
            if (found !== undefined) return found
            if (closed) throw new Error(`${command} exited before ${what}:\n${stdout}\n${stderr}`)
            await new Promise((resolve) => setTimeout(resolve, 20))
          }
        })(),
        what,
        ms,
      ),
  }
}

/** Runs `command` to its end (bounded by `timeoutMs`). */
export function run(command: string, args: readonly string[], timeoutMs?: number): Promise<Finished> {
  return start(command, args, timeoutMs).exited
}

/** Kills every client still running (afterAll, also when a test failed half-way). */
export function killAll(): void {
  for (const child of running) child.kill('SIGKILL')
}
