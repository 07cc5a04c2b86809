// Picks and prepares the key store named by the `store` URL of the key server's config.

import { resolve } from 'node:path'
import { SmqttError } from '@smqtt/core'
import type { KeyStore } from './key-store.js'
import { isPostgresSchemaName, PostgresKeyStore } from './postgres-store.js'
import { SqliteKeyStore } from './sqlite-store.js'

const ACCEPTED_FORMS =
  'sqlite:<path> (relative to the working directory), sqlite::memory:, ' +
  'or postgres://user@host:port/database (also postgresql://) with an optional ?schema=name'

/**
 * Opens the key store a URL names and brings its schema up to date (`migrate()`) before
 * returning it:
 * - `sqlite:<path>`: a SQLite file, created if missing; a relative path is resolved against
 *   the working directory; `sqlite::memory:` for a throwaway in-memory store;
 * - `postgres://…` or `postgresql://…`: PostgreSQL, with the tables in the schema named by an
 *   optional `?schema=` parameter (default `public`); other parameters go to the driver.
 *
 * A malformed URL raises `SmqttError` `ERR_CONFIG_INVALID` naming the accepted forms (and never
 * echoing the URL, which may hold a password); an unusable file or unreachable server raises
 * an `Error` naming the path or host.
 *
 * @example
 * ```ts
 * const store = await openStore('sqlite:data/keyserver.db')
 * const shared = await openStore('postgres://smqtt@db.internal:5432/smqtt?schema=keyserver')
 * ```
 */
export async function openStore(url: string): Promise<KeyStore> {
  const store = createStore(url)
  try {
    await store.migrate()
  } catch (err) {
    await store.close().catch(() => {})
    throw err
  }
  return store
}

function createStore(url: string): KeyStore {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length)
    if (path === ':memory:') return new SqliteKeyStore(':memory:')
    // 'sqlite://x' would read as the absolute path '//x': refuse it rather than guess.
    if (path === '' || path.startsWith('//'))
      throw new SmqttError('ERR_CONFIG_INVALID', `the sqlite: store URL needs a file path; use ${ACCEPTED_FORMS}`)
    return new SqliteKeyStore(resolve(path))
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new SmqttError('ERR_CONFIG_INVALID', `the postgres store URL is malformed; use ${ACCEPTED_FORMS}`)
    }
    const schema = parsed.searchParams.get('schema') ?? 'public'
    if (!isPostgresSchemaName(schema))
      throw new SmqttError(
        'ERR_CONFIG_INVALID',
        `the store URL's schema must be letters, digits and underscores (at most 63), got ${JSON.stringify(schema)}`,
      )
    parsed.searchParams.delete('schema')
    return new PostgresKeyStore({ connectionString: parsed.toString(), schema })
  }
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:/.exec(url)?.[0] ?? '(none)'
  throw new SmqttError('ERR_CONFIG_INVALID', `unsupported store URL scheme ${scheme}; use ${ACCEPTED_FORMS}`)
}
