import { afterAll, beforeAll, test } from 'vitest'
import { type Stack, startStack } from './_stack.js'

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(async () => {
  await stack?.close()
})

async function run(label: string, noDelay: boolean, qos: 0 | 1) {
  const id = `${label}-${qos}-${noDelay}`
  const pub = await stack.client(await stack.enroll(`thermostat-${id}`, ['thermostat']))
  const sub = await stack.client(await stack.enroll(`app-${id}`, ['app']))
  for (const c of [pub, sub])
    (c.client.mqttClient.stream as unknown as { setNoDelay(b: boolean): void }).setNoDelay(noDelay)
  await sub.client.subscribeAsync(`home/m/thermostat/thermostat-${id}/#`, { qos })
  const latencies: number[] = []
  sub.client.on('message', (_t, payload) => {
    const sent = new DataView(payload.buffer, payload.byteOffset).getFloat64(0)
    latencies.push(performance.now() - sent)
  })
  const n = 2000
  const start = performance.now()
  for (let i = 0; i < n; i++) {
    const payload = new Uint8Array(256)
    new DataView(payload.buffer).setFloat64(0, performance.now())
    pub.client.publish(`home/m/thermostat/thermostat-${id}/t`, payload, { qos })
    // 1000 msgs/s pacing
    const due = start + (i + 1)
    while (performance.now() < due) await new Promise((r) => setImmediate(r))
  }
  await sub.waitForMessages(n, 10_000)
  latencies.sort((a, b) => a - b)
  const p = (q: number) => latencies[Math.floor(q * (latencies.length - 1))]?.toFixed(2)
  console.log(`${label} qos${qos} noDelay=${noDelay}: p50 ${p(0.5)} ms p99 ${p(0.99)} ms, errors ${sub.errors.length}`)
  await stack.closeClients()
}

test('measure', async () => {
  await run('warm', true, 0)
  for (const qos of [0, 1] as const) {
    await run('on', true, qos)
    await run('off', false, qos)
  }
}, 120_000)
