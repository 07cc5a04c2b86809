// The fleet the enrollment and freshness-poll curves measure: N active principals straight into
// the store, a tenth apps reading the thermostats' group, the rest thermostats writing it.
import { addPrincipals, type Harness, SMART_HOME_POLICY } from '@smqtt/test-kit/keyserver'
import { type KeyServerOptions, spendKeepAliveReset, withKeyServer } from './_key-server.js'

export function withActiveFleet<T>(
  size: number,
  options: Omit<KeyServerOptions, 'policy'>,
  measure: (h: Harness) => Promise<T>,
): Promise<T> {
  return withKeyServer({ ...options, policy: SMART_HOME_POLICY }, async (h) => {
    const apps = Math.ceil(size / 10)
    await addPrincipals(h, apps, { prefix: 'app-', roles: ['app'], signing: true })
    await addPrincipals(h, size - apps, { prefix: 'thermostat-', roles: ['thermostat'], signing: true })
    await spendKeepAliveReset(h)
    return measure(h)
  })
}
