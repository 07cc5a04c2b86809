// The soak's devices, in a process of their own (forked by run.ts): each enrolls with its
// one-time token through the key server's API, connects to the broker over TLS with an
// @smqtt/client secure client (persistent session, QoS 1) and plays its part: thermostats
// publish readings, apps command their home's locks and read everything of their home, locks
// answer each command with their state. The fleet keeps the books: every acknowledged message
// is owed to each non-revoked subscriber of its topic at that moment, and every delivery
// settles one debt. Its API (shared.ts) is served over the IPC channel.
import {
  type ClientStorage,
  type Enrollment,
  enroll,
  memoryStorage,
  type SecureClient,
  secureConnectAsync,
} from '@smqtt/client'
import {
  cpuMeter,
  type DevicePlan,
  eachLimited,
  type FleetApi,
  type FleetReply,
  type FleetRequest,
  type FleetSetup,
  type FleetStats,
  lagMeter,
  megabytes,
  type RevokedDevice,
  sleep,
} from './shared.js'

/** Enrollments and connections in flight at once. */
const SETUP_WIDTH = 16
/** One scheduled message in this many is an app's lock command; the rest are thermostat readings. */
const LOCK_COMMAND_EVERY = 10
const TICK_MS = 100

interface Device {
  readonly plan: DevicePlan
  readonly storage: ClientStorage
  enrollment?: Enrollment
  client?: SecureClient
  /** Messages this device published so far (its payloads carry the count as `n`). */
  published: number
  /** Round-robin position among the home's locks (apps). */
  nextLock: number
  revokingAt?: number
  cutoffAt?: number
  deliveredAfterRevocation: number
  deliveredAfterCutoff: number
  reconnected: boolean
}

/** A published message: who delivered it before the acknowledgement, then who still owes. */
interface Debt {
  readonly topic: string
  readonly sender: Device
  readonly early: Set<string>
  owed?: Set<string>
}

const devices = new Map<string, Device>()
const byHome = new Map<string, { apps: Device[]; locks: Device[] }>()
const debts = new Map<string, Debt>()
const counts = { sent: 0, publishErrors: 0, expected: 0, received: 0, extra: 0, unexpectedDisconnects: 0 }
const securityErrors: Record<string, number> = {}
const lag = lagMeter()
const cpu = cpuMeter()
let trafficTimer: NodeJS.Timeout | undefined
let trafficStarted = false

const live = (device: Device) => device.revokingAt === undefined
const key = (senderId: string, n: number) => `${senderId}#${n}`

/** Who is owed a message on `topic` now: the non-revoked devices subscribed to it. */
function readersOf(topic: string): Device[] {
  const [, home = '', kind, id, leaf] = topic.split('/')
  const members = byHome.get(home)
  if (!members) return []
  const readers = kind === 'lock' && leaf === 'cmd' ? members.locks.filter((l) => l.plan.id === id) : members.apps
  return readers.filter(live)
}

function publish(sender: Device, topic: string, body: Record<string, unknown>): void {
  const client = sender.client
  if (!client || !live(sender)) return
  const n = ++sender.published
  const id = key(sender.plan.id, n)
  debts.set(id, { topic, sender, early: new Set() })
  client.publishAsync(topic, JSON.stringify({ n, ...body }), { qos: 1 }).then(
    () => settle(id, true),
    () => settle(id, false),
  )
}

/** The broker answered: from now on the message is owed to the topic's current readers. */
function settle(id: string, acknowledged: boolean): void {
  const debt = debts.get(id)
  if (!debt || debt.owed) return
  // A device revoked meanwhile is no legitimate sender any more: nothing is owed for it.
  if (!live(debt.sender)) return void debts.delete(id)
  if (acknowledged) counts.sent++
  else counts.publishErrors++
  const owed = new Set(readersOf(debt.topic).map((d) => d.plan.id))
  counts.expected += owed.size
  for (const reader of debt.early) {
    if (owed.delete(reader)) counts.received++
    else counts.extra++
  }
  if (owed.size === 0) debts.delete(id)
  else debt.owed = owed
}

function delivered(reader: Device, senderId: string, n: number): void {
  if (reader.cutoffAt !== undefined) reader.deliveredAfterCutoff++
  else if (reader.revokingAt !== undefined) reader.deliveredAfterRevocation++
  const id = key(senderId, n)
  const debt = debts.get(id)
  if (!debt) return void counts.extra++
  if (!debt.owed) return void debt.early.add(reader.plan.id)
  if (!debt.owed.delete(reader.plan.id)) return void counts.extra++
  counts.received++
  if (debt.owed.size === 0) debts.delete(id)
}

