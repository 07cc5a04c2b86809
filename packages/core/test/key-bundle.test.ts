// Key bundles: round trip, signature, recipient, validity, HPKE slot binding, strict parsing.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { fromBase64Url, fromUtf8, toBase64Url, utf8 } from '../src/_bytes.js'
import { signWithContext } from '../src/crypto/signature.js'
import { generateIdentity, type Identity, publicIdentity } from '../src/identity.js'
import {
  createKeyBundle,
  type KeyBundleGroupInput,
  MAX_WRITER_FILTERS,
  openKeyBundle,
  sealEpochKey,
} from '../src/key-bundle.js'
import { createRevocationList } from '../src/revocation-list.js'
import { type SignedDocument, signDocument } from '../src/signed-document.js'
import { filterCovers, isValidFilter } from '../src/topic-filter.js'
import { backends, codeOf } from './_fixtures.js'

const NOW = 1_750_000_000
const keyServer = generateIdentity('keyserver')
const device = generateIdentity('thermostat-hall')
const pqDevice = generateIdentity('app-phone', { postQuantum: true })
const thermostatWriter = {
  kid: 1000,
  principal: 'thermostat-hall',
  signingKey: device.signingKey,
  publish: { allow: ['home/hall/thermostat/#'], deny: ['home/hall/thermostat/firmware'] },
}
const appWriter = {
  kid: 1001,
  principal: 'app-phone',
  signingKey: pqDevice.signingKey,
  publish: { allow: ['home/+/thermostat/+/setpoint'], deny: [] },
}
const lockWriter = { ...appWriter, publish: { allow: ['home/+/lock/#'], deny: [] } }

function key(fill: number): Uint8Array {
  return new Uint8Array(32).fill(fill)
}

const GROUPS: KeyBundleGroupInput[] = [
  {
    group: 7,
    name: 'thermostats',
    filter: 'home/+/thermostat/#',
    suite: 1,
    epochs: [
      { epoch: 300, key: key(0x30), activatesAt: NOW - 3600, retiresAt: NOW + 600 },
      { epoch: 301, key: key(0x31), activatesAt: NOW + 300, retiresAt: NOW + 90_000 },
    ],
    writers: [thermostatWriter, appWriter],
  },
  {
    group: 8,
    name: 'locks',
    filter: 'home/+/lock/#',
    suite: 2,
    epochs: [{ epoch: 12, key: key(0x12), activatesAt: NOW - 60, retiresAt: NOW + 86_400 }],
    writers: [lockWriter],
  },
]

function bundleFor(recipient: Identity, groups: KeyBundleGroupInput[] = GROUPS): SignedDocument {
  return createKeyBundle({
    recipient: publicIdentity(recipient),
    groups,
    validity: { notBefore: NOW - 60, notAfter: NOW + 3600 },
    issuedAt: NOW - 60,
    keyServer,
  })
}

const open = (signed: unknown, recipient: Identity = device, now = NOW) =>
  openKeyBundle(signed, { keyServerPublicKey: keyServer.signingKey, recipient, now })

// The body the key server signed, as plain JSON, to edit and re-sign in attack tests.
// biome-ignore lint/suspicious/noExplicitAny: test helper over arbitrary JSON
function bodyOf(signed: SignedDocument): any {
  return JSON.parse(fromUtf8(fromBase64Url(signed.payload) as Uint8Array) as string)
}

// Signs raw payload bytes as a bundle with the real key-server key.
function signPayload(payload: Uint8Array): string {
  return toBase64Url(signWithContext(keyServer, 'smqtt.key-bundle', payload))
}

// Re-signs an edited body with the real key-server key: what someone holding that key could do.
function resign(body: unknown): SignedDocument {
  const payload = utf8(JSON.stringify(body))
  return { payload: toBase64Url(payload), signature: signPayload(payload) }
}

const bundle = bundleFor(device)
const pqBundle = bundleFor(pqDevice)

