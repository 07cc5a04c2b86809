// What the interop tests share to drive device programs (the C reference device,
// libsmqtt/examples/linux-device, and the Python device, python/interop/device.py): enrollment
// tokens, the JSON event lines they print, a clean exit, polling, and the C device's arguments.
import { within } from '@smqtt/test-kit/broker'
import { expect } from 'vitest'
import type { InteropStack } from './_broker.js'
import type { Finished, Running } from './_run.js'

/** A one-time enrollment token for `id` with `roles`, from the admin API. */
export async function token(stack: InteropStack, id: string, roles: string[]): Promise<string> {
  const response = await stack.h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: id, roles })
  if (response.status !== 201) throw new Error(`token: ${response.text}`)
  return (response.body as { token: string }).token
}

/** The events a device printed: one JSON object a line on stdout (other lines ignored). */
export function events<T>(stdout: string): T[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as T)
}

/** Resolves once `check()` holds (polled every 20 ms); fails with `what` after `ms`. */
export function waitFor(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  return within(
    (async () => {
      while (!check()) await new Promise((resolve) => setTimeout(resolve, 20))
    })(),
    what,
    ms,
  )
}

/** The C device's `enroll` or `run` arguments, with its storage in `dir`, against the stack's key server. */
export function cDeviceArgs(stack: InteropStack, command: 'enroll' | 'run', dir: string, args: string[]): string[] {
  return [command, '--dir', dir, '--key-server', stack.h.url, '--ca', stack.caFile, ...args]
}

/** `run` arguments of a C thermostat on the stack's broker: temperatures to `publish`, commands from `commands`. */
export function cThermostatArgs(stack: InteropStack, publish: string, commands: string): string[] {
  return ['--broker', `${stack.host}:${stack.port}`, '--publish', publish, '--commands', commands]
}

/** What a program printed, once it exited with status 0 and wrote nothing on stderr. */
export async function succeeded(program: Running): Promise<Finished> {
  const finished = await program.exited
  expect(finished.stderr).toBe('')
  expect(finished.code).toBe(0)
  return finished
}
