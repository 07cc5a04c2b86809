// `npx tsx --conditions=smqtt-source packages/broker-plugin/bench/hooks.bench.ts [src folder]`: the
// plugin's per-message hook cost in `binding` mode, without sockets: the authorizePublish hook
// (with its replay window and rate limit) and the authorizeForward hook, called directly on an
// Aedes broker with the plugin attached and a real snapshot from the real key server. CPU time
// of this thread (process.cpuUsage) per call, so other busy processes disturb it little.
// The optional argument points at another copy of src/ (e.g. the previous version) to compare.
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { sealEnvelope } from '@smqtt/core'
import { openBundleOf, sealingKeys } from '@smqtt/test-kit/broker'
import { SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import { Aedes, type Client, type PublishPacket } from 'aedes'
import { pino } from 'pino'
import type * as Plugin from '../src/index.js'

const srcDir = resolve(process.argv[2] ?? new URL('../src', import.meta.url).pathname)
const { attachSmqtt } = (await import(pathToFileURL(`${srcDir}/index.ts`).href)) as typeof Plugin
const N = 50_000
const ROUNDS = 5
const TOPIC = 'home/hall/thermostat/thermostat-1/temp'
const SESSION = Symbol.for('smqtt.session') // src/session.ts

const h = await startHarness()
h.clock.now = Math.floor(Date.now() / 1000)
try {
  await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  const brokerP = await h.enroll('broker-1', ['broker'])
  const thermostat = await h.enroll('thermostat-1', ['thermostat'])
  await h.enroll('app-1', ['app'])
  const { epochKey, signer } = sealingKeys(await openBundleOf(h, thermostat), thermostat, TOPIC)
  const envelopes = Array.from({ length: N * ROUNDS }, (_, i) =>
    Buffer.from(sealEnvelope({ topic: TOPIC, payload: new Uint8Array(150), epochKey, signer, seq: i + 1 })),
  )

  const broker = await Aedes.createBroker()
  const plugin = await attachSmqtt(broker, {
    keyServerPublicKey: h.keyServer.publicKey,
    keyServer: { url: h.url, ca: h.caPem, identity: brokerP.identity, pullIntervalMs: 3_600_000 },
    mode: 'binding',
    logger: pino({ level: 'warn' }),
    ...({ publishRate: { perSecond: 1e9, burst: 1e9 } } as object), // older src/ ignores it
  })
  if (plugin.snapshot === undefined) throw new Error('no snapshot')
  const fakeClient = (id: string) =>
    ({
      id,
      conn: { remoteAddress: '127.0.0.1' },
      close() {},
      [SESSION]: { principalId: id, method: 'connect-password' },
    }) as unknown as Client
  const publisher = fakeClient('thermostat-1')
  const subscriber = fakeClient('app-1')

  const cpu = () => {
    const { user, system } = process.cpuUsage()
    return user + system
  }
  const results: { publish: number; forward: number }[] = []
  let refused = 0
  const onVerdict = (err?: Error | null) => {
    if (err) refused++
  }
  for (let round = 0; round < ROUNDS; round++) {
    const packets = envelopes
      .slice(round * N, (round + 1) * N)
      .map((payload) => ({ cmd: 'publish', topic: TOPIC, payload, qos: 0, dup: false, retain: false }) as PublishPacket)
    let start = cpu()
    for (const packet of packets) broker.authorizePublish(publisher, packet, onVerdict)
    const publish = (cpu() - start) / N
    start = cpu()
    for (const packet of packets) broker.authorizeForward(subscriber, packet as never)
    const forward = (cpu() - start) / N
    results.push({ publish, forward })
  }
  if (refused > 0) throw new Error(`${refused} publishes refused`)
  await plugin.close()
  await new Promise<void>((done) => broker.close(() => done()))
  const best = (key: 'publish' | 'forward') => Math.min(...results.map((r) => r[key]))
  console.log(
    `${srcDir}: binding mode, ${ROUNDS} rounds of ${N} calls, best round CPU µs/call — ` +
      `authorizePublish ${best('publish').toFixed(2)}, authorizeForward ${best('forward').toFixed(2)}`,
  )
} finally {
  await h.close()
}