describe('createKeyBundle / openKeyBundle', () => {
  it('round-trips through JSON text, for X25519 and X-Wing recipients, on both backends', () => {
    for (const [signed, recipient] of [
      [bundle, device],
      [pqBundle, pqDevice],
    ] as const) {
      for (const backend of backends) {
        const opened = openKeyBundle(JSON.parse(JSON.stringify(signed)), {
          keyServerPublicKey: keyServer.signingKey,
          recipient,
          now: NOW,
          backend,
        })
        expect(opened.principal).toBe(recipient.id)
        expect([opened.issuedAt, opened.notBefore, opened.notAfter]).toEqual([NOW - 60, NOW - 60, NOW + 3600])
        expect(opened.groups.map((g) => [g.group, g.name, g.filter, g.suite])).toEqual([
          [7, 'thermostats', 'home/+/thermostat/#', 1],
          [8, 'locks', 'home/+/lock/#', 2],
        ])
        const [thermostats, locks] = opened.groups
        expect(thermostats?.epochs).toEqual([
          { epoch: 300, key: key(0x30), activatesAt: NOW - 3600, retiresAt: NOW + 600 },
          { epoch: 301, key: key(0x31), activatesAt: NOW + 300, retiresAt: NOW + 90_000 },
        ])
        expect(locks?.epochs).toEqual([{ epoch: 12, key: key(0x12), activatesAt: NOW - 60, retiresAt: NOW + 86_400 }])
        expect(thermostats?.writers.get(1000)).toEqual({
          principal: 'thermostat-hall',
          signingKey: device.signingKey,
          publish: { allow: ['home/hall/thermostat/#'], deny: ['home/hall/thermostat/firmware'] },
        })
        expect(thermostats?.writers.get(1001)).toEqual({
          principal: 'app-phone',
          signingKey: pqDevice.signingKey,
          publish: { allow: ['home/+/thermostat/+/setpoint'], deny: [] },
        })
        expect(locks?.writers.get(1001)?.publish).toEqual({ allow: ['home/+/lock/#'], deny: [] })
        expect(locks?.writers.has(1000)).toBe(false)
      }
    }
  })

  it('seals keys: no epoch key appears in the signed document', () => {
    const text = fromUtf8(fromBase64Url(bundle.payload) as Uint8Array) as string
    expect(text).not.toContain(toBase64Url(key(0x30)))
    expect(bodyOf(bundle).groups[0].epochs[0].kem).toBe('x25519')
    expect(bodyOf(pqBundle).groups[0].epochs[0].kem).toBe('xwing')
  })

  it('refuses to build a bundle clients would reject (programmer mistakes)', () => {
    const recipient = publicIdentity(device)
    const validity = { notBefore: NOW, notAfter: NOW + 1 }
    const base = GROUPS[1] as KeyBundleGroupInput
    const attempt = (groups: KeyBundleGroupInput[]) => () => createKeyBundle({ recipient, groups, validity, keyServer })
    expect(attempt([base, base])).toThrow(RangeError)
    expect(attempt([{ ...base, epochs: [...base.epochs, ...base.epochs] }])).toThrow(RangeError)
    expect(attempt([{ ...base, writers: [lockWriter, lockWriter] }])).toThrow(RangeError)
    expect(
      attempt([{ ...base, epochs: [{ epoch: 1, key: key(1).subarray(1), activatesAt: 0, retiresAt: 1 }] }]),
    ).toThrow(RangeError)
    expect(attempt([{ ...base, name: 'bad\nname' }])).toThrow(TypeError)
    expect(attempt([{ ...base, writers: [{ ...lockWriter, signingKey: new Uint8Array(32) }] }])).toThrow(TypeError)
    const rights = (allow: string[], deny: string[] = []) =>
      attempt([{ ...base, writers: [{ ...lockWriter, publish: { allow, deny } }] }])
    expect(rights([])).toThrow(TypeError)
    expect(rights(['home/+/lock/#', 'home/#'])).toThrow(TypeError) // reaches outside the group
    expect(rights(['home/+/lock/a#'])).toThrow(TypeError)
    expect(rights(['home/+/lock/#'], ['home/+/lock/x/#', 'home/x/camera'])).toThrow(TypeError)
    const many = Array.from({ length: MAX_WRITER_FILTERS }, (_, i) => `home/+/lock/${i}`)
    expect(rights(many)).not.toThrow()
    expect(rights(many.slice(1), ['home/+/lock/x'])).not.toThrow()
    expect(rights(many, ['home/+/lock/x'])).toThrow(TypeError)
    expect(attempt([{ ...base, group: 2 ** 32 }])).toThrow(RangeError)
    expect(() =>
      createKeyBundle({ recipient, groups: [], validity: { notBefore: 2, notAfter: 1 }, keyServer }),
    ).toThrow(RangeError)
  })
})

