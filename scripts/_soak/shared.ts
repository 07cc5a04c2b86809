// What the soak's two processes share: the fleet's request/response API over the IPC channel,
// the numbers it reports, and two small utilities (a bounded-concurrency loop, an event-loop
// lag meter).
import { monitorEventLoopDelay } from 'node:perf_hooks'

export type Role = 'thermostat' | 'lock' | 'app'

/** One device of the fleet, as the orchestrator planned it: its principal, home and one-time token. */
export interface DevicePlan {
  readonly id: string
  readonly role: Role
  readonly home: string
  readonly token: string
}

export interface FleetSetup {
  readonly brokerUrl: string
  readonly keyServerUrl: string
  /** PEM of the deployment CA (key server and broker certificates). */
  readonly ca: string
  /** The key server's Ed25519 key, base64url, pinned by every device at enrollment. */
  readonly keyServerPublicKey: string
  readonly devices: readonly DevicePlan[]
}

export interface SetupTimings {
  readonly enrollMs: number
  readonly connectMs: number
}

/** A revoked device, seen from the fleet. Times are ms after the revocation was requested. */
export interface RevokedDevice {
  readonly id: string
  readonly role: Role
  /** When its connection closed; undefined if it never did. */
  readonly disconnectedAfterMs: number | undefined
  /** Messages it still decrypted after the revocation was requested (the broker had not applied it yet). */
  readonly deliveredAfterRevocation: number
  /** Messages it got after its connection was closed: must be 0. */
  readonly deliveredAfterCutoff: number
  /** True if it ever got a CONNACK again: must be false. */
  readonly reconnected: boolean
}

/** Cumulative counters of the fleet. */
export interface FleetStats {
  readonly connected: number
  /** Publishes the broker acknowledged (QoS 1), lock replies included. */
  readonly sent: number
  /** Publishes of legitimate devices that failed. */
  readonly publishErrors: number
  /** Deliveries owed for acknowledged messages: every non-revoked subscriber of the topic at that time. */
  readonly expected: number
  /** Owed deliveries that arrived (each counted once). */
  readonly received: number
  /** Deliveries nobody was owed: QoS 1 duplicates, or readers revoked before the message. */
  readonly extra: number
  /** Owed deliveries not arrived yet. */
  readonly outstanding: number
  /** securityError events at non-revoked devices, by code. */
  readonly securityErrors: Readonly<Record<string, number>>
  /** Connections of non-revoked devices that closed during the run. */
  readonly unexpectedDisconnects: number
  readonly revoked: readonly RevokedDevice[]
  /** Event-loop lag p99 of the fleet process since the previous stats call, ms. */
  readonly lagP99Ms: number
  /** CPU time of the fleet process since the previous stats call, % of one core. */
  readonly cpuPercent: number
  readonly rssMb: number
}

/** The fleet's last word, after traffic stopped and deliveries drained. */
export interface FleetFinal extends FleetStats {
  /** Owed deliveries to devices never revoked that did not arrive: must be 0. */
  readonly lost: number
  readonly lostExamples: readonly string[]
  /** Owed deliveries to devices revoked later that did not arrive (they were cut off). */
  readonly missedByRevoked: number
  /** Publishes of legitimate devices the broker never acknowledged. */
  readonly unacknowledged: number
}

/** What the orchestrator can ask the fleet process. */
export interface FleetApi {
  /** Enrolls every device with its token, connects it and subscribes. */
  setup(setup: FleetSetup): Promise<SetupTimings>
  /** Starts publishing, `ratePerSecond` scheduled messages across the fleet. */
  start(ratePerSecond: number): Promise<void>
  /** The device is about to be revoked: it stops publishing and is owed nothing from now on. */
  revoking(id: string): Promise<void>
  stats(): Promise<FleetStats>
  /** Stops publishing, waits up to `drainMs` for owed deliveries, and ends every client. */
  stop(drainMs: number): Promise<FleetFinal>
}

export type FleetMethod = keyof FleetApi
export interface FleetRequest {
  readonly seq: number
  readonly method: FleetMethod
  readonly args: unknown[]
}
export type FleetReply =
  | { readonly seq: number; readonly result: unknown }
  | { readonly seq: number; readonly error: string }

/** Runs `work` on every item, at most `width` at a time; rejects with the first failure. */
export async function eachLimited<T>(
  items: readonly T[],
  width: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0
  const lane = async () => {
    while (next < items.length) await work(items[next++] as T)
  }
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane))
}

/** Event-loop lag of this process (10 ms resolution): p99 since the last reading, in ms. */
export function lagMeter(): { p99AndReset(): number; stop(): void } {
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  histogram.enable()
  return {
    p99AndReset() {
      const p99 = histogram.count > 0 ? histogram.percentile(99) / 1e6 : 0
      histogram.reset()
      return p99
    },
    stop: () => histogram.disable(),
  }
}

/** CPU time of this process between readings, in % of one core. */
export function cpuMeter(): { percentAndReset(): number } {
  let cpu = process.cpuUsage()
  let wall = performance.now()
  return {
    percentAndReset() {
      const used = process.cpuUsage(cpu)
      const elapsedMs = performance.now() - wall
      cpu = process.cpuUsage()
      wall = performance.now()
      return elapsedMs > 0 ? (used.user + used.system) / 10 / elapsedMs : 0
    },
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)))
export const megabytes = (bytes: number) => bytes / 2 ** 20
