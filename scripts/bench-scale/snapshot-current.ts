// Issue 14, cliff 2: milliseconds from an enrollment to the broker applying a snapshot that
// holds the new principal, at N principals, through the key server's push alone (scheduled
// pulls an hour apart, no CONNECT): the whole snapshot pushed while small, a signed notice and
// an HTTPS pull past `maxInlineSnapshotBytes`. Before: past ~1,450 principals the pushed
// snapshot exceeded the broker's 256 KiB packet limit and never arrived.
import { median, type ScaleCurve, SNAPSHOT_PRINCIPALS, timed } from './_curve.js'
import { withSnapshotStack } from './snapshot-stack.js'

export const snapshotCurrent: ScaleCurve = {
  name: 'snapshot-current',
  title: 'Broker current after an enrollment (push, then pull on a notice), ms',
  unit: 'ms',
  axis: SNAPSHOT_PRINCIPALS,
  measure: (size) =>
    withSnapshotStack(size, async ({ h, broker, push }) => {
      const runs: number[] = []
      for (let i = 0; i < 3; i++) {
        const id = `bench-new-${i}`
        const { ms } = await timed(async () => {
          await h.enroll(id, ['thermostat'])
          const deadline = Date.now() + 60_000
          while (!broker.plugin.snapshot?.principals.some((p) => p.id === id)) {
            if (Date.now() > deadline) throw new Error(`the broker did not learn ${id} within 60 s at ${size}`)
            await new Promise((resolve) => setTimeout(resolve, 2))
          }
        })
        runs.push(ms)
        await new Promise((resolve) => setTimeout(resolve, 1_100)) // past the on-demand spacing
      }
      const how = push.stats.notices > 0 ? 'notice + pull' : 'snapshot pushed'
      return { value: median(runs), note: `median of 3, ${how}` }
    }),
}
