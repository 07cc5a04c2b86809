// Disabling and revoking principals: the signed revocation list (bounded in size and age), the
// CA's CRL, and the re-key of every group a departed principal held.
import { createRevocationList, RevocationList, type SignedDocument, SmqttError } from '@smqtt/core'
import type { PrincipalRecord } from '../store/key-store.js'
import { CRL_REISSUE_MS, CRL_RETENTION_SECONDS, issueCertificateRevocationList } from './certificate-revocation-list.js'
import type { KeyServerContext } from './context.js'
import { getPrincipal } from './principals.js'
import type { Rotation } from './rotation.js'
import type { KeyServerSettings } from './settings.js'

/**
 * Revocations this much older than a list's watermark are still listed: a bundle a process built
 * from a directory up to DIRECTORY_TTL_SECONDS old, or stamped by a process whose clock is a
 * little ahead of the revoking one's, may list a writer revoked slightly before its issuedAt.
 */
export const REVOCATION_SLACK_SECONDS = 60
/** Most JSON bytes of entries in one revocation list: ~680 KiB signed and base64url, under the clients' 1 MiB. */
const MAX_LISTED_REVOCATION_BYTES = 512 * 1024
/** Enough rows to fill MAX_LISTED_REVOCATION_BYTES with the shortest entries (41 bytes), and one more. */
const MAX_LISTED_REVOCATIONS_FETCHED = Math.ceil(MAX_LISTED_REVOCATION_BYTES / 41) + 1

/** The retention in force: never shorter than a bundle's life, so no valid bundle is cut short by it. */
export function revocationRetention(settings: KeyServerSettings): number {
  return Math.max(settings.revocationRetentionSeconds, settings.bundleTtlSeconds + REVOCATION_SLACK_SECONDS)
}

export class Revocation {
  readonly #ctx: KeyServerContext
  readonly #rotation: Rotation
  // The CA's last CRL (DER) and when it was issued (ms); dropped on every change.
  #crl: Promise<{ readonly der: Uint8Array; readonly issuedAt: number }> | undefined

  constructor(context: KeyServerContext, rotation: Rotation) {
    this.#ctx = context
    this.#rotation = rotation
    context.onForget(() => {
      this.#crl = undefined
    })
  }

  /** Disables a principal (reversible by an operator in the store; not published as revoked). */
  async disablePrincipal(id: string, actor: string): Promise<void> {
    const principal = await getPrincipal(this.#ctx.store, id)
    if (principal.status === 'revoked') throw new SmqttError('ERR_CONFLICT', `${id} is revoked`)
    await this.#ctx.store.setPrincipalStatus(id, 'disabled', this.#ctx.now())
    this.#ctx.forgetDerivedState()
    await this.#ctx.audit.record({ actor, action: 'principal.disable', subject: id, outcome: 'ok', details: {} })
    await this.#rekeyKeyedGroups(principal, 'principal disabled')
  }

  /**
   * Revokes a principal: records it, publishes a new signed revocation list, re-keys every
   * group whose key it held, and tells listeners (brokers close its sessions). Safe to repeat:
   * revoking a revoked principal does it all again (a new list only if the last one misses it),
   * so a revocation the store cut short after the status was written is finished by a retry.
   * Repeating re-keys its groups once more, which costs a refetch and never weakens anything;
   * telling whether the first run got that far would need sub-second ordering the store lacks.
   */
  async revokePrincipal(id: string, actor: string): Promise<SignedDocument> {
    const principal = await getPrincipal(this.#ctx.store, id)
    const repeated = principal.status === 'revoked'
    if (!repeated) await this.#ctx.store.setPrincipalStatus(id, 'revoked', this.#ctx.now())
    this.#ctx.forgetDerivedState()
    const published = repeated ? await this.revocationList() : undefined
    const list = published && this.#names(published, principal.kid) ? published : await this.#publishRevocationList()
    await this.#ctx.audit.record({
      actor,
      action: 'revoke',
      subject: id,
      outcome: 'ok',
      details: { kid: principal.kid, ...(repeated ? { repeated } : {}) },
    })
    this.#ctx.emit({ kind: 'revoked', principal: id, kid: principal.kid })
    await this.#rekeyKeyedGroups(principal, 'principal revoked')
    return list
  }

