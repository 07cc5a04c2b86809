// The independent programs some tests drive (installed by scripts/install-test-tools.sh).
// Missing on a developer's machine: the test is skipped with the reason. Missing under CI: the
// test fails, so CI can never pass without having run it.
import { spawnSync } from 'node:child_process'

export interface Tool {
  readonly name: string
  /** Debian package that provides it. */
  readonly debianPackage: string
  /** A command that exits 0 when the tool works. */
  readonly probe: readonly [string, ...string[]]
}

export const CHROMIUM: Tool = { name: 'chromium', debianPackage: 'chromium', probe: ['/usr/bin/chromium', '--version'] }
export const MOSQUITTO_CLIENTS: Tool = {
  name: 'mosquitto_pub',
  debianPackage: 'mosquitto-clients',
  probe: ['mosquitto_pub', '--help'],
}
export const SSLSCAN: Tool = { name: 'sslscan', debianPackage: 'sslscan', probe: ['sslscan', '--version'] }
export const PAHO_PYTHON: Tool = {
  name: 'python3 paho-mqtt',
  debianPackage: 'python3-paho-mqtt',
  probe: ['/usr/bin/python3', '-c', 'import paho.mqtt.client'],
}

/** True when the tool runs; under CI a missing tool throws instead of skipping. */
export function toolAvailable(tool: Tool): boolean {
  const [command, ...args] = tool.probe
  const result = spawnSync(command, args, { stdio: 'ignore', timeout: 10_000 })
  // mosquitto_pub --help exits 1 after printing usage: "ran at all" is what matters.
  const ran = !result.error && result.status !== null && result.status !== 127
  if (ran) return true
  const message = `${tool.name} is missing: run scripts/install-test-tools.sh (Debian package ${tool.debianPackage})`
  if (process.env.CI) throw new Error(message)
  console.warn(`skipping: ${message}`)
  return false
}