describe('epoch keys sealed once, reused in later bundles (sealEpochKey)', () => {
  const recipient = publicIdentity(device)
  const validity = { notBefore: NOW - 60, notAfter: NOW + 3600 }
  const locks = GROUPS[1] as KeyBundleGroupInput
  const slot = { group: 8, epoch: 12, suite: 2 }
  const sealed = sealEpochKey(recipient, slot, key(0x12))
  const withSealed = (given: typeof sealed) =>
    createKeyBundle({
      recipient,
      groups: [{ ...locks, epochs: [{ epoch: 12, activatesAt: NOW - 60, retiresAt: NOW + 86_400, sealed: given }] }],
      validity,
      keyServer,
    })

  it('a bundle built from a kept seal carries its bytes and opens to the key', () => {
    const signed = withSealed(sealed)
    const [epoch] = bodyOf(signed).groups[0].epochs
    expect([epoch.enc, epoch.sealedKey, epoch.kem]).toEqual([sealed.enc, sealed.sealedKey, 'x25519'])
    const opened = openKeyBundle(signed, { keyServerPublicKey: keyServer.signingKey, recipient: device, now: NOW })
    expect(opened.groups[0]?.epochs[0]?.key).toEqual(key(0x12))
  })

  it('refuses a seal made for another recipient, group, epoch, suite or KEM', () => {
    const other = generateIdentity('thermostat-attic')
    const misplaced = [
      sealEpochKey(publicIdentity(other), slot, key(0x12)),
      sealEpochKey(recipient, { ...slot, group: 7 }, key(0x12)),
      sealEpochKey(recipient, { ...slot, epoch: 13 }, key(0x12)),
      sealEpochKey(recipient, { ...slot, suite: 1 }, key(0x12)),
      { ...sealed, kem: 'xwing' as const },
    ]
    for (const given of misplaced) expect(() => withSealed(given)).toThrow(RangeError)
  })
})

describe('signature', () => {
  it('a payload edited after signing is refused', () => {
    const body = bodyOf(bundle)
    body.notAfter += 86_400
    const tampered = { payload: toBase64Url(utf8(JSON.stringify(body))), signature: bundle.signature }
    expect(codeOf(() => open(tampered))).toBe('ERR_BUNDLE_SIGNATURE_INVALID')
  })

  it('an altered or truncated signature is refused', () => {
    const signature = fromBase64Url(bundle.signature) as Uint8Array
    signature[10] = (signature[10] as number) ^ 0x40
    expect(codeOf(() => open({ ...bundle, signature: toBase64Url(signature) }))).toBe('ERR_BUNDLE_SIGNATURE_INVALID')
    expect(codeOf(() => open({ ...bundle, signature: toBase64Url(signature.subarray(1)) }))).toBe(
      'ERR_BUNDLE_SIGNATURE_INVALID',
    )
    expect(codeOf(() => open({ ...bundle, signature: '' }))).toBe('ERR_BUNDLE_MALFORMED')
  })

  it('a bundle signed by another key is refused', () => {
    const impostor = generateIdentity('keyserver')
    const forged = signDocument('smqtt.key-bundle', bodyOf(bundle), impostor)
    expect(codeOf(() => open(forged))).toBe('ERR_BUNDLE_SIGNATURE_INVALID')
  })

  it('a revocation list signed by the key server cannot pass as a bundle (domain separation)', () => {
    const list = createRevocationList({ version: 1, entries: [], keyServer, issuedAt: NOW })
    expect(codeOf(() => open(list))).toBe('ERR_BUNDLE_SIGNATURE_INVALID')
  })
})

