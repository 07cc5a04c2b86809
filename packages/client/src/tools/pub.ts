// smqtt-pub: mosquitto_pub with an SMQTT identity. Each message is sealed (signed, encrypted for
// its topic's key group) by the client library before it leaves; the exit code says whether
// every message got through, so a script can tell a refusal from a connection problem.
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import type { SecureClient } from '../index.js'
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  type CommonValues,
  connectTool,
  EXIT,
  exitCodeFor,
  integerOption,
  oneLine,
  processIo,
  qosOption,
  readAll,
  stdinReaders,
  type ToolIo,
  UsageError,
} from './_common.js'

const TOOL = 'smqtt-pub'
const USAGE = `Usage: ${TOOL} --state DIR [-L URL | -h HOST -p PORT] [--cafile FILE] -t TOPIC (-m MSG | -f FILE | -s | -l | -n) [-q 0|1|2] [-r]`

export const PUB_HELP = `${USAGE}

Publishes sealed SMQTT messages (signed by this identity, encrypted for the topic's key group).

Message (exactly one):
  -t, --topic TOPIC       the topic (required)
  -m, --message MSG       MSG as the message (UTF-8)
  -f, --file FILE         the whole of FILE as one message
  -s, --stdin-file        the whole of stdin as one message
  -l, --stdin-line        each line of stdin as a message, sent as it is read
  -n, --null-message      an empty message
  -r, --retain            ask the broker to retain it
  --ack-timeout SEC       wait this long for each acknowledgement (QoS 1 and 2; default 15)

${COMMON_HELP}

Exit codes:
  0  every message was acknowledged (QoS 1, 2) or sent (QoS 0)
  1  a message was refused: by the client (no key group for the topic, no write key: its
     SmqttError code is printed, e.g. ERR_FORBIDDEN), or by the broker (connection closed
     before the acknowledgement), or not acknowledged within --ack-timeout
  2  usage error (unknown option, missing argument, unreadable file)
  3  cannot connect: identity, enrollment, key server, broker or login
`

/** Runs smqtt-pub with `argv` (without node and the script); resolves to the exit code. */
export async function runPub(argv: readonly string[], io: ToolIo = processIo): Promise<number> {
  let client: SecureClient | undefined
  try {
    const { values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        ...COMMON_OPTIONS,
        topic: { type: 'string', short: 't' },
        message: { type: 'string', short: 'm' },
        file: { type: 'string', short: 'f' },
        'stdin-file': { type: 'boolean', short: 's' },
        'stdin-line': { type: 'boolean', short: 'l' },
        'null-message': { type: 'boolean', short: 'n' },
        retain: { type: 'boolean', short: 'r' },
        'ack-timeout': { type: 'string' },
      },
    })
    if (values.help) {
      io.stdout.write(PUB_HELP)
      return EXIT.ok
    }
    const common = values as CommonValues
    const topic = values.topic
    if (topic === undefined || topic === '') throw new UsageError('-t TOPIC is required')
    if (/[+#]/.test(topic)) throw new UsageError('-t must be a topic, not a filter with + or #')
    const sources = (['message', 'file', 'stdin-file', 'stdin-line', 'null-message'] as const).filter(
      (name) => values[name] !== undefined && values[name] !== false,
    )
    if (sources.length !== 1) throw new UsageError('give exactly one of -m, -f, -s, -l, -n')
    const readsStdin = values['stdin-file'] || values['stdin-line']
    if (readsStdin && stdinReaders(common).length > 0)
      throw new UsageError(`${stdinReaders(common)[0]} and -s/-l cannot both read stdin`)
    const qos = qosOption(common)
    const ackTimeoutMs = integerOption(values['ack-timeout'], '--ack-timeout', 15, 1, 3_600) * 1000
    const options = { qos, retain: values.retain === true }

    // The one message is read before connecting: a missing file is a usage error, not a refusal.
    let single: Uint8Array | undefined
    if (values.message !== undefined) single = new TextEncoder().encode(values.message)
    else if (values['null-message']) single = new Uint8Array(0)
    else if (values.file !== undefined) {
      try {
        single = new Uint8Array(await readFile(values.file))
      } catch (err) {
        throw new UsageError(`cannot read -f ${values.file}: ${(err as Error).message}`)
      }
    } else if (values['stdin-file']) single = await readAll(io.stdin)

    const connected = await connectTool(common, io, TOOL)
    client = connected.client
    const publisher = new Publisher(client, ackTimeoutMs)
    let failed = 0
    const send = async (payload: Uint8Array) => {
      try {
        await publisher.publish(topic, payload, options)
      } catch (err) {
        failed++
        io.stderr.write(`${TOOL}: refused on ${topic}: ${oneLine(err)}\n`)
      }
    }
    if (single !== undefined) await send(single)
    else
      for await (const line of createInterface({ input: io.stdin, crlfDelay: Number.POSITIVE_INFINITY })) {
        await send(new TextEncoder().encode(line))
        if (publisher.closed) break // the broker hung up: the rest cannot go out either
      }
    return failed === 0 ? EXIT.ok : EXIT.refused
  } catch (err) {
    return exitCodeFor(err, io, TOOL, USAGE)
  } finally {
    await client?.endAsync(!client.connected).catch(() => {})
  }
}

/**
 * Publishes and waits for the acknowledgement (QoS 1, 2) or the write (QoS 0), but no longer
 * than the connection lasts: an SMQTT broker answers a refused PUBLISH by closing it, and
 * mqtt.js would keep the message for a reconnection that never comes.
 */
class Publisher {
  closed = false
  readonly #client: SecureClient
  readonly #timeoutMs: number
  readonly #whenClosed: Promise<never>

  constructor(client: SecureClient, timeoutMs: number) {
    this.#client = client
    this.#timeoutMs = timeoutMs
    this.#whenClosed = new Promise<never>((_, reject) =>
      client.once('close', () => {
        this.closed = true
        reject(new Error('the broker closed the connection before acknowledging (refused?)'))
      }),
    )
    this.#whenClosed.catch(() => {})
  }

  async publish(topic: string, payload: Uint8Array, options: { qos: 0 | 1 | 2; retain: boolean }): Promise<void> {
    if (this.closed) throw new Error('not sent: the connection is closed')
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      await Promise.race([
        this.#client.publishAsync(topic, payload, options),
        this.#whenClosed,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`not acknowledged within ${this.#timeoutMs / 1000} s`)),
            this.#timeoutMs,
          )
        }),
      ])
    } finally {
      clearTimeout(timer)
    }
  }
}
