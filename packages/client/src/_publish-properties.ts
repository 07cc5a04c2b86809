// MQTT 5 publish properties between mqtt.js's shape and the envelope's (docs/envelope.md,
// "Bound properties"). mqtt.js keeps user properties in an object, `{ key: value | value[] }`;
// the envelope binds a list in packet order. mqtt-packet writes the object in
// Object.getOwnPropertyNames order (each array value as consecutive pairs) and reads a packet
// back into the same shape, so listing it the same way on both ends gives the same list.
import type { EnvelopeProperties, PropertyVerdict } from '@smqtt/core'
import type { IPublishPacket } from 'mqtt'

/** MQTT 5 PUBLISH properties, in mqtt.js's shape. */
export type PublishProperties = NonNullable<IPublishPacket['properties']>
type UserProperties = NonNullable<PublishProperties['userProperties']>
type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/** The list of an mqtt.js user-property object, in the order mqtt-packet writes and reads it. */
function userPropertyList(object: UserProperties | undefined): [string, string][] {
  if (object === undefined || object === null) return []
  if (typeof object !== 'object') throw new TypeError('properties.userProperties must be an object')
  const list: [string, string][] = []
  for (const key of Object.getOwnPropertyNames(object)) {
    const value = (object as Record<string, unknown>)[key]
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item !== 'string') throw new TypeError(`user property ${key} must be a string (or strings)`)
      list.push([key, item])
    }
  }
  return list
}

/** mqtt.js's object of a list (repeated keys become arrays, as mqtt-packet reads them). */
function userPropertyObject(list: readonly (readonly [string, string])[]): UserProperties {
  // No prototype: a key such as "__proto__" is an ordinary key here, as in mqtt-packet.
  const object = Object.create(null) as Record<string, string | string[]>
  for (const [key, value] of list) {
    const held = object[key]
    if (held === undefined) object[key] = value
    else if (Array.isArray(held)) held.push(value)
    else object[key] = [held, value]
  }
  return object
}

/** What a publisher binds: the properties it is about to publish, in the envelope's shape. */
export function propertiesToBind(properties: PublishProperties | undefined): EnvelopeProperties {
  const out: Mutable<EnvelopeProperties> = {}
  if (properties === undefined) return out
  if (properties.contentType !== undefined) out.contentType = properties.contentType
  if (properties.responseTopic !== undefined) out.responseTopic = properties.responseTopic
  if (properties.correlationData !== undefined) out.correlationData = properties.correlationData
  const users = userPropertyList(properties.userProperties)
  if (users.length > 0) out.userProperties = users
  return out
}

/** What a receiver got, in the envelope's shape (undefined when the packet had no properties). */
export function receivedProperties(properties: PublishProperties | undefined): EnvelopeProperties | undefined {
  if (properties === undefined) return undefined
  const out: Mutable<EnvelopeProperties> = {}
  if (typeof properties.contentType === 'string') out.contentType = properties.contentType
  if (typeof properties.responseTopic === 'string') out.responseTopic = properties.responseTopic
  if (properties.correlationData instanceof Uint8Array) out.correlationData = properties.correlationData
  const users = properties.userProperties
  if (users !== undefined && users !== null && typeof users === 'object') {
    const list: [string, string][] = []
    for (const key of Object.getOwnPropertyNames(users)) {
      const value = (users as Record<string, unknown>)[key]
      for (const item of Array.isArray(value) ? value : [value]) list.push([key, String(item)])
    }
    if (list.length > 0) out.userProperties = list
  }
  return out
}

/**
 * A delivered message's properties in mqtt.js's shape: those the sender's signature covers, and
 * every other property of the packet (message expiry, subscription identifiers, and whatever
 * the broker or anyone before it added or changed).
 */
export function splitProperties(
  packet: PublishProperties | undefined,
  verdict: PropertyVerdict | undefined,
): { verifiedProperties: PublishProperties; unsignedProperties: PublishProperties } {
  const verifiedProperties: Mutable<PublishProperties> = {}
  const unsignedProperties: Mutable<PublishProperties> = { ...packet }
  if (verdict === undefined) return { verifiedProperties, unsignedProperties }
  const { verified, unsigned } = verdict
  for (const key of ['contentType', 'responseTopic', 'correlationData'] as const)
    if (verified[key] !== undefined) {
      ;(verifiedProperties as Record<string, unknown>)[key] = packet?.[key]
      delete unsignedProperties[key]
    }
  if (verified.userProperties !== undefined && verified.userProperties.length > 0)
    verifiedProperties.userProperties = userPropertyObject(verified.userProperties)
  delete unsignedProperties.userProperties
  if (unsigned.userProperties !== undefined && unsigned.userProperties.length > 0)
    unsignedProperties.userProperties = userPropertyObject(unsigned.userProperties)
  return { verifiedProperties, unsignedProperties }
}