describe('recipient and validity', () => {
  it('a bundle for another principal is refused', () => {
    expect(codeOf(() => open(bundle, generateIdentity('intruder')))).toBe('ERR_BUNDLE_WRONG_RECIPIENT')
    expect(codeOf(() => open(pqBundle, device))).toBe('ERR_BUNDLE_WRONG_RECIPIENT')
  })

  it('is valid for notBefore <= now < notAfter', () => {
    expect(codeOf(() => open(bundle, device, NOW - 61))).toBe('ERR_BUNDLE_NOT_YET_VALID')
    expect(codeOf(() => open(bundle, device, NOW - 60))).toBe('ok')
    expect(codeOf(() => open(bundle, device, NOW + 3599))).toBe('ok')
    expect(codeOf(() => open(bundle, device, NOW + 3600))).toBe('ERR_BUNDLE_EXPIRED')
  })
})

describe('HPKE slot binding (attacker holds the key-server signing key)', () => {
  it('a sealed key copied into another group does not open', () => {
    const body = bodyOf(bundle)
    const { enc, sealedKey } = body.groups[0].epochs[0]
    Object.assign(body.groups[1].epochs[0], { enc, sealedKey })
    expect(codeOf(() => open(resign(body)))).toBe('ERR_HPKE_OPEN_FAILED')
  })

  it('a sealed key moved to another epoch of its group does not open', () => {
    const body = bodyOf(bundle)
    body.groups[0].epochs[0].epoch = 299
    expect(codeOf(() => open(resign(body)))).toBe('ERR_HPKE_OPEN_FAILED')
  })

  it('relabelling a group (id or suite) breaks its sealed keys', () => {
    const moved = bodyOf(bundle)
    moved.groups[0].group = 9
    expect(codeOf(() => open(resign(moved)))).toBe('ERR_HPKE_OPEN_FAILED')
    const resuited = bodyOf(bundle)
    resuited.groups[0].suite = 2
    expect(codeOf(() => open(resign(resuited)))).toBe('ERR_HPKE_OPEN_FAILED')
  })

  it('a bundle re-addressed to another principal does not open, even one holding the same KEM key', () => {
    const twin: Identity = { ...device, id: 'thermostat-twin' }
    const body = bodyOf(bundle)
    body.principal = twin.id
    expect(codeOf(() => open(resign(body), twin))).toBe('ERR_HPKE_OPEN_FAILED')
  })

  it('a key sealed with another KEM does not open', () => {
    const body = bodyOf(bundle)
    body.groups[0].epochs[0] = bodyOf(pqBundle).groups[0].epochs[0]
    expect(codeOf(() => open(resign(body)))).toBe('ERR_HPKE_OPEN_FAILED')
  })

  it('the unedited body re-signed still opens (the attacks above fail for the reason claimed)', () => {
    expect(codeOf(() => open(resign(bodyOf(bundle))))).toBe('ok')
  })
})

