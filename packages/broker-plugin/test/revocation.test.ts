import { BROKER_CONTROL_TOPIC } from '@smqtt/core'
import { closed, type Deployment, type Enrolled, sleep, startDeployment, within } from '@smqtt/test-kit/broker'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'

let d: Deployment
let app: Enrolled
let pusher: Enrolled
beforeEach(async () => {
  d = await startDeployment({ staleAfterSeconds: 1 })
  app = await d.enroll('app-1', ['app'])
  pusher = await d.enroll('smqtt-keyserver', ['keyserver'])
  d.smqtt.applySnapshot(await d.freshSnapshot())
})
afterEach(async () => {
  await d.close()
})

describe('revocation', () => {
  test('a snapshot pushed on the control topic closes the live session within 1 s; CONNECTs are refused after', async () => {
    const victim = await d.connectAs(app)
    await victim.subscribeAsync('home/+/thermostat/#', { qos: 1 })
    const push = await d.connectAs(pusher)
    await d.h.keyServer.revokePrincipal('app-1', 'admin')
    const started = Date.now()
    const gone = closed(victim, 1_000)
    await push.publishAsync(
      BROKER_CONTROL_TOPIC,
      JSON.stringify({ type: 'snapshot', snapshot: await d.freshSnapshot() }),
      {
        qos: 1,
      },
    )
    await gone
    expect(Date.now() - started).toBeLessThan(1_000)
    await expect(d.connectAs(app)).rejects.toMatchObject({ code: 5 })
    expect(d.logs).toContainEqual(expect.objectContaining({ audit: true, event: 'session-closed', principal: 'app-1' }))
    expect(await d.smqtt.metrics.registry.getSingleMetricAsString('smqtt_broker_snapshots_applied_total')).toContain(
      'source="push"} 1',
    )
  })

  test("a revoked principal's persistent session is removed: nothing queues for it any more", async () => {
    const victim = await d.connectAs(app, { clean: false })
    await victim.subscribeAsync('home/+/thermostat/#', { qos: 1 })
    const { persistence } = d.broker as unknown as {
      persistence: {
        subscriptionsByClient(client: { id: string }): Promise<unknown[] | null>
        subscriptionsByTopic(topic: string): Promise<unknown[]>
      }
    }
    const stored = () => persistence.subscriptionsByClient({ id: 'app-1' })
    expect(await stored()).toHaveLength(1)
    await d.h.keyServer.revokePrincipal('app-1', 'admin')
    const gone = closed(victim, 1_000)
    d.smqtt.applySnapshot(await d.freshSnapshot())
    await gone
    for (let i = 0; i < 50 && ((await stored())?.length ?? 0) > 0; i++) await sleep(20)
    expect((await stored()) ?? []).toHaveLength(0)
    expect(await persistence.subscriptionsByTopic('home/hall/thermostat/thermostat-1/temp')).toEqual([])
  })

  test('a snapshot not signed by the pinned key server is refused, whoever pushes it', async () => {
    const before = d.smqtt.snapshot?.issuedAt
    const signed = (await d.freshSnapshot()) as { signature: string }
    expect(d.smqtt.applySnapshot({ ...signed, signature: `${signed.signature.slice(0, -4)}AAAA` }, 'push')).toBe(false)
    expect(d.smqtt.snapshot?.issuedAt).toBe(before)
    expect(d.logs).toContainEqual(
      expect.objectContaining({ event: 'snapshot-refused', code: 'ERR_SNAPSHOT_SIGNATURE_INVALID' }),
    )
  })

  test('an older snapshot never replaces a newer one (no rollback of a revocation)', async () => {
    const old = await d.freshSnapshot()
    await d.h.keyServer.revokePrincipal('app-1', 'admin')
    expect(d.smqtt.applySnapshot(await d.freshSnapshot())).toBe(true)
    expect(d.smqtt.applySnapshot(old)).toBe(false)
    expect(d.smqtt.snapshot?.principals.find((p) => p.id === 'app-1')?.status).toBe('revoked')
  })
})

describe('key server outage', () => {
  test('the broker keeps enforcing the last snapshot, and says it is stale', async () => {
    expect(await d.smqtt.pull()).toBe(true)
    expect(d.smqtt.state.stale).toBe(false)
    await d.h.app.close() // key server down
    expect(await within(d.smqtt.pull(), 'a failing pull', 12_000)).toBe(false)
    await sleep(2_100) // staleAfterSeconds: 1
    expect(d.smqtt.state.stale).toBe(true)
    expect(d.smqtt.state.snapshotAge).toBeGreaterThanOrEqual(2)
    expect((await d.connectAs(app)).connected).toBe(true) // still enforcing, not failing open or shut
    const metrics = await d.smqtt.metrics.registry.metrics()
    expect(metrics).toContain('smqtt_broker_snapshot_stale 1')
    expect(metrics).toMatch(/smqtt_broker_snapshot_errors_total\{source="pull"\} [1-9]/)
    expect(d.logs).toContainEqual(expect.objectContaining({ msg: 'snapshot pull failed; enforcing the last snapshot' }))
  })
})
