// Freshness polls at N active principals: what a device waits for `GET /v1/freshness` (the
// poll that bounds revocation to 60 s) while the key server follows its store. One device
// polls every 20 ms for 8 s of real time; value: the slowest poll, in ms (note: the median).
// Before: the directory was rebuilt from every principal whenever it was 2 s old, so past
// ~10,000 principals a poll now and then waited for a whole rebuild (2.3 s at 100,000), and
// the key server spent about that long out of every 2 s doing it.
import { withActiveFleet } from './_active-fleet.js'
import { ACTIVE_PRINCIPALS, median, type ScaleCurve, timed } from './_curve.js'

const POLL_FOR_MS = 8_000
/** One device polling every 20 ms: above the per-principal request limit a device has. */
const UNLIMITED = { principalRequestsPerSecond: 10_000, principalRequestBurst: 10_000 }

export const freshnessPoll: ScaleCurve = {
  name: 'freshness-poll',
  title: 'Freshness polls every 20 ms for 8 s at N active principals: slowest poll (ms; median in the note)',
  unit: 'slowest ms',
  axis: ACTIVE_PRINCIPALS,
  measure: (size) =>
    withActiveFleet(size, { settings: UNLIMITED, followWallClock: true }, async (h) => {
      const device = await h.enroll('bench-poller', ['app'])
      await h.device(device.identity, 'GET', '/v1/freshness') // the first builds the directory
      const times: number[] = []
      const until = performance.now() + POLL_FOR_MS
      while (performance.now() < until) {
        const { result: poll, ms } = await timed(() => h.device(device.identity, 'GET', '/v1/freshness'))
        if (poll.status !== 200 && poll.status !== 304) throw new Error(`poll: ${poll.status} ${poll.text}`)
        times.push(ms)
        await new Promise((resolve) => setTimeout(resolve, 20)) // under the 1,000 nonces a principal may hold
      }
      return {
        value: Math.max(...times),
        note: `median ${median(times).toFixed(1)} ms over ${times.length} polls`,
      }
    }),
}
