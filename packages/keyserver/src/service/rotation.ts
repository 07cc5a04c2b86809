// Epochs and rotation: every policy group has a live epoch; scheduled and immediate rotations;
// the periodic job that deletes what no one needs any more.
import { cryptoBackend, DEFAULT_SUITE, SmqttError } from '@smqtt/core'
import type { EpochRecord } from '../store/key-store.js'
import type { KeyServerContext } from './context.js'
import { epochLabel } from './directory.js'

/** A process further behind than this rebuilds its directory whole anyway (see Directory.follow). */
const DIRECTORY_CHANGES_KEPT = 10_000

export class Rotation {
  readonly #ctx: KeyServerContext

  constructor(context: KeyServerContext) {
    this.#ctx = context
  }

  /**
   * Gives every group of the policy a live epoch, active now, and retires at once the epochs of
   * groups no longer in it: a group re-created later (same id or same filter) starts on a fresh
   * key no former member holds, under a number never used before (the store keeps each group's
   * newest epoch, see deleteRetiredEpochs).
   */
  async ensureEpochs(): Promise<void> {
    const now = this.#ctx.now()
    const epochs = await this.#ctx.store.listEpochs()
    const live = (e: EpochRecord) => e.retiresAt === undefined || e.retiresAt > now
    const inPolicy = new Set(this.#ctx.policy.policy.groups.map((g) => g.id))
    for (const e of epochs)
      if (!inPolicy.has(e.group) && live(e)) await this.#ctx.store.setEpochRetirement(e.group, e.epoch, now)
    for (const group of this.#ctx.policy.policy.groups)
      if (!epochs.some((e) => e.group === group.id && live(e)))
        await this.rotateGroup(group.id, { immediate: true, actor: 'system', reason: 'new group' })
  }

  /**
   * Creates the group's next epoch. Scheduled: it activates `rotationLeadSeconds` from now, so
   * every member holds it before anyone seals with it. Immediate (revocation, reader removed):
   * it activates now, and any epoch scheduled but not yet active is withdrawn, because the
   * departed reader may already hold it. The previous epochs stay readable for the grace period.
   */
  async rotateGroup(
    group: number,
    options: { immediate: boolean; actor: string; reason: string },
  ): Promise<EpochRecord> {
    const policyGroup = this.#ctx.policy.policy.groups.find((g) => g.id === group)
    if (!policyGroup) throw new SmqttError('ERR_NOT_FOUND', `no key group ${group} in the policy`)
    const grace = policyGroup.graceSeconds ?? this.#ctx.settings.defaultGraceSeconds
    for (let attempt = 0; attempt < 10; attempt++) {
      const now = this.#ctx.now()
      const epochs = await this.#ctx.store.listEpochs(group)
      const number = (epochs.at(-1)?.epoch ?? 0) + 1
      const activatesAt = options.immediate ? now : now + this.#ctx.settings.rotationLeadSeconds
      const key = cryptoBackend.randomBytes(32)
      const record: EpochRecord = {
        group,
        epoch: number,
        suite: DEFAULT_SUITE,
        sealedKey: this.#ctx.masterKey.seal(epochLabel(group, number), key),
        createdAt: now,
        activatesAt,
        retiresAt: undefined,
      }
      if (!(await this.#ctx.store.insertEpoch(record))) continue // a concurrent rotation took the number
      for (const previous of epochs) {
        if (previous.retiresAt !== undefined && previous.retiresAt <= activatesAt + grace) continue
        // A withdrawn future epoch retires now; the others after the grace period.
        const retiresAt = options.immediate && previous.activatesAt > now ? now : activatesAt + grace
        await this.#ctx.store.setEpochRetirement(group, previous.epoch, retiresAt)
      }
      await this.#ctx.audit.record({
        actor: options.actor,
        action: 'rotate',
        subject: `group:${group}`,
        outcome: 'ok',
        details: { epoch: number, activatesAt, immediate: options.immediate, reason: options.reason },
      })
      this.#ctx.emit({ kind: 'epochs', groups: [group] })
      return record
    }
    throw new SmqttError('ERR_CONFLICT', `could not rotate group ${group}: too many concurrent rotations`)
  }

  /**
   * The periodic job: scheduled rotations, deletion of epochs past their grace period, and of
   * directory changes no process needs one by one any more (see Directory).
   */
  async tick(): Promise<void> {
    await this.#ctx.reloadPolicy()
    const now = this.#ctx.now()
    const epochs = await this.#ctx.store.listEpochs()
    for (const group of this.#ctx.policy.policy.groups) {
      if (!group.rotateEverySeconds) continue
      const own = epochs.filter((e) => e.group === group.id && (e.retiresAt === undefined || e.retiresAt > now))
      if (own.some((e) => e.activatesAt > now)) continue // the next one is already scheduled
      const current = own.at(-1)
      if (!current || current.activatesAt + group.rotateEverySeconds - this.#ctx.settings.rotationLeadSeconds <= now)
        await this.rotateGroup(group.id, { immediate: false, actor: 'system', reason: 'schedule' })
    }
    const deleted = await this.#ctx.store.deleteRetiredEpochs(now)
    if (deleted > 0) this.#ctx.logger.info({ deleted }, 'deleted epochs past their grace period')
    await this.#ctx.store.pruneDirectoryChanges(DIRECTORY_CHANGES_KEPT)
    await this.#ctx.failedAuth.flush()
  }
}
