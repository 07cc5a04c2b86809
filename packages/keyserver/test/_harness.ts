// What the tests on a running key server (the test-kit harness) share: a harness with the
// smart-home policy in force, the error code of a refusal, and a policy too wide for a bundle.
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { expect } from 'vitest'

/** A fresh harness with SMART_HOME_POLICY in force (policy version 1). */
export async function startSmartHomeHarness(): Promise<Harness> {
  const h = await startHarness()
  expect((await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })).status).toBe(200)
  return h
}

/** The `error.code` of a refusal's body. */
export const errorCode = (response: { body: unknown }): string | undefined =>
  (response.body as { error?: { code?: string } }).error?.code

/**
 * SMART_HOME_POLICY plus role `roaming-thermostat`, which may publish in 33 rooms: more filters
 * than a key bundle carries for one writer (32).
 */
export const ROAMING_THERMOSTAT_POLICY = {
  ...SMART_HOME_POLICY,
  rules: [
    ...SMART_HOME_POLICY.rules,
    {
      effect: 'allow',
      actions: ['publish'],
      topics: Array.from({ length: 33 }, (_, i) => `home/room-${i}/thermostat/%c/#`),
      roles: ['roaming-thermostat'],
    },
  ],
}