describe('strict parsing', () => {
  // Each edit is applied to a fresh copy of the body, re-signed with the real key.
  // biome-ignore lint/suspicious/noExplicitAny: edits over arbitrary JSON
  const edits: [string, (body: any) => void][] = [
    ['unknown top-level field', (b) => (b.extra = 1)],
    ['unknown group field', (b) => (b.groups[0].color = 'red')],
    ['unknown epoch field', (b) => (b.groups[0].epochs[0].key = 'AAAA')],
    ['unknown writer field', (b) => (b.groups[0].writers[0].role = 'admin')],
    ['missing field', (b) => delete b.notAfter],
    ['wrong type tag', (b) => (b.type = 'smqtt.revocations')],
    ['future version', (b) => (b.v = 3)],
    ['version 1 (writers without publish rights)', (b) => (b.v = 1)],
    ['writer without publish rights', (b) => delete b.groups[0].writers[0].publish],
    ['publish rights without deny', (b) => delete b.groups[0].writers[0].publish.deny],
    ['unknown publish field', (b) => (b.groups[0].writers[0].publish.subscribe = [])],
    ['publish rights allowing nothing', (b) => (b.groups[0].writers[0].publish.allow = [])],
    ['publish allow not an array', (b) => (b.groups[0].writers[0].publish.allow = 'home/hall/thermostat/#')],
    ['publish filter not a string', (b) => (b.groups[0].writers[0].publish.allow = [7])],
    ['invalid publish filter', (b) => (b.groups[0].writers[0].publish.allow = ['home/hall/thermostat/#/x'])],
    ['publish filter outside the group', (b) => b.groups[0].writers[0].publish.allow.push('home/+/lock/#')],
    ['deny filter outside the group', (b) => (b.groups[0].writers[0].publish.deny = ['#'])],
    [
      `more than ${MAX_WRITER_FILTERS} filters for a writer`,
      (b) =>
        (b.groups[0].writers[0].publish.deny = Array.from(
          { length: MAX_WRITER_FILTERS },
          (_, i) => `home/hall/thermostat/${i}`,
        )),
    ],
    ['duplicate group', (b) => b.groups.push(b.groups[0])],
    ['duplicate epoch', (b) => b.groups[0].epochs.push(b.groups[0].epochs[0])],
    ['duplicate kid', (b) => b.groups[0].writers.push({ ...b.groups[0].writers[1], kid: 1000 })],
    ['group above uint32', (b) => (b.groups[0].group = 2 ** 32)],
    ['negative epoch', (b) => (b.groups[0].epochs[0].epoch = -1)],
    ['fractional kid', (b) => (b.groups[0].writers[0].kid = 1.5)],
    ['numeric string', (b) => (b.issuedAt = String(b.issuedAt))],
    ['notBefore after notAfter', (b) => (b.notBefore = b.notAfter + 1)],
    ['epoch activates after it retires', (b) => (b.groups[0].epochs[0].activatesAt = NOW + 10 ** 6)],
    ['enc of the wrong length', (b) => (b.groups[0].epochs[0].enc = toBase64Url(new Uint8Array(33)))],
    ['sealed key of the wrong length', (b) => (b.groups[0].epochs[0].sealedKey = toBase64Url(new Uint8Array(47)))],
    ['unknown kem', (b) => (b.groups[0].epochs[0].kem = 'rsa')],
    ['small-order writer key', (b) => (b.groups[0].writers[0].signingKey = toBase64Url(new Uint8Array(32)))],
    ['invalid principal', (b) => (b.principal = 'thermostat\u0000hall')],
    ['empty filter', (b) => (b.groups[0].filter = '')],
    ['groups not an array', (b) => (b.groups = { 0: b.groups[0] })],
  ]
  for (const [name, edit] of edits) {
    it(`refuses a bundle with ${name}`, () => {
      const body = bodyOf(bundle)
      edit(body)
      expect(codeOf(() => open(resign(body)))).toBe('ERR_BUNDLE_MALFORMED')
    })
  }

  it('refuses a payload above the size limit before parsing it', () => {
    expect(
      codeOf(() =>
        openKeyBundle(bundle, { keyServerPublicKey: keyServer.signingKey, recipient: device, now: NOW, maxBytes: 100 }),
      ),
    ).toBe('ERR_BUNDLE_MALFORMED')
  })

  it('refuses signed payloads that are not UTF-8 JSON objects', () => {
    for (const payload of [utf8('not json'), new Uint8Array([0xff, 0xfe]), utf8('[]'), utf8('null'), utf8('"x"')]) {
      // A valid signature over the bad payload, so parsing (not verification) must refuse it.
      const document = { payload: toBase64Url(payload), signature: signPayload(payload) }
      expect(codeOf(() => open(document))).toBe('ERR_BUNDLE_MALFORMED')
    }
  })
})

