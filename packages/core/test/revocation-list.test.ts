// Revocation lists: signature, strict parsing, and a version that only goes forward.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { fromBase64Url, fromUtf8, toBase64Url, utf8 } from '../src/_bytes.js'
import { signWithContext } from '../src/crypto/signature.js'
import { generateIdentity } from '../src/identity.js'
import { createKeyBundle } from '../src/key-bundle.js'
import { createRevocationList, type RevocationEntry, RevocationList } from '../src/revocation-list.js'
import type { SignedDocument } from '../src/signed-document.js'
import { codeOf } from './_fixtures.js'

const NOW = 1_750_000_000
const keyServer = generateIdentity('keyserver')
const keyServerPublicKey = keyServer.signingKey

const stolen: RevocationEntry = { principal: 'thermostat-hall', kid: 1000, revokedAt: NOW }
const lost: RevocationEntry = { principal: 'lock-front', kid: 1002, revokedAt: NOW + 60 }

function list(version: number, entries: RevocationEntry[], issuedAt = NOW): SignedDocument {
  return createRevocationList({ version, entries, issuedAt, keyServer })
}

function signPayload(payload: Uint8Array): string {
  return toBase64Url(signWithContext(keyServer, 'smqtt.revocations', payload))
}

// Re-signs any JSON body with the real key-server key (to reach the parser).
function resign(body: unknown): SignedDocument {
  const payload = utf8(JSON.stringify(body))
  return { payload: toBase64Url(payload), signature: signPayload(payload) }
}

// biome-ignore lint/suspicious/noExplicitAny: test helper over arbitrary JSON
function bodyOf(signed: SignedDocument): any {
  return JSON.parse(fromUtf8(fromBase64Url(signed.payload) as Uint8Array) as string)
}

