import { type Deployment, startDeployment, within } from '@smqtt/test-kit/broker'
import { afterEach, expect, test } from 'vitest'

let d: Deployment | undefined
afterEach(async () => {
  await d?.close()
})

test('hooks set before attach still run, after ours allowed; close() restores them', async () => {
  const seen: string[] = []
  d = await startDeployment({}, (broker) => {
    broker.authorizeSubscribe = (_client, sub, callback) => {
      seen.push(sub.topic)
      callback(null, sub.topic === 'public/vetoed' ? null : sub)
    }
  })
  const app = await d.enroll('app-1', ['app'])
  d.smqtt.applySnapshot(await d.freshSnapshot())
  const client = await d.connectAs(app)
  const qos = (filter: string) =>
    within(
      client.subscribeAsync(filter, { qos: 0 }).then(
        (r) => r[0]?.qos,
        (err: { packet?: { granted?: number[] } }) => err.packet?.granted?.[0],
      ),
      filter,
    )
  expect(await qos('public/ok')).toBe(0)
  expect(await qos('public/vetoed')).toBe(128) // the earlier hook's veto stands
  expect(await qos('home/#')).toBe(128) // refused by SMQTT: the earlier hook is not even asked
  expect(seen).toEqual(['public/ok', 'public/vetoed'])
  const ours = d.broker.authorizeSubscribe
  await d.smqtt.close()
  expect(d.broker.authorizeSubscribe).not.toBe(ours)
})