describe('arbitrary input only ever raises SmqttError', () => {
  const allowed = new Set<string>([
    'ERR_BUNDLE_MALFORMED',
    'ERR_BUNDLE_SIGNATURE_INVALID',
    'ERR_BUNDLE_WRONG_RECIPIENT',
    'ERR_BUNDLE_EXPIRED',
    'ERR_BUNDLE_NOT_YET_VALID',
    'ERR_HPKE_OPEN_FAILED',
  ])

  it('arbitrary JSON as the signed document', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), fc.record({ payload: fc.string(), signature: fc.string() })), (value) => {
        expect(allowed.has(codeOf(() => open(value)))).toBe(true)
      }),
      { numRuns: 300 },
    )
  })

  it('arbitrary JSON bodies signed by the key server', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const payload = utf8(JSON.stringify(value))
        const signed = { payload: toBase64Url(payload), signature: signPayload(payload) }
        expect(allowed.has(codeOf(() => open(signed)))).toBe(true)
      }),
      { numRuns: 200 },
    )
  })

  it("a writer's publish rights replaced by arbitrary filter lists open iff they are bounded, valid and in the group", () => {
    const level = fc.constantFrom('home', 'hall', 'thermostat', 'lock', '+', '#', '', 'a#', '$x')
    const anywhere = fc.array(level, { minLength: 1, maxLength: 5 }).map((levels) => levels.join('/'))
    const inGroup = fc.tuple(level, level).map(([room, rest]) => `home/${room}/thermostat/${rest}`)
    const filter = fc.oneof({ arbitrary: inGroup, weight: 9 }, { arbitrary: anywhere, weight: 1 })
    const filters = fc.oneof(
      fc.array(filter, { maxLength: 3 }),
      fc.array(filter, { minLength: MAX_WRITER_FILTERS - 2, maxLength: MAX_WRITER_FILTERS + 2 }),
    )
    let opened = 0
    fc.assert(
      fc.property(filters, filters, (allow, deny) => {
        const body = bodyOf(bundle)
        body.groups[0].writers[0].publish = { allow, deny }
        const expected =
          allow.length > 0 &&
          allow.length + deny.length <= MAX_WRITER_FILTERS &&
          [...allow, ...deny].every((f) => isValidFilter(f) && filterCovers('home/+/thermostat/#', f))
        expect(codeOf(() => open(resign(body)))).toBe(expected ? 'ok' : 'ERR_BUNDLE_MALFORMED')
        if (expected) opened++
      }),
      { numRuns: 300 },
    )
    expect(opened).toBeGreaterThan(0) // both outcomes were exercised (most runs are refused)
  })

  it('a valid body with one value anywhere replaced by arbitrary JSON, re-signed', () => {
    const original = bodyOf(bundle)
    const paths: (string | number)[][] = []
    const walk = (value: unknown, path: (string | number)[]) => {
      paths.push(path)
      if (value && typeof value === 'object')
        for (const [k, v] of Object.entries(value)) walk(v, [...path, Array.isArray(value) ? Number(k) : k])
    }
    walk(original, [])
    fc.assert(
      fc.property(fc.constantFrom(...paths.filter((p) => p.length > 0)), fc.jsonValue(), (path, value) => {
        const body = bodyOf(bundle)
        let parent = body
        for (const step of path.slice(0, -1)) parent = parent[step]
        parent[path.at(-1) as string | number] = value
        const code = codeOf(() => open(resign(body)))
        expect(code === 'ok' || allowed.has(code)).toBe(true)
      }),
      { numRuns: 200 },
    )
  })
})
