// The key server most curves measure: the test kit's harness (HTTPS, SQLite) on the wall clock,
// started for one point and closed after it, whatever happens.
import type { KeyServerSettings } from '@smqtt/keyserver'
import { type Harness, startHarness } from '@smqtt/test-kit/keyserver'

export interface KeyServerOptions {
  readonly settings?: Partial<KeyServerSettings>
  /** Put through the admin API before `measure` runs. */
  readonly policy?: unknown
  /** Keep the clock on the wall clock while `measure` runs, for points that take seconds of requests. */
  readonly followWallClock?: boolean
}

const wallClock = () => Math.floor(Date.now() / 1000)

export async function withKeyServer<T>(options: KeyServerOptions, measure: (h: Harness) => Promise<T>): Promise<T> {
  const h = await startHarness({ settings: options.settings ?? {} })
  h.clock.now = wallClock()
  const clock = options.followWallClock
    ? setInterval(() => {
        h.clock.now = wallClock()
      }, 100)
    : undefined
  try {
    if (options.policy !== undefined) {
      const put = await h.admin('PUT', '/v1/admin/policy', { policy: options.policy })
      if (put.status !== 200) throw new Error(`policy: ${put.text}`)
    }
    return await measure(h)
  } finally {
    clearInterval(clock)
    await h.close()
  }
}

/** After filling the store: a keep-alive socket the server closed meanwhile is reset here, not in what is timed. */
export const spendKeepAliveReset = (h: Harness) => h.request('GET', '/v1/health').catch(() => {})
