// Reads of the enrolled principals: by id, the active ones, the holders of some groups' keys,
// and the envelope sequence numbers each one reserves.
import { SmqttError } from '@smqtt/core'
import type { KeyStore, PrincipalRecord } from '../store/key-store.js'
import type { KeyServerContext } from './context.js'

/** Most holders principalsHoldingKeys reads one by one; past it, the whole fleet in one read. */
const FEW_HOLDERS = 1_000

export async function getPrincipal(store: KeyStore, id: string): Promise<PrincipalRecord> {
  const principal = await store.getPrincipal(id)
  if (!principal) throw new SmqttError('ERR_NOT_FOUND', `no principal ${id}`)
  return principal
}

export async function activePrincipals(store: KeyStore): Promise<PrincipalRecord[]> {
  return (await store.listPrincipals()).filter((p) => p.status === 'active')
}

/**
 * Active principals whose key groups include any of `groups` (all active ones when omitted).
 * With `groups`, those that only read them come first: a writer seals under a new epoch as
 * soon as it holds it, so after a re-key the readers should hold it before the writers do.
 * Found through the directory's index of holders, so a home's re-key costs about the same at
 * 100,000 principals as at 100 (issue 14); the directory follows the store's log first (one
 * small query), so what another process changed is seen as a fresh read of the fleet would see it.
 */
export async function principalsHoldingKeys(
  context: KeyServerContext,
  groups?: readonly number[],
): Promise<PrincipalRecord[]> {
  if (!groups) return activePrincipals(context.store)
  const directory = await context.freshDirectory()
  const kids = directory.holders(groups)
  // A few holders (a home) are read one by one; for many (a fleet-wide group) one read of the
  // fleet is cheaper. Either way the store's current record: one revoked since is left out.
  const wanted = new Set(kids)
  const records =
    kids.length > FEW_HOLDERS
      ? (await context.store.listPrincipals()).filter((p) => wanted.has(p.kid))
      : await Promise.all(kids.map((kid) => context.store.getPrincipalByKid(kid)))
  const holders = records.filter((p): p is PrincipalRecord => p?.status === 'active')
  const writes = (p: PrincipalRecord) => groups.some((g) => directory.writer(g, p.kid) !== undefined)
  return [...holders.filter((p) => !writes(p)), ...holders.filter(writes)]
}

/**
 * Reserves the next `size` envelope sequence numbers for a run of `principal`: above `atLeast`
 * (the highest the device remembers being given) and above every range handed out before,
 * whatever the device's storage says. A second copy of the device, or one restored from an old
 * backup, therefore never reuses a nonce.
 */
export async function reserveSequence(
  store: KeyStore,
  principal: PrincipalRecord,
  atLeast: number,
  size: number,
): Promise<{ start: number; end: number }> {
  if (principal.status !== 'active') throw new SmqttError('ERR_PRINCIPAL_REVOKED')
  const start = await store.reserveSequence(principal.id, atLeast, size)
  if (start === undefined)
    throw new SmqttError('ERR_SEQUENCE_EXHAUSTED', `${principal.id} has no sequence numbers left (or is not active)`)
  return { start, end: start + size }
}