describe('RevocationList', () => {
  it('starts empty and takes a first list of any version', () => {
    const revocations = new RevocationList()
    expect(revocations.version).toBeUndefined()
    expect(revocations.isRevokedKid(1000)).toBe(false)
    expect(revocations.accept(JSON.parse(JSON.stringify(list(5, [stolen]))), { keyServerPublicKey })).toBe(true)
    expect(revocations.version).toBe(5)
    expect(revocations.issuedAt).toBe(NOW)
    expect(revocations.entries).toEqual([stolen])
  })

  it('carries a watermark: bundles issued before it are not covered; a list without one prunes nothing', () => {
    const revocations = new RevocationList()
    expect(revocations.prunedBefore).toBe(0)
    revocations.accept(list(1, [stolen]), { keyServerPublicKey })
    expect(bodyOf(list(1, [stolen]))).not.toHaveProperty('prunedBefore')
    expect(revocations.prunedBefore).toBe(0)
    expect(revocations.coversBundleIssuedAt(0)).toBe(true)
    const pruned = createRevocationList({
      version: 2,
      entries: [lost],
      prunedBefore: NOW + 1,
      issuedAt: NOW + 90,
      keyServer,
    })
    expect(revocations.accept(pruned, { keyServerPublicKey })).toBe(true)
    expect(revocations.prunedBefore).toBe(NOW + 1)
    expect(revocations.coversBundleIssuedAt(NOW)).toBe(false)
    expect(revocations.coversBundleIssuedAt(NOW + 1)).toBe(true)
    expect(revocations.isRevokedKid(stolen.kid)).toBe(false) // pruned: no bundle it could be in is used
    expect(
      codeOf(() =>
        new RevocationList().accept(resign({ ...bodyOf(pruned), prunedBefore: -1 }), { keyServerPublicKey }),
      ),
    ).toBe('ERR_REVOCATION_LIST_MALFORMED')
  })

  it('answers by kid and by principal', () => {
    const revocations = new RevocationList()
    revocations.accept(list(1, [stolen, lost]), { keyServerPublicKey })
    expect(revocations.isRevokedKid(1000)).toBe(true)
    expect(revocations.isRevokedKid(1002)).toBe(true)
    expect(revocations.isRevokedKid(1001)).toBe(false)
    expect(revocations.isRevokedPrincipal('thermostat-hall')).toBe(true)
    expect(revocations.isRevokedPrincipal('app-phone')).toBe(false)
    expect(revocations.revocationOf(1002)).toEqual(lost)
    expect(revocations.revocationOf(1001)).toBeUndefined()
  })

  it('moves forward to higher versions, replacing the entries', () => {
    const revocations = new RevocationList()
    revocations.accept(list(1, [stolen]), { keyServerPublicKey })
    expect(revocations.accept(list(2, [stolen, lost]), { keyServerPublicKey })).toBe(true)
    expect(revocations.isRevokedKid(1002)).toBe(true)
    // A later list may lift a revocation (e.g. a mistaken one): the newest list is the truth.
    expect(revocations.accept(list(7, [lost]), { keyServerPublicKey })).toBe(true)
    expect(revocations.version).toBe(7)
    expect(revocations.isRevokedKid(1000)).toBe(false)
  })

  it('refuses an older version and keeps the current list', () => {
    const revocations = new RevocationList()
    const older = list(3, [])
    revocations.accept(list(4, [stolen]), { keyServerPublicKey })
    expect(codeOf(() => revocations.accept(older, { keyServerPublicKey }))).toBe('ERR_REVOCATION_LIST_ROLLBACK')
    expect(revocations.version).toBe(4)
    expect(revocations.isRevokedKid(1000)).toBe(true)
  })

  it('the same list again is a no-op', () => {
    const revocations = new RevocationList()
    const current = list(4, [stolen])
    revocations.accept(current, { keyServerPublicKey })
    expect(revocations.accept(JSON.parse(JSON.stringify(current)), { keyServerPublicKey })).toBe(false)
    expect(revocations.version).toBe(4)
  })

  it('refuses a different list under the same version, and keeps the first', () => {
    const revocations = new RevocationList()
    revocations.accept(list(4, [stolen]), { keyServerPublicKey })
    expect(codeOf(() => revocations.accept(list(4, []), { keyServerPublicKey }))).toBe('ERR_REVOCATION_LIST_ROLLBACK')
    expect(codeOf(() => revocations.accept(list(4, [stolen], NOW + 1), { keyServerPublicKey }))).toBe(
      'ERR_REVOCATION_LIST_ROLLBACK',
    )
    expect(revocations.isRevokedKid(1000)).toBe(true)
    expect(revocations.issuedAt).toBe(NOW)
  })

  it('a refused list of any kind leaves the state unchanged', () => {
    const revocations = new RevocationList()
    revocations.accept(list(4, [stolen]), { keyServerPublicKey })
    const before = [revocations.version, revocations.issuedAt, revocations.entries]
    const body = bodyOf(list(9, []))
    body.entries = 'none'
    const impostor = generateIdentity('keyserver')
    for (const bad of [resign(body), createRevocationList({ version: 9, entries: [], keyServer: impostor }), null]) {
      expect(codeOf(() => revocations.accept(bad, { keyServerPublicKey }))).not.toBe('ok')
    }
    expect([revocations.version, revocations.issuedAt, revocations.entries]).toEqual(before)
  })
})

describe('signature', () => {
  it('refuses an edited payload, an altered signature and another signer', () => {
    const signed = list(2, [stolen])
    const body = bodyOf(signed)
    body.entries = []
    const revocations = new RevocationList()
    const tampered = { payload: toBase64Url(utf8(JSON.stringify(body))), signature: signed.signature }
    expect(codeOf(() => revocations.accept(tampered, { keyServerPublicKey }))).toBe(
      'ERR_REVOCATION_LIST_SIGNATURE_INVALID',
    )
    const signature = fromBase64Url(signed.signature) as Uint8Array
    signature[63] = (signature[63] as number) ^ 0x01
    expect(
      codeOf(() => revocations.accept({ ...signed, signature: toBase64Url(signature) }, { keyServerPublicKey })),
    ).toBe('ERR_REVOCATION_LIST_SIGNATURE_INVALID')
    const impostor = generateIdentity('keyserver')
    const forged = createRevocationList({ version: 2, entries: [], keyServer: impostor })
    expect(codeOf(() => revocations.accept(forged, { keyServerPublicKey }))).toBe(
      'ERR_REVOCATION_LIST_SIGNATURE_INVALID',
    )
    expect(revocations.version).toBeUndefined()
  })

  it('a key bundle signed by the key server cannot pass as a revocation list (domain separation)', () => {
    const device = generateIdentity('thermostat-hall')
    const bundle = createKeyBundle({
      recipient: device,
      groups: [],
      validity: { notBefore: NOW, notAfter: NOW + 1 },
      keyServer,
    })
    expect(codeOf(() => new RevocationList().accept(bundle, { keyServerPublicKey }))).toBe(
      'ERR_REVOCATION_LIST_SIGNATURE_INVALID',
    )
  })
})

