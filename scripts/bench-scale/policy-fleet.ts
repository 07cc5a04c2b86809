// The fleet the policy curves measure (issue 14, cliff 3): homes of 10 principals (9 devices and
// the home's app), one key group per home (`home/h<n>/#`), a rule per home granting its app the
// home, and a few fleet-wide rules with `%c` (devices' own topics, a substituted deny) and a
// support role reading every home. Groups = principals / 10.
import type { Policy, SnapshotPrincipal } from '@smqtt/core'

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

/** The longest stretch the event loop was held while `work` ran, in ms (a setImmediate ticker). */
export async function longestBlockDuring<T>(work: () => Promise<T> | T): Promise<{ result: T; blockMs: number }> {
  let last = performance.now()
  let longest = 0
  let running = true
  const tick = () => {
    const t = performance.now()
    longest = Math.max(longest, t - last)
    last = t
    if (running) setImmediate(tick)
  }
  setImmediate(tick)
  last = performance.now()
  const result = await work()
  tick()
  running = false
  return { result, blockMs: longest }
}
