// What the CLI tests share: the CLI run in-process with what it printed.
import { vi } from 'vitest'
import { main } from '../src/cli.js'

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
