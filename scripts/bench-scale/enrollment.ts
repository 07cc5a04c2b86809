// Onboarding at fleet scale: ms from a new device's enrollment until it holds its first key
// bundle (`POST /v1/enroll`, then `GET /v1/bundle`), at N active principals (a tenth apps
// reading the thermostats' group, the rest thermostats writing it). Each enrollment changes
// the directory every bundle is built from, so this is the key server's cost per newcomer;
// its inverse bounds how fast a fleet can be enrolled. Note: the mean of 5 in a row.
import { withActiveFleet } from './_active-fleet.js'
import { ACTIVE_PRINCIPALS, type ScaleCurve, timed } from './_curve.js'

const IN_A_ROW = 5

export const enrollment: ScaleCurve = {
  name: 'enrollment',
  title: 'Enrollment at N active principals: ms until the newcomer holds its first bundle (mean of 5 in a row)',
  unit: 'ms',
  axis: ACTIVE_PRINCIPALS,
  measure: (size) =>
    withActiveFleet(size, {}, async (h) => {
      const times: number[] = []
      for (let i = 0; i < IN_A_ROW + 1; i++) {
        const { ms } = await timed(async () => {
          const device = await h.enroll(`newcomer-${i}`, ['thermostat'])
          const bundle = await h.device(device.identity, 'GET', '/v1/bundle')
          if (bundle.status !== 200) throw new Error(`GET /v1/bundle: ${bundle.status} ${bundle.text}`)
        })
        if (i > 0) times.push(ms) // the first warms the directory up
      }
      const mean = times.reduce((a, b) => a + b, 0) / times.length
      return { value: mean, note: `slowest ${Math.max(...times).toFixed(0)} ms` }
    }),
}
