// Load generator, run as a child process so it does not share the server's event loop.
// Reads { url, ca, identities, requests, concurrency } as JSON on stdin; prints results as JSON.
import { Agent, request } from 'node:https'
import { importIdentity, signRequest } from '@smqtt/core'

const input = JSON.parse(
  await new Promise<string>((resolve) => {
    let text = ''
    process.stdin.on('data', (chunk) => {
      text += chunk
    })
    process.stdin.on('end', () => resolve(text))
  }),
) as { url: string; ca: string; identities: unknown[]; requests: number; concurrency: number }

const identities = input.identities.map((json) => importIdentity(json))
const agent = new Agent({ keepAlive: true, maxSockets: input.concurrency, ca: input.ca })
const latencies: number[] = []
let failures = 0
let next = 0

// Every request signed before the clock starts (a signature is good for 60 s), so the figures
// measure the server, not this process's signing.
const signedHeaders = Array.from({ length: input.requests }, (_, i) => {
  const identity = identities[i % identities.length]
  if (!identity) throw new Error('no identities')
  return signRequest(identity.id, identity, { method: 'GET', path: '/v1/bundle', body: new Uint8Array() })
})

function fetchBundle(i: number): Promise<void> {
  const headers = signedHeaders[i]
  const started = performance.now()
  return new Promise((resolve) => {
    const req = request(`${input.url}/v1/bundle`, { agent, headers, timeout: 10_000 }, (res) => {
      res.resume()
      res.on('end', () => {
        if (res.statusCode === 200) latencies.push(performance.now() - started)
        else failures++
        resolve()
      })
    })
    req.on('error', () => {
      failures++
      resolve()
    })
    req.end()
  })
}

async function worker(): Promise<void> {
  while (next < input.requests) await fetchBundle(next++)
}

const started = performance.now()
await Promise.all(Array.from({ length: input.concurrency }, worker))
const seconds = (performance.now() - started) / 1000
latencies.sort((a, b) => a - b)
const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN
agent.destroy()
console.log(JSON.stringify({ rps: latencies.length / seconds, p50: at(0.5), p99: at(0.99), failures, seconds }))
