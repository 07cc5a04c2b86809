// Onboarding at fleet scale: ms from a new device's enrollment until it holds its first key
// bundle (`POST /v1/enroll`, then `GET /v1/bundle`), at N active principals (a tenth apps
// reading the thermostats' group, the rest thermostats writing it). Each enrollment changes
// the directory every bundle is built from, so this is the key server's cost per newcomer;
// its inverse bounds how fast a fleet can be enrolled. Note: the mean of 5 in a row.
import { startActiveFleet } from './_active-fleet.js'
import type { ScaleCurve } from './_curve.js'

const IN_A_ROW = 5

export const enrollment: ScaleCurve = {
  name: 'enrollment',
  title: 'Enrollment at N active principals: ms until the newcomer holds its first bundle (mean of 5 in a row)',
  unit: 'ms',
  sizeLabel: 'active principals',
  sizes: [100, 1_000, 10_000, 100_000],
  quickSizes: [100, 3_000],
  async measure(size) {
    const h = await startActiveFleet(size)
    try {
      const times: number[] = []
      for (let i = 0; i < IN_A_ROW + 1; i++) {
        const started = performance.now()
        const device = await h.enroll(`newcomer-${i}`, ['thermostat'])
        const bundle = await h.device(device.identity, 'GET', '/v1/bundle')
        if (bundle.status !== 200) throw new Error(`GET /v1/bundle: ${bundle.status} ${bundle.text}`)
        if (i > 0) times.push(performance.now() - started) // the first warms the directory up
      }
      const mean = times.reduce((a, b) => a + b, 0) / times.length
      return { size, value: mean, note: `slowest ${Math.max(...times).toFixed(0)} ms` }
    } finally {
      await h.close()
    }
  },
}
