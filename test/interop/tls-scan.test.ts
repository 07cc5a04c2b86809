// Every TLS listener of `npm start` (key server HTTPS, broker mqtts, broker wss), scanned from
// outside by sslscan (Debian's, not ours): the protocols, TLS 1.2 suites and key-exchange groups
// it finds are exactly those of the hardened profile; client-initiated renegotiation is refused
// (openssl s_client sends `R`). Then the same deployment restarted with `tls.profile: "modern"`
// in both configs offers TLS 1.3 only.
import { type ChildProcess, spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '@smqtt/test-kit/keyserver'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { SSLSCAN, toolAvailable } from '../_tools.js'
import { stopProcess } from './_broker.js'
import { run } from './_run.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

/**
 * Mozilla "intermediate" (guidelines 5.7) TLS 1.2 suites without the DHE ones (docs/decisions.md):
 * the dev PKI's server certificate is ECDSA P-256, so the ECDHE-RSA half cannot be negotiated.
 */
const TLS12_SUITES_ECDSA = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
]
const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']
/** sslscan's names for X25519, P-256 and P-384. */
const GROUPS = ['secp256r1', 'secp384r1', 'x25519']

type Listener = 'keyServer' | 'mqtts' | 'wss'
const LISTENERS: readonly Listener[] = ['keyServer', 'mqtts', 'wss']

/** `npm start` in a development directory of its own; stopped with SIGINT. */
class NpmStart {
  private child: ChildProcess | undefined
  private output = ''
  constructor(
    readonly devDir: string,
    readonly ports: Record<Listener | 'metrics', number>,
  ) {}

