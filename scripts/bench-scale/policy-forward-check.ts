// Cliff 3 of issue 14: a first-use forward check (may this subscriber receive this topic?) and
// publish check went through every rule; in a fleet policy nearly all of them (one per home)
// cannot match the topic. Measured: µs per first-use check at N rules, each on a new topic
// (so no cache helps), half forward (maySubscribe on the topic) and half publish.
import { PolicyEvaluator } from '@smqtt/core'
import type { ScaleCurve } from './_curve.js'
import { fleetPolicy } from './policy-fleet.js'

export const forwardCheck: ScaleCurve = {
  name: 'forward-check',
  title: 'First-use forward / publish check at N rules, few of which can match the topic (µs)',
  unit: 'µs',
  axis: { label: 'rules', sizes: [100, 1_000, 3_000, 10_000], quickSizes: [100, 1_000] },
  async measure(size) {
    const homes = size - 5 // fleetPolicy has 5 fleet-wide rules and one per home
    const acl = new PolicyEvaluator(fleetPolicy(homes))
    const checks = 2_000
    let allowed = 0
    let start = 0
    // The first `checks` rounds warm the JIT up (on their own topics); the next ones are timed.
    for (let i = -checks; i < checks; i++) {
      if (i === 0) {
        start = performance.now()
        allowed = 0
      }
      const h = (((i * 7919) % homes) + homes) % homes
      const app = { id: `app${h}`, roles: ['app', `home-h${h}`] }
      const device = { id: `d${h}-${(i % 9) + 1}`, roles: ['device'] }
      if (acl.maySubscribe(app, `home/h${h}/dev/${device.id}/temp-${i}`)) allowed++
      if (acl.mayPublish(device, `home/h${h}/dev/${device.id}/temp-${i}`)) allowed++
    }
    const us = ((performance.now() - start) * 1000) / (2 * checks)
    if (allowed !== 2 * checks) throw new Error(`expected every check to pass, ${allowed} did`)
    return { value: us, note: `${acl.policy.rules.length} rules` }
  },
}
