// The fleet the enrollment and freshness-poll curves measure: N active principals straight into
// the store, a tenth apps reading the thermostats' group, the rest thermostats writing it.
import type { KeyServerSettings } from '@smqtt/keyserver'
import { addPrincipals, type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'

export async function startActiveFleet(size: number, settings: Partial<KeyServerSettings> = {}): Promise<Harness> {
  const h = await startHarness({ settings })
  h.clock.now = Math.floor(Date.now() / 1000)
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  const apps = Math.ceil(size / 10)
  await addPrincipals(h, apps, { prefix: 'app-', roles: ['app'], signing: true })
  await addPrincipals(h, size - apps, { prefix: 'thermostat-', roles: ['thermostat'], signing: true })
  await h.request('GET', '/v1/health').catch(() => {}) // spend a keep-alive reset here
  return h
}
