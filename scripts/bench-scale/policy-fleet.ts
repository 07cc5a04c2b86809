// The fleet the policy curves measure (issue 14, cliff 3): homes of 10 principals (9 devices and
// the home's app), one key group per home (`home/h<n>/#`), a rule per home granting its app the
// home, and a few fleet-wide rules with `%c` (devices' own topics, a substituted deny) and a
// support role reading every home. Groups = principals / 10.
import { type BrokerSnapshot, generateIdentity, type Policy, type SnapshotPrincipal } from '@smqtt/core'
import type { ScaleAxis } from './_curve.js'

export const PRINCIPALS_PER_HOME = 10

export function fleetPolicy(homes: number): Policy {
  const rules: Policy['rules'] = [
    { effect: 'allow', actions: ['publish'], topics: ['home/+/dev/%c/#'], roles: ['device'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/+/dev/%c/cmd'], roles: ['device'] },
    { effect: 'deny', actions: ['publish'], topics: ['home/+/dev/%c/firmware/#'], roles: ['device'] },
    { effect: 'allow', actions: ['subscribe'], topics: ['home/#'], roles: ['support'] },
    { effect: 'allow', actions: ['publish', 'subscribe'], topics: ['public/#'], roles: ['device', 'app'] },
  ]
  const groups: Policy['groups'] = []
  for (let h = 0; h < homes; h++) {
    rules.push({ effect: 'allow', actions: ['publish', 'subscribe'], topics: [`home/h${h}/#`], roles: [`home-h${h}`] })
    groups.push({ id: h + 1, name: `home-${h}`, filter: `home/h${h}/#`, rotateEverySeconds: 86_400 })
  }
  return { version: 1, rules, groups, plaintext: ['public/#'] }
}

/** `count` principals, 10 per home: devices `d<h>-<i>` and the app `app<h>`. */
export function fleetPrincipals(count: number): SnapshotPrincipal[] {
  const signingKey = new Uint8Array(32).fill(7)
  const out: SnapshotPrincipal[] = []
  for (let n = 0; n < count; n++) {
    const h = Math.floor(n / PRINCIPALS_PER_HOME)
    const i = n % PRINCIPALS_PER_HOME
    out.push(
      i === 0
        ? { id: `app${h}`, kid: n + 1, roles: ['app', `home-h${h}`], signingKey, status: 'active' }
        : { id: `d${h}-${i}`, kid: n + 1, roles: ['device'], signingKey, status: 'active' },
    )
  }
  return out
}

/** How long `work` took and the longest stretch the event loop was held meanwhile, in ms (a setImmediate ticker). */
export async function longestBlockDuring<T>(
  work: () => Promise<T> | T,
): Promise<{ result: T; ms: number; blockMs: number }> {
  const started = performance.now()
  let last = started
  let longest = 0
  let running = true
  const tick = () => {
    const t = performance.now()
    longest = Math.max(longest, t - last)
    last = t
    if (running) setImmediate(tick)
  }
  setImmediate(tick)
  const result = await work()
  tick()
  running = false
  return { result, ms: performance.now() - started, blockMs: longest }
}

/** The key server whose key signs the fleet's snapshots and deltas. */
export const fleetKeyServer = generateIdentity('smqtt-keyserver')

/** The axis of the curves in which a broker applies what the key server signed. */
export const APPLIED_PRINCIPALS: ScaleAxis = {
  label: 'principals',
  sizes: [100, 1_000, 10_000, 30_000, 100_000],
  quickSizes: [100, 1_000, 10_000],
}

/** The snapshot of a fleet of `size` principals, one key group per home (with one epoch each when `withEpochs`). */
export function fleetSnapshot(size: number, issuedAt: number, withEpochs = false): BrokerSnapshot {
  const homes = size / PRINCIPALS_PER_HOME
  const epochs = withEpochs
    ? Array.from({ length: homes }, (_, h) => ({ group: h + 1, epoch: 1, activatesAt: issuedAt - 60 }))
    : []
  return { issuedAt, policy: fleetPolicy(homes), principals: fleetPrincipals(size), epochs, revocationListVersion: 1 }
}
