// smqtt-sub: mosquitto_sub with an SMQTT identity. Prints each message the client library
// verified and opened, with who sent it and when, and every message it refused (forged,
// replayed, from a revoked or unknown sender, ...) on stderr with its error code, so whoever
// debugs sees the refusals too.
import { parseArgs } from 'node:util'
import type { MessageInfo, SecureClient, SecurityErrorEvent } from '../index.js'
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
  type ToolIo,
  UsageError,
} from './_common.js'

const TOOL = 'smqtt-sub'
const USAGE = `Usage: ${TOOL} --state DIR [-L URL | -h HOST -p PORT] [--cafile FILE] -t FILTER [-t FILTER ...] [-q 0|1|2] [-C COUNT] [-W SECONDS] [-F text|json|payload] [-v]`
/** -W elapsed: mosquitto_sub's code for it (MOSQ_ERR_TIMEOUT), so scripts written for it keep working. */
export const EXIT_TIMED_OUT = 27

export const SUB_HELP = `${USAGE}

Subscribes and prints every message that verified: its sender, topic, time of sending and
payload. Messages the client refused are printed on stderr with their error code.

Subscription and output:
  -t, --topic FILTER      a topic filter (repeatable; at least one)
  -C, --count N           exit after N messages
  -W, --timeout SEC       exit after SEC seconds (code ${EXIT_TIMED_OUT})
  -F, --format FORMAT     text (default): [verified SENDER SENTAT] TOPIC PAYLOAD
                          json: one JSON object per line: topic, sender, group, epoch, seq,
                                sentAt (unix seconds), retained, verified, and payload (UTF-8)
                                or payloadBase64 (when the payload is not UTF-8)
                          payload: the payload only, like mosquitto_sub (with -v: TOPIC PAYLOAD)
  --json                  same as -F json
  -v, --verbose           with -F payload, print the topic before the payload
  --quiet-errors          do not print refused messages on stderr

${COMMON_HELP}

A refused message (stderr, unless --quiet-errors):
  ${TOOL}: refused CODE on TOPIC[ from SENDER]: reason

Exit codes:
  0   COUNT messages received, or stopped with Ctrl-C (SIGINT) or SIGTERM
  1   the broker refused every subscription
  2   usage error (unknown option, missing argument)
  3   cannot connect (identity, enrollment, key server, broker, login), or the connection
      was lost
  ${EXIT_TIMED_OUT}  -W elapsed first
`

type Format = 'text' | 'json' | 'payload'