function listen(device: Device, client: SecureClient): void {
  const { plan } = device
  client.on('message', (topic, payload, info) => {
    const { n } = JSON.parse(new TextDecoder().decode(payload)) as { n: number }
    delivered(device, info.sender ?? '', n)
    // A lock answers every command with its state.
    if (plan.role === 'lock' && topic.endsWith('/cmd'))
      publish(device, `home/${plan.home}/lock/${plan.id}/state`, { state: n % 2 ? 'locked' : 'unlocked' })
  })
  client.on('securityError', (event) => {
    if (live(device)) securityErrors[event.code] = (securityErrors[event.code] ?? 0) + 1
  })
  client.on('close', () => {
    if (!live(device)) device.cutoffAt ??= Date.now()
    else if (trafficStarted) counts.unexpectedDisconnects++
  })
  client.on('connect', () => {
    if (device.cutoffAt !== undefined) device.reconnected = true
  })
  // Refused reconnects of revoked devices, key server hiccups: visible in the counters above.
  client.on('error', () => {})
  client.on('keyServerError', () => {})
}

/** Redeems the device's one-time token: identity made here, principal record checked, key server key pinned. */
async function enrollDevice(setup: FleetSetup, device: Device, keyServerPublicKey: Uint8Array): Promise<void> {
  const { plan, storage } = device
  device.enrollment = await enroll({
    keyServerUrl: setup.keyServerUrl,
    ca: setup.ca,
    token: plan.token,
    id: plan.id,
    storage,
    keyServerPublicKey,
  })
}

async function connect(setup: FleetSetup, device: Device, keyServerPublicKey: Uint8Array): Promise<void> {
  const { plan, storage, enrollment } = device
  if (!enrollment) throw new Error(`${plan.id} is not enrolled`)
  device.client = await secureConnectAsync(setup.brokerUrl, {
    ...enrollment,
    storage,
    keyServer: { url: setup.keyServerUrl, ca: setup.ca, keyServerPublicKey },
    // A persistent session: QoS 1 messages wait in the broker across a reconnect.
    mqtt: { ca: setup.ca, clean: false, reconnectPeriod: 1_000, connectTimeout: 30_000 },
    timeoutMs: 120_000,
  })
  listen(device, device.client)
  const filters =
    plan.role === 'app'
      ? [`home/${plan.home}/thermostat/#`, `home/${plan.home}/lock/+/state`]
      : plan.role === 'lock'
        ? [`home/${plan.home}/lock/${plan.id}/cmd`]
        : []
  if (filters.length === 0) return
  const granted = await device.client.subscribeAsync(filters, { qos: 1 })
  const refused = granted.filter((g) => g.qos !== 1)
  if (refused.length > 0) throw new Error(`${plan.id}: subscription refused: ${refused.map((g) => g.topic).join(', ')}`)
}

/** Paces `ratePerSecond` scheduled publishes over the fleet: thermostat readings and lock commands. */
function startTraffic(ratePerSecond: number): void {
  const thermostats = [...devices.values()].filter((d) => d.plan.role === 'thermostat')
  const apps = [...devices.values()].filter((d) => d.plan.role === 'app')
  const cursor = { slot: 0, thermostat: 0, app: 0 }
  /** The next live device of `list` in round-robin order (bounded: one lap). */
  const nextOf = (list: Device[], field: 'thermostat' | 'app') => {
    for (let i = 0; i < list.length; i++) {
      const device = list[cursor[field]++ % list.length] as Device
      if (live(device)) return device
    }
    return undefined
  }
  const sendOne = () => {
    if (++cursor.slot % LOCK_COMMAND_EVERY === 0) {
      const app = nextOf(apps, 'app')
      const locks = app ? (byHome.get(app.plan.home)?.locks ?? []).filter(live) : []
      const lock = locks[(app ? app.nextLock++ : 0) % Math.max(1, locks.length)]
      if (app && lock) return publish(app, `home/${app.plan.home}/lock/${lock.plan.id}/cmd`, { cmd: 'toggle' })
    }
    const thermostat = nextOf(thermostats, 'thermostat')
    if (thermostat)
      publish(thermostat, `home/${thermostat.plan.home}/thermostat/${thermostat.plan.id}/temp`, {
        celsius: 19 + (thermostat.published % 40) / 10,
      })
  }
  let budget = 0
  let last = performance.now()
  trafficStarted = true
  trafficTimer = setInterval(() => {
    const now = performance.now()
    budget += (ratePerSecond * (now - last)) / 1000
    last = now
    for (; budget >= 1; budget--) sendOne()
  }, TICK_MS)
}

