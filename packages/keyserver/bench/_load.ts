// Load generator, run as a child process so it does not share the server's event loop.
// Reads { url, ca, identities, requests, concurrency } as JSON on stdin, and optionally `path`
// (default /v1/bundle), `conditional` (send each principal's current ETag in If-None-Match: the
// freshness poll's 304 path) and `keepAlive` (default true; false: a new TLS connection per
// request, resuming the TLS session as a device's agent does). Prints results as JSON, with the
// HTTP bytes (request and response heads and bodies, no TLS) per request.
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
) as {
  url: string
  ca: string
  identities: unknown[]
  requests: number
  concurrency: number
  path?: string
  conditional?: boolean
  keepAlive?: boolean
}
const path = input.path ?? '/v1/bundle'

const identities = input.identities.map((json) => importIdentity(json))
const agent = new Agent({ keepAlive: input.keepAlive ?? true, maxSockets: input.concurrency, ca: input.ca })
const latencies: number[] = []
let failures = 0
let next = 0
let httpBytes = 0

/** Each principal's current ETag (conditional runs): asked once before the clock starts. */
const etags = new Map<string, string>()
if (input.conditional)
  for (const identity of identities) {
    const headers = signRequest(identity.id, identity, { method: 'GET', path, body: new Uint8Array() })
    const etag = await new Promise<string | undefined>((resolve, reject) => {
      const req = request(`${input.url}${path}`, { agent, headers, timeout: 10_000 }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.headers.etag))
      })
      req.on('error', reject)
      req.end()
    })
    if (etag === undefined) throw new Error(`no ETag from ${path}`)
    etags.set(identity.id, etag)
  }

// Every request signed before the clock starts (a signature is good for 60 s), so the figures
// measure the server, not this process's signing.
const signedHeaders = Array.from({ length: input.requests }, (_, i) => {
  const identity = identities[i % identities.length]
  if (!identity) throw new Error('no identities')
  const signed: Record<string, string> = signRequest(identity.id, identity, {
    method: 'GET',
    path,
    body: new Uint8Array(),
  })
  const etag = etags.get(identity.id)
  return etag === undefined ? signed : { ...signed, 'if-none-match': etag }
})

function fetchBundle(i: number): Promise<void> {
  const headers = signedHeaders[i]
  const started = performance.now()
  return new Promise((resolve) => {
    const req = request(`${input.url}${path}`, { agent, headers, timeout: 10_000 }, (res) => {
      let body = 0
      res.on('data', (chunk: Buffer) => {
        body += chunk.length
      })
      res.on('end', () => {
        const ok = res.statusCode === 200 || (input.conditional === true && res.statusCode === 304)
        if (ok) latencies.push(performance.now() - started)
        else failures++
        // The exact request head Node wrote, and the response head as received.
        const requestHead = Buffer.byteLength((req as unknown as { _header: string })._header ?? '')
        let responseHead = Buffer.byteLength(`HTTP/1.1 ${res.statusCode} ${res.statusMessage}\r\n\r\n`)
        for (let i = 0; i < res.rawHeaders.length; i += 2)
          responseHead += Buffer.byteLength(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`)
        httpBytes += requestHead + responseHead + body
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
console.log(
  JSON.stringify({
    rps: latencies.length / seconds,
    p50: at(0.5),
    p99: at(0.99),
    failures,
    seconds,
    httpBytesPerRequest: httpBytes / input.requests,
  }),
)
