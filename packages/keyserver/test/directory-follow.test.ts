// Issue 14 at fleet scale: with one key group per home, a re-key of one home must not make every
// key server process re-read the epochs of every home. The store's change log names the group
// of each epoch change (migration 6), and Directory.follow re-reads that group alone; an entry
// logged before migration 6 names none and still re-reads them all. Checked on both stores, each
// time against a directory built afresh from the store.
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { MasterKey } from '../src/master-key.js'
import { Directory, type DirectorySource, epochLabel } from '../src/service/directory.js'
import { EMPTY_POLICY, PolicyState } from '../src/service/policy-state.js'
import type { KeyStore } from '../src/store/key-store.js'
import { TEST_STORES } from './_test-stores.js'

const T = 1_700_000_000
const GROUPS = 100

function directorySource(store: KeyStore): DirectorySource {
  const policy = new PolicyState(0, EMPTY_POLICY)
  let generation = 1
  return {
    store,
    masterKey: MasterKey.generate(),
    logger: pino({ level: 'silent' }),
    policy: () => policy,
    reloadPolicy: async () => policy,
    nextGeneration: () => generation++,
  }
}

async function insertEpoch(source: DirectorySource, group: number, epoch: number): Promise<void> {
  const sealedKey = source.masterKey.seal(epochLabel(group, epoch), randomBytes(32))
  await source.store.insertEpoch({
    group,
    epoch,
    suite: 1,
    sealedKey,
    createdAt: T,
    activatesAt: T,
    retiresAt: undefined,
  })
}

/** A fleet of GROUPS groups with epochs 1 and 2 each, and its directory. */
async function fleet(store: KeyStore): Promise<{ source: DirectorySource; directory: Directory }> {
  const source = directorySource(store)
  for (let group = 1; group <= GROUPS; group++) for (const epoch of [1, 2]) await insertEpoch(source, group, epoch)
  return { source, directory: await Directory.build(source, T) }
}

/** Rotates `group` as KeyServer.rotateGroup does: a new epoch, the current one retiring, the oldest deleted. */
async function rotate(source: DirectorySource, group: number, now: number): Promise<void> {
  const epochs = await source.store.listEpochs(group)
  const newest = epochs.at(-1)?.epoch ?? 0
  await insertEpoch(source, group, newest + 1)
  await source.store.setEpochRetirement(group, newest, now + 60)
  for (const e of epochs.slice(0, -1)) await source.store.setEpochRetirement(group, e.epoch, now - 1)
  await source.store.deleteRetiredEpochs(now)
}

/** Records the `group` argument of every listEpochs call from now on (undefined: every group). */
function recordEpochReads(store: KeyStore): (number | undefined)[] {
  const reads: (number | undefined)[] = []
  const listEpochs = store.listEpochs.bind(store)
  store.listEpochs = (group) => {
    reads.push(group)
    return listEpochs(group)
  }
  return reads
}

describe.each(TEST_STORES)('Directory.follow on %s', (_, open) => {
  let store: KeyStore
  beforeEach(async () => {
    store = await open()
  })
  afterEach(() => store.close())

  test('a re-key of one group re-reads that group alone, and the directory equals a fresh build', async () => {
    const { source, directory } = await fleet(store)
    await rotate(source, 7, T + 10)
    directory.groupTags.set(7, 'tag of group 7')
    directory.groupTags.set(8, 'tag of group 8')
    const generation = directory.generation
    const reads = recordEpochReads(store)

    expect(await directory.follow(source, T + 11)).toBe(true)
    expect(reads).toEqual([7])
    expect(directory.epochs).toEqual((await Directory.build(source, T + 11)).epochs)
    expect(directory.epochs.get(7)?.map((e) => e.epoch)).toEqual([2, 3])
    // Bundles and tags cached under the old generation are stale; group 8's share of a tag is not.
    expect(directory.generation).not.toBe(generation)
    expect([...directory.groupTags]).toEqual([[8, 'tag of group 8']])
  })

  test('changes to several groups, a new group among them, read each of them once', async () => {
    const { source, directory } = await fleet(store)
    await rotate(source, 3, T + 10)
    await rotate(source, 3, T + 20)
    await rotate(source, 90, T + 20)
    await insertEpoch(source, GROUPS + 1, 1)
    const reads = recordEpochReads(store)

    expect(await directory.follow(source, T + 21)).toBe(true)
    expect(reads.sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual([3, 90, GROUPS + 1])
    expect(directory.epochs).toEqual((await Directory.build(source, T + 21)).epochs)
    expect(directory.epochs.get(3)?.map((e) => e.epoch)).toEqual([3, 4])
  })

  test('an epochs entry that names no group (logged before migration 6) re-reads every group', async () => {
    const { source, directory } = await fleet(store)
    await rotate(source, 7, T + 10)
    directory.groupTags.set(8, 'tag of group 8')
    const listDirectoryChanges = store.listDirectoryChanges.bind(store)
    store.listDirectoryChanges = async (afterSeq, limit) => {
      const log = await listDirectoryChanges(afterSeq, limit)
      const changes = log.changes.map((c) => (c.kind === 'epochs' ? { seq: c.seq, kind: c.kind } : c))
      return { ...log, changes }
    }
    const reads = recordEpochReads(store)

    expect(await directory.follow(source, T + 11)).toBe(true)
    expect(reads).toEqual([undefined])
    expect(directory.epochs).toEqual((await Directory.build(source, T + 11)).epochs)
    expect(directory.groupTags.size).toBe(0)
  })
})