function stats(): FleetStats {
  let connected = 0
  for (const device of devices.values()) if (device.client?.connected) connected++
  let outstanding = 0
  for (const debt of debts.values()) outstanding += debt.owed?.size ?? 0
  const revoked: RevokedDevice[] = []
  for (const device of devices.values())
    if (device.revokingAt !== undefined)
      revoked.push({
        id: device.plan.id,
        role: device.plan.role,
        disconnectedAfterMs: device.cutoffAt === undefined ? undefined : device.cutoffAt - device.revokingAt,
        deliveredAfterRevocation: device.deliveredAfterRevocation,
        deliveredAfterCutoff: device.deliveredAfterCutoff,
        reconnected: device.reconnected,
      })
  return {
    connected,
    ...counts,
    outstanding,
    securityErrors: { ...securityErrors },
    revoked,
    lagP99Ms: lag.p99AndReset(),
    cpuPercent: cpu.percentAndReset(),
    rssMb: megabytes(process.memoryUsage().rss),
  }
}

const api: FleetApi = {
  async setup(setup) {
    const keyServerPublicKey = new Uint8Array(Buffer.from(setup.keyServerPublicKey, 'base64url'))
    for (const plan of setup.devices) {
      const device: Device = {
        plan,
        storage: memoryStorage(),
        published: 0,
        nextLock: 0,
        deliveredAfterRevocation: 0,
        deliveredAfterCutoff: 0,
        reconnected: false,
      }
      devices.set(plan.id, device)
      const home = byHome.get(plan.home) ?? { apps: [], locks: [] }
      if (plan.role === 'app') home.apps.push(device)
      if (plan.role === 'lock') home.locks.push(device)
      byHome.set(plan.home, home)
    }
    // Enrollment and connection are timed apart: first every token is redeemed, then every
    // device connects (a real fleet is enrolled long before it comes online all at once).
    const all = [...devices.values()]
    const enrollStart = performance.now()
    await eachLimited(all, SETUP_WIDTH, (device) => enrollDevice(setup, device, keyServerPublicKey))
    const enrollMs = performance.now() - enrollStart
    const connectStart = performance.now()
    await eachLimited(all, SETUP_WIDTH, (device) => connect(setup, device, keyServerPublicKey))
    return { enrollMs, connectMs: performance.now() - connectStart }
  },
  async start(ratePerSecond) {
    startTraffic(ratePerSecond)
  },
  async revoking(id) {
    const device = devices.get(id)
    if (!device) throw new Error(`no device ${id}`)
    device.revokingAt = Date.now()
    // Its messages the broker has not acknowledged yet may never be: nothing is owed for them.
    for (const [debtId, debt] of debts) if (debt.sender === device && !debt.owed) debts.delete(debtId)
  },
  async stats() {
    return stats()
  },
  async stop(drainMs) {
    clearInterval(trafficTimer)
    const deadline = Date.now() + drainMs
    // Owed: a legitimate message not acknowledged yet, or one a non-revoked reader still waits for.
    const owing = () =>
      [...debts.values()].some((d) =>
        d.owed === undefined ? live(d.sender) : [...d.owed].some((id) => live(devices.get(id) as Device)),
      )
    while (owing() && Date.now() < deadline) await sleep(200)
    const final = stats()
    let lost = 0
    let missedByRevoked = 0
    let unacknowledged = 0
    const lostExamples: string[] = []
    for (const [id, debt] of debts) {
      if (!debt.owed) {
        if (live(debt.sender)) unacknowledged++
        continue
      }
      for (const reader of debt.owed) {
        if (!live(devices.get(reader) as Device)) missedByRevoked++
        else if (++lost <= 20) lostExamples.push(`${id} (${debt.topic}) → ${reader}`)
      }
    }
    trafficStarted = false
    await Promise.all([...devices.values()].map((d) => d.client?.endAsync(true).catch(() => {})))
    lag.stop()
    return { ...final, lost, lostExamples, missedByRevoked, unacknowledged }
  },
}

process.on('message', (message: FleetRequest) => {
  const method = api[message.method] as (...args: unknown[]) => Promise<unknown>
  method(...message.args).then(
    (result) => process.send?.({ seq: message.seq, result } satisfies FleetReply),
    (err: unknown) => process.send?.({ seq: message.seq, error: err instanceof Error ? err.message : String(err) }),
  )
})
// The orchestrator gone (finished, or killed): nothing left to do.
process.on('disconnect', () => process.exit(0))
