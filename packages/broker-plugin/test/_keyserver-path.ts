// A path to the key server that answers for it: a real HTTPS proxy in front of the real key
// server, as a compromised TLS-terminating proxy or a stolen key-server TLS key would be. It can
// answer anything over TLS (here: what a test says) but cannot sign as the key server. With a
// broker plugin pulling through it: startPathStack.
import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { createServer, request as httpsRequest } from 'node:https'
import type { AddressInfo } from 'node:net'
import { SNAPSHOT_NOTICE_HEADER } from '@smqtt/core'
import { startBareBroker } from '@smqtt/test-kit/broker'
import { type Harness, SMART_HOME_POLICY, startHarness } from '@smqtt/test-kit/keyserver'
import type { SmqttPlugin, SmqttPluginOptions } from '../src/index.js'

/** An answer as it crosses the path. */
export interface PathAnswer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
}

export interface KeyServerPath {
  /** The path's base URL (TLS with the harness's server certificate). */
  readonly url: string
  /** What the path answered, newest last. */
  readonly answered: { status: number; bodyBytes: number; notice: string | undefined; body: Buffer }[]
  /** Set by a test: answers a request itself (undefined: forwards it). */
  intercept: ((request: IncomingMessage) => PathAnswer | undefined) | undefined
  /** Set by a test: changes the key server's answer on its way back (undefined: as it came). */
  rewrite: ((answer: PathAnswer, request: IncomingMessage) => PathAnswer) | undefined
  close(): Promise<void>
}

/** Starts a path in front of `h`'s key server. */
export async function startKeyServerPath(h: Harness): Promise<KeyServerPath> {
  const pki = `${h.dir}/pki`
  const send = (res: import('node:http').ServerResponse, answer: PathAnswer) => {
    const notice = answer.headers[SNAPSHOT_NOTICE_HEADER]
    path.answered.push({
      status: answer.status,
      bodyBytes: answer.body.length,
      notice: notice as string | undefined,
      body: answer.body,
    })
    const { 'content-length': _length, ...headers } = answer.headers
    res.writeHead(answer.status, headers).end(answer.body)
  }
  const server = createServer(
    { key: readFileSync(`${pki}/server.key`), cert: readFileSync(`${pki}/server.pem`) },
    (req, res) => {
      const own = path.intercept?.(req)
      if (own) return send(res, own)
      const upstream = httpsRequest(
        new URL(req.url ?? '/', h.url),
        { method: req.method, headers: req.headers, ca: h.caPem },
        (reply) => {
          const chunks: Buffer[] = []
          reply.on('data', (chunk: Buffer) => chunks.push(chunk))
          reply.on('end', () => {
            const answer = { status: reply.statusCode ?? 502, headers: reply.headers, body: Buffer.concat(chunks) }
            send(res, path.rewrite ? path.rewrite(answer, req) : answer)
          })
        },
      )
      req.pipe(upstream)
    },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const path: KeyServerPath = {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    answered: [],
    intercept: undefined,
    rewrite: undefined,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
  return path
}

/** A key server, a path in front of it, and a broker plugin that pulls through the path. */
export interface PathStack {
  readonly h: Harness
  readonly path: KeyServerPath
  readonly plugin: SmqttPlugin
  close(): Promise<void>
}

/**
 * A key server with the smart-home policy (then `setUp`), the path, and a broker plugin pulling
 * through it only when a test says (the scheduled pull is an hour away), at the clock `now`.
 */
export async function startPathStack(
  setUp: (h: Harness) => Promise<unknown>,
  now: () => number,
  options: Partial<SmqttPluginOptions> = {},
): Promise<PathStack> {
  const h = await startHarness()
  h.clock.now = Math.floor(Date.now() / 1000) // requests are signed with the wall clock
  const put = await h.admin('PUT', '/v1/admin/policy', { policy: SMART_HOME_POLICY })
  if (put.status !== 200) throw new Error(`policy: ${put.text}`)
  await setUp(h)
  const { identity } = await h.enroll('broker-1', ['broker'])
  const path = await startKeyServerPath(h)
  const { plugin, close } = await startBareBroker(h.keyServer.publicKey, {
    keyServer: { url: path.url, ca: h.caPem, identity, pullIntervalMs: 3_600_000 },
    now,
    ...options,
  })
  return {
    h,
    path,
    plugin,
    async close() {
      await close()
      await path.close()
      await h.close()
    },
  }
}
