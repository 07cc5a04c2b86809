// A revocation pulled as a delta (issue 14) closes the revoked principal's live sessions as a
// whole snapshot would, and only theirs: the broker looks at the sessions of the principals the
// delta names, not at every session of the fleet.

import { closed, type Deployment, startDeployment } from '@smqtt/test-kit/broker'
import { addPrincipals } from '@smqtt/test-kit/keyserver'
import { afterEach, beforeEach, expect, test } from 'vitest'

let d: Deployment
beforeEach(async () => {
  d = await startDeployment()
  // A fleet large enough that a revocation's delta is smaller than the whole snapshot.
  await addPrincipals(d.h, 50, { prefix: 'fleet', roles: ['thermostat'] })
})
afterEach(async () => {
  await d.close()
})

const appliedDeltas = async () =>
  (await d.smqtt.metrics.snapshotDeltas.get()).values.find((v) => v.labels.outcome === 'applied')?.value ?? 0

test('a revocation pulled as a delta closes the live session; the others stay; CONNECTs are refused after', async () => {
  const app = await d.enroll('app-1', ['app'])
  const other = await d.enroll('app-2', ['app'])
  expect(await d.smqtt.pull()).toBe(true)
  const victim = await d.connectAs(app)
  const bystander = await d.connectAs(other)
  const applied = await appliedDeltas()
  d.h.clock.now += 1
  await d.h.keyServer.revokePrincipal('app-1', 'admin')
  const gone = closed(victim)
  expect(await d.smqtt.pull()).toBe(true)
  await gone
  expect(await appliedDeltas()).toBe(applied + 1)
  expect(bystander.connected).toBe(true)
  expect(d.smqtt.snapshot?.principals.find((p) => p.id === 'app-1')?.status).toBe('revoked')
  await expect(d.connectAs(app)).rejects.toMatchObject({ code: 5 })
})
