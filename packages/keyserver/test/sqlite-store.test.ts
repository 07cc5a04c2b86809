import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { isSmqttError } from '@smqtt/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { StoreConflictError } from '../src/store/key-store.js'
import { openStore } from '../src/store/open-store.js'
import { MIGRATIONS, SqliteKeyStore } from '../src/store/sqlite-store.js'
import { describeKeyStoreConformance, newAudit, newPrincipal } from './store-conformance.js'

const root = mkdtempSync(join(tmpdir(), 'smqtt-sqlite-store-'))
chmodSync(root, 0o755) // so the unprivileged-user tests below can reach their directories
afterAll(() => rmSync(root, { recursive: true, force: true }))

let stores = 0
let lastPath = ''
function freshPath(): string {
  lastPath = join(root, `store-${++stores}.db`)
  return lastPath
}

/** A second, raw connection to a store's file, as an operator (or a bug) could open. */
function withRawConnection<T>(path: string, action: (db: Database.Database) => T): T {
  const db = new Database(path)
  try {
    return action(db)
  } finally {
    db.close()
  }
}

describeKeyStoreConformance('sqlite', () => openStore(`sqlite:${freshPath()}`), {
  reopen: () => openStore(`sqlite:${lastPath}`),
  failAuditInserts: async (subject) => {
    const path = lastPath
    withRawConnection(path, (db) =>
      db.exec(`CREATE TRIGGER test_fail_audit BEFORE INSERT ON audit WHEN NEW.subject = '${subject.replaceAll("'", "''")}'
               BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END`),
    )
    return async () => {
      withRawConnection(path, (db) => db.exec('DROP TRIGGER test_fail_audit'))
    }
  },
  openAtVersion5: async () => {
    const path = freshPath()
    withRawConnection(path, (db) => {
      db.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT')
      MIGRATIONS.slice(0, 5).forEach((migration, i) => {
        db.exec(migration)
        db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, 0)').run(i + 1)
      })
      db.prepare(
        `INSERT INTO epochs (group_id, epoch, suite, sealed_key, created_at, activates_at) VALUES (3, 1, 1, x'00', 0, 0)`,
      ).run()
    })
    return {
      store: await openStore(`sqlite:${path}`),
      moveEpoch: async () => {
        withRawConnection(path, (db) =>
          db.prepare('UPDATE epochs SET group_id = 4 WHERE group_id = 3 AND epoch = 1').run(),
        )
      },
    }
  },
})

describe('SqliteKeyStore', () => {
  it('creates the file in WAL mode and records the schema version', async () => {
    const path = freshPath()
    const store = await openStore(`sqlite:${path}`)
    await store.close()
    withRawConnection(path, (db) => {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
      expect(db.prepare('SELECT version FROM schema_version').pluck().all()).toEqual(MIGRATIONS.map((_, i) => i + 1))
    })
  })

  it('refuses UPDATE and DELETE of audit rows, even through raw SQL', async () => {
    const path = freshPath()
    const store = await openStore(`sqlite:${path}`)
    const entry = await store.appendAudit(newAudit('revoke'))
    withRawConnection(path, (db) => {
      expect(() => db.prepare("UPDATE audit SET outcome = 'refused'").run()).toThrow(/append-only/)
      expect(() => db.prepare('DELETE FROM audit WHERE id = ?').run(entry.id)).toThrow(/append-only/)
      expect(() => db.prepare('DELETE FROM audit').run()).toThrow(/append-only/)
    })
    expect(await store.listAudit({ limit: 10 })).toEqual([entry])
    await store.close()
  })

  it('never reuses a kid, even after the last principal row is deleted', async () => {
    const path = freshPath()
    const store = await openStore(`sqlite:${path}`)
    await store.createPrincipal(newPrincipal('a'))
    await store.createPrincipal(newPrincipal('b'))
    withRawConnection(path, (db) => db.prepare("DELETE FROM principals WHERE id = 'b'").run())
    expect((await store.createPrincipal(newPrincipal('c'))).kid).toBe(3)
    await store.close()
  })

  it('refuses a duplicate principal id with StoreConflictError from a second process too', async () => {
    const path = freshPath()
    const first = await openStore(`sqlite:${path}`)
    const second = await openStore(`sqlite:${path}`)
    await first.createPrincipal(newPrincipal('a'))
    await expect(second.createPrincipal(newPrincipal('a'))).rejects.toBeInstanceOf(StoreConflictError)
    expect((await second.createPrincipal(newPrincipal('b'))).kid).toBe(2)
    await first.close()
    await second.close()
  })

  it('refuses a file whose schema is newer than this key server knows, naming the path', async () => {
    const path = freshPath()
    await (await openStore(`sqlite:${path}`)).close()
    withRawConnection(path, (db) =>
      db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (999, 0)').run(),
    )
    await expect(openStore(`sqlite:${path}`)).rejects.toThrow(`SQLite database ${path} has schema version 999`)
  })

  it('closes twice without error', async () => {
    const store = await openStore(`sqlite:${freshPath()}`)
    await store.close()
    await store.close()
  })
})

