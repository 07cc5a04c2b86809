// How the interop tests run the Python library (python/src/smqtt): Debian's /usr/bin/python3
// (the pyenv python3 first on PATH has neither PyNaCl nor paho-mqtt), PYTHONPATH=python/src.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const PYTHON = '/usr/bin/python3'
const repository = fileURLToPath(new URL('../..', import.meta.url))
export const PYTHON_SOURCES = `${repository}python/src`
const DEVICE = `${repository}python/interop/device.py`

/**
 * True when /usr/bin/python3 is ≥ 3.11 with PyNaCl and paho-mqtt, what the library needs. Unlike
 * `toolAvailable` (which asks only whether a program ran), the probe must exit 0. Missing on a
 * developer's machine: skipped with the reason; missing under CI: throws, so the test fails.
 */
export function pythonAvailable(): boolean {
  const probe = 'import sys, nacl.bindings, paho.mqtt.client; sys.exit(0 if sys.version_info >= (3, 11) else 3)'
  const result = spawnSync(PYTHON, ['-c', probe], { stdio: 'ignore', timeout: 10_000 })
  if (!result.error && result.status === 0) return true
  const message =
    'Python 3.11+ with PyNaCl and paho-mqtt is missing: apt-get install python3 python3-nacl python3-paho-mqtt'
  if (process.env.CI) throw new Error(message)
  console.warn(`skipping: ${message}`)
  return false
}

/** The arguments of start() for python/interop/device.py with `plan` (see that file). */
export function pythonDevice(plan: Record<string, unknown>): [string, string[]] {
  return [PYTHON, ['-c', devicePreamble(), JSON.stringify(plan)]]
}

// PYTHONPATH through sys.path, since start() passes no environment of its own.
function devicePreamble(): string {
  return [
    'import runpy, sys',
    'sys.dont_write_bytecode = True',
    `sys.path.insert(0, ${JSON.stringify(PYTHON_SOURCES)})`,
    `sys.argv = [${JSON.stringify(DEVICE)}] + sys.argv[1:]`,
    `runpy.run_path(${JSON.stringify(DEVICE)}, run_name="__main__")`,
  ].join('\n')
}

/** The Mosquitto on 127.0.0.1:1883 (MQTT 5, no SMQTT plugin) answers; under CI it must. */
export function mosquittoAvailable(): boolean {
  const probe = 'import socket; socket.create_connection(("127.0.0.1", 1883), timeout=2).close()'
  const result = spawnSync(PYTHON, ['-c', probe], { stdio: 'ignore', timeout: 10_000 })
  if (!result.error && result.status === 0) return true
  const message = 'no MQTT broker on 127.0.0.1:1883: install and start mosquitto'
  if (process.env.CI) throw new Error(message)
  console.warn(`skipping: ${message}`)
  return false
}
