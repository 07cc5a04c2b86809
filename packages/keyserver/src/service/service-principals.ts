// The key server's own principals (e.g. the push client): created on first use, their private
// keys sealed in the store so every process of a deployment uses the same ones.
import type { Identity } from '@smqtt/core'
import type { PrincipalRecord } from '../store/key-store.js'
import { StoreConflictError } from '../store/key-store.js'
import type { KeyServerContext } from './context.js'
import { getPrincipal } from './principals.js'
import { sealedIdentity } from './sealed-identity.js'

export class ServicePrincipals {
  readonly #ctx: KeyServerContext

  constructor(context: KeyServerContext) {
    this.#ctx = context
  }

  /**
   * The identity of one of the key server's own principals (e.g. the push client, role
   * `keyserver`): created on first use, its private keys sealed in the store, so every key
   * server process of a deployment uses the same one.
   */
  async servicePrincipal(
    id: string,
    roles: readonly string[],
  ): Promise<{ identity: Identity; principal: PrincipalRecord }> {
    const identity = await sealedIdentity(this.#ctx.store, this.#ctx.masterKey, `service-principal:${id}`, id)
    let principal = await this.#ctx.store.getPrincipal(id)
    if (!principal) {
      try {
        principal = await this.#ctx.store.createPrincipal({
          id,
          roles,
          username: undefined,
          signingKey: identity.signingKey,
          agreementKey: identity.agreementKey,
          kem: identity.kem,
          createdAt: this.#ctx.now(),
          certificateSerial: undefined,
        })
        await this.#ctx.audit.record({
          actor: 'system',
          action: 'service-principal.create',
          subject: id,
          outcome: 'ok',
          details: { kid: principal.kid, roles },
        })
      } catch (err) {
        if (!(err instanceof StoreConflictError)) throw err
        principal = await getPrincipal(this.#ctx.store, id) // another process created it first
      }
    }
    return { identity, principal }
  }
}