describe('SqliteKeyStore on a file it cannot use', () => {
  // Root ignores file permissions; the permission cases drop to an unprivileged user around
  // the (synchronous) open, which needs the forks pool (process.seteuid is main-thread only).
  const isRoot = process.getuid?.() === 0
  const canTestPermissions = !isRoot || typeof process.seteuid === 'function'

  function asUnprivilegedUser<T>(action: () => T): T {
    if (!isRoot) return action()
    process.setegid?.(65534)
    process.seteuid?.(65534)
    try {
      return action()
    } finally {
      process.seteuid?.(0)
      process.setegid?.(0)
    }
  }

  function directory(name: string, mode: number): string {
    const path = join(root, name)
    mkdirSync(path)
    chmodSync(path, mode)
    return path
  }

  it.runIf(canTestPermissions)('names the path when the file is read-only', () => {
    const path = join(directory('read-only-file', 0o777), 'keys.db')
    withRawConnection(path, (db) => db.exec('CREATE TABLE t (x INTEGER)')) // a rollback-journal file
    chmodSync(path, 0o444)
    expect(() => asUnprivilegedUser(() => new SqliteKeyStore(path))).toThrow(
      `cannot open SQLite database ${path} for writing: attempt to write a readonly database`,
    )
  })

  it.runIf(canTestPermissions)('names the path when the file is read-only and already in WAL mode', async () => {
    const path = join(directory('read-only-wal-file', 0o777), 'keys.db')
    await (await openStore(`sqlite:${path}`)).close() // WAL mode is recorded in the file
    chmodSync(path, 0o444)
    expect(() => asUnprivilegedUser(() => new SqliteKeyStore(path))).toThrow(
      `cannot open SQLite database ${path} for writing`,
    )
  })

  it.runIf(canTestPermissions)('names the path when a new file cannot be created in a read-only directory', () => {
    const path = join(directory('read-only-directory', 0o555), 'keys.db')
    expect(() => asUnprivilegedUser(() => new SqliteKeyStore(path))).toThrow(
      `cannot open SQLite database ${path} for writing: unable to open database file (SQLITE_CANTOPEN)`,
    )
  })

  it.runIf(canTestPermissions)('names the path when an existing file sits in a read-only directory', async () => {
    const dir = directory('read-only-directory-existing', 0o777)
    const path = join(dir, 'keys.db')
    await (await openStore(`sqlite:${path}`)).close()
    chmodSync(path, 0o666)
    chmodSync(dir, 0o555) // the WAL and shared-memory files cannot be created
    expect(() => asUnprivilegedUser(() => new SqliteKeyStore(path))).toThrow(
      `cannot open SQLite database ${path} for writing`,
    )
  })

  it('names the path when the directory does not exist', async () => {
    const path = join(root, 'no-such-directory', 'keys.db')
    await expect(openStore(`sqlite:${path}`)).rejects.toThrow(
      `cannot open SQLite database ${path} for writing: Cannot open database because the directory does not exist`,
    )
  })

  it('names the path when it is a directory', () => {
    const path = directory('a-directory', 0o755)
    expect(() => new SqliteKeyStore(path)).toThrow(`cannot open SQLite database ${path} for writing`)
  })

  it('names the path when the file is not a SQLite database', () => {
    const path = join(root, 'not-a-database.db')
    writeFileSync(path, 'this is a text file, not a database; '.repeat(20))
    expect(() => new SqliteKeyStore(path)).toThrow(
      `cannot open SQLite database ${path} for writing: file is not a database (SQLITE_NOTADB)`,
    )
  })
})

describe('openStore', () => {
  it('opens an in-memory store with sqlite::memory:', async () => {
    const store = await openStore('sqlite::memory:')
    expect(store.kind).toBe('sqlite')
    expect(await store.insertSecret('k', new Uint8Array([1]))).toBe(true)
    expect(await store.getSecret('k')).toEqual(new Uint8Array([1]))
    await store.close()
  })

  it('resolves a relative sqlite: path against the working directory', async () => {
    const path = freshPath()
    const store = await openStore(`sqlite:${relative(process.cwd(), path)}`)
    expect((store as SqliteKeyStore).path).toBe(path)
    await store.close()
  })

  it.each([
    ['an unknown scheme', 'mysql://admin:s3cret@db/keys'],
    ['no scheme', 'keys.db'],
    ['an empty sqlite path', 'sqlite:'],
    ['sqlite:// (ambiguous)', 'sqlite://keys.db'],
    ['a bad schema name', 'postgres://admin:s3cret@db/keys?schema=a;drop'],
  ])('refuses %s with ERR_CONFIG_INVALID naming the accepted forms, without echoing secrets', async (_, url) => {
    const error = await openStore(url).then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(isSmqttError(error, 'ERR_CONFIG_INVALID')).toBe(true)
    expect(String((error as Error).message)).not.toContain('s3cret')
    if (!url.includes('schema=')) expect((error as Error).message).toContain('sqlite:<path>')
  })
})
