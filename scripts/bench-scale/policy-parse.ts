// Cliff 3 of issue 14: parsing a fleet-shaped policy (one key group per home) was quadratic in
// groups (every group checked against every other for overlap).
import { parsePolicy } from '@smqtt/core'
import type { ScaleCurve } from './_curve.js'
import { fleetPolicy } from './policy-fleet.js'

export const policyParse: ScaleCurve = {
  name: 'policy-parse',
  title: 'parsePolicy of a fleet policy, one key group per home (ms)',
  unit: 'ms',
  axis: { label: 'key groups', sizes: [10, 100, 1_000, 3_000, 10_000], quickSizes: [10, 100, 1_000] },
  async measure(size) {
    const json = JSON.parse(JSON.stringify(fleetPolicy(size)))
    parsePolicy(json) // warm-up
    const runs = size <= 1_000 ? 5 : 1
    const start = performance.now()
    for (let i = 0; i < runs; i++) parsePolicy(json)
    return { value: (performance.now() - start) / runs, note: `${json.rules.length} rules` }
  },
}
