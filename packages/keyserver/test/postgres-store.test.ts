// Needs the PostgreSQL service (SMQTT_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test).
// Every store lives in its own schema smqtt_test_<random>, dropped at the end.

import { createServer, type Socket } from 'node:net'
import { isSmqttError } from '@smqtt/core'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { openStore } from '../src/store/open-store.js'
import { MIGRATIONS, PostgresKeyStore } from '../src/store/postgres-store.js'
import { freshSchema, POSTGRES_URL, storeUrl, withRawClient } from './_test-stores.js'
import { describeKeyStoreConformance, newAudit, newPrincipal } from './store-conformance.js'

let lastSchema = ''
describeKeyStoreConformance(
  'postgres',
  () => {
    lastSchema = freshSchema()
    return openStore(storeUrl(lastSchema))
  },
  {
    reopen: () => openStore(storeUrl(lastSchema)),
    failAuditInserts: async (subject) => {
      const s = pg.escapeIdentifier(lastSchema)
      await withRawClient((client) =>
        client.query(`
          CREATE FUNCTION ${s}.test_fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN RAISE EXCEPTION 'injected audit failure'; END $$;
          CREATE TRIGGER test_fail_audit BEFORE INSERT ON ${s}.audit
            FOR EACH ROW WHEN (NEW.subject = ${pg.escapeLiteral(subject)}) EXECUTE FUNCTION ${s}.test_fail_audit();`),
      )
      return async () => {
        await withRawClient((client) => client.query(`DROP TRIGGER test_fail_audit ON ${s}.audit`))
      }
    },
    openAtVersion5: async () => {
      const schema = freshSchema()
      const s = pg.escapeIdentifier(schema)
      await withRawClient(async (client) => {
        await client.query(`CREATE SCHEMA ${s}`)
        await client.query(`CREATE TABLE ${s}.schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`)
        for (const [i, migration] of MIGRATIONS.slice(0, 5).entries()) {
          await client.query(migration(s))
          await client.query(`INSERT INTO ${s}.schema_version (version, applied_at) VALUES ($1, 0)`, [i + 1])
        }
        await client.query(
          `INSERT INTO ${s}.epochs (group_id, epoch, suite, sealed_key, created_at, activates_at)
           VALUES (3, 1, 1, '\\x00', 0, 0)`,
        )
      })
      return {
        store: await openStore(storeUrl(schema)),
        moveEpoch: async () => {
          await withRawClient((client) =>
            client.query(`UPDATE ${s}.epochs SET group_id = 4 WHERE group_id = 3 AND epoch = 1`),
          )
        },
      }
    },
  },
)

/** What schema_version holds once every migration is applied. */
const ALL_VERSIONS = MIGRATIONS.map((_, i) => ({ version: i + 1 }))

