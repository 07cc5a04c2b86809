// Malformed and hostile MQTT 3.1.1 packets for the wire fuzzers (test/fuzz/mqtt-wire.*): each
// input is the bytes to write on a fresh TLS connection, either as its first bytes or after a
// valid, authenticated CONNECT. `mustClose` marks inputs the broker must answer by closing the
// connection (or a CONNACK refusal), as MQTT 3.1.1 requires, whatever the state of the session.
import { remainingLength } from '@smqtt/test-kit/broker'
import fc from 'fast-check'

export interface HostileInput {
  /** What the input is (the fuzz report counts inputs and outcomes per kind). */
  readonly kind: string
  /** Written after a valid CONNECT with a CONNECT password was accepted (CONNACK 0). */
  readonly afterConnect: boolean
  readonly bytes: Uint8Array
  /** MQTT 3.1.1 requires the server to close the connection on this input. */
  readonly mustClose: boolean
}

// ---- encoders ---------------------------------------------------------------------------------

const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff])

/** An MQTT string: 2-byte length, then the bytes (taken as they are: they may be invalid UTF-8). */
export const mqttString = (value: string | Uint8Array) => {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value)
  return Buffer.concat([u16(bytes.length), bytes])
}

/** A packet: the first byte (type and flags), the remaining length, the body. */
export const mqttPacket = (firstByte: number, body: Uint8Array) =>
  Buffer.concat([Buffer.from([firstByte, ...remainingLength(body.length)]), body])

export interface ConnectFields {
  readonly clientId: string | Uint8Array
  readonly protocol?: string
  readonly level?: number
  /** Connect flags (default 0x02: clean session; username and password bits are added). */
  readonly flags?: number
  readonly username?: string
  readonly password?: string
  readonly firstByte?: number
}

export function connectPacket(fields: ConnectFields): Buffer {
  const credentials = (fields.username === undefined ? 0 : 0x80) | (fields.password === undefined ? 0 : 0x40)
  return mqttPacket(
    fields.firstByte ?? 0x10,
    Buffer.concat([
      mqttString(fields.protocol ?? 'MQTT'),
      Buffer.from([fields.level ?? 4, (fields.flags ?? 0x02) | credentials]),
      u16(60),
      mqttString(fields.clientId),
      ...(fields.username === undefined ? [] : [mqttString(fields.username)]),
      ...(fields.password === undefined ? [] : [mqttString(fields.password)]),
    ]),
  )
}

export function publishPacket(topic: string | Uint8Array, payload: Uint8Array, qos = 0, firstByte?: number): Buffer {
  const id = qos > 0 ? u16(1) : Buffer.alloc(0)
  return mqttPacket(firstByte ?? 0x30 | (qos << 1), Buffer.concat([mqttString(topic), id, payload]))
}

export function subscribePacket(filters: readonly (string | Uint8Array)[], firstByte = 0x82): Buffer {
  return mqttPacket(
    firstByte,
    Buffer.concat([u16(1), ...filters.flatMap((filter) => [mqttString(filter), Buffer.from([0])])]),
  )
}

export function unsubscribePacket(filters: readonly (string | Uint8Array)[], firstByte = 0xa2): Buffer {
  return mqttPacket(firstByte, Buffer.concat([u16(1), ...filters.map((filter) => mqttString(filter))]))
}

export const PINGREQ = Buffer.from([0xc0, 0])
export const DISCONNECT = Buffer.from([0xe0, 0])

// ---- generators -------------------------------------------------------------------------------

