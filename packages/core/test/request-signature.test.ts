import { describe, expect, test } from 'vitest'
import { utf8 } from '../src/_bytes.js'
import { generateIdentity } from '../src/identity.js'
import { createPrincipalRecord, openPrincipalRecord } from '../src/principal-record.js'
import { parseRequestSignature, signRequest, verifyRequestSignature } from '../src/request-signature.js'

const device = generateIdentity('thermostat-1')
const other = generateIdentity('intruder')
const request = { method: 'POST', path: '/v1/bundle?x=1', body: utf8('{"a":1}') }
const NOW = 1_790_000_000

describe('request signatures', () => {
  test('a signed request verifies for its principal', () => {
    const headers = signRequest(device.id, device, request, { now: NOW })
    const parsed = parseRequestSignature(headers)
    expect(parsed.principal).toBe('thermostat-1')
    expect(() => verifyRequestSignature(parsed, device.signingKey, request, { now: NOW + 10 })).not.toThrow()
  })

  test.each([
    ['another method', { ...request, method: 'GET' }],
    ['another path', { ...request, path: '/v1/bundle?x=2' }],
    ['another body', { ...request, body: utf8('{"a":2}') }],
  ])('altered request is refused: %s', (_name, altered) => {
    const parsed = parseRequestSignature(signRequest(device.id, device, request, { now: NOW }))
    expect(() => verifyRequestSignature(parsed, device.signingKey, altered, { now: NOW })).toThrow(
      expect.objectContaining({ code: 'ERR_REQUEST_SIGNATURE_INVALID' }),
    )
  })

  test('another key, a stale or future timestamp are refused', () => {
    const parsed = parseRequestSignature(signRequest(device.id, device, request, { now: NOW }))
    const refuse = (key: Uint8Array, now: number) =>
      expect(() => verifyRequestSignature(parsed, key, request, { now })).toThrow(
        expect.objectContaining({ code: 'ERR_REQUEST_SIGNATURE_INVALID' }),
      )
    refuse(other.signingKey, NOW)
    refuse(device.signingKey, NOW + 61)
    refuse(device.signingKey, NOW - 61)
  })

  test('missing, repeated or malformed headers are refused with a typed error', () => {
    const good = signRequest(device.id, device, request, { now: NOW })
    for (const name of Object.keys(good)) {
      const { [name]: _dropped, ...rest } = good
      expect(() => parseRequestSignature(rest)).toThrow(
        expect.objectContaining({ code: 'ERR_REQUEST_SIGNATURE_INVALID' }),
      )
      expect(() => parseRequestSignature({ ...good, [name]: [good[name] as string, 'x'] })).toThrow(
        expect.objectContaining({ code: 'ERR_REQUEST_SIGNATURE_INVALID' }),
      )
    }
    expect(() => parseRequestSignature({ ...good, 'smqtt-timestamp': '1e9' })).toThrow(
      expect.objectContaining({ code: 'ERR_REQUEST_SIGNATURE_INVALID' }),
    )
  })

  test('each request gets a fresh nonce', () => {
    const a = signRequest(device.id, device, request, { now: NOW })
    const b = signRequest(device.id, device, request, { now: NOW })
    expect(a['smqtt-nonce']).not.toBe(b['smqtt-nonce'])
  })
})

describe('principal records', () => {
  const keyServer = generateIdentity('keyserver')
  const record = {
    id: device.id,
    kid: 12,
    roles: ['device'],
    signingKey: device.signingKey,
    agreementKey: device.agreementKey,
    kem: device.kem,
    issuedAt: NOW,
  }

  test('round trip under the pinned key', () => {
    expect(openPrincipalRecord(createPrincipalRecord(record, keyServer), keyServer.signingKey)).toEqual(record)
  })

  test('a record signed by anyone else is refused', () => {
    expect(() => openPrincipalRecord(createPrincipalRecord(record, other), keyServer.signingKey)).toThrow(
      expect.objectContaining({ code: 'ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID' }),
    )
  })
})