  /** Whether a revocation list this key server signed names `kid`. */
  #names(published: SignedDocument, kid: number): boolean {
    return this.#opened(published).isRevokedKid(kid)
  }

  #opened(published: unknown): RevocationList {
    const list = new RevocationList()
    list.accept(published, { keyServerPublicKey: this.#ctx.identity.signingKey })
    return list
  }

  /**
   * What the next revocation list carries: its watermark and every revocation made at or after
   * the watermark minus REVOCATION_SLACK_SECONDS. The watermark is now minus the retention, never
   * below the last list's; past MAX_LISTED_REVOCATION_BYTES of entries it moves up past the
   * newest entry left out (clients then refetch bundles issued before it), so the list stays
   * under the clients' 1 MiB limit whatever happens within one retention window.
   */
  async #listedRevocations(
    now: number,
    floor: number,
  ): Promise<{ entries: { principal: string; kid: number; revokedAt: number }[]; prunedBefore: number }> {
    let prunedBefore = Math.max(floor, now - revocationRetention(this.#ctx.settings), 0)
    const newestFirst = await this.#ctx.store.listRevokedPrincipals({
      since: Math.max(0, prunedBefore - REVOCATION_SLACK_SECONDS),
      limit: MAX_LISTED_REVOCATIONS_FETCHED,
    })
    const entries: { principal: string; kid: number; revokedAt: number }[] = []
    let bytes = 0
    for (const p of newestFirst) {
      const entry = { principal: p.id, kid: p.kid, revokedAt: p.statusChangedAt ?? now }
      bytes += Buffer.byteLength(JSON.stringify(entry)) + 1
      if (bytes > MAX_LISTED_REVOCATION_BYTES) {
        // Everything revoked after this one's second is listed; the slack keeps the rule
        // "listed from prunedBefore - slack" true for the new watermark.
        prunedBefore = Math.max(prunedBefore, entry.revokedAt + 1 + REVOCATION_SLACK_SECONDS)
        const cut = entry.revokedAt
        return { entries: sortByKid(entries.filter((e) => e.revokedAt > cut)), prunedBefore }
      }
      entries.push(entry)
    }
    return { entries: sortByKid(entries), prunedBefore }
  }

  /**
   * The deployment CA's CRL (DER), or undefined when this key server has no CA. Re-issued after
   * every change made through this process and at least every CRL_REISSUE_MS (concurrent callers
   * share one issuance); nextUpdate is 7 days after issue.
   */
  async certificateRevocationList(): Promise<Uint8Array | undefined> {
    const ca = this.#ctx.ca
    if (!ca) return undefined
    const cached = this.#crl
    if (cached) {
      const crl = await cached.catch(() => undefined)
      if (crl && Date.now() - crl.issuedAt < CRL_REISSUE_MS) return crl.der
      if (this.#crl !== cached) return this.certificateRevocationList() // a change meanwhile
    }
    const issuing = (async () => {
      const issuedAt = Date.now()
      const principals = await this.#ctx.store.listPrincipals({ revokedSince: this.#ctx.now() - CRL_RETENTION_SECONDS })
      return { der: await issueCertificateRevocationList(ca, principals), issuedAt }
    })()
    this.#crl = issuing
    try {
      return (await issuing).der
    } catch (err) {
      if (this.#crl === issuing) this.#crl = undefined
      throw err
    }
  }

  /** The latest signed revocation list, if any principal was ever revoked. */
  async revocationList(): Promise<SignedDocument | undefined> {
    const stored = await this.#ctx.store.getRevocationList()
    return stored ? (JSON.parse(stored.document) as SignedDocument) : undefined
  }

  async #publishRevocationList(): Promise<SignedDocument> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const current = await this.#ctx.store.getRevocationList()
      const version = (current?.version ?? 0) + 1
      const now = this.#ctx.now()
      const floor = current ? this.#opened(JSON.parse(current.document)).prunedBefore : 0
      const { entries, prunedBefore } = await this.#listedRevocations(now, floor)
      const document = createRevocationList({
        version,
        entries,
        prunedBefore,
        issuedAt: now,
        keyServer: this.#ctx.identity,
      })
      if (
        await this.#ctx.store.putRevocationList(
          version,
          JSON.stringify(document),
          current?.version ?? 0,
          this.#ctx.now(),
        )
      )
        return document
    }
    throw new SmqttError('ERR_CONFLICT', 'could not publish the revocation list: too many concurrent changes')
  }

  /** Every group whose key it held, written-only ones too: a writer's epoch key opens the group's traffic. */
  async #rekeyKeyedGroups(principal: PrincipalRecord, reason: string): Promise<void> {
    for (const group of this.#ctx.policy.keyedGroups(principal))
      await this.#rotation.rotateGroup(group, { immediate: true, actor: 'system', reason })
  }
}

function sortByKid<T extends { kid: number }>(entries: T[]): T[] {
  return entries.sort((a, b) => a.kid - b.kid)
}
