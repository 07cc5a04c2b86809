// Node only: node:https, because Node's fetch takes no private CA without an extra dependency.
import { request as httpsRequest } from 'node:https'
import { type KeyServerTransport, parseJson } from './transport.js'

const MAX_RESPONSE_BYTES = 4 * 1024 * 1024 // a bundle is at most 1 MiB of payload

/**
 * A transport over node:https that trusts `ca` (PEM) instead of the system store when given.
 *
 * @example
 * ```ts
 * const transport = nodeHttpsTransport({ ca: readFileSync('ca.pem', 'utf8') })
 * ```
 */
export function nodeHttpsTransport(options: { ca?: string } = {}): KeyServerTransport {
  return {
    request: ({ method, url, headers, body, timeoutMs }) =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          url,
          {
            method,
            headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
            timeout: timeoutMs,
            ...(options.ca === undefined ? {} : { ca: options.ca }),
          },
          (res) => {
            const chunks: Buffer[] = []
            let size = 0
            res.on('data', (chunk: Buffer) => {
              size += chunk.length
              if (size > MAX_RESPONSE_BYTES) req.destroy(new Error('key server response too large'))
              else chunks.push(chunk)
            })
            res.on('end', () => {
              const responseHeaders: Record<string, string> = {}
              for (const [name, value] of Object.entries(res.headers))
                if (value !== undefined) responseHeaders[name] = Array.isArray(value) ? value.join(', ') : value
              resolve({
                status: res.statusCode ?? 0,
                body: parseJson(Buffer.concat(chunks).toString('utf8')),
                headers: responseHeaders,
              })
            })
            res.on('error', reject)
          },
        )
        req.on('timeout', () => req.destroy(new Error(`key server request timed out after ${timeoutMs} ms`)))
        req.on('error', reject)
        req.end(body)
      }),
  }
}
