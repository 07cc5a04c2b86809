// The stores tests run against: SQLite (a fresh file) and the PostgreSQL service
// (SMQTT_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test), where every store
// lives in its own schema smqtt_test_<random>, dropped when the test file ends.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll } from 'vitest'
import type { KeyStore } from '../src/store/key-store.js'
import { openStore } from '../src/store/open-store.js'

export const POSTGRES_URL = process.env.SMQTT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const schemas: string[] = []
let sqliteRoot: string | undefined
let sqliteFiles = 0

afterAll(async () => {
  if (sqliteRoot) rmSync(sqliteRoot, { recursive: true, force: true })
  if (schemas.length > 0)
    await withRawClient(async (client) => {
      for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`)
    })
})

/** A new schema name, dropped when the test file ends. */
export function freshSchema(): string {
  const schema = `smqtt_test_${crypto.randomUUID().replaceAll('-', '')}`
  schemas.push(schema)
  return schema
}

/** The store URL of `schema` in the test database. */
export function storeUrl(schema: string): string {
  const url = new URL(POSTGRES_URL)
  url.searchParams.set('schema', schema)
  return url.toString()
}

/** A new SQLite file path in a folder removed when the test file ends. */
export function freshSqlitePath(): string {
  sqliteRoot ??= mkdtempSync(join(tmpdir(), 'smqtt-test-stores-'))
  return join(sqliteRoot, `store-${++sqliteFiles}.db`)
}

/** A separate PostgreSQL connection, as an operator (or a bug) could open, outside the store's API. */
export async function withRawClient<T>(action: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_URL })
  await client.connect()
  try {
    return await action(client)
  } finally {
    await client.end()
  }
}

/** For `describe.each`: each backend's name and a factory for a fresh, migrated, empty store. */
export const TEST_STORES: readonly [string, () => Promise<KeyStore>][] = [
  ['sqlite', () => openStore(`sqlite:${freshSqlitePath()}`)],
  ['postgres', () => openStore(storeUrl(freshSchema()))],
]