describe('strict parsing', () => {
  // biome-ignore lint/suspicious/noExplicitAny: edits over arbitrary JSON
  const edits: [string, (body: any) => void][] = [
    ['an unknown field', (b) => (b.extra = true)],
    ['an unknown entry field', (b) => (b.entries[0].reason = 'stolen')],
    ['a missing version', (b) => delete b.version],
    ['a negative version', (b) => (b.version = -1)],
    ['a version above uint32', (b) => (b.version = 2 ** 32)],
    ['a fractional version', (b) => (b.version = 1.5)],
    ['a wrong type tag', (b) => (b.type = 'smqtt.key-bundle')],
    ['a future format', (b) => (b.v = 2)],
    ['a duplicate kid', (b) => b.entries.push({ ...b.entries[0], principal: 'someone-else' })],
    ['an invalid principal', (b) => (b.entries[0].principal = '')],
    ['a string kid', (b) => (b.entries[0].kid = '1000')],
    ['entries not an array', (b) => (b.entries = {})],
  ]
  for (const [name, edit] of edits) {
    it(`refuses a list with ${name}`, () => {
      const body = bodyOf(list(3, [stolen, lost]))
      edit(body)
      expect(codeOf(() => new RevocationList().accept(resign(body), { keyServerPublicKey }))).toBe(
        'ERR_REVOCATION_LIST_MALFORMED',
      )
    })
  }

  it('refuses a list above the size limit', () => {
    expect(codeOf(() => new RevocationList().accept(list(1, [stolen]), { keyServerPublicKey, maxBytes: 32 }))).toBe(
      'ERR_REVOCATION_LIST_MALFORMED',
    )
  })

  it('refuses to create a list with duplicate kids or bad values (programmer mistakes)', () => {
    expect(() => list(1, [stolen, { ...stolen, principal: 'other' }])).toThrow(RangeError)
    expect(() => list(-1, [])).toThrow(RangeError)
    expect(() => list(1, [{ ...stolen, principal: 'bad\nid' }])).toThrow(TypeError)
  })
})

describe('arbitrary input only ever raises SmqttError', () => {
  const allowed = new Set<string>([
    'ERR_REVOCATION_LIST_MALFORMED',
    'ERR_REVOCATION_LIST_SIGNATURE_INVALID',
    'ERR_REVOCATION_LIST_ROLLBACK',
  ])

  it('arbitrary JSON as the signed document, and as a body signed by the key server', () => {
    const revocations = new RevocationList()
    revocations.accept(list(10, [stolen]), { keyServerPublicKey })
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(allowed.has(codeOf(() => revocations.accept(value, { keyServerPublicKey })))).toBe(true)
        expect(allowed.has(codeOf(() => revocations.accept(resign(value), { keyServerPublicKey })))).toBe(true)
      }),
      { numRuns: 300 },
    )
    expect(revocations.version).toBe(10)
  })

  it('a valid body with one field replaced by arbitrary JSON, re-signed', () => {
    const fields = ['type', 'v', 'version', 'issuedAt', 'entries']
    const entryFields = ['principal', 'kid', 'revokedAt']
    fc.assert(
      fc.property(fc.constantFrom(...fields, ...entryFields), fc.jsonValue(), (field, value) => {
        const body = bodyOf(list(3, [stolen, lost]))
        if (entryFields.includes(field)) body.entries[1][field] = value
        else body[field] = value
        const code = codeOf(() => new RevocationList().accept(resign(body), { keyServerPublicKey }))
        expect(code === 'ok' || allowed.has(code)).toBe(true)
      }),
      { numRuns: 300 },
    )
  })
})
