// One run of a device in a process of its own, for nonce-reuse.test.ts: it loads its enrollment
// from a storage folder, wraps mqtt.js with @smqtt/client exactly as the README shows, publishes
// `count` messages and reports each step on stdout as a JSON line. With `hold` it stays up
// (keeping its identity) until its stdin closes.
import { fileStorage, loadEnrollment, secure } from '@smqtt/client'
import mqtt from 'mqtt'

interface DeviceRun {
  readonly dir: string
  readonly brokerUrl: string
  readonly clientId: string
  readonly ca: string
  readonly topic: string
  readonly count: number
  readonly hold?: boolean
}

const run = JSON.parse(process.argv[2] ?? '{}') as DeviceRun
const report = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`)

const storage = fileStorage(run.dir)
const me = await loadEnrollment(storage)
if (!me) throw new Error(`no enrollment in ${run.dir}`)
const client = secure(mqtt.connect(run.brokerUrl, { ca: run.ca, clientId: run.clientId, reconnectPeriod: 0 }), {
  ...me,
  storage,
  keyServer: { url: me.keyServerUrl, ca: run.ca, keyServerPublicKey: me.keyServerPublicKey },
})
client.on('error', () => {})
try {
  await client.ready
} catch (err) {
  report({ event: 'refused', code: (err as { code?: string }).code, message: (err as Error).message })
  process.exit(0)
}
report({ event: 'ready' })
// Ten in flight at a time: fast, and paced by the broker's acknowledgements.
for (let sent = 0; sent < run.count; sent += 10)
  await Promise.all(
    Array.from({ length: Math.min(10, run.count - sent) }, (_, i) =>
      client.publishAsync(run.topic, `m${sent + i}`, { qos: 1 }),
    ),
  )
report({ event: 'published', count: run.count })
if (run.hold) {
  process.stdin.resume()
  await new Promise((resolve) => process.stdin.once('end', resolve))
}
await client.endAsync()
report({ event: 'ended' })
process.exit(0)
