// The one suite every KeyStore backend must pass (like Aedes's persistence suite). Each
// backend's test file calls describeKeyStoreConformance with a factory for a fresh, migrated,
// empty store; backend-specific behaviour (files, connections, raw SQL) is tested there.

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type DirectoryChange,
  type Enrollment,
  type EnrollmentTokenRecord,
  type EpochRecord,
  type KeyStore,
  type NewAuditEntry,
  type NewPrincipal,
  StoreConflictError,
} from '../src/store/key-store.js'

export interface KeyStoreConformanceOptions {
  /** Opens, again, the storage behind the store `open()` returned last, as a restarted key server would. */
  readonly reopen?: () => Promise<KeyStore>
  /**
   * Makes the storage behind the store `open()` returned last refuse every audit insert whose
   * subject is `subject` (a trigger: a failure from the database itself, in the middle of a
   * transaction); resolves with the function that removes the fault.
   */
  readonly failAuditInserts?: (subject: string) => Promise<() => Promise<void>>
  /**
   * Creates fresh storage at schema version 5 (before epochs changes named their key group)
   * holding epoch 1 of group 3, written as that version wrote it; resolves with a store opened
   * on it (so upgraded) and a function that moves that epoch to group 4 with raw SQL, as a tool could.
   */
  readonly openAtVersion5?: () => Promise<{ store: KeyStore; moveEpoch: () => Promise<void> }>
}

const T = 1_700_000_000 // an arbitrary "now", in Unix seconds

/** Bytes that include 0x00 and 0xff, different for each seed. */
function bytes(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i === 0 ? 0 : i === 1 ? 0xff : (i * 97 + seed * 31) & 0xff))
}

/** A principal to create, with distinct keys per id length; also used by the backends' own tests. */
export function newPrincipal(id: string, overrides: Partial<NewPrincipal> = {}): NewPrincipal {
  return {
    id,
    roles: ['sensor'],
    username: undefined,
    signingKey: bytes(32, id.length),
    agreementKey: bytes(32, id.length + 1),
    kem: 'x25519',
    createdAt: T,
    certificateSerial: undefined,
    ...overrides,
  }
}

function newToken(seed: number, overrides: Partial<EnrollmentTokenRecord> = {}): EnrollmentTokenRecord {
  return {
    tokenHash: bytes(32, seed),
    principalId: `device-${seed}`,
    roles: ['sensor', 'reader'],
    createdAt: T + seed,
    expiresAt: T + 3600,
    usedAt: undefined,
    ...overrides,
  }
}

/** Enrolls `device-<seed>` with the token newToken(seed), auditing it with its kid. */
function newEnrollment(seed: number, overrides: Partial<Enrollment> = {}): Enrollment {
  return {
    tokenHash: bytes(32, seed),
    now: T + 100,
    certificatePem: undefined,
    principal: newPrincipal(`device-${seed}`, { roles: ['sensor', 'reader'] }),
    audit: (principal) =>
      newAudit('enroll', {
        actor: `principal:${principal.id}`,
        subject: principal.id,
        details: { kid: principal.kid },
      }),
    ...overrides,
  }
}

function newEpoch(group: number, epoch: number, overrides: Partial<EpochRecord> = {}): EpochRecord {
  return {
    group,
    epoch,
    suite: 1,
    sealedKey: bytes(72, group * 1000 + epoch),
    createdAt: T,
    activatesAt: T + 60,
    retiresAt: undefined,
    ...overrides,
  }
}

/** An audit entry to append; also used by the backends' own tests. */
export function newAudit(action: string, overrides: Partial<NewAuditEntry> = {}): NewAuditEntry {
  return { at: T, actor: 'admin', action, subject: 'thermostat-1', outcome: 'ok', details: {}, ...overrides }
}

/** Byte-exact, and a plain Uint8Array (not a driver's Buffer subclass). */
function expectBytes(actual: Uint8Array | undefined, expected: Uint8Array): void {
  expect(actual).toBeDefined()
  expect(Object.getPrototypeOf(actual)).toBe(Uint8Array.prototype)
  expect(Array.from(actual as Uint8Array)).toEqual(Array.from(expected))
}

function countTrue(results: readonly boolean[]): number {
  return results.filter((result) => result).length
}

/**
 * Declares the shared KeyStore suite. `open` must return a fresh, migrated, empty store for
 * each test; the suite closes it. With `reopen`, state is also checked across a restart.
 *
 * @example
 * ```ts
 * describeKeyStoreConformance('sqlite', () => openStore(`sqlite:${freshPath()}`), {
 *   reopen: () => openStore(`sqlite:${lastPath}`),
 * })
 * ```
 */
