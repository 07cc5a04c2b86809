// The bounded soak: the real key server and broker in this process, the fleet in a child
// process (so the servers' memory and event loop are measured alone, and the two get a core
// each), a group rotation and a revocation every period, a line per period, verdicts at the end.
import { type ChildProcess, fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { formatPeriod } from './report.js'
import { type SoakServers, startServers } from './servers.js'
import {
  cpuMeter,
  type DevicePlan,
  eachLimited,
  type FleetApi,
  type FleetFinal,
  type FleetMethod,
  type FleetReply,
  type FleetStats,
  lagMeter,
  megabytes,
  type Role,
  sleep,
} from './shared.js'

export interface SoakOptions {
  readonly devices: number
  readonly durationSeconds: number
  /** Scheduled publishes per second across the fleet (each lock command adds the lock's reply). */
  readonly ratePerSecond: number
  /** One group rotation and one revocation per period, and a report line (default 60 s). */
  readonly periodSeconds: number
  /** How long to wait for owed deliveries once traffic stops. */
  readonly drainSeconds: number
  readonly print?: (line: string) => void
}

export interface PeriodRow {
  readonly period: number
  readonly endSeconds: number
  readonly connected: number
  readonly sent: number
  readonly expected: number
  readonly received: number
  /** Broker refusals in the period by `hook:reason` (plugin metrics). */
  readonly refusals: Record<string, number>
  /** securityError events at non-revoked devices in the period, by code. */
  readonly securityErrors: Record<string, number>
  readonly rotations: number
  readonly revocations: number
  /** Key server + broker process, after a full garbage collection. */
  readonly rssMb: number
  readonly heapMb: number
  readonly lagP99Ms: number
  readonly fleetLagP99Ms: number
  /** CPU time in the period, % of one core. */
  readonly cpuPercent: number
  readonly fleetCpuPercent: number
  readonly fleetRssMb: number
  readonly load: number
}

export interface Revocation {
  readonly id: string
  readonly role: Role
  readonly apiMs: number
  /** QoS 1 messages the broker still held for the device's persistent session at the end. */
  queued: number
}

export interface Verdict {
  readonly name: string
  readonly pass: boolean
  readonly detail: string
}

export interface SoakResult {
  readonly options: SoakOptions
  readonly startedAt: string
  readonly machine: string
  readonly homes: number
  readonly mix: Record<Role, number>
  readonly setup: {
    serversMs: number
    tokensMs: number
    enrollMs: number
    connectMs: number
    /** Snapshots the broker applied by the end of setup: every enrollment changes the directory. */
    snapshots: number
  }
  readonly periods: readonly PeriodRow[]
  readonly final: FleetFinal
  /** Every broker refusal of the run by `hook:reason` (plugin metrics). */
  readonly refusals: Record<string, number>
  /** Audited refusals of principals that were never revoked: `principal hook:reason` → count. */
  readonly legitimateRefusals: Record<string, number>
  readonly sessionsClosed: Record<string, number>
  readonly rotations: readonly { group: number; epoch: number; apiMs: number }[]
  readonly revocations: readonly Revocation[]
  readonly memory: { heapSlopeMbPerMin: number; rssSlopeMbPerMin: number; heapGrowthMb: number; boundMb: number }
  readonly warnings: readonly string[]
  readonly warningCount: number
  readonly verdicts: readonly Verdict[]
  readonly passed: boolean
}

/** A home: six thermostats, two door locks, two phones with the app. */
const HOME: readonly Role[] = [...Array<Role>(6).fill('thermostat'), 'lock', 'lock', 'app', 'app']
/** Revocations take an app, a thermostat, a lock, in turn (each re-keys different groups). */
const REVOKED_ROLES: readonly Role[] = ['app', 'thermostat', 'lock']
/** The key groups of the smart-home policy, rotated in turn. */
const GROUPS = [1, 2, 3] as const
/** A revoked device must be disconnected within this. */
const CUTOFF_BOUND_MS = 10_000
const TOKEN_WIDTH = 8

/** The fleet's devices, homes of ten; their tokens are filled in later. */
function planFleet(devices: number): Omit<DevicePlan, 'token'>[] {
  return Array.from({ length: devices }, (_, i) => {
    const home = `h${String(Math.floor(i / HOME.length)).padStart(3, '0')}`
    const role = HOME[i % HOME.length] as Role
    const nth = HOME.slice(0, i % HOME.length).filter((r) => r === role).length + 1
    return { id: `${home}-${role}-${nth}`, role, home }
  })
}

/** The fleet process and a typed client of its API. */
function forkFleet(): { api: FleetApi; child: ChildProcess } {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href
  const child = fork(fileURLToPath(new URL('./fleet.ts', import.meta.url)), [], {
    execArgv: ['--import', tsx, '--conditions=smqtt-source'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  let seq = 0
  const waiting = new Map<number, { resolve(value: unknown): void; reject(err: Error): void }>()
  child.on('message', (reply: FleetReply) => {
    const call = waiting.get(reply.seq)
    waiting.delete(reply.seq)
    if ('error' in reply) call?.reject(new Error(`fleet: ${reply.error}`))
    else call?.resolve(reply.result)
  })
  child.on('exit', (code, signal) => {
    for (const call of waiting.values()) call.reject(new Error(`the fleet process exited (${code ?? signal})`))
    waiting.clear()
  })
  const call =
    <M extends FleetMethod>(method: M) =>
    (...args: Parameters<FleetApi[M]>) =>
      new Promise((resolve, reject) => {
        waiting.set(++seq, { resolve, reject })
        child.send({ seq, method, args })
      }) as ReturnType<FleetApi[M]>
  return {
    child,
    api: {
      setup: call('setup'),
      start: call('start'),
      revoking: call('revoking'),
      stats: call('stats'),
      stop: call('stop'),
    },
  }
}

async function stopFleet(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.disconnect()
  const kill = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(kill)
}

/** A full garbage collection on demand, so heap samples show what is live, not what awaits collection. */
function garbageCollector(): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

/** Least-squares slope of y over x. */
function slope(points: readonly (readonly [number, number])[]): number {
  if (points.length < 2) return 0
  const mean = (f: (p: readonly [number, number]) => number) => points.reduce((s, p) => s + f(p), 0) / points.length
  const mx = mean((p) => p[0])
  const my = mean((p) => p[1])
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0)
  return sxx === 0 ? 0 : points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0) / sxx
}

/** A prom-client counter's values as `a:b` label pairs → value. */
async function counterValues(counter: { get(): Promise<{ values: { labels: object; value: number }[] }> }) {
  const out: Record<string, number> = {}
  for (const { labels, value } of (await counter.get()).values) out[Object.values(labels).join(':')] = value
  return out
}

function difference(now: Readonly<Record<string, number>>, before: Readonly<Record<string, number>>) {
  const out: Record<string, number> = {}
  for (const [key, value] of Object.entries(now))
    if (value - (before[key] ?? 0) > 0) out[key] = value - (before[key] ?? 0)
  return out
}

const sum = (counts: Readonly<Record<string, number>>) => Object.values(counts).reduce((a, b) => a + b, 0)

/** Runs the soak; resolves with the measurements and verdicts (never throws for a failed verdict). */
export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const print = options.print ?? (() => {})
  const startedAt = new Date().toISOString()
  const loadAtStart = loadavg()[0] ?? 0
  const dir = mkdtempSync(join(tmpdir(), 'smqtt-soak-'))
  const collectGarbage = garbageCollector()
  const lag = lagMeter()
  let servers: SoakServers | undefined
  let fleet: ReturnType<typeof forkFleet> | undefined
  try {
    const serversStart = performance.now()
    servers = await startServers(dir, { devices: options.devices })
    const { admin, plugin } = servers
    const serversMs = performance.now() - serversStart

    const tokensStart = performance.now()
    const tokens = new Map<string, string>()
    const planned = planFleet(options.devices)
    await eachLimited(planned, TOKEN_WIDTH, async (device) => {
      const { token } = (await admin('/v1/admin/enrollment-tokens', {
        principalId: device.id,
        roles: [device.role],
      })) as { token: string }
      tokens.set(device.id, token)
    })
    const plans: DevicePlan[] = planned.map((device) => ({ ...device, token: tokens.get(device.id) ?? '' }))
    const tokensMs = performance.now() - tokensStart
    const mix = { thermostat: 0, lock: 0, app: 0 }
    for (const plan of plans) mix[plan.role]++
    const homes = new Set(plans.map((p) => p.home)).size
    print(`${options.devices} devices in ${homes} homes; ${tokensMs.toFixed(0)} ms for their enrollment tokens`)

    fleet = forkFleet()
    const { enrollMs, connectMs } = await fleet.api.setup({
      brokerUrl: servers.brokerUrl,
      keyServerUrl: servers.keyServerUrl,
      ca: servers.ca,
      keyServerPublicKey: servers.keyServerPublicKey,
      devices: plans,
    })
    const snapshots = sum(await counterValues(plugin.metrics.snapshotsApplied))
    print(
      `enrolled in ${(enrollMs / 1000).toFixed(1)} s (${((options.devices * 1000) / enrollMs).toFixed(0)}/s), ` +
        `connected and subscribed in ${(connectMs / 1000).toFixed(1)} s`,
    )

    const revoked = new Set<string>()
    const rotations: SoakResult['rotations'][number][] = []
    const revocations: Revocation[] = []
    const rotate = async () => {
      const group = GROUPS[rotations.length % GROUPS.length] as number
      const started = performance.now()
      const { epoch } = (await admin(`/v1/admin/groups/${group}/rotate`)) as { epoch: number }
      rotations.push({ group, epoch, apiMs: performance.now() - started })
    }
    const revoke = async () => {
      const role = REVOKED_ROLES[revocations.length % REVOKED_ROLES.length] as Role
      const home = `h${String(revocations.length % homes).padStart(3, '0')}`
      const candidates = plans.filter((p) => !revoked.has(p.id))
      const victim =
        candidates.find((p) => p.role === role && p.home === home) ??
        candidates.find((p) => p.role === role) ??
        candidates[0]
      if (!victim) return
      revoked.add(victim.id)
      await fleet?.api.revoking(victim.id)
      const started = performance.now()
      await admin(`/v1/admin/principals/${encodeURIComponent(victim.id)}/revoke`)
      revocations.push({ id: victim.id, role: victim.role, apiMs: performance.now() - started, queued: 0 })
    }

    const periods: PeriodRow[] = []
    const memory: [number, number, number][] = []
    let previous: FleetStats = await fleet.api.stats()
    let previousRefusals = await counterValues(plugin.metrics.refusals)
    lag.p99AndReset()
    const cpu = cpuMeter()
    await fleet.api.start(options.ratePerSecond)
    const t0 = Date.now()
    const end = t0 + options.durationSeconds * 1000
    const periodMs = options.periodSeconds * 1000
    for (let period = 1; t0 + (period - 1) * periodMs < end; period++) {
      const start = t0 + (period - 1) * periodMs
      const stop = Math.min(start + periodMs, end)
      const done = { rotations: rotations.length, revocations: revocations.length }
      if (start + periodMs / 4 < stop) {
        await sleep(start + periodMs / 4 - Date.now())
        await rotate()
      }
      if (start + (3 * periodMs) / 4 < stop) {
        await sleep(start + (3 * periodMs) / 4 - Date.now())
        await revoke()
      }
      await sleep(stop - Date.now())
      const stats = await fleet.api.stats()
      const refusals = await counterValues(plugin.metrics.refusals)
      const cpuPercent = cpu.percentAndReset()
      collectGarbage()
      const { rss, heapUsed } = process.memoryUsage()
      const row: PeriodRow = {
        period,
        endSeconds: (stop - t0) / 1000,
        connected: stats.connected,
        sent: stats.sent - previous.sent,
        expected: stats.expected - previous.expected,
        received: stats.received - previous.received,
        refusals: difference(refusals, previousRefusals),
        securityErrors: difference(stats.securityErrors, previous.securityErrors),
        rotations: rotations.length - done.rotations,
        revocations: revocations.length - done.revocations,
        rssMb: megabytes(rss),
        heapMb: megabytes(heapUsed),
        lagP99Ms: lag.p99AndReset(),
        fleetLagP99Ms: stats.lagP99Ms,
        cpuPercent,
        fleetCpuPercent: stats.cpuPercent,
        fleetRssMb: stats.rssMb,
        load: loadavg()[0] ?? 0,
      }
      periods.push(row)
      memory.push([row.endSeconds / 60, row.heapMb, row.rssMb])
      print(formatPeriod(row))
      previous = stats
      previousRefusals = refusals
    }

    const final = await fleet.api.stop(options.drainSeconds * 1000)
    await stopFleet(fleet.child)
    for (const revocation of revocations) revocation.queued = await servers.queuedFor(revocation.id)
    const refusals = await counterValues(plugin.metrics.refusals)
    const sessionsClosed = await counterValues(plugin.metrics.sessionsClosed)
    const legitimateRefusals: Record<string, number> = {}
    for (const [who, byReason] of servers.log.refusals)
      if (!revoked.has(who)) for (const [reason, count] of byReason) legitimateRefusals[`${who} ${reason}`] = count
    // Deliveries the broker dropped for a reason other than a revoked reader.
    const droppedDeliveries = Object.entries(refusals)
      .filter(([reason]) => reason.startsWith('forward:') && reason !== 'forward:principal-inactive')
      .reduce((total, [, count]) => total + count, 0)

    const heapSlope = slope(memory.map(([t, heap]) => [t, heap] as const))
    const rssSlope = slope(memory.map(([t, , rss]) => [t, rss] as const))
    const span = memory.length > 1 ? (memory.at(-1)?.[0] ?? 0) - (memory[0]?.[0] ?? 0) : 0
    const heapGrowthMb = heapSlope * span
    const boundMb = Math.max(16, 0.1 * (memory[0]?.[1] ?? 0))
    const rejected = sum(legitimateRefusals) + droppedDeliveries + final.publishErrors + sum(final.securityErrors)
    const cutOff = final.revoked.filter(
      (r) =>
        r.disconnectedAfterMs !== undefined &&
        r.disconnectedAfterMs <= CUTOFF_BOUND_MS &&
        r.deliveredAfterCutoff === 0 &&
        !r.reconnected,
    )
    const verdicts: Verdict[] = [
      {
        name: 'no QoS 1 message lost',
        pass: final.lost === 0 && final.unacknowledged === 0,
        detail:
          `${final.lost} owed deliveries to legitimate subscribers never arrived, ` +
          `${final.unacknowledged} legitimate publishes never acknowledged (of ${final.expected} owed, ${final.sent} sent)`,
      },
      {
        name: 'no legitimate message rejected',
        pass: rejected === 0,
        detail:
          `${sum(legitimateRefusals)} broker refusals of non-revoked principals, ${droppedDeliveries} deliveries ` +
          `dropped for a reason other than revocation, ${final.publishErrors} failed publishes, ` +
          `${sum(final.securityErrors)} securityErrors at non-revoked devices`,
      },
      {
        name: 'revoked devices cut off',
        pass: cutOff.length === final.revoked.length && final.revoked.length === revocations.length,
        detail:
          `${cutOff.length}/${revocations.length} disconnected within ${CUTOFF_BOUND_MS / 1000} s, ` +
          'none received anything after its disconnection or got back in',
      },
      {
        name: 'memory growth bounded',
        pass: heapGrowthMb <= boundMb,
        detail:
          `heap after GC ${heapSlope >= 0 ? '+' : ''}${heapSlope.toFixed(2)} MB/min over ${span.toFixed(1)} min ` +
          `(${heapGrowthMb.toFixed(1)} MB, bound ${boundMb.toFixed(0)} MB); RSS ${rssSlope.toFixed(2)} MB/min`,
      },
    ]
    return {
      options,
      startedAt,
      machine: `Node ${process.version}, ${cpus().length} cores, load average at start ${loadAtStart.toFixed(2)}`,
      homes,
      mix,
      setup: { serversMs, tokensMs, enrollMs, connectMs, snapshots },
      periods,
      final,
      refusals,
      legitimateRefusals,
      sessionsClosed,
      rotations,
      revocations,
      memory: { heapSlopeMbPerMin: heapSlope, rssSlopeMbPerMin: rssSlope, heapGrowthMb, boundMb },
      warnings: servers.log.warnings,
      warningCount: servers.log.warningCount,
      verdicts,
      passed: verdicts.every((v) => v.pass),
    }
  } finally {
    lag.stop()
    if (fleet) await stopFleet(fleet.child)
    await servers?.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