/** Runs smqtt-sub with `argv`; resolves to the exit code once it is done. */
export async function runSub(
  argv: readonly string[],
  io: ToolIo = processIo,
  signals: NodeJS.EventEmitter = process,
): Promise<number> {
  let client: SecureClient | undefined
  try {
    const { values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        ...COMMON_OPTIONS,
        topic: { type: 'string', short: 't', multiple: true },
        count: { type: 'string', short: 'C' },
        timeout: { type: 'string', short: 'W' },
        format: { type: 'string', short: 'F' },
        json: { type: 'boolean' },
        verbose: { type: 'boolean', short: 'v' },
        'quiet-errors': { type: 'boolean' },
      },
    })
    if (values.help) {
      io.stdout.write(SUB_HELP)
      return EXIT.ok
    }
    const common = values as CommonValues
    const filters = values.topic ?? []
    if (filters.length === 0 || filters.some((f) => f === '')) throw new UsageError('-t FILTER is required')
    const qos = qosOption(common)
    const count = values.count === undefined ? undefined : integerOption(values.count, '-C', 1, 1, 2 ** 31)
    const timeoutMs =
      values.timeout === undefined ? undefined : integerOption(values.timeout, '-W', 1, 1, 2_000_000) * 1000
    if (values.json && values.format !== undefined && values.format !== 'json')
      throw new UsageError('--json and -F disagree')
    const format = (values.json ? 'json' : (values.format ?? 'text')) as Format
    if (!['text', 'json', 'payload'].includes(format))
      throw new UsageError(`-F must be text, json or payload, not "${format}"`)
    const print = printer(format, values.verbose === true, io)
    const quiet = values['quiet-errors'] === true

    // Settled by whichever comes first: the count, -W, a signal, the connection's end.
    let finish: (code: number) => void = () => {}
    const finished = new Promise<number>((resolve) => {
      finish = resolve
    })
    const onSignal = () => finish(EXIT.ok)
    signals.once('SIGINT', onSignal)
    signals.once('SIGTERM', onSignal)
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      if (timeoutMs !== undefined) timer = setTimeout(() => finish(EXIT_TIMED_OUT), timeoutMs)
      const connecting = connectTool(common, io, TOOL)
      const first = await Promise.race([connecting, finished])
      if (typeof first === 'number') {
        connecting.then((c) => c.client.endAsync(true)).catch(() => {})
        return first
      }
      client = first.client
      let received = 0
      client.on('message', (topic, payload, info) => {
        if (count !== undefined && received >= count) return
        received++
        print(topic, payload, info)
        if (count !== undefined && received >= count) finish(EXIT.ok)
      })
      client.on('securityError', (event) => {
        if (!quiet) io.stderr.write(`${TOOL}: ${refusalLine(event)}\n`)
      })
      let lastError: unknown
      client.on('error', (err) => {
        lastError = err
      })
      client.on('close', () => {
        const why = lastError === undefined ? '' : `: ${oneLine(lastError)}`
        io.stderr.write(`${TOOL}: the connection to ${first.url} was lost${why}\n`)
        finish(EXIT.connect)
      })
      const grants = await client.subscribeAsync(filters, { qos })
      const refused = grants.filter((g) => g.qos === 128)
      for (const grant of refused) io.stderr.write(`${TOOL}: the broker refused the subscription to ${grant.topic}\n`)
      if (refused.length === grants.length) return EXIT.refused
      if (values.debug)
        io.stderr.write(
          `${TOOL}: subscribed to ${grants
            .filter((g) => g.qos !== 128)
            .map((g) => `${g.topic} (QoS ${g.qos})`)
            .join(', ')}\n`,
        )
      return await finished
    } finally {
      clearTimeout(timer)
      signals.off('SIGINT', onSignal)
      signals.off('SIGTERM', onSignal)
    }
  } catch (err) {
    return exitCodeFor(err, io, TOOL, USAGE)
  } finally {
    client?.removeAllListeners('close')
    await client?.endAsync(!client.connected).catch(() => {})
  }
}

/** `refused CODE on TOPIC from SENDER: reason`, the sender only where the event names one. */
function refusalLine(event: SecurityErrorEvent): string {
  const sender = (event as { sender?: unknown }).sender
  return `refused ${event.code} on ${event.topic}${typeof sender === 'string' ? ` from ${sender}` : ''}: ${event.message}`
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

function utf8OrUndefined(payload: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(payload)
  } catch {
    return undefined
  }
}

function printer(
  format: Format,
  verbose: boolean,
  io: ToolIo,
): (topic: string, payload: Uint8Array, info: MessageInfo) => void {
  const line = (parts: (string | Uint8Array)[]) => {
    for (const part of parts) io.stdout.write(part)
    io.stdout.write('\n')
  }
  if (format === 'payload') return (topic, payload) => line(verbose ? [`${topic} `, payload] : [payload])
  if (format === 'json')
    return (topic, payload, info) => {
      const text = utf8OrUndefined(payload)
      const body = text === undefined ? { payloadBase64: Buffer.from(payload).toString('base64') } : { payload: text }
      const about = info.encrypted
        ? {
            sender: info.sender,
            kid: info.kid,
            group: info.group,
            epoch: info.epoch,
            seq: info.seq,
            sentAt: info.sentAt,
            retained: info.retained,
            verified: true,
          }
        : { retained: info.retained, verified: false }
      io.stdout.write(`${JSON.stringify({ topic, ...about, ...body })}\n`)
    }
  return (topic, payload, info) => {
    const about = info.encrypted
      ? `[verified ${info.sender} ${new Date(info.sentAt * 1000).toISOString()}${info.retained ? ' retained' : ''}]`
      : `[plaintext, unverified${info.retained ? ', retained' : ''}]`
    line([`${about} ${topic} `, payload])
  }
}
