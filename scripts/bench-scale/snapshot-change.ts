// Issue 14, cliff 2: the key server's own share of a change at N principals: after one
// enrollment, the ms until it has the new snapshot content (what it pushes and answers pulls
// from) and a delta from the content before, as a broker's pull would get it. The content is
// kept from the store's change log (SnapshotFleet), so this should not follow the fleet's size
// the way reading every row for each change did (~1.3 s at 100,000).
import { addFleet, SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import { kib, median, type ScaleCurve, SNAPSHOT_PRINCIPALS, timed } from './_curve.js'
import { withKeyServer } from './_key-server.js'

const RUNS = 3

export const snapshotChange: ScaleCurve = {
  name: 'snapshot-change',
  title: "Key server's time for a change: new snapshot content and a broker's delta after one enrollment, ms",
  unit: 'ms',
  axis: SNAPSHOT_PRINCIPALS,
  measure: (size) =>
    withKeyServer({ policy: SMART_HOME_POLICY, followWallClock: true }, async (h) => {
      await addFleet(h, size)
      let held = await h.keyServer.brokerSnapshotUnless(undefined)
      const runs: number[] = []
      let deltaBytes = 0
      for (let i = 0; i < RUNS; i++) {
        await h.enroll(`bench-new-${i}`, ['thermostat'])
        const { result, ms } = await timed(() => h.keyServer.brokerSnapshotUnless(held.tag, { deltas: true }))
        if (!('delta' in result)) throw new Error(`expected a delta at ${size}`)
        runs.push(ms)
        deltaBytes = JSON.stringify(result.delta).length
        held = result
      }
      return { value: median(runs), note: `median of ${RUNS}; delta ${kib(deltaBytes)}` }
    }),
}
