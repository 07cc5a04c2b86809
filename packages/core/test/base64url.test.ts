// base64url, strictly: the decoder every signed document, key and password goes through. Checked
// against Node's own decoder plus the canonical-form rule (one text per byte string).
import fc from 'fast-check'
import { expect, test } from 'vitest'
import { fromBase64Url, toBase64Url } from '../src/_bytes.js'

/** The reference: Node's decoder, strict alphabet, no padding, canonical trailing bits. */
function reference(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined
  const bytes = new Uint8Array(Buffer.from(text, 'base64url'))
  return Buffer.from(bytes).toString('base64url') === text ? bytes : undefined
}

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

test('round trips every byte string, and decodes exactly what the reference decodes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const text = toBase64Url(bytes)
      expect(text).toBe(Buffer.from(bytes).toString('base64url'))
      expect(fromBase64Url(text)).toEqual(bytes)
    }),
  )
  // Near-alphabet strings: the alphabet, padding, the other alphabet's + and /, spaces, non-ASCII.
  const near = fc.string({ unit: fc.constantFrom(...alphabet, '=', '+', '/', ' ', '\n', 'é', '\u0141'), maxLength: 40 })
  fc.assert(
    fc.property(near, (text) => {
      expect(fromBase64Url(text)).toEqual(reference(text))
    }),
    { numRuns: 2_000 },
  )
})

test('refuses non-canonical trailing bits, a lone last character, padding and other alphabets', () => {
  expect(fromBase64Url('')).toEqual(new Uint8Array())
  expect(fromBase64Url('AA')).toEqual(new Uint8Array([0]))
  expect(fromBase64Url('AB')).toBeUndefined() // 'B' sets a bit past the one byte
  expect(fromBase64Url('AAA')).toEqual(new Uint8Array([0, 0]))
  expect(fromBase64Url('AAB')).toBeUndefined()
  expect(fromBase64Url('AAAAA')).toBeUndefined()
  expect(fromBase64Url('AA==')).toBeUndefined()
  expect(fromBase64Url('a+b/')).toBeUndefined()
  expect(fromBase64Url('AA\u0141A')).toBeUndefined() // 'Ł' (U+0141) is 'A' (0x41) in its low byte
  expect(fromBase64Url(42 as unknown as string)).toBeUndefined()
})
