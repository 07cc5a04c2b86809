// MQTT 5 publish properties an envelope binds (docs/envelope.md, "Bound properties").
//
// The properties travel as ordinary MQTT 5 PUBLISH properties, in clear, so brokers and other
// tools keep seeing them; the envelope only binds them. The header's descriptor says which are
// bound, and AAD and signature cover this canonical encoding of them, appended after the topic:
//
//   content type     (mask 0x01): 0x00 absent | 0x01 u16 BE length, UTF-8
//   response topic   (mask 0x02): 0x00 absent | 0x01 u16 BE length, UTF-8
//   correlation data (mask 0x04): 0x00 absent | 0x01 u16 BE length, bytes
//   k user properties, the first k in packet order: u16 BE length, key UTF-8, u16 BE length, value UTF-8
//
// The receiver builds the same bytes from the packet it got, so an altered, stripped,
// reordered or injected bound property breaks both checks; properties after the first k, or
// kinds the mask leaves out, are reported unsigned.
import { concatBytes, utf8 } from '../_bytes.js'
import { SmqttError } from '../errors.js'

/** MQTT 5 PUBLISH properties an envelope can bind, as the packet carries them. */
export interface EnvelopeProperties {
  readonly contentType?: string
  readonly responseTopic?: string
  readonly correlationData?: Uint8Array
  /** User properties in packet order (MQTT 5 §3.3.2.3.7: brokers keep their order). */
  readonly userProperties?: readonly (readonly [key: string, value: string])[]
}

/** Which properties an envelope binds (its header's descriptor). */
export interface PropertyBinding {
  readonly contentType: boolean
  readonly responseTopic: boolean
  readonly correlationData: boolean
  /** The first `userProperties` user properties, in packet order. */
  readonly userProperties: number
}

/** What the receiver got with an envelope, split by whether the sender's signature covers it. */
export interface PropertyVerdict {
  /** Bound by the sender and verified: exactly what it sent. A kind it bound as absent is absent here too. */
  readonly verified: EnvelopeProperties
  /** Received but bound by nobody: anyone on the path may have set or changed these. */
  readonly unsigned: EnvelopeProperties
}

export const BIND_CONTENT_TYPE = 0x01
export const BIND_RESPONSE_TOPIC = 0x02
export const BIND_CORRELATION_DATA = 0x04
export const KNOWN_BIND_BITS = 0x07
/** At most this many user properties bound. */
export const MAX_BOUND_USER_PROPERTIES = 16
/** Each bound string or correlation data at most this many bytes. */
export const MAX_BOUND_PROPERTY_BYTES = 1024
/** The encoding of the bound properties at most this many bytes. */
export const MAX_BOUND_PROPERTIES_BYTES = 4096

/** The descriptor's mask byte for a binding. */
export function bindingMask(binding: PropertyBinding): number {
  return (
    (binding.contentType ? BIND_CONTENT_TYPE : 0) |
    (binding.responseTopic ? BIND_RESPONSE_TOPIC : 0) |
    (binding.correlationData ? BIND_CORRELATION_DATA : 0)
  )
}

export function bindingFromMask(mask: number, userProperties: number): PropertyBinding {
  return {
    contentType: (mask & BIND_CONTENT_TYPE) !== 0,
    responseTopic: (mask & BIND_RESPONSE_TOPIC) !== 0,
    correlationData: (mask & BIND_CORRELATION_DATA) !== 0,
    userProperties,
  }
}

/** The binding a sealer uses: all three kinds (present or absent) and every user property given. */
export function sealerBinding(properties: EnvelopeProperties): PropertyBinding {
  return {
    contentType: true,
    responseTopic: true,
    correlationData: true,
    userProperties: properties.userProperties?.length ?? 0,
  }
}

/** MQTT 5 §1.5.4: no U+0000 in UTF-8 strings; a lone surrogate would not survive UTF-8. */
function isMqttText(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i)
    if (unit === 0) return false
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = value.charCodeAt(i + 1)
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false
      i++
    } else if (unit >= 0xdc00 && unit <= 0xdfff) return false
  }
  return true
}

function checkText(value: unknown, label: string): string {
  if (typeof value !== 'string') throw new TypeError(`${label} must be a string`)
  if (!isMqttText(value)) throw new TypeError(`${label} contains U+0000 or a lone surrogate`)
  return value
}

