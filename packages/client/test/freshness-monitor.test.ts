// The freshness poll's clock (src/_freshness.ts): polls about every interval with jitter
// downwards and never two at once, flags staleness after maxStaleness without a confirmation and
// clears it on the next one, stops for good on stop(), and never keeps a Node process alive.
import { afterEach, expect, test, vi } from 'vitest'
import { type FreshnessEvent, FreshnessMonitor, type FreshnessStats } from '../src/_freshness.js'

// The test's own waits use the real setTimeout, so the spy below sees only the monitor's timers.
const realSetTimeout = globalThis.setTimeout
const sleep = (ms: number) => new Promise((resolve) => realSetTimeout(resolve, ms))
const monitors: FreshnessMonitor[] = []
afterEach(() => {
  for (const m of monitors.splice(0)) m.stop()
  vi.restoreAllMocks()
})

function monitor(check: () => Promise<boolean>, intervalMs = 50, maxStalenessMs = 150) {
  const stats: FreshnessStats = { confirmedAt: null, stale: false, checks: 0, failures: 0 }
  const events: FreshnessEvent[] = []
  const errors: unknown[] = []
  const m = new FreshnessMonitor({
    stats,
    intervalMs,
    maxStalenessMs,
    now: () => Math.floor(Date.now() / 1000),
    check,
    onEvent: (e) => events.push(e),
    onError: (e) => errors.push(e),
  })
  monitors.push(m)
  return { m, stats, events, errors }
}

test('polls at once, then about every interval (80 to 100 % of it), one poll at a time', async () => {
  let running = 0
  let overlapped = false
  const starts: number[] = []
  const { m, stats } = monitor(async () => {
    starts.push(Date.now())
    overlapped ||= running > 0
    running++
    await sleep(30)
    running--
    return true
  }, 100)
  const t0 = Date.now()
  m.watch()
  m.start()
  await sleep(560)
  expect((starts[0] ?? Number.NaN) - t0).toBeLessThan(20)
  expect(starts.length).toBeGreaterThanOrEqual(5)
  expect(starts.length).toBeLessThanOrEqual(8)
  const gaps = starts.slice(1).map((at, i) => at - (starts[i] ?? Number.NaN))
  for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(78)
  expect(overlapped).toBe(false)
  expect(stats.checks).toBe(starts.length - (running > 0 ? 1 : 0))
  expect(stats.confirmedAt).toBeTypeOf('number')
})

test('stale after maxStaleness without a confirmation (fresh: false, once), fresh: true on the next one', async () => {
  let up = true
  const { m, stats, events, errors } = monitor(async () => {
    if (!up) throw new Error('unreachable')
    return true
  })
  m.watch()
  m.start()
  await sleep(20)
  const confirmedAt = stats.confirmedAt
  expect(confirmedAt).toBeTypeOf('number')
  up = false
  await sleep(400)
  expect(events).toEqual([{ fresh: false, confirmedAt }])
  expect(stats).toMatchObject({ stale: true, confirmedAt })
  expect(stats.failures).toBeGreaterThanOrEqual(3)
  expect(errors).toHaveLength(stats.failures)
  up = true
  await sleep(120)
  expect(events).toHaveLength(2)
  expect(events[1]).toMatchObject({ fresh: true })
  expect(stats.stale).toBe(false)
})

test('a poll that cannot tell yet (false) neither confirms nor fails', async () => {
  const { m, stats, events } = monitor(async () => false)
  m.watch()
  m.start()
  await sleep(250)
  expect(stats.confirmedAt).toBeNull()
  expect(stats.failures).toBe(0)
  expect(stats.checks).toBeGreaterThan(1)
  expect(events).toEqual([{ fresh: false, confirmedAt: null }])
})

test('stop() ends polling and the staleness clock; every timer is unref’d', async () => {
  const timers: ReturnType<typeof setTimeout>[] = []
  vi.spyOn(globalThis, 'setTimeout').mockImplementation(((run: () => void, ms?: number) => {
    const timer = realSetTimeout(run, ms)
    timers.push(timer)
    return timer
  }) as typeof setTimeout)
  const { m, stats, events } = monitor(async () => true)
  m.watch()
  m.start()
  await sleep(120)
  vi.restoreAllMocks()
  expect(timers.length).toBeGreaterThan(2)
  for (const timer of timers) expect(timer.hasRef()).toBe(false)
  m.stop()
  const checks = stats.checks
  await sleep(300)
  expect(stats.checks).toBe(checks)
  expect(events).toEqual([]) // no staleness reported after stop
})