export function describeKeyStoreConformance(
  name: string,
  open: () => Promise<KeyStore>,
  options: KeyStoreConformanceOptions = {},
): void {
  describe(`KeyStore conformance: ${name}`, () => {
    let store: KeyStore

    beforeEach(async () => {
      store = await open()
    })

    afterEach(async () => {
      await store.close()
    })

    describe('migrate', () => {
      it('can run again on every start without losing data', async () => {
        await store.insertSecret('ca-key', bytes(48, 1))
        await store.migrate()
        await store.migrate()
        expectBytes(await store.getSecret('ca-key'), bytes(48, 1))
      })
    })

    describe('secrets', () => {
      it('returns undefined for an unknown name', async () => {
        expect(await store.getSecret('nothing')).toBeUndefined()
      })

      it('returns the sealed bytes exactly, as a plain Uint8Array', async () => {
        const sealed = bytes(1000, 3)
        expect(await store.insertSecret('ca-key', sealed)).toBe(true)
        expectBytes(await store.getSecret('ca-key'), sealed)
      })

      it('never overwrites a secret: a second insert returns false and changes nothing', async () => {
        await store.insertSecret('admin-token-hash', bytes(32, 1))
        expect(await store.insertSecret('admin-token-hash', bytes(32, 2))).toBe(false)
        expectBytes(await store.getSecret('admin-token-hash'), bytes(32, 1))
      })

      it('lets exactly one of several concurrent inserts of one name win', async () => {
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.insertSecret('signing-key', bytes(32, i))),
        )
        expect(countTrue(results)).toBe(1)
        expectBytes(await store.getSecret('signing-key'), bytes(32, results.indexOf(true)))
      })
    })

    describe('principals', () => {
      it('assigns kids 1, 2, 3 in order and starts every principal active', async () => {
        const created = [
          await store.createPrincipal(newPrincipal('a')),
          await store.createPrincipal(newPrincipal('b')),
          await store.createPrincipal(newPrincipal('c')),
        ]
        expect(created.map((p) => p.kid)).toEqual([1, 2, 3])
        for (const principal of created) {
          expect(principal.status).toBe('active')
          expect(principal.statusChangedAt).toBeUndefined()
        }
      })

      it('returns the record as stored, with the fields it was given', async () => {
        const input = newPrincipal('thermostat-1', {
          roles: ['sensor', 'writer', 'rôle-é'],
          username: 'legacy-user',
          certificateSerial: '0a1b2c3d4e5f',
          createdAt: T + 5,
        })
        const created = await store.createPrincipal(input)
        expect(created).toEqual({ ...input, kid: 1, status: 'active', statusChangedAt: undefined })
        expect(await store.getPrincipal('thermostat-1')).toEqual(created)
        expect(await store.getPrincipalByKid(1)).toEqual(created)
      })

      it('round-trips absent optional fields and empty roles as undefined and []', async () => {
        await store.createPrincipal(newPrincipal('bare', { roles: [] }))
        const stored = await store.getPrincipal('bare')
        expect(stored?.username).toBeUndefined()
        expect(stored?.certificateSerial).toBeUndefined()
        expect(stored?.statusChangedAt).toBeUndefined()
        expect(stored?.roles).toEqual([])
        expect(stored && Object.keys(stored).sort()).toEqual(
          [
            'agreementKey',
            'certificateSerial',
            'createdAt',
            'id',
            'kem',
            'kid',
            'roles',
            'signingKey',
            'status',
            'statusChangedAt',
            'username',
          ].sort(),
        )
      })

      it('keeps keys byte-exact, including a 1216-byte X-Wing key', async () => {
        const signingKey = bytes(32, 7)
        const agreementKey = bytes(1216, 8)
        await store.createPrincipal(newPrincipal('pq', { kem: 'xwing', signingKey, agreementKey }))
        const stored = await store.getPrincipal('pq')
        expect(stored?.kem).toBe('xwing')
        expectBytes(stored?.signingKey, signingKey)
        expectBytes(stored?.agreementKey, agreementKey)
      })

      it('refuses a duplicate id with StoreConflictError, changing nothing and reusing no kid', async () => {
        await store.createPrincipal(newPrincipal('a'))
        await store.createPrincipal(newPrincipal('b'))
        await expect(store.createPrincipal(newPrincipal('a', { roles: ['admin'] }))).rejects.toBeInstanceOf(
          StoreConflictError,
        )
        expect((await store.getPrincipal('a'))?.roles).toEqual(['sensor'])
        const next = await store.createPrincipal(newPrincipal('c'))
        expect(next.kid).toBeGreaterThan(2)
        expect((await store.listPrincipals()).map((p) => p.id)).toEqual(['a', 'b', 'c'])
      })

      it('lists recent revocations newest first, and leaves older ones out of listPrincipals({ revokedSince })', async () => {
        for (const id of ['old', 'recent', 'newest', 'disabled', 'active'])
          await store.createPrincipal(newPrincipal(id))
        await store.setPrincipalStatus('old', 'revoked', T)
        await store.setPrincipalStatus('recent', 'revoked', T + 100)
        await store.setPrincipalStatus('newest', 'revoked', T + 100)
        await store.setPrincipalStatus('disabled', 'disabled', T)
        const ids = (ps: { id: string }[]) => ps.map((p) => p.id)
        expect(ids(await store.listRevokedPrincipals({ since: T + 1, limit: 10 }))).toEqual(['newest', 'recent'])
        expect(ids(await store.listRevokedPrincipals({ since: 0, limit: 2 }))).toEqual(['newest', 'recent'])
        expect(ids(await store.listRevokedPrincipals({ since: 0, limit: 10 }))).toEqual(['newest', 'recent', 'old'])
        expect(ids(await store.listRevokedPrincipals({ since: T + 101, limit: 10 }))).toEqual([])
        expect(ids(await store.listPrincipals({ revokedSince: T + 100 }))).toEqual([
          'recent',
          'newest',
          'disabled',
          'active',
        ])
        expect(ids(await store.listPrincipals({ revokedSince: 0 }))).toEqual(ids(await store.listPrincipals()))
      })

      it('gives concurrent creations distinct kids', async () => {
        const created = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.createPrincipal(newPrincipal(`device-${i}`))),
        )
        const kids = created.map((p) => p.kid).sort((x, y) => x - y)
        expect(new Set(kids).size).toBe(10)
        expect(kids[0]).toBe(1)
      })

      it('lets exactly one of several concurrent creations of one id succeed', async () => {
        const results = await Promise.allSettled(
          Array.from({ length: 5 }, (_, i) => store.createPrincipal(newPrincipal('same', { createdAt: T + i }))),
        )
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
        for (const result of results)
          if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(StoreConflictError)
        expect(await store.listPrincipals()).toHaveLength(1)
      })

      it('returns undefined for an unknown id or kid', async () => {
        await store.createPrincipal(newPrincipal('a'))
        expect(await store.getPrincipal('b')).toBeUndefined()
        expect(await store.getPrincipalByKid(2)).toBeUndefined()
        expect(await store.getPrincipalByKid(0)).toBeUndefined()
      })

      it('lists principals ordered by kid, not by id', async () => {
        for (const id of ['zeta', 'alpha', 'mu']) await store.createPrincipal(newPrincipal(id))
        const listed = await store.listPrincipals()
        expect(listed.map((p) => [p.kid, p.id])).toEqual([
          [1, 'zeta'],
          [2, 'alpha'],
          [3, 'mu'],
        ])
      })

      it('lists nothing when empty', async () => {
        expect(await store.listPrincipals()).toEqual([])
      })

      it('changes status and records when it changed away from active', async () => {
        await store.createPrincipal(newPrincipal('a'))
        expect(await store.setPrincipalStatus('a', 'disabled', T + 10)).toBe(true)
        expect(await store.getPrincipal('a')).toMatchObject({ status: 'disabled', statusChangedAt: T + 10 })
        expect(await store.setPrincipalStatus('a', 'active', T + 20)).toBe(true)
        expect(await store.getPrincipal('a')).toMatchObject({ status: 'active', statusChangedAt: T + 10 })
        expect(await store.setPrincipalStatus('a', 'revoked', T + 30)).toBe(true)
        expect(await store.getPrincipal('a')).toMatchObject({ status: 'revoked', statusChangedAt: T + 30 })
      })

      it('keeps a revoked principal revoked: any later change returns false and changes nothing', async () => {
        await store.createPrincipal(newPrincipal('a'))
        await store.setPrincipalStatus('a', 'revoked', T + 30)
        for (const status of ['active', 'disabled', 'revoked'] as const)
          expect(await store.setPrincipalStatus('a', status, T + 40)).toBe(false)
        expect(await store.getPrincipal('a')).toMatchObject({ status: 'revoked', statusChangedAt: T + 30 })
      })

      it('returns false when changing the status of an unknown principal', async () => {
        expect(await store.setPrincipalStatus('ghost', 'disabled', T)).toBe(false)
        expect(await store.getPrincipal('ghost')).toBeUndefined()
      })

      it('reserves disjoint, rising sequence ranges, above any floor asked for, for active principals only', async () => {
        await store.createPrincipal(newPrincipal('a'))
        await store.createPrincipal(newPrincipal('b'))
        expect(await store.reserveSequence('a', 0, 100)).toBe(0)
        expect(await store.reserveSequence('a', 0, 100)).toBe(100)
        expect(await store.reserveSequence('a', 5_000, 100)).toBe(5_000)
        expect(await store.reserveSequence('a', 10, 100)).toBe(5_100) // a lower floor never goes back
        expect(await store.reserveSequence('b', 0, 100)).toBe(0) // per principal
        const starts = await Promise.all(Array.from({ length: 20 }, () => store.reserveSequence('a', 0, 10)))
        expect(new Set(starts).size).toBe(20)
        expect(Math.min(...(starts as number[]))).toBe(5_200)
        expect(await store.reserveSequence('a', Number.MAX_SAFE_INTEGER - 5, 10)).toBeUndefined()
        expect(await store.reserveSequence('ghost', 0, 10)).toBeUndefined()
        await store.setPrincipalStatus('b', 'revoked', T)
        expect(await store.reserveSequence('b', 0, 10)).toBeUndefined()
      })

      it('changes only the principal named', async () => {
        await store.createPrincipal(newPrincipal('a'))
        await store.createPrincipal(newPrincipal('b'))
        await store.setPrincipalStatus('a', 'revoked', T + 1)
        expect((await store.getPrincipal('b'))?.status).toBe('active')
      })
    })

    describe('enrollment tokens', () => {
      it('consumes a token once, returning it with usedAt = now', async () => {
        const token = newToken(1)
        await store.insertEnrollmentToken(token)
        const consumed = await store.consumeEnrollmentToken(bytes(32, 1), T + 100)
        expect(consumed).toEqual({ ...token, usedAt: T + 100 })
        expectBytes(consumed?.tokenHash, token.tokenHash)
        expect(await store.consumeEnrollmentToken(bytes(32, 1), T + 101)).toBeUndefined()
      })

      it('refuses an expired token (now >= expiresAt) and leaves it unused', async () => {
        await store.insertEnrollmentToken(newToken(1, { expiresAt: T + 3600 }))
        expect(await store.consumeEnrollmentToken(bytes(32, 1), T + 3600)).toBeUndefined()
        expect(await store.consumeEnrollmentToken(bytes(32, 1), T + 7200)).toBeUndefined()
        // Nothing changed: at an earlier time the token is still good.
        expect((await store.consumeEnrollmentToken(bytes(32, 1), T + 3599))?.usedAt).toBe(T + 3599)
      })

      it('returns undefined for an unknown token', async () => {
        await store.insertEnrollmentToken(newToken(1))
        expect(await store.consumeEnrollmentToken(bytes(32, 2), T + 100)).toBeUndefined()
        expect(await store.consumeEnrollmentToken(bytes(31, 1), T + 100)).toBeUndefined()
      })

      it('gives a token to exactly one of 20 concurrent consumers', async () => {
        await store.insertEnrollmentToken(newToken(1))
        const results = await Promise.all(
          Array.from({ length: 20 }, () => store.consumeEnrollmentToken(bytes(32, 1), T + 100)),
        )
        expect(results.filter((r) => r !== undefined)).toHaveLength(1)
      })

      it('lists pending tokens oldest first, without used or expired ones', async () => {
        await store.insertEnrollmentToken(newToken(3))
        await store.insertEnrollmentToken(newToken(1))
        await store.insertEnrollmentToken(newToken(2))
        await store.insertEnrollmentToken(newToken(4, { expiresAt: T + 50 }))
        await store.consumeEnrollmentToken(bytes(32, 2), T + 10)
        const pending = await store.listPendingEnrollmentTokens(T + 60)
        expect(pending.map((t) => t.principalId)).toEqual(['device-1', 'device-3'])
        expect(pending[0]).toEqual(newToken(1))
        expect(await store.listPendingEnrollmentTokens(T + 3600)).toEqual([])
      })

      it('refuses a second token with the same hash with StoreConflictError', async () => {
        await store.insertEnrollmentToken(newToken(1))
        await expect(store.insertEnrollmentToken(newToken(1, { principalId: 'other' }))).rejects.toBeInstanceOf(
          StoreConflictError,
        )
        expect((await store.consumeEnrollmentToken(bytes(32, 1), T + 1))?.principalId).toBe('device-1')
      })
    })

    describe('enrollment', () => {
      /** Nothing of an enrollment of device-<seed> is stored, and its token is still pending. */
      async function expectNothingEnrolled(seed: number): Promise<void> {
        expect(await store.getPrincipal(`device-${seed}`)).toBeUndefined()
        expect((await store.getEnrollmentToken(bytes(32, seed)))?.usedAt).toBeUndefined()
        expect(await store.listPendingEnrollmentTokens(T + 100)).toContainEqual(newToken(seed))
        expect(await store.getTokenEnrollment(bytes(32, seed))).toBeUndefined()
        expect(await store.listAudit({ limit: 100 })).toEqual([])
      }

      it('reads a token by its hash, used or not', async () => {
        await store.insertEnrollmentToken(newToken(1))
        expect(await store.getEnrollmentToken(bytes(32, 1))).toEqual(newToken(1))
        expectBytes((await store.getEnrollmentToken(bytes(32, 1)))?.tokenHash, bytes(32, 1))
        await store.consumeEnrollmentToken(bytes(32, 1), T + 5)
        expect(await store.getEnrollmentToken(bytes(32, 1))).toEqual({ ...newToken(1), usedAt: T + 5 })
        expect(await store.getEnrollmentToken(bytes(32, 2))).toBeUndefined()
      })

      it('redeems the token, creates the principal and appends the audit entry built from it', async () => {
        await store.insertEnrollmentToken(newToken(1))
        await store.createPrincipal(newPrincipal('earlier'))
        const enrolled = await store.enrollPrincipal(newEnrollment(1))
        const principal = await store.getPrincipal('device-1')
        expect(principal).toMatchObject({ id: 'device-1', kid: 2, roles: ['sensor', 'reader'], status: 'active' })
        expect(enrolled?.principal).toEqual(principal)
        expect(enrolled?.audit).toMatchObject({ action: 'enroll', subject: 'device-1', details: { kid: 2 } })
        expect(await store.listAudit({ limit: 10 })).toEqual([enrolled?.audit])
        expect((await store.getEnrollmentToken(bytes(32, 1)))?.usedAt).toBe(T + 100)
        expect(await store.enrollPrincipal(newEnrollment(1, { now: T + 101 }))).toBeUndefined()
      })

      it('changes nothing for a token that is unknown, used, expired or bound to another id', async () => {
        await store.insertEnrollmentToken(newToken(1, { expiresAt: T + 100 }))
        await store.insertEnrollmentToken(newToken(2, { usedAt: T + 1 }))
        await store.insertEnrollmentToken(newToken(3))
        expect(await store.enrollPrincipal(newEnrollment(1))).toBeUndefined() // now = expiresAt
        expect(await store.enrollPrincipal(newEnrollment(2))).toBeUndefined()
        expect(await store.enrollPrincipal(newEnrollment(4))).toBeUndefined()
        const otherId = newEnrollment(3, { principal: newPrincipal('mallory') })
        expect(await store.enrollPrincipal(otherId)).toBeUndefined()
        expect(await store.listPrincipals()).toEqual([])
        expect(await store.listAudit({ limit: 10 })).toEqual([])
        expect(await store.listPendingEnrollmentTokens(T + 99)).toEqual([
          newToken(1, { expiresAt: T + 100 }),
          newToken(3),
        ])
      })

      it('keeps with the token what it enrolled: the principal as it is now and the certificate', async () => {
        const certificatePem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
        await store.insertEnrollmentToken(newToken(1))
        await store.insertEnrollmentToken(newToken(2))
        const enrolled = await store.enrollPrincipal(newEnrollment(1, { certificatePem }))
        await store.enrollPrincipal(newEnrollment(2))
        expect(await store.getTokenEnrollment(bytes(32, 1))).toEqual({
          token: { ...newToken(1), usedAt: T + 100 },
          principal: enrolled?.principal,
          certificatePem,
        })
        expect((await store.getTokenEnrollment(bytes(32, 2)))?.principal.id).toBe('device-2')
        expect((await store.getTokenEnrollment(bytes(32, 2)))?.certificatePem).toBeUndefined()
        await store.setPrincipalStatus('device-1', 'revoked', T + 200)
        expect((await store.getTokenEnrollment(bytes(32, 1)))?.principal).toMatchObject({
          kid: enrolled?.principal.kid,
          status: 'revoked',
        })
      })

      it('knows no enrollment for a token that is unknown, unused, or burnt without enrolling', async () => {
        await store.insertEnrollmentToken(newToken(1))
        await store.insertEnrollmentToken(newToken(2))
        await store.consumeEnrollmentToken(bytes(32, 2), T + 5)
        expect(await store.getTokenEnrollment(bytes(32, 1))).toBeUndefined()
        expect(await store.getTokenEnrollment(bytes(32, 2))).toBeUndefined()
        expect(await store.getTokenEnrollment(bytes(32, 3))).toBeUndefined()
        // Burnt is final: the principal cannot be enrolled with it, so it never enrolls anyone.
        expect(await store.enrollPrincipal(newEnrollment(2))).toBeUndefined()
        expect(await store.getTokenEnrollment(bytes(32, 2))).toBeUndefined()
      })

      it('enrolls exactly one of 20 concurrent redemptions of one token', async () => {
        await store.insertEnrollmentToken(newToken(1))
        const results = await Promise.all(Array.from({ length: 20 }, () => store.enrollPrincipal(newEnrollment(1))))
        expect(results.filter((r) => r !== undefined)).toHaveLength(1)
        expect(await store.listPrincipals()).toHaveLength(1)
        expect(await store.listAudit({ limit: 100 })).toHaveLength(1)
      })

      it('writes nothing when the audit entry cannot be built, then a retry with the same token enrolls', async () => {
        await store.insertEnrollmentToken(newToken(1))
        const failing = newEnrollment(1, {
          audit: () => {
            throw new Error('injected: the audit entry fails after the principal is inserted')
          },
        })
        await expect(store.enrollPrincipal(failing)).rejects.toThrow(/injected/)
        await expectNothingEnrolled(1)
        // The kid taken by the rolled-back insert is free again: no gap.
        expect((await store.enrollPrincipal(newEnrollment(1)))?.principal.kid).toBe(1)
      })

      it.runIf(options.failAuditInserts !== undefined)(
        'writes nothing when the database refuses the audit insert, then a retry with the same token enrolls',
        async () => {
          const failAuditInserts = options.failAuditInserts as NonNullable<typeof options.failAuditInserts>
          await store.insertEnrollmentToken(newToken(1))
          const repair = await failAuditInserts('device-1')
          await expect(store.enrollPrincipal(newEnrollment(1))).rejects.toThrow(/injected audit failure/)
          await repair()
          await expectNothingEnrolled(1)
          const retried = await store.enrollPrincipal(newEnrollment(1))
          expect(retried?.principal).toMatchObject({ id: 'device-1', kid: 1 })
          expect(await store.listAudit({ limit: 10 })).toEqual([retried?.audit])
        },
      )

      it('refuses a principal id that exists with StoreConflictError, leaving the token unused', async () => {
        await store.insertEnrollmentToken(newToken(1))
        await store.createPrincipal(newPrincipal('device-1'))
        await expect(store.enrollPrincipal(newEnrollment(1))).rejects.toBeInstanceOf(StoreConflictError)
        expect((await store.getEnrollmentToken(bytes(32, 1)))?.usedAt).toBeUndefined()
        expect(await store.listAudit({ limit: 10 })).toEqual([])
        expect((await store.createPrincipal(newPrincipal('next'))).kid).toBe(2)
      })
    })

    describe('policy', () => {
      it('is undefined until the first put', async () => {
        expect(await store.getPolicy()).toBeUndefined()
      })

      it('stores the first document as version 1 when expecting 0, verbatim', async () => {
        const document = '{ "rules" : [ ],\n  "note": "é \\u0000 🔑" }'
        expect(await store.putPolicy(document, 0, T)).toBe(true)
        expect(await store.getPolicy()).toEqual({ version: 1, document, updatedAt: T })
      })

      it('increments the version on each change', async () => {
        await store.putPolicy('{"v":1}', 0, T)
        expect(await store.putPolicy('{"v":2}', 1, T + 1)).toBe(true)
        expect(await store.putPolicy('{"v":3}', 2, T + 2)).toBe(true)
        expect(await store.getPolicy()).toEqual({ version: 3, document: '{"v":3}', updatedAt: T + 2 })
      })

      it('returns false and changes nothing for a stale or future expectedVersion', async () => {
        await store.putPolicy('{"v":1}', 0, T)
        await store.putPolicy('{"v":2}', 1, T + 1)
        for (const expected of [0, 1, 3, 99])
          expect(await store.putPolicy('{"stale":true}', expected, T + 9)).toBe(false)
        expect(await store.getPolicy()).toEqual({ version: 2, document: '{"v":2}', updatedAt: T + 1 })
      })

      it('returns false for expectedVersion > 0 when there is no policy yet', async () => {
        expect(await store.putPolicy('{}', 1, T)).toBe(false)
        expect(await store.getPolicy()).toBeUndefined()
      })

      for (const expectedVersion of [0, 1]) {
        it(`lets exactly one of 10 concurrent puts expecting version ${expectedVersion} win`, async () => {
          if (expectedVersion === 1) await store.putPolicy('{"v":1}', 0, T)
          const results = await Promise.all(
            Array.from({ length: 10 }, (_, i) => store.putPolicy(`{"writer":${i}}`, expectedVersion, T + 1)),
          )
          expect(countTrue(results)).toBe(1)
          expect(await store.getPolicy()).toEqual({
            version: expectedVersion + 1,
            document: `{"writer":${results.indexOf(true)}}`,
            updatedAt: T + 1,
          })
        })
      }
    })

    describe('epochs', () => {
      it('inserts an epoch and lists it as stored', async () => {
        const epoch = newEpoch(7, 1)
        expect(await store.insertEpoch(epoch)).toBe(true)
        const listed = await store.listEpochs()
        expect(listed).toEqual([epoch])
        expectBytes(listed[0]?.sealedKey, epoch.sealedKey)
      })

      it('returns false for a (group, epoch) that exists, keeping the first key', async () => {
        await store.insertEpoch(newEpoch(7, 1))
        expect(await store.insertEpoch(newEpoch(7, 1, { sealedKey: bytes(72, 999), suite: 2 }))).toBe(false)
        expect(await store.listEpochs(7)).toEqual([newEpoch(7, 1)])
      })

      it('lets exactly one of 10 concurrent inserts of one (group, epoch) win', async () => {
        const candidates = Array.from({ length: 10 }, (_, i) => newEpoch(3, 5, { sealedKey: bytes(72, 500 + i) }))
        const results = await Promise.all(candidates.map((epoch) => store.insertEpoch(epoch)))
        expect(countTrue(results)).toBe(1)
        expect(await store.listEpochs(3)).toEqual([candidates[results.indexOf(true)]])
      })

      it('orders by group then epoch, numerically, and filters by group', async () => {
        for (const [group, epoch] of [
          [10, 1],
          [2, 3],
          [2, 1],
          [1, 2],
          [2, 2],
          [1, 1],
        ] as const)
          await store.insertEpoch(newEpoch(group, epoch))
        const order = (await store.listEpochs()).map((e) => [e.group, e.epoch])
        expect(order).toEqual([
          [1, 1],
          [1, 2],
          [2, 1],
          [2, 2],
          [2, 3],
          [10, 1],
        ])
        expect((await store.listEpochs(2)).map((e) => e.epoch)).toEqual([1, 2, 3])
        expect(await store.listEpochs(99)).toEqual([])
      })

      it('holds 32-bit group and epoch numbers and a set retiresAt', async () => {
        const epoch = newEpoch(0xffff_ffff, 0xffff_fffe, { retiresAt: T + 86_400, suite: 2 })
        await store.insertEpoch(epoch)
        expect(await store.listEpochs(0xffff_ffff)).toEqual([epoch])
      })

      it('sets the end of the grace period, or returns false for an unknown epoch', async () => {
        await store.insertEpoch(newEpoch(1, 1))
        await store.insertEpoch(newEpoch(1, 2))
        expect(await store.setEpochRetirement(1, 1, T + 500)).toBe(true)
        expect(await store.setEpochRetirement(1, 3, T + 500)).toBe(false)
        expect(await store.setEpochRetirement(2, 1, T + 500)).toBe(false)
        expect((await store.listEpochs(1)).map((e) => e.retiresAt)).toEqual([T + 500, undefined])
      })

      it('deletes only epochs retired before now, never current ones', async () => {
        await store.insertEpoch(newEpoch(1, 1, { retiresAt: T + 100 }))
        await store.insertEpoch(newEpoch(1, 2, { retiresAt: T + 200 }))
        await store.insertEpoch(newEpoch(1, 3))
        await store.insertEpoch(newEpoch(2, 1))
        expect(await store.deleteRetiredEpochs(T + 100)).toBe(0) // retiresAt == now: still in grace
        expect(await store.deleteRetiredEpochs(T + 200)).toBe(1)
        expect((await store.listEpochs()).map((e) => [e.group, e.epoch])).toEqual([
          [1, 2],
          [1, 3],
          [2, 1],
        ])
        expect(await store.deleteRetiredEpochs(Number.MAX_SAFE_INTEGER)).toBe(1)
        expect((await store.listEpochs()).map((e) => [e.group, e.epoch])).toEqual([
          [1, 3],
          [2, 1],
        ])
        expect(await store.deleteRetiredEpochs(Number.MAX_SAFE_INTEGER)).toBe(0)
      })

      it("keeps each group's newest epoch even retired, so a re-created group never reuses a number", async () => {
        await store.insertEpoch(newEpoch(5, 1, { retiresAt: T + 100 }))
        await store.insertEpoch(newEpoch(5, 2, { retiresAt: T + 100 })) // the group was removed
        expect(await store.deleteRetiredEpochs(T + 200)).toBe(1)
        expect((await store.listEpochs(5)).map((e) => [e.epoch, e.retiresAt])).toEqual([[2, T + 100]])
      })
    })

    describe('revocation list', () => {
      it('is undefined until the first put, then version 1, stored verbatim', async () => {
        expect(await store.getRevocationList()).toBeUndefined()
        const document = '{"version":1, "entries":[{"principal":"a"}]}'
        expect(await store.putRevocationList(1, document, 0, T)).toBe(true)
        expect(await store.getRevocationList()).toEqual({ version: 1, document, updatedAt: T })
      })

      it('moves to the next version only from the expected one', async () => {
        await store.putRevocationList(1, '{"v":1}', 0, T)
        expect(await store.putRevocationList(2, '{"v":2}', 1, T + 1)).toBe(true)
        expect(await store.putRevocationList(2, '{"v":2b}', 1, T + 2)).toBe(false)
        expect(await store.putRevocationList(1, '{"v":1b}', 0, T + 2)).toBe(false)
        expect(await store.putRevocationList(5, '{"v":5}', 4, T + 2)).toBe(false)
        expect(await store.getRevocationList()).toEqual({ version: 2, document: '{"v":2}', updatedAt: T + 1 })
      })

      it('refuses a version other than expectedVersion + 1 with RangeError', async () => {
        await expect(store.putRevocationList(3, '{}', 0, T)).rejects.toBeInstanceOf(RangeError)
        expect(await store.getRevocationList()).toBeUndefined()
      })

      for (const expectedVersion of [0, 1]) {
        it(`lets exactly one of 10 concurrent puts expecting version ${expectedVersion} win`, async () => {
          if (expectedVersion === 1) await store.putRevocationList(1, '{"v":1}', 0, T)
          const results = await Promise.all(
            Array.from({ length: 10 }, (_, i) =>
              store.putRevocationList(expectedVersion + 1, `{"writer":${i}}`, expectedVersion, T + 1),
            ),
          )
          expect(countTrue(results)).toBe(1)
          expect((await store.getRevocationList())?.document).toBe(`{"writer":${results.indexOf(true)}}`)
        })
      }
    })

    describe('directory changes', () => {
      /** Every change recorded so far, checking that the log is complete from the start. */
      async function allChanges(): Promise<DirectoryChange[]> {
        const { changes, latest, complete } = await store.listDirectoryChanges(0, 1000)
        expect(complete).toBe(true)
        expect(changes.map((change) => change.seq)).toEqual(Array.from({ length: latest }, (_, i) => i + 1))
        return [...changes]
      }

      function kinds(changes: readonly DirectoryChange[]): string[] {
        return changes.map((change) => (change.kind === 'principal' ? `principal:${change.kid}` : change.kind))
      }

      it('is empty, at 0 and complete, until something changes', async () => {
        expect(await store.listDirectoryChanges(0, 10)).toEqual({ changes: [], latest: 0, complete: true })
      })

      it('logs a created or enrolled principal with its kid', async () => {
        const created = await store.createPrincipal(newPrincipal('a'))
        await store.insertEnrollmentToken(newToken(1))
        const enrolled = await store.enrollPrincipal(newEnrollment(1))
        expect(await allChanges()).toEqual([
          { seq: 1, kind: 'principal', kid: created.kid },
          { seq: 2, kind: 'principal', kid: enrolled?.principal.kid },
        ])
      })

      it('logs a status change but not a sequence reservation', async () => {
        await store.createPrincipal(newPrincipal('a'))
        const b = await store.createPrincipal(newPrincipal('b'))
        expect(await store.reserveSequence('b', 0, 100)).toBe(0)
        expect(await store.setPrincipalStatus('b', 'revoked', T + 1)).toBe(true)
        expect(await store.reserveSequence('a', 0, 100)).toBe(0)
        expect(kinds(await allChanges())).toEqual(['principal:1', 'principal:2', `principal:${b.kid}`])
      })

      it('logs each epoch inserted, retired or deleted with its group, and nothing for a refused insert or unknown epoch', async () => {
        await store.insertEpoch(newEpoch(1, 1))
        await store.insertEpoch(newEpoch(1, 2))
        await store.insertEpoch(newEpoch(7, 1))
        expect(await store.insertEpoch(newEpoch(1, 2))).toBe(false)
        expect(await store.setEpochRetirement(1, 1, T + 10)).toBe(true)
        expect(await store.setEpochRetirement(9, 9, T + 10)).toBe(false)
        expect(await store.deleteRetiredEpochs(T + 20)).toBe(1)
        expect(await store.deleteRetiredEpochs(T + 20)).toBe(0)
        expect(await allChanges()).toEqual([
          { seq: 1, kind: 'epochs', group: 1 },
          { seq: 2, kind: 'epochs', group: 1 },
          { seq: 3, kind: 'epochs', group: 7 },
          { seq: 4, kind: 'epochs', group: 1 },
          { seq: 5, kind: 'epochs', group: 1 },
        ])
      })

      it('logs each stored policy and revocation list, and nothing for a refused put', async () => {
        expect(await store.putPolicy('{"v":1}', 0, T)).toBe(true)
        expect(await store.putPolicy('{"v":2}', 0, T)).toBe(false)
        expect(await store.putPolicy('{"v":2}', 1, T)).toBe(true)
        expect(await store.putRevocationList(1, '{}', 0, T)).toBe(true)
        expect(await store.putRevocationList(1, '{}', 0, T)).toBe(false)
        expect(kinds(await allChanges())).toEqual(['policy', 'policy', 'revocations'])
      })

      it('logs nothing for a failed creation or enrollment, and numbers the next change without a gap', async () => {
        await store.createPrincipal(newPrincipal('device-1'))
        await expect(store.createPrincipal(newPrincipal('device-1'))).rejects.toBeInstanceOf(StoreConflictError)
        await store.insertEnrollmentToken(newToken(1))
        await expect(store.enrollPrincipal(newEnrollment(1))).rejects.toBeInstanceOf(StoreConflictError)
        expect(await store.enrollPrincipal(newEnrollment(2))).toBeUndefined() // no such token
        await store.insertEnrollmentToken(newToken(3))
        const failing = newEnrollment(3, {
          audit: () => {
            throw new Error('injected: the audit entry fails after the principal is inserted')
          },
        })
        await expect(store.enrollPrincipal(failing)).rejects.toThrow(/injected/)
        expect(kinds(await allChanges())).toEqual(['principal:1'])
        const next = await store.createPrincipal(newPrincipal('next'))
        expect(await allChanges()).toEqual([
          { seq: 1, kind: 'principal', kid: 1 },
          { seq: 2, kind: 'principal', kid: next.kid },
        ])
      })

      it('numbers concurrent changes 1..n without gaps, in the order they commit', async () => {
        const created = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.createPrincipal(newPrincipal(`device-${i}`))),
        )
        const changes = await allChanges()
        expect(changes).toHaveLength(10)
        // A kid is taken in the transaction that logs it, and kids are handed out in commit order.
        expect(kinds(changes)).toEqual(
          created
            .map((p) => p.kid)
            .sort((x, y) => x - y)
            .map((kid) => `principal:${kid}`),
        )
      })

      it('pages with afterSeq and limit, staying complete, and reports latest on every page', async () => {
        for (let epoch = 1; epoch <= 5; epoch++) await store.insertEpoch(newEpoch(1, epoch))
        const page = async (afterSeq: number) => {
          const { changes, latest, complete } = await store.listDirectoryChanges(afterSeq, 2)
          return { seqs: changes.map((change) => change.seq), latest, complete }
        }
        expect(await page(0)).toEqual({ seqs: [1, 2], latest: 5, complete: true })
        expect(await page(2)).toEqual({ seqs: [3, 4], latest: 5, complete: true })
        expect(await page(4)).toEqual({ seqs: [5], latest: 5, complete: true })
        expect(await page(5)).toEqual({ seqs: [], latest: 5, complete: true })
      })

      it('answers incomplete from before the oldest change kept, complete from after it', async () => {
        for (let epoch = 1; epoch <= 5; epoch++) await store.insertEpoch(newEpoch(1, epoch))
        expect(await store.pruneDirectoryChanges(2)).toBe(3)
        expect(await store.pruneDirectoryChanges(2)).toBe(0)
        const seqs = (changes: readonly DirectoryChange[]) => changes.map((change) => change.seq)
        const fromOld = await store.listDirectoryChanges(2, 10)
        expect({ ...fromOld, changes: seqs(fromOld.changes) }).toEqual({ changes: [4, 5], latest: 5, complete: false })
        expect((await store.listDirectoryChanges(0, 1)).complete).toBe(false)
        const fromRecent = await store.listDirectoryChanges(3, 10)
        expect({ ...fromRecent, changes: seqs(fromRecent.changes) }).toEqual({
          changes: [4, 5],
          latest: 5,
          complete: true,
        })

        // Pruning everything keeps the numbering: the next change is 6.
        expect(await store.pruneDirectoryChanges(0)).toBe(2)
        expect(await store.listDirectoryChanges(5, 10)).toEqual({ changes: [], latest: 5, complete: true })
        expect((await store.listDirectoryChanges(4, 10)).complete).toBe(false)
        await store.putPolicy('{}', 0, T)
        expect(await store.listDirectoryChanges(5, 10)).toEqual({
          changes: [{ seq: 6, kind: 'policy' }],
          latest: 6,
          complete: true,
        })
      })

      it('answers incomplete for an afterSeq past latest (a store restored from an older backup)', async () => {
        await store.putPolicy('{}', 0, T)
        expect(await store.listDirectoryChanges(5, 10)).toEqual({ changes: [], latest: 1, complete: false })
      })

      it.runIf(options.reopen !== undefined)('keeps the log and its numbering across a restart', async () => {
        const reopen = options.reopen as () => Promise<KeyStore>
        await store.createPrincipal(newPrincipal('a'))
        await store.putRevocationList(1, '{}', 0, T)
        await store.close()
        store = await reopen()
        await store.insertEpoch(newEpoch(1, 1))
        expect(await allChanges()).toEqual([
          { seq: 1, kind: 'principal', kid: 1 },
          { seq: 2, kind: 'revocations' },
          { seq: 3, kind: 'epochs', group: 1 },
        ])
      })

      it.runIf(options.openAtVersion5 !== undefined)(
        'upgrades storage from schema version 5 in place: its epochs changes name no group, later ones do',
        async () => {
          const openAtVersion5 = options.openAtVersion5 as NonNullable<KeyStoreConformanceOptions['openAtVersion5']>
          const { store: upgraded, moveEpoch } = await openAtVersion5()
          try {
            await upgraded.insertEpoch(newEpoch(3, 2))
            await moveEpoch() // a move changes both groups
            await upgraded.createPrincipal(newPrincipal('a'))
            expect(await upgraded.listDirectoryChanges(0, 10)).toEqual({
              changes: [
                { seq: 1, kind: 'epochs' },
                { seq: 2, kind: 'epochs', group: 3 },
                { seq: 3, kind: 'epochs', group: 4 },
                { seq: 4, kind: 'epochs', group: 3 },
                { seq: 5, kind: 'principal', kid: 1 },
              ],
              latest: 5,
              complete: true,
            })
          } finally {
            await upgraded.close()
          }
        },
      )

      it('refuses fractional or negative arguments', async () => {
        await expect(store.listDirectoryChanges(-1, 10)).rejects.toBeInstanceOf(RangeError)
        await expect(store.listDirectoryChanges(0, 1.5)).rejects.toBeInstanceOf(TypeError)
        await expect(store.pruneDirectoryChanges(-1)).rejects.toBeInstanceOf(RangeError)
      })
    })

    describe('audit log', () => {
      it('returns the appended entry with an id, and ids increase', async () => {
        const first = await store.appendAudit(newAudit('enroll'))
        const second = await store.appendAudit(newAudit('rotate', { subject: 'group:7', outcome: 'refused' }))
        expect(first).toEqual({ ...newAudit('enroll'), id: first.id })
        expect(second).toEqual({ ...newAudit('rotate', { subject: 'group:7', outcome: 'refused' }), id: second.id })
        expect(first.id).toBeGreaterThan(0)
        expect(second.id).toBeGreaterThan(first.id)
      })

      it('round-trips details, including nested values, Unicode and NUL', async () => {
        const details = {
          reason: 'bad\u0000name',
          remoteAddress: '2001:db8::1',
          epochs: [1, 2, 3],
          nested: { ok: false, none: null, text: 'é中🔑' },
        }
        const entry = await store.appendAudit(
          newAudit('auth.failed', { actor: 'anonymous', outcome: 'error', details }),
        )
        expect(entry.details).toEqual(details)
        expect(await store.listAudit({ limit: 10 })).toEqual([entry])
      })

      it('lists oldest first, after afterId, at most limit', async () => {
        const entries = []
        for (let i = 0; i < 5; i++) entries.push(await store.appendAudit(newAudit(`action-${i}`, { at: T + i })))
        expect(await store.listAudit({ limit: 100 })).toEqual(entries)
        expect(await store.listAudit({ limit: 2 })).toEqual(entries.slice(0, 2))
        expect(await store.listAudit({ afterId: entries[1]?.id as number, limit: 2 })).toEqual(entries.slice(2, 4))
        expect(await store.listAudit({ afterId: entries[4]?.id as number, limit: 10 })).toEqual([])
        expect(await store.listAudit({ afterId: 0, limit: 0 })).toEqual([])
      })

      it('gives concurrent appends distinct ids and loses none', async () => {
        const appended = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.appendAudit(newAudit(`concurrent-${i}`))),
        )
        expect(new Set(appended.map((e) => e.id)).size).toBe(20)
        const listed = await store.listAudit({ limit: 100 })
        expect(listed).toEqual([...appended].sort((a, b) => a.id - b.id))
      })
    })

    describe('argument checks', () => {
      it('refuses fractional or negative numbers the same way on every backend', async () => {
        await expect(store.insertEpoch(newEpoch(1, 1, { createdAt: T + 0.5 }))).rejects.toBeInstanceOf(TypeError)
        await expect(store.insertEpoch(newEpoch(-1, 1))).rejects.toBeInstanceOf(RangeError)
        await expect(store.putPolicy('{}', -1, T)).rejects.toBeInstanceOf(RangeError)
        await expect(store.listAudit({ limit: 1.5 })).rejects.toBeInstanceOf(TypeError)
        expect(await store.listEpochs()).toEqual([])
      })
    })

    describe('restart', () => {
      it.runIf(options.reopen !== undefined)('keeps all state when the store is closed and reopened', async () => {
        const reopen = options.reopen as () => Promise<KeyStore>
        await store.insertSecret('ca-key', bytes(64, 1))
        const a = await store.createPrincipal(newPrincipal('a', { username: 'u', certificateSerial: '01' }))
        const b = await store.createPrincipal(newPrincipal('b', { kem: 'xwing', agreementKey: bytes(1216, 2) }))
        await store.setPrincipalStatus('b', 'revoked', T + 5)
        await store.insertEnrollmentToken(newToken(1))
        await store.insertEnrollmentToken(newToken(2))
        await store.consumeEnrollmentToken(bytes(32, 2), T + 10)
        await store.insertEnrollmentToken(newToken(3))
        const enrolled = await store.enrollPrincipal(newEnrollment(3, { certificatePem: 'PEM' }))
        await store.putPolicy('{"v":1}', 0, T)
        await store.insertEpoch(newEpoch(1, 1, { retiresAt: T + 100 }))
        await store.insertEpoch(newEpoch(1, 2))
        await store.putRevocationList(1, '{"revoked":["b"]}', 0, T + 5)
        const audit = [
          enrolled?.audit,
          await store.appendAudit(newAudit('enroll')),
          await store.appendAudit(newAudit('revoke')),
        ]

        await store.close()
        store = await reopen()

        expectBytes(await store.getSecret('ca-key'), bytes(64, 1))
        expect(await store.listPrincipals()).toEqual([
          a,
          { ...b, status: 'revoked', statusChangedAt: T + 5 },
          enrolled?.principal,
        ])
        expect(await store.getTokenEnrollment(bytes(32, 3))).toEqual({
          token: { ...newToken(3), usedAt: T + 100 },
          principal: enrolled?.principal,
          certificatePem: 'PEM',
        })
        expect(await store.listPendingEnrollmentTokens(T + 20)).toEqual([newToken(1)])
        expect(await store.consumeEnrollmentToken(bytes(32, 2), T + 20)).toBeUndefined()
        expect(await store.getPolicy()).toEqual({ version: 1, document: '{"v":1}', updatedAt: T })
        expect(await store.listEpochs()).toEqual([newEpoch(1, 1, { retiresAt: T + 100 }), newEpoch(1, 2)])
        expect(await store.getRevocationList()).toEqual({ version: 1, document: '{"revoked":["b"]}', updatedAt: T + 5 })
        expect(await store.listAudit({ limit: 10 })).toEqual(audit)

        // Counters carry on from where they were.
        expect((await store.createPrincipal(newPrincipal('c'))).kid).toBe(4)
        expect((await store.appendAudit(newAudit('enroll'))).id).toBeGreaterThan(audit[2]?.id as number)
      })
    })
  })
}
