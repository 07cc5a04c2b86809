// A key server harness for tests that run real clients against it for a while: its clock
// follows the real one, and it holds the smart-home policy.
import { now } from '@smqtt/test-kit/client'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'

/** Starts the harness; `stopClock` ends the ticking (call it before `h.close()`). */
export async function startLiveHarness(
  options: Parameters<typeof startHarness>[0] = {},
): Promise<{ h: Harness; stopClock: () => void }> {
  const h = await startHarness(options)
  h.clock.now = now()
  const timer = setInterval(() => {
    h.clock.now = now()
  }, 500)
  const policy = await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  if (policy.status !== 200) {
    clearInterval(timer)
    throw new Error(`policy: ${policy.text}`)
  }
  return { h, stopClock: () => clearInterval(timer) }
}
