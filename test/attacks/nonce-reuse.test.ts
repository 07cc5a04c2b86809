// Issue 12, item 1: one identity run twice. Two envelopes sealed under one (key, nonce) pair let
// whoever sees both (the broker) XOR them into the XOR of their plaintexts, without any key.
// Each device run is a real process on a real storage folder (_device-run.ts: fileStorage,
// loadEnrollment, secure() around mqtt.js); the wire is tapped and every envelope's
// (group, epoch, sender, seq), which fixes its key and nonce, is counted.
import { type ChildProcess, spawn } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fileStorage } from '@smqtt/client'
import { parseEnvelope } from '@smqtt/core'
import { type Recorder, type Stack, startStack, tap, waitUntil } from '@smqtt/test-kit/client'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PER_RUN = 5_000
/** A process start transpiles the sources (tsx): slow on a loaded 2-core machine. */
const RUN_MS = 90_000

let stack: Stack
let subscriber: Recorder
let wire: Awaited<ReturnType<typeof tap>>
const dirs: string[] = []
const runs: ChildProcess[] = []
/** Storage folders of the devices, enrolled before the subscriber so its bundle lists them as writers. */
const folders = new Map<string, string>()

beforeAll(async () => {
  stack = await startStack()
  for (const id of ['thermostat-n1', 'thermostat-n2', 'thermostat-n3']) folders.set(id, await deviceFolder(id))
  subscriber = await stack.client(await stack.enroll('app-nonce', ['app']))
  await subscriber.client.subscribeAsync('home/nonce/thermostat/#', { qos: 1 })
  wire = await tap(await stack.raw(), 'home/nonce/thermostat/#')
}, 60_000)
afterAll(async () => {
  for (const run of runs) run.kill('SIGKILL')
  await stack?.close()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** A device enrolled into a storage folder of its own, as `enroll()` leaves it on a real device. */
async function deviceFolder(id: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), `smqtt-${id}-`))
  dirs.push(dir)
  await stack.enroll(id, ['thermostat'], fileStorage(dir))
  return dir
}

function copyFolder(dir: string): string {
  const copy = mkdtempSync(join(tmpdir(), 'smqtt-copy-'))
  dirs.push(copy)
  cpSync(dir, copy, { recursive: true })
  return copy
}

interface DeviceRun {
  readonly events: Record<string, unknown>[]
  until(event: string): Promise<Record<string, unknown>>
  /** Lets a held run end. */
  release(): void
}

function startRun(dir: string, clientId: string, topic: string, options: { count: number; hold?: boolean }): DeviceRun {
  const args = JSON.stringify({ dir, brokerUrl: stack.brokerUrl, clientId, ca: stack.ca, topic, ...options })
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--conditions=smqtt-source', 'test/attacks/_device-run.ts', args],
    {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  )
  runs.push(child)
  const events: Record<string, unknown>[] = []
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk
    const lines = out.split('\n')
    out = lines.pop() ?? ''
    for (const line of lines) events.push(JSON.parse(line) as Record<string, unknown>)
  })
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk
  })
  return {
    events,
    async until(event) {
      await waitUntil(
        () => events.some((e) => e.event === event) || child.exitCode !== null,
        `${clientId}: ${event}`,
        RUN_MS,
      )
      const found = events.find((e) => e.event === event)
      if (!found)
        throw new Error(`${clientId} exited without "${event}": ${JSON.stringify(events)} ${err.slice(-2000)}`)
      return found
    },
    release: () => child.stdin.end(),
  }
}

/** (group, epoch, sender, seq) of every envelope seen on `topic`: each names one key and nonce. */
function keyNoncePairs(topic: string): string[] {
  return wire
    .filter((m) => m.topic === topic)
    .map((m) => {
      const { header } = parseEnvelope(m.bytes)
      return `${header.group}/${header.epoch}/${header.sender}/${header.seq}`
    })
}

describe('nonce reuse by one identity run twice', () => {
  test(
    'one identity started twice from one storage folder: the second process is refused (ERR_IDENTITY_IN_USE), the first keeps running',
    async () => {
      const dir = folders.get('thermostat-n1') as string
      const topic = 'home/nonce/thermostat/thermostat-n1/temp'
      const first = startRun(dir, 'n1-first', topic, { count: 100, hold: true })
      await first.until('published')
      const second = startRun(dir, 'n1-second', topic, { count: 100 })
      expect(await second.until('refused')).toMatchObject({ code: 'ERR_IDENTITY_IN_USE' })
      first.release()
      await first.until('ended')
      await waitUntil(() => subscriber.messages.filter((m) => m.topic === topic).length === 100, '100 delivered')
      // Once the first has ended, the identity is free again.
      const third = startRun(dir, 'n1-third', topic, { count: 100 })
      await third.until('ended')
      await waitUntil(() => subscriber.messages.filter((m) => m.topic === topic).length === 200, '200 delivered')
      expect(new Set(keyNoncePairs(topic)).size).toBe(200)
      expect(subscriber.errors.filter((e) => e.topic === topic)).toEqual([])
    },
    3 * RUN_MS,
  )

  test(
    `storage restored from an older copy (backup, VM snapshot, copied SD card): no (key, nonce) pair repeats across ${2 * PER_RUN} envelopes, none is lost`,
    async () => {
      const dir = folders.get('thermostat-n2') as string
      const topic = 'home/nonce/thermostat/thermostat-n2/temp'
      const backup = copyFolder(dir)
      await startRun(dir, 'n2-before', topic, { count: PER_RUN }).until('ended')
      // Roll the whole device back: sequence floor, replay state, bundle, everything.
      rmSync(dir, { recursive: true })
      cpSync(backup, dir, { recursive: true })
      await startRun(dir, 'n2-restored', topic, { count: PER_RUN }).until('ended')

      await waitUntil(() => keyNoncePairs(topic).length === 2 * PER_RUN, 'every envelope on the wire', 30_000)
      expect(new Set(keyNoncePairs(topic)).size).toBe(2 * PER_RUN)
      // The restored run's numbers lie above the first run's, so subscribers' replay windows take them.
      await waitUntil(
        () => subscriber.messages.filter((m) => m.topic === topic).length === 2 * PER_RUN,
        'every message delivered',
        30_000,
      )
      expect(subscriber.errors.filter((e) => e.topic === topic)).toEqual([])
    },
    3 * RUN_MS,
  )

  test(
    `two copies of one storage folder running at once (a cloned device, no shared lock): no (key, nonce) pair repeats across ${2 * PER_RUN} envelopes`,
    async () => {
      const dir = folders.get('thermostat-n3') as string
      const topic = 'home/nonce/thermostat/thermostat-n3/temp'
      const clone = copyFolder(dir)
      const original = startRun(dir, 'n3-original', topic, { count: PER_RUN })
      const cloned = startRun(clone, 'n3-clone', topic, { count: PER_RUN })
      await Promise.all([original.until('ended'), cloned.until('ended')])
      await waitUntil(() => keyNoncePairs(topic).length === 2 * PER_RUN, 'every envelope on the wire', 30_000)
      expect(new Set(keyNoncePairs(topic)).size).toBe(2 * PER_RUN)
    },
    3 * RUN_MS,
  )
})