const topicText = fc.stringMatching(/^[a-z0-9]{1,8}(\/[a-z0-9+#$]{0,8}){0,4}$/)
const payloadBytes = fc.uint8Array({ maxLength: 64 })

/** A valid packet of any type a client sends. */
const validPacket: fc.Arbitrary<Buffer> = fc.oneof(
  fc.string({ minLength: 1, maxLength: 23 }).map((clientId) => connectPacket({ clientId })),
  fc
    .tuple(topicText, payloadBytes, fc.integer({ min: 0, max: 2 }))
    .map(([topic, payload, qos]) => publishPacket(topic, payload, qos)),
  fc.array(topicText, { minLength: 1, maxLength: 3 }).map((filters) => subscribePacket(filters)),
  fc.array(topicText, { minLength: 1, maxLength: 3 }).map((filters) => unsubscribePacket(filters)),
  fc.constant(PINGREQ),
  fc.constant(DISCONNECT),
)

/** Bit flips, truncation or extension of a valid packet. */
const mutatedPacket = fc
  .tuple(
    validPacket,
    fc.constantFrom('bit-flip', 'truncate', 'extend'),
    fc.nat(),
    fc.integer({ min: 0, max: 7 }),
    fc.uint8Array({ minLength: 1, maxLength: 64 }),
  )
  .map(([packet, how, at, bit, extra]) => {
    const bytes = Buffer.from(packet)
    const i = at % bytes.length
    if (how === 'bit-flip') bytes[i] = (bytes[i] as number) ^ (1 << bit)
    if (how === 'truncate') return { how, bytes: bytes.subarray(0, i) }
    if (how === 'extend') return { how, bytes: Buffer.concat([bytes, extra]) }
    return { how, bytes }
  })
  .filter(({ bytes }) => bytes.length > 0)

const before = (kind: string, bytes: Uint8Array, mustClose: boolean): HostileInput => ({
  kind,
  afterConnect: false,
  bytes,
  mustClose,
})
const after = (kind: string, bytes: Uint8Array, mustClose: boolean): HostileInput => ({
  kind,
  afterConnect: true,
  bytes,
  mustClose,
})

/** Invalid UTF-8 (overlong, lone continuation, surrogate, truncated) or U+0000 inside a string. */
const badText = fc
  .tuple(
    fc.constantFrom([0xc0, 0xaf], [0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xff], [0x00], [0xf4, 0x90, 0x80, 0x80]),
    fc.stringMatching(/^[a-z]{0,6}$/),
  )
  .map(([bad, tail]) => Buffer.concat([Buffer.from('home/'), Buffer.from(bad), Buffer.from(tail)]))

const hugeTopic = fc.integer({ min: 60_000, max: 65_535 }).map((n) => Buffer.alloc(n, 0x61))
const deepTopic = fc.integer({ min: 1_000, max: 20_000 }).map((n) => `home${'/'.repeat(n)}x`)

/**
 * The same text as a PUBLISH topic, a SUBSCRIBE filter and, where a third kind is named, a
 * client id. The broker may refuse it or wait for more, so closing the connection is not required.
 */
const everywhere = (
  text: string | Uint8Array,
  kinds: readonly [publish: string, subscribe: string, clientId?: string],
) =>
  fc.constantFrom(
    after(kinds[0], publishPacket(text, Buffer.from('x')), false),
    after(kinds[1], subscribePacket([text]), false),
    ...(kinds[2] === undefined ? [] : [before(kinds[2], connectPacket({ clientId: text }), false)]),
  )

/** Every kind of hostile input, weighted so the cheap random ones dominate a long run. */
export const hostileInput: fc.Arbitrary<HostileInput> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.uint8Array({ minLength: 1, maxLength: 512 }).map((b) => before('random bytes', b, false)),
  },
  { weight: 6, arbitrary: mutatedPacket.map(({ how, bytes }) => before(`mutated packet (${how})`, bytes, false)) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom(0x10, 0x30, 0x82, 0xc0), fc.uint8Array({ maxLength: 8 }))
      .map(([first, tail]) =>
        before('5-byte remaining length', Buffer.from([first, 0xff, 0xff, 0xff, 0xff, 0x01, ...tail]), true),
      ),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.string({ minLength: 1, maxLength: 23 }), fc.integer({ min: 1, max: 200 }))
      .map(([clientId, more]) => {
        const packet = connectPacket({ clientId })
        const body = packet.subarray(2)
        return before(
          'remaining length longer than the body',
          Buffer.concat([Buffer.from([0x10, ...remainingLength(body.length + more)]), body]),
          false,
        )
      }),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.string({ minLength: 1, maxLength: 23 }), fc.integer({ min: 1, max: 10 }))
      .map(([clientId, less]) => {
        const body = connectPacket({ clientId }).subarray(2)
        const declared = Math.max(0, body.length - less)
        return before(
          'remaining length shorter than the body',
          Buffer.concat([Buffer.from([0x10, ...remainingLength(declared)]), body]),
          false,
        )
      }),
  },
  {
    weight: 2,
    arbitrary: fc
      .oneof(fc.constantFrom('MQIsdp', 'MQTX', 'mqtt', ''), fc.string({ maxLength: 12 }))
      .filter((name) => name !== 'MQTT')
      .map((protocol) => before('wrong protocol name', connectPacket({ clientId: 'fuzz', protocol }), true)),
  },
  {
    weight: 2,
    arbitrary: fc
      .integer({ min: 0, max: 255 })
      .filter((level) => level !== 4 && level !== 3 && level !== 5)
      .map((level) => before('wrong protocol level', connectPacket({ clientId: 'fuzz', level }), true)),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.constant(before('reserved CONNECT flag', connectPacket({ clientId: 'fuzz', flags: 0x03 }), true)),
      fc
        .integer({ min: 1, max: 15 })
        .map((flags) =>
          before(
            'reserved fixed-header flags (CONNECT)',
            connectPacket({ clientId: 'fuzz', firstByte: 0x10 | flags }),
            true,
          ),
        ),
      fc
        .integer({ min: 0, max: 15 })
        .filter((flags) => flags !== 2)
        .map((flags) =>
          after('reserved fixed-header flags (SUBSCRIBE)', subscribePacket(['public/x'], 0x80 | flags), true),
        ),
      fc
        .integer({ min: 1, max: 15 })
        .map((flags) => after('reserved fixed-header flags (PINGREQ)', Buffer.from([0xc0 | flags, 0]), true)),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.constant(after('PUBLISH with QoS 3', publishPacket('public/x', Buffer.from('x'), 0, 0x36), true)),
  },
  {
    weight: 1,
    arbitrary: hugeTopic.chain((topic) =>
      everywhere(topic, ['huge topic (PUBLISH)', 'huge topic (SUBSCRIBE)', 'huge client id']),
    ),
  },
  {
    weight: 1,
    arbitrary: deepTopic.chain((topic) => everywhere(topic, ['deep topic (PUBLISH)', 'deep topic (SUBSCRIBE)'])),
  },
  {
    weight: 2,
    arbitrary: badText.chain((text) =>
      everywhere(text, [
        'invalid UTF-8 or U+0000 in a topic (PUBLISH)',
        'invalid UTF-8 or U+0000 in a filter (SUBSCRIBE)',
        'invalid UTF-8 or U+0000 in the client id',
      ]),
    ),
  },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(
        publishPacket('public/x', Buffer.from('x')),
        subscribePacket(['public/#']),
        unsubscribePacket(['public/#']),
        PINGREQ,
        DISCONNECT,
      )
      .map((packet) => before('packet before CONNECT', packet, true)),
  },
  {
    weight: 2,
    arbitrary: fc
      .string({ minLength: 1, maxLength: 23 })
      .map((clientId) => after('second CONNECT', connectPacket({ clientId }), true)),
  },
  { weight: 2, arbitrary: fc.constant(after('SUBSCRIBE with zero filters', subscribePacket([]), true)) },
  // MQTT-3.10.3-2 says close; Aedes 1.2 answers UNSUBACK and keeps the session (harmless: nothing to unsubscribe).
  { weight: 1, arbitrary: fc.constant(after('UNSUBSCRIBE with zero filters', unsubscribePacket([]), false)) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(publishPacket('public/x', Buffer.from('x')), subscribePacket(['public/#']), PINGREQ)
      .map((packet) => after('packet after DISCONNECT', Buffer.concat([DISCONNECT, packet]), true)),
  },
  {
    weight: 3,
    arbitrary: fc
      .uint8Array({ minLength: 1, maxLength: 512 })
      .map((b) => after('random bytes after CONNECT', b, false)),
  },
  {
    weight: 3,
    arbitrary: mutatedPacket.map(({ how, bytes }) => after(`mutated packet after CONNECT (${how})`, bytes, false)),
  },
)
