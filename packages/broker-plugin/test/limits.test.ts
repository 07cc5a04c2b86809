import { readFileSync } from 'node:fs'
import {
  closed,
  type Deployment,
  type Enrolled,
  rawExchange,
  remainingLength,
  startDeployment,
  within,
} from '@smqtt/test-kit/broker'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

let d: Deployment
let thermostat: Enrolled
beforeAll(async () => {
  d = await startDeployment({ maxPacketBytes: 64 * 1024 })
  thermostat = await d.enroll('thermostat-1', ['thermostat'])
  d.smqtt.applySnapshot(await d.freshSnapshot())
})
afterAll(async () => {
  await d.close()
})

async function stillServing() {
  const client = await d.connectAs(thermostat)
  expect(client.connected).toBe(true)
  client.end(true)
}

describe('packet size guard', () => {
  test('a declared 243 MiB packet before CONNECT: socket destroyed at once, broker keeps serving', async () => {
    const declared = 243 * 1024 * 1024
    const header = Buffer.from([0x30, ...remainingLength(declared)])
    const started = Date.now()
    const { received, closed: wasClosed } = await rawExchange(d.url, d.ca, Buffer.concat([header, Buffer.alloc(1024)]))
    expect(wasClosed).toBe(true)
    expect(received.length).toBe(0)
    expect(Date.now() - started).toBeLessThan(1_000)
    expect(d.logs).toContainEqual(
      expect.objectContaining({ event: 'packet-refused', reason: 'oversize', address: '127.0.0.1' }),
    )
    await stillServing()
  })

  test('an oversize PUBLISH from an authenticated client closes that connection only', async () => {
    const before = d.logs.filter((l) => l.event === 'packet-refused').length
    const sender = await d.connectAs(thermostat)
    const gone = closed(sender)
    sender.publish('public/big', Buffer.alloc(100 * 1024), { qos: 0 }) // limit in this file: 64 KiB
    await gone
    expect(d.logs.filter((l) => l.event === 'packet-refused')).toHaveLength(before + 1)
    await stillServing()
  })

  test('62 malformed packets (mqtt-packet fixtures): each connection ends, the broker stays up', async () => {
    const vectors = JSON.parse(
      readFileSync(new URL('./vectors/mqtt-packet-malformed.json', import.meta.url), 'utf8'),
    ) as {
      hex: string
    }[]
    expect(vectors).toHaveLength(62)
    for (const vector of vectors) {
      const { closed: wasClosed } = await rawExchange(d.url, d.ca, Buffer.from(vector.hex, 'hex'), 3_000)
      // Either the guard or Aedes' parser ends the connection, or (for a truncated packet) the
      // broker keeps waiting for the rest; what matters is that the broker stays healthy.
      void wasClosed
    }
    await within(stillServing(), 'a healthy broker after the malformed packets')
  }, 240_000)
})
