// The homeowner's app in a browser: plain TypeScript and the DOM, @smqtt/client's browser entry
// (bundled by esbuild). It enrolls once with a one-time token (from the URL's #token= or pasted),
// keeps its identity and keys in IndexedDB, connects over wss:// with a CONNECT password, shows
// the thermostats' readings live and sends lock/unlock commands to the front door. Everything it
// shows was verified as sent by the principal the key server says may send it; payloads are
// written with textContent only, never parsed as HTML.
import { enroll, indexedDbStorage, loadEnrollment, type SecureClient, secureConnectAsync } from '@smqtt/client'
import { HOME, PRINCIPALS, topics } from '../../src/policy.js'
import type { AppConfig } from './config.js'

const storage = indexedDbStorage({ database: 'smqtt-smart-home' })
const FRONT_DOOR = PRINCIPALS.frontDoor.id

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id)
  if (!found) throw new Error(`the page has no #${id}`)
  return found as T
}

function setStatus(text: string, state: 'starting' | 'connected' | 'error') {
  const status = element('status')
  status.textContent = text
  status.dataset.state = state
}

/** The token from `#token=…`, removed from the address bar so it is not kept in history. */
function tokenFromHash(): string | undefined {
  const token = new URLSearchParams(location.hash.slice(1)).get('token') ?? undefined
  if (token) history.replaceState(null, '', location.pathname + location.search)
  return token
}

/** The token pasted into the form, once it is submitted. */
function tokenFromForm(): Promise<string> {
  const form = element<HTMLFormElement>('enroll')
  form.hidden = false
  return new Promise((resolve) =>
    form.addEventListener('submit', (event) => {
      event.preventDefault()
      form.hidden = true
      resolve(element<HTMLInputElement>('token').value.trim())
    }),
  )
}

async function enrolled(config: AppConfig) {
  const stored = await loadEnrollment(storage)
  if (stored) return stored
  const token = tokenFromHash() ?? (await tokenFromForm())
  setStatus('enrolling…', 'starting')
  return enroll({ keyServerUrl: config.keyServerUrl, token, id: config.appId, storage })
}

/** One list item per thermostat, updated in place. */
function showReading(thermostat: string, text: string) {
  const list = element('temperatures')
  let item = Array.from(list.children).find((li) => (li as HTMLElement).dataset.thermostat === thermostat)
  if (!item) {
    item = document.createElement('li')
    ;(item as HTMLElement).dataset.thermostat = thermostat
    list.append(item)
  }
  const celsius = (JSON.parse(text) as { celsius?: unknown }).celsius
  item.textContent = `${thermostat}: ${typeof celsius === 'number' ? `${celsius.toFixed(1)} °C` : '?'}`
}

function show(client: SecureClient) {
  const thermostatTopic = /^home\/[^/]+\/thermostat\/([^/]+)\/temperature$/
  client.on('message', (topic, payload) => {
    const text = new TextDecoder().decode(payload)
    try {
      const thermostat = thermostatTopic.exec(topic)?.[1]
      if (thermostat) showReading(thermostat, text)
      else if (topic === topics.lockState(FRONT_DOOR))
        element('lock-state').textContent = String((JSON.parse(text) as { state?: unknown }).state)
    } catch {
      // A verified sender can still send nonsense: ignore what does not parse.
    }
  })
  client.on('securityError', (event) => {
    const item = document.createElement('li')
    item.textContent = `${event.code} on ${event.topic}`
    element('refused').append(item)
  })
  for (const command of ['lock', 'unlock'] as const)
    element(command).addEventListener('click', () => {
      client
        .publishAsync(topics.lockCommand(FRONT_DOOR), JSON.stringify({ command }), { qos: 1 })
        .catch((err: unknown) => setStatus(`${command} failed: ${String(err)}`, 'error'))
    })
}

const CONNECT_ATTEMPTS = 5

/**
 * Connects, retrying with backoff: right after enrollment the broker may not have the key
 * server's new snapshot yet (about 100 ms) and refuses the CONNECT like a stranger's.
 */
async function connect(config: AppConfig, enrollment: Awaited<ReturnType<typeof enrolled>>) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await secureConnectAsync(config.brokerUrl, {
        ...enrollment,
        storage,
        keyServer: { url: enrollment.keyServerUrl, keyServerPublicKey: enrollment.keyServerPublicKey },
      })
    } catch (err) {
      if (attempt === CONNECT_ATTEMPTS) throw err
      setStatus(`connecting… (attempt ${attempt + 1} of ${CONNECT_ATTEMPTS})`, 'starting')
      await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt))
    }
  }
}

async function main() {
  const config = (await (await fetch('/config.json')).json()) as AppConfig
  const enrollment = await enrolled(config)
  setStatus('connecting…', 'starting')
  const client = await connect(config, enrollment)
  show(client)
  client.on('close', () => setStatus('disconnected: reconnecting…', 'error'))
  client.on('connect', () => setStatus(`connected as ${enrollment.identity.id}`, 'connected'))
  await client.subscribeAsync([`${HOME}/thermostat/#`, topics.lockState(FRONT_DOOR)], { qos: 1 })
  element('home').hidden = false
  setStatus(`connected as ${enrollment.identity.id}`, 'connected')
}

main().catch((err: unknown) => setStatus(`error: ${err instanceof Error ? err.message : String(err)}`, 'error'))