/** Checks a sealer's properties (programmer input: TypeError; over the limits: ERR_ENVELOPE_TOO_LARGE). */
export function checkSealerProperties(properties: EnvelopeProperties): void {
  if (typeof properties !== 'object' || properties === null) throw new TypeError('properties must be an object')
  if (properties.contentType !== undefined) checkText(properties.contentType, 'properties.contentType')
  if (properties.responseTopic !== undefined) checkText(properties.responseTopic, 'properties.responseTopic')
  if (properties.correlationData !== undefined && !(properties.correlationData instanceof Uint8Array))
    throw new TypeError('properties.correlationData must be a Uint8Array')
  const users = properties.userProperties
  if (users !== undefined) {
    if (!Array.isArray(users)) throw new TypeError('properties.userProperties must be an array of [key, value] pairs')
    users.forEach((pair: unknown, i) => {
      if (!Array.isArray(pair) || pair.length !== 2)
        throw new TypeError(`properties.userProperties[${i}] must be a [key, value] pair`)
      checkText(pair[0], `properties.userProperties[${i}] key`)
      checkText(pair[1], `properties.userProperties[${i}] value`)
    })
    if (users.length > MAX_BOUND_USER_PROPERTIES)
      throw new SmqttError(
        'ERR_ENVELOPE_TOO_LARGE',
        `at most ${MAX_BOUND_USER_PROPERTIES} user properties can be bound, got ${users.length}`,
      )
  }
  if (encodeBoundProperties(sealerBinding(properties), properties) === undefined)
    throw new SmqttError(
      'ERR_ENVELOPE_TOO_LARGE',
      `bound properties exceed the limits (each at most ${MAX_BOUND_PROPERTY_BYTES} bytes, ${MAX_BOUND_PROPERTIES_BYTES} in all)`,
    )
}

/**
 * The canonical encoding of the properties `binding` names, taken from `properties` (what was
 * sent, or what was received). Undefined when they cannot have been sealed: fewer user
 * properties than bound, or over the limits; a receiver then treats the signature as invalid.
 */
export function encodeBoundProperties(
  binding: PropertyBinding,
  properties: EnvelopeProperties | undefined,
): Uint8Array | undefined {
  const parts: Uint8Array[] = []
  let size = 0
  const optional = (bound: boolean, value: string | Uint8Array | undefined): boolean => {
    if (!bound) return true
    if (value === undefined) {
      parts.push(ABSENT)
      size += 1
      return true
    }
    parts.push(PRESENT)
    size += 1
    return field(value)
  }
  const field = (value: string | Uint8Array): boolean => {
    const bytes = typeof value === 'string' ? utf8(value) : value
    if (bytes.length > MAX_BOUND_PROPERTY_BYTES) return false
    parts.push(new Uint8Array([bytes.length >>> 8, bytes.length & 0xff]), bytes)
    size += 2 + bytes.length
    return true
  }
  if (!optional(binding.contentType, properties?.contentType)) return undefined
  if (!optional(binding.responseTopic, properties?.responseTopic)) return undefined
  if (!optional(binding.correlationData, properties?.correlationData)) return undefined
  const users = properties?.userProperties ?? []
  if (users.length < binding.userProperties) return undefined
  for (let i = 0; i < binding.userProperties; i++) {
    const [key, value] = users[i] as readonly [string, string]
    if (!field(key) || !field(value)) return undefined
  }
  if (size > MAX_BOUND_PROPERTIES_BYTES) return undefined
  return concatBytes(...parts)
}

const ABSENT = new Uint8Array([0])
const PRESENT = new Uint8Array([1])
const NOTHING: EnvelopeProperties = Object.freeze({})
const NO_PROPERTIES: PropertyVerdict = Object.freeze({ verified: NOTHING, unsigned: NOTHING })

/** Splits what was received into verified (bound) and unsigned; call only once both checks passed. */
export function propertyVerdict(
  binding: PropertyBinding | undefined,
  received: EnvelopeProperties | undefined,
): PropertyVerdict {
  if (!binding) return received ? { verified: NOTHING, unsigned: pick(received) } : NO_PROPERTIES
  if (!received) return { verified: NOTHING, unsigned: NOTHING }
  const verified: { -readonly [K in keyof EnvelopeProperties]: EnvelopeProperties[K] } = {}
  const unsigned: { -readonly [K in keyof EnvelopeProperties]: EnvelopeProperties[K] } = {}
  const split = <K extends 'contentType' | 'responseTopic' | 'correlationData'>(key: K, bound: boolean) => {
    const value = received[key]
    if (value !== undefined) (bound ? verified : unsigned)[key] = value
  }
  split('contentType', binding.contentType)
  split('responseTopic', binding.responseTopic)
  split('correlationData', binding.correlationData)
  const users = received.userProperties ?? []
  if (binding.userProperties > 0) verified.userProperties = users.slice(0, binding.userProperties)
  if (users.length > binding.userProperties) unsigned.userProperties = users.slice(binding.userProperties)
  return { verified, unsigned }
}

/** Only the kinds of property this module knows, copied. */
function pick(received: EnvelopeProperties): EnvelopeProperties {
  const out: { -readonly [K in keyof EnvelopeProperties]: EnvelopeProperties[K] } = {}
  if (received.contentType !== undefined) out.contentType = received.contentType
  if (received.responseTopic !== undefined) out.responseTopic = received.responseTopic
  if (received.correlationData !== undefined) out.correlationData = received.correlationData
  if (received.userProperties !== undefined && received.userProperties.length > 0)
    out.userProperties = received.userProperties
  return out
}