describe('PostgresKeyStore', () => {
  it('creates its tables in the schema named by ?schema= and records the schema version', async () => {
    const schema = freshSchema()
    const store = await openStore(storeUrl(schema))
    expect(store.kind).toBe('postgres')
    await store.close()
    await withRawClient(async (client) => {
      const tables = await client.query<{ table_name: string }>(
        'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name',
        [schema],
      )
      expect(tables.rows.map((row) => row.table_name)).toEqual([
        'audit',
        'counters',
        'directory_change_counter',
        'directory_changes',
        'enrollment_tokens',
        'epochs',
        'policy',
        'principals',
        'revocation_list',
        'schema_version',
        'secrets',
      ])
      const versions = await client.query(`SELECT version FROM ${pg.escapeIdentifier(schema)}.schema_version`)
      expect(versions.rows).toEqual(ALL_VERSIONS)
    })
  })

  it('keeps stores in different schemas apart', async () => {
    const first = await openStore(storeUrl(freshSchema()))
    const second = await openStore(storeUrl(freshSchema()))
    await first.insertSecret('ca-key', new Uint8Array([1]))
    expect(await second.getSecret('ca-key')).toBeUndefined()
    expect(await second.insertSecret('ca-key', new Uint8Array([2]))).toBe(true)
    expect(await first.getSecret('ca-key')).toEqual(new Uint8Array([1]))
    await first.close()
    await second.close()
  })

  it('lets several key server processes migrate one fresh schema at the same time', async () => {
    const schema = freshSchema()
    const stores = Array.from(
      { length: 4 },
      () => new PostgresKeyStore({ connectionString: POSTGRES_URL, schema, maxConnections: 1 }),
    )
    try {
      await Promise.all(stores.map((store) => store.migrate()))
      await withRawClient(async (client) => {
        const versions = await client.query(`SELECT version FROM ${pg.escapeIdentifier(schema)}.schema_version`)
        expect(versions.rows).toEqual(ALL_VERSIONS)
      })
      const kids = await Promise.all(stores.map((store, i) => store.createPrincipal(newPrincipal(`p${i}`))))
      expect(kids.map((p) => p.kid).sort()).toEqual([1, 2, 3, 4])
    } finally {
      await Promise.all(stores.map((store) => store.close()))
    }
  })

  it('refuses UPDATE, DELETE and TRUNCATE of audit rows, even through raw SQL', async () => {
    const schema = freshSchema()
    const store = await openStore(storeUrl(schema))
    const entry = await store.appendAudit(newAudit('revoke'))
    const audit = `${pg.escapeIdentifier(schema)}.audit`
    await withRawClient(async (client) => {
      await expect(client.query(`UPDATE ${audit} SET outcome = 'refused'`)).rejects.toThrow(/append-only/)
      await expect(client.query(`DELETE FROM ${audit} WHERE id = $1`, [entry.id])).rejects.toThrow(/append-only/)
      await expect(client.query(`TRUNCATE ${audit}`)).rejects.toThrow(/append-only/)
    })
    expect(await store.listAudit({ limit: 10 })).toEqual([entry])
    await store.close()
  })

  it('never reuses a kid, even after the last principal row is deleted', async () => {
    const schema = freshSchema()
    const store = await openStore(storeUrl(schema))
    await store.createPrincipal(newPrincipal('a'))
    await store.createPrincipal(newPrincipal('b'))
    await withRawClient((client) =>
      client.query(`DELETE FROM ${pg.escapeIdentifier(schema)}.principals WHERE id = 'b'`),
    )
    expect((await store.createPrincipal(newPrincipal('c'))).kid).toBe(3)
    await store.close()
  })

  it('refuses a schema whose version is newer than this key server knows', async () => {
    const schema = freshSchema()
    await (await openStore(storeUrl(schema))).close()
    await withRawClient((client) =>
      client.query(`INSERT INTO ${pg.escapeIdentifier(schema)}.schema_version (version, applied_at) VALUES (999, 0)`),
    )
    await expect(openStore(storeUrl(schema))).rejects.toThrow(`PostgreSQL schema ${schema} at`)
  })

  it('accepts the postgresql:// scheme too', async () => {
    const url = storeUrl(freshSchema()).replace(/^postgres:/, 'postgresql:')
    const store = await openStore(url)
    expect(await store.insertSecret('k', new Uint8Array([7]))).toBe(true)
    await store.close()
  })

  it('refuses a schema name that is not a plain identifier', async () => {
    expect(
      () => new PostgresKeyStore({ connectionString: POSTGRES_URL, schema: 'x"; DROP SCHEMA public; --' }),
    ).toThrow(RangeError)
    const error = await openStore(storeUrl('Robert-tables')).catch((err: unknown) => err)
    expect(isSmqttError(error, 'ERR_CONFIG_INVALID')).toBe(true)
  })

  it('closes twice without error', async () => {
    const store = await openStore(storeUrl(freshSchema()))
    await store.close()
    await store.close()
  })
})

describe('PostgresKeyStore without a server', () => {
  it('fails at once with the host, port and database (not the password) when the connection is refused', async () => {
    const error = await openStore('postgres://smqtt:s3cret@127.0.0.1:1/keys').catch((err: unknown) => err)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(/^cannot connect to PostgreSQL at 127\.0\.0\.1:1\/keys: .*ECONNREFUSED/)
    expect((error as Error).message).not.toContain('s3cret')
  })

  it('gives up after connectionTimeoutMillis when the server accepts but never answers', async () => {
    const sockets = new Set<Socket>()
    const silent = createServer((socket) => sockets.add(socket))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const { port } = silent.address() as { port: number }
    const store = new PostgresKeyStore({
      connectionString: `postgres://postgres@127.0.0.1:${port}/test`,
      connectionTimeoutMillis: 300,
    })
    try {
      await expect(store.migrate()).rejects.toThrow(`cannot connect to PostgreSQL at 127.0.0.1:${port}/test`)
    } finally {
      await store.close()
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => silent.close(resolve))
    }
  })
})
