// The shape of the frozen envelope vectors, shared by the generator of the bound-property
// vectors (_generate-bound-property-vectors.ts) and the test that reads them (vectors.test.ts).
import { fromHex, toHex } from '../src/_bytes.js'
import type { EnvelopeProperties } from '../src/envelope/bound-properties.js'
import type { SuiteId } from '../src/envelope/suites.js'

/** The header fields, topic and name of one vector (its payload is bytes or hex). */
export interface EnvelopeCase {
  name: string
  suite: SuiteId
  group: number
  epoch: number
  kid: number
  seq: number
  sentAt: number
  retain: boolean
  topic: string
}

/** Properties as JSON: correlation data in hex, user properties as [key, value] pairs in packet order. */
export interface PropertiesJson {
  contentType?: string
  responseTopic?: string
  correlationData?: string
  userProperties?: [string, string][]
}

export function propertiesToJson(p: EnvelopeProperties): PropertiesJson {
  const out: PropertiesJson = {}
  if (p.contentType !== undefined) out.contentType = p.contentType
  if (p.responseTopic !== undefined) out.responseTopic = p.responseTopic
  if (p.correlationData !== undefined) out.correlationData = toHex(p.correlationData)
  if (p.userProperties !== undefined) out.userProperties = p.userProperties.map(([k, v]) => [k, v])
  return out
}

export function propertiesFromJson(p: PropertiesJson): EnvelopeProperties {
  return {
    ...(p.contentType !== undefined ? { contentType: p.contentType } : {}),
    ...(p.responseTopic !== undefined ? { responseTopic: p.responseTopic } : {}),
    ...(p.correlationData !== undefined ? { correlationData: fromHex(p.correlationData) } : {}),
    ...(p.userProperties !== undefined ? { userProperties: p.userProperties } : {}),
  }
}
