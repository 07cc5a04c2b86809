// Test helpers: load the Wycheproof vectors copied into packages/core/vectors/wycheproof/
// (source and hashes in its README.md) and build every crypto backend that core ships.
// Both fail loudly: a missing file or a missing backend must fail the run, never skip it.
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { CryptoBackend } from '../src/crypto/backend.js'
import { createNativeBackend, loadSodium } from '../src/crypto/native.js'
import { nobleBackend } from '../src/crypto/noble.js'

export const WYCHEPROOF_DIR = fileURLToPath(new URL('../vectors/wycheproof/', import.meta.url))

export type WycheproofResult = 'valid' | 'invalid' | 'acceptable'

export interface WycheproofTest {
  tcId: number
  comment: string
  flags: string[]
  result: WycheproofResult
}

export interface WycheproofGroup<T extends WycheproofTest> {
  type: string
  tests: T[]
}

export interface WycheproofFile<G extends WycheproofGroup<WycheproofTest>> {
  algorithm: string
  numberOfTests: number
  testGroups: G[]
}

export interface AeadTest extends WycheproofTest {
  key: string
  iv: string
  aad: string
  msg: string
  ct: string
  tag: string
}
export interface AeadGroup extends WycheproofGroup<AeadTest> {
  ivSize: number
  keySize: number
  tagSize: number
}

export interface EddsaTest extends WycheproofTest {
  msg: string
  sig: string
}
export interface EddsaGroup extends WycheproofGroup<EddsaTest> {
  publicKey: { curve: string; pk: string }
}

export interface XdhTest extends WycheproofTest {
  public: string
  private: string
  shared: string
}
export interface XdhGroup extends WycheproofGroup<XdhTest> {
  curve: string
}

export interface HkdfTest extends WycheproofTest {
  ikm: string
  salt: string
  info: string
  size: number
  okm: string
}
export interface HkdfGroup extends WycheproofGroup<HkdfTest> {
  keySize: number
}

export interface MacTest extends WycheproofTest {
  key: string
  msg: string
  tag: string
}
export interface MacGroup extends WycheproofGroup<MacTest> {
  keySize: number
  tagSize: number
}

/**
 * Reads one Wycheproof file and checks it is whole: the declared algorithm, as many tests as
 * `numberOfTests` says, unique tcIds. Throws (never skips) when the file is missing.
 */
export function loadWycheproof<G extends WycheproofGroup<WycheproofTest>>(
  file: string,
  algorithm: string,
): WycheproofFile<G> {
  const path = `${WYCHEPROOF_DIR}${file}`
  if (!existsSync(path)) {
    throw new Error(`Wycheproof vector file missing: ${path} (see packages/core/vectors/wycheproof/README.md)`)
  }
  const data = JSON.parse(readFileSync(path, 'utf8')) as WycheproofFile<G>
  if (data.algorithm !== algorithm) throw new Error(`${file}: algorithm ${data.algorithm}, expected ${algorithm}`)
  const ids = new Set<number>()
  for (const group of data.testGroups) for (const test of group.tests) ids.add(test.tcId)
  const total = data.testGroups.reduce((n, group) => n + group.tests.length, 0)
  if (total !== data.numberOfTests || ids.size !== total) {
    throw new Error(`${file}: ${total} tests (${ids.size} distinct tcIds), header says ${data.numberOfTests}`)
  }
  return data
}

/** Every test of the groups that pass `filter`, each with its group, in file order. */
export function casesOf<G extends WycheproofGroup<WycheproofTest>>(
  file: WycheproofFile<G>,
  filter: (group: G) => boolean = () => true,
): Array<{ group: G; test: G['tests'][number] }> {
  const out: Array<{ group: G; test: G['tests'][number] }> = []
  for (const group of file.testGroups) {
    if (!filter(group)) continue
    for (const test of group.tests) out.push({ group, test })
  }
  return out
}

/**
 * The backends under test: portable (noble) and native (libsodium + node:crypto). sodium-native
 * is an optional dependency of the package, but these tests exist to compare the two, so its
 * absence is an error here rather than a silent skip.
 */
export function loadBackends(): { noble: CryptoBackend; native: CryptoBackend } {
  const sodium = loadSodium()
  if (!sodium) throw new Error('sodium-native is not installed: the native backend cannot be tested')
  return { noble: nobleBackend, native: createNativeBackend(sodium) }
}