  async start(): Promise<void> {
    this.output = ''
    const child = spawn(join(root, 'node_modules/.bin/tsx'), ['--conditions=smqtt-source', 'scripts/start.ts'], {
      cwd: root,
      env: {
        ...process.env,
        SMQTT_DEV_DIR: this.devDir,
        SMQTT_KEYSERVER_PORT: String(this.ports.keyServer),
        SMQTT_BROKER_PORT: String(this.ports.mqtts),
        SMQTT_BROKER_WSS_PORT: String(this.ports.wss),
        SMQTT_METRICS_PORT: String(this.ports.metrics),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.child = child
    child.stdout?.on('data', (chunk) => {
      this.output += chunk
    })
    child.stderr?.on('data', (chunk) => {
      this.output += chunk
    })
    const deadline = Date.now() + 40_000
    while (!this.output.includes('Ctrl-C stops both') && Date.now() < deadline && child.exitCode === null)
      await new Promise((resolve) => setTimeout(resolve, 100))
    if (!this.output.includes('Ctrl-C stops both')) throw new Error(`npm start did not come up:\n${this.output}`)
  }

  async stop(): Promise<void> {
    const child = this.child
    this.child = undefined
    await stopProcess(child, 'SIGINT', 10_000)
  }
}

interface Scan {
  readonly protocols: string[]
  readonly suites: Record<'TLSv1.2' | 'TLSv1.3', string[]>
  readonly groups: string[]
  readonly text: string
}

/** sslscan of one loopback port, the checks this test does not assert left out (a few hundred ms). */
async function sslscan(port: number): Promise<Scan> {
  const result = await run(
    'sslscan',
    [
      '--no-colour',
      '--no-heartbleed',
      '--no-compression',
      '--no-fallback',
      '--no-renegotiation', // asserted with openssl s_client below, on TLS 1.2
      '--no-check-certificate',
      `127.0.0.1:${port}`,
    ],
    30_000,
  )
  const text = result.stdout
  if (result.code !== 0 || !text.includes('Server Key Exchange Group(s)'))
    throw new Error(`sslscan failed (${result.code}):\n${text}\n${result.stderr}`)
  const protocols = [...text.matchAll(/^(SSLv[23]|TLSv1\.[0-3]) +enabled$/gm)].map((m) => m[1] as string)
  const suites: Scan['suites'] = { 'TLSv1.2': [], 'TLSv1.3': [] }
  for (const m of text.matchAll(/^(?:Preferred|Accepted) +(TLSv1\.[0-3]) +\d+ bits +(\S+)/gm)) {
    const version = m[1] as string
    if (version !== 'TLSv1.2' && version !== 'TLSv1.3') throw new Error(`a suite offered on ${version}:\n${text}`)
    suites[version].push(m[2] as string)
  }
  const groupSection = text.slice(text.indexOf('Server Key Exchange Group(s)'))
  const groups = [...new Set([...groupSection.matchAll(/^TLSv1\.[23] +\d+ bits +(\S+)/gm)].map((m) => m[1] as string))]
  return {
    protocols,
    suites: { 'TLSv1.2': suites['TLSv1.2'].sort(), 'TLSv1.3': suites['TLSv1.3'].sort() },
    groups: groups.sort(),
    text,
  }
}

/**
 * openssl s_client on TLS 1.2 (no renegotiation in 1.3), sending `R` (renegotiate) once the
 * handshake is done; returns how many handshakes verified the server's certificate and the output.
 */
function renegotiate(port: number, ca: string): Promise<{ handshakes: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-CAfile', ca, '-servername', 'localhost'],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    )
    let output = ''
    let sent = false
    child.stdin.on('error', () => {}) // the server may close first
    const collect = (chunk: Buffer) => {
      output += chunk
      // After the handshake: renegotiate, then give the server a second to answer and hang up.
      if (!sent && /Verify return code: \d+/.test(output) && output.includes('---\n')) {
        sent = true
        child.stdin.write('R\n')
        setTimeout(() => child.stdin.end(), 1_000)
      }
    }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    child.once('error', reject)
    child.once('close', () => {
      clearTimeout(timer)
      resolve({ handshakes: (output.match(/^depth=0 CN ?= ?localhost$/gm) ?? []).length, output })
    })
  })
}

/** openssl s_client offering TLS 1.2 `ciphers` in that order; returns the suite the server chose. */
async function chosenSuite(port: number, ciphers: string[]): Promise<string> {
  const result = await run(
    'sh',
    ['-c', `openssl s_client -connect 127.0.0.1:${port} -tls1_2 -cipher ${ciphers.join(':')} -brief </dev/null 2>&1`],
    10_000,
  )
  const m = /^Ciphersuite: (\S+)$/m.exec(result.stdout)
  if (!m) throw new Error(`no TLS 1.2 handshake:\n${result.stdout}`)
  return m[1] as string
}

describe.runIf(toolAvailable(SSLSCAN))('TLS of every npm start listener, scanned by sslscan', () => {
  const devDir = mkdtempSync(join(tmpdir(), 'smqtt-tls-scan-'))
  const ca = join(devDir, 'keyserver', 'pki', 'ca.pem')
  let stack: NpmStart | undefined
  const port = (listener: Listener) => (stack as NpmStart).ports[listener]

  beforeAll(async () => {
    stack = new NpmStart(devDir, {
      keyServer: await freePort(),
      mqtts: await freePort(),
      wss: await freePort(),
      metrics: await freePort(),
    })
    await stack.start()
  }, 60_000)
  afterAll(async () => {
    await stack?.stop()
    rmSync(devDir, { recursive: true, force: true })
  })

  describe('default profile: Mozilla intermediate', () => {
    test.each(LISTENERS)(
      '%s: TLS 1.2 and 1.3 only, the AEAD ECDHE suites, X25519/P-256/P-384 only',
      async (listener) => {
        const scan = await sslscan(port(listener))
        expect(scan.protocols, scan.text).toEqual(['TLSv1.2', 'TLSv1.3'])
        expect(scan.suites['TLSv1.2'], scan.text).toEqual([...TLS12_SUITES_ECDSA].sort())
        expect(scan.suites['TLSv1.3'], scan.text).toEqual(TLS13_SUITES)
        expect(scan.groups, scan.text).toEqual(GROUPS)
      },
    )

    test.each(LISTENERS)('%s: the client chooses the suite order', async (listener) => {
      const [aes, chacha] = ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305']
      expect(await chosenSuite(port(listener), [chacha, aes])).toBe(chacha)
      expect(await chosenSuite(port(listener), [aes, chacha])).toBe(aes)
    })

    // Issue 19: the chain without the self-signed root, on every listener. The server file holds
    // the leaf and the issuing intermediate; with a chain in the file, OpenSSL sends exactly that and
    // builds none from the `ca` store, even on mqtts, which verifies client certificates with it.
    test.each(LISTENERS)('%s: sends its leaf and the intermediate, never the self-signed root', async (listener) => {
      const result = await run(
        'sh',
        ['-c', `openssl s_client -connect 127.0.0.1:${port(listener)} -showcerts </dev/null 2>/dev/null`],
        10_000,
      )
      const sent = [...result.stdout.matchAll(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)].map(
        (m) => m[0],
      )
      const flat = (pem: string) => pem.replace(/\s+/g, '')
      expect(sent.length, result.stdout).toBe(2)
      expect(sent.map(flat).join('')).toBe(flat(readFileSync(join(devDir, 'keyserver', 'pki', 'server.pem'), 'utf8')))
      const root = new X509Certificate(readFileSync(ca))
      for (const pem of sent) {
        const certificate = new X509Certificate(pem)
        expect(certificate.checkIssued(certificate), certificate.subject).toBe(false) // none self-signed
        expect(certificate.raw.equals(root.raw)).toBe(false)
      }
      expect(new X509Certificate(sent[1] as string).checkIssued(root)).toBe(true)
    })

    test.each(LISTENERS)('%s: client-initiated renegotiation is refused', async (listener) => {
      const { handshakes, output } = await renegotiate(port(listener), ca)
      expect(output).toContain('RENEGOTIATING')
      expect(handshakes, output).toBe(1)
      expect(output).toMatch(/no renegotiation/i)
    })
  })

  describe('tls.profile "modern" in both configs', () => {
    beforeAll(async () => {
      await stack?.stop()
      for (const config of [join(devDir, 'keyserver', 'config.json'), join(devDir, 'broker', 'config.json')]) {
        const document = JSON.parse(readFileSync(config, 'utf8'))
        document.tls = { ...document.tls, profile: 'modern' }
        writeFileSync(config, `${JSON.stringify(document, null, 2)}\n`)
      }
      await stack?.start()
    }, 60_000)

    test.each(LISTENERS)('%s: TLS 1.3 only, X25519/P-256/P-384 only', async (listener) => {
      const scan = await sslscan(port(listener))
      expect(scan.protocols, scan.text).toEqual(['TLSv1.3'])
      expect(scan.suites['TLSv1.2'], scan.text).toEqual([])
      expect(scan.suites['TLSv1.3'], scan.text).toEqual(TLS13_SUITES)
      expect(scan.groups, scan.text).toEqual(GROUPS)
    })
  })
})
