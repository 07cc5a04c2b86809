// What the CLI tests share: a free loopback port for `init --port`, and the CLI run in-process
// with what it printed.
import { createServer } from 'node:net'
import { vi } from 'vitest'
import { main } from '../src/cli.js'

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as { port: number }).port
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/** Runs the CLI in-process and returns its exit code and what it printed on stdout. */
export async function runCli(args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = []
  const spy = vi.spyOn(console, 'log').mockImplementation((...parts: unknown[]) => void lines.push(parts.join(' ')))
  try {
    return { code: await main(args), out: lines.join('\n') }
  } finally {
    spy.mockRestore()
  }
}
