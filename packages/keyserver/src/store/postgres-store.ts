// The key store for scale-out: several key server processes share one PostgreSQL database.
// Every write the interface calls atomic is one statement (READ COMMITTED re-checks an
// UPDATE's WHERE clause after waiting for a concurrent writer's row lock, so exactly one of
// several racing writers matches) or, for an enrollment, one transaction on one connection;
// migrations run under an advisory lock.

import {
  DatabaseError,
  escapeIdentifier,
  Pool,
  type PoolClient,
  types as pgTypes,
  type QueryResult,
  type QueryResultRow,
  TypeOverrides,
} from 'pg'
import { SqlKeyStore } from './_sql-key-store.js'
import {
  type AuditRow,
  checkedAuditValues,
  type PrincipalRow,
  principalValues,
  toAuditEntry,
  toPrincipal,
} from './_store-rows.js'
import {
  type AuditEntry,
  type EnrolledPrincipal,
  type Enrollment,
  type KeyStore,
  type NewAuditEntry,
  type NewPrincipal,
  type PrincipalRecord,
  StoreUnavailableError,
} from './key-store.js'

export interface PostgresKeyStoreOptions {
  /** `postgres://user:password@host:port/database`, with any libpq-style parameters pg accepts. */
  readonly connectionString: string
  /** The schema holding the tables, created if missing (default `public`). */
  readonly schema?: string
  /** How long to wait for a connection before failing (default 5000 ms). */
  readonly connectionTimeoutMillis?: number
  /** Pool size (default 10). */
  readonly maxConnections?: number
}

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

/**
 * True if `name` is a schema name the store accepts: a plain identifier of at most 63
 * characters (letters, digits, underscores), so it never needs more than quoting.
 *
 * @example
 * ```ts
 * isPostgresSchemaName('smqtt') // true
 * isPostgresSchemaName('a; DROP TABLE x') // false
 * ```
 */
export function isPostgresSchemaName(name: string): boolean {
  return SCHEMA_NAME.test(name)
}

// First key of the two-key advisory locks this store takes ('SMQT'); the second is the schema.
const LOCK_CLASS = 0x534d5154

// BIGINT arrives as a string by default; every BIGINT here is a count, kid or time that fits
// in a JS number, and one that does not is refused rather than rounded.
const typeParsers = new TypeOverrides()
typeParsers.setTypeParser(pgTypes.builtins.INT8, (text: string) => {
  const value = Number(text)
  if (!Number.isSafeInteger(value)) throw new RangeError(`BIGINT ${text} does not fit in a JavaScript number`)
  return value
})

// Migration n (1-based) takes the schema from version n - 1 to n; `s` is the quoted schema.
// Append only: never edit one that has shipped. Documents, roles and audit details are TEXT
// (JSON), not JSONB: signed documents are kept byte for byte, and JSON's "\u0000" escape,
// which JSONB refuses, stays storable. Exported for the upgrade tests (the package does not export it).
export const MIGRATIONS: readonly ((s: string) => string)[] = [
  (s) => `
  CREATE TABLE ${s}.secrets (
    name TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL
  );

  -- Kids come from a counter row updated in the same statement as the insert: a refused
  -- insert rolls the counter back (no gaps, like SQLite), and a kid is never handed out twice.
  CREATE TABLE ${s}.counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
  );
  INSERT INTO ${s}.counters (name, value) VALUES ('kid', 0);

  CREATE TABLE ${s}.principals (
    kid BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    roles TEXT NOT NULL,
    username TEXT,
    signing_key BYTEA NOT NULL,
    agreement_key BYTEA NOT NULL,
    kem TEXT NOT NULL CHECK (kem IN ('x25519', 'xwing')),
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
    created_at BIGINT NOT NULL,
    status_changed_at BIGINT,
    certificate_serial TEXT
  );

  CREATE TABLE ${s}.enrollment_tokens (
    token_hash BYTEA PRIMARY KEY,
    principal_id TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
  );
  CREATE INDEX enrollment_tokens_pending ON ${s}.enrollment_tokens (created_at) WHERE used_at IS NULL;

  CREATE TABLE ${s}.policy (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version BIGINT NOT NULL CHECK (version >= 1),
    document TEXT NOT NULL,
    updated_at BIGINT NOT NULL
  );

  CREATE TABLE ${s}.epochs (
    group_id BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    suite BIGINT NOT NULL,
    sealed_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retires_at BIGINT,
    PRIMARY KEY (group_id, epoch)
  );

  CREATE TABLE ${s}.revocation_list (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version BIGINT NOT NULL CHECK (version >= 1),
    document TEXT NOT NULL,
    updated_at BIGINT NOT NULL
  );

  CREATE TABLE ${s}.audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
    details TEXT NOT NULL
  );

  -- The audit log is append-only for the application too: a bug cannot rewrite history.
  -- (The table's owner can still drop the triggers; this guards against mistakes, not a DBA.)
  CREATE FUNCTION ${s}.audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION 'audit log is append-only';
  END
  $$;
  CREATE TRIGGER audit_refuse_change BEFORE UPDATE OR DELETE ON ${s}.audit
    FOR EACH ROW EXECUTE FUNCTION ${s}.audit_refuse_change();
  CREATE TRIGGER audit_refuse_truncate BEFORE TRUNCATE ON ${s}.audit
    FOR EACH STATEMENT EXECUTE FUNCTION ${s}.audit_refuse_change();
  `,
  (s) => `
  -- What a redeemed token enrolled, so a device whose answer was lost can be answered again.
  ALTER TABLE ${s}.enrollment_tokens
    ADD COLUMN enrolled_kid BIGINT REFERENCES ${s}.principals (kid),
    ADD COLUMN certificate_pem TEXT;
  `,
  (s) => `
  -- Every envelope sequence number reserved for the principal lies below this (POST /v1/sequence).
  ALTER TABLE ${s}.principals ADD COLUMN sequence_floor BIGINT NOT NULL DEFAULT 0;
  `,
  (s) => `
  -- The revocation list lists recent revocations only (issue 14, cliff 1): found by this index,
  -- not by reading every principal ever revoked.
  CREATE INDEX principals_revoked ON ${s}.principals (status_changed_at, kid) WHERE status = 'revoked';
  `,
  (s) => `
  -- The directory changes (what the key server's directory is built from), logged by triggers
  -- so that every writer is covered, tools writing straight into the database included.
  CREATE TABLE ${s}.directory_change_counter (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    seq BIGINT NOT NULL
  );
  INSERT INTO ${s}.directory_change_counter (singleton, seq) VALUES (1, 0);

  CREATE TABLE ${s}.directory_changes (
    seq BIGINT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('principal', 'epochs', 'policy', 'revocations')),
    kid BIGINT,
    CHECK ((kind = 'principal') = (kid IS NOT NULL))
  );

  -- Logs one change of the kind named by the trigger's argument. The counter's row lock is held
  -- until the writing transaction ends, so writers number their changes one at a time, in
  -- commit order, and a rolled-back transaction gives its seqs back: no gaps.
  CREATE FUNCTION ${s}.log_directory_change() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE
    changed_kid BIGINT;
  BEGIN
    IF TG_ARGV[0] = 'principal' THEN
      IF TG_OP = 'DELETE' THEN changed_kid := OLD.kid; ELSE changed_kid := NEW.kid; END IF;
    END IF;
    WITH counter AS (UPDATE ${s}.directory_change_counter SET seq = seq + 1 RETURNING seq)
    INSERT INTO ${s}.directory_changes (seq, kind, kid) SELECT counter.seq, TG_ARGV[0], changed_kid FROM counter;
    RETURN NULL;
  END
  $$;

  -- Only the columns the directory reads: not sequence_floor, which every reservation writes.
  CREATE TRIGGER principals_log_change
    AFTER INSERT OR DELETE OR UPDATE OF status, roles, username, signing_key, agreement_key, kem, id
    ON ${s}.principals
    FOR EACH ROW EXECUTE FUNCTION ${s}.log_directory_change('principal');
  CREATE TRIGGER epochs_log_change AFTER INSERT OR UPDATE OR DELETE ON ${s}.epochs
    FOR EACH ROW EXECUTE FUNCTION ${s}.log_directory_change('epochs');
  CREATE TRIGGER policy_log_change AFTER INSERT OR UPDATE ON ${s}.policy
    FOR EACH ROW EXECUTE FUNCTION ${s}.log_directory_change('policy');
  CREATE TRIGGER revocation_list_log_change AFTER INSERT OR UPDATE ON ${s}.revocation_list
    FOR EACH ROW EXECUTE FUNCTION ${s}.log_directory_change('revocations');
  `,
  (s) => `
  -- An epochs change names its key group, so a re-key of one home re-reads that home's epochs,
  -- not the fleet's (issue 14). Entries logged before this name none: any group may have changed.
  ALTER TABLE ${s}.directory_changes ADD COLUMN key_group BIGINT CHECK (key_group IS NULL OR kind = 'epochs');

  -- Replaced in place: the triggers of migration 5 keep calling it. An update that moves an
  -- epoch to another group (raw SQL) changes the group it left too.
  CREATE OR REPLACE FUNCTION ${s}.log_directory_change() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE
    changed_kid BIGINT;
    changed_groups BIGINT[] := ARRAY[NULL]::BIGINT[];
    changed_group BIGINT;
  BEGIN
    IF TG_ARGV[0] = 'principal' THEN
      IF TG_OP = 'DELETE' THEN changed_kid := OLD.kid; ELSE changed_kid := NEW.kid; END IF;
    ELSIF TG_ARGV[0] = 'epochs' THEN
      IF TG_OP = 'DELETE' THEN changed_groups := ARRAY[OLD.group_id]; ELSE changed_groups := ARRAY[NEW.group_id]; END IF;
      IF TG_OP = 'UPDATE' THEN
        IF OLD.group_id <> NEW.group_id THEN changed_groups := changed_groups || OLD.group_id; END IF;
      END IF;
    END IF;
    FOREACH changed_group IN ARRAY changed_groups LOOP
      WITH counter AS (UPDATE ${s}.directory_change_counter SET seq = seq + 1 RETURNING seq)
      INSERT INTO ${s}.directory_changes (seq, kind, kid, key_group)
        SELECT counter.seq, TG_ARGV[0], changed_kid, changed_group FROM counter;
    END LOOP;
    RETURN NULL;
  END
  $$;
  `,
]

/**
 * A {@link KeyStore} in PostgreSQL, for several key server processes sharing one database.
 * Tables live in `options.schema` (default `public`), so deployments and tests can share a
 * database. A database that cannot be reached fails `migrate()` with an `Error` naming the
 * host, port and database (never the password), after at most `connectionTimeoutMillis`.
 *
 * @example
 * ```ts
 * const store = new PostgresKeyStore({ connectionString: 'postgres://smqtt@db:5432/smqtt', schema: 'keyserver' })
 * await store.migrate()
 * const policy = await store.getPolicy()
 * await store.close()
 * ```
 */
export class PostgresKeyStore extends SqlKeyStore {
  readonly kind = 'postgres'
  readonly schema: string
  protected readonly s: string
  readonly #pool: Pool
  readonly #where: string
  #closed = false

  constructor(options: PostgresKeyStoreOptions) {
    super()
    const schema = options.schema ?? 'public'
    if (!isPostgresSchemaName(schema))
      throw new RangeError(`schema must be letters, digits and underscores (at most 63), got ${JSON.stringify(schema)}`)
    this.schema = schema
    this.s = escapeIdentifier(schema)
    this.#where = describeServer(options.connectionString)
    this.#pool = new Pool({
      connectionString: options.connectionString,
      connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5000,
      max: options.maxConnections ?? 10,
      types: typeParsers,
    })
    // An idle connection that breaks (server restart) is dropped by the pool and replaced on
    // the next query, which reports any lasting failure; without a listener it would crash the process.
    this.#pool.on('error', () => {})
    // And on every connection, for its whole life: a server that ends it (pg_terminate_backend)
    // sends a FATAL that arrives as an 'error' event wherever the connection is at that moment,
    // and a connection between owners has no listener of its own. Queries still fail with the
    // error, so nothing is hidden; only the process no longer dies of it (test/faults/postgres-drop).
    this.#pool.on('connect', (client) => client.on('error', () => {}))
  }

  /**
   * Creates the schema if needed and applies pending migrations in one transaction, under an
   * advisory lock so key server processes starting together apply each migration once.
   */
  async migrate(): Promise<void> {
    const client = await this.#connect()
    const s = this.s
    try {
      await client.query('BEGIN')
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_CLASS, this.schema])
      // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the schema exists.
      const found = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [this.schema])
      if (found.rowCount === 0) await client.query(`CREATE SCHEMA ${s}`)
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${s}.schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`,
      )
      const { rows } = await client.query<{ version: number | null }>(
        `SELECT max(version) AS version FROM ${s}.schema_version`,
      )
      const current = rows[0]?.version ?? 0
      if (current > MIGRATIONS.length)
        throw new Error(
          `PostgreSQL schema ${this.schema} at ${this.#where} has schema version ${current}, newer than this key ` +
            `server knows (${MIGRATIONS.length}): upgrade the key server`,
        )
      for (let version = current + 1; version <= MIGRATIONS.length; version++) {
        await client.query((MIGRATIONS[version - 1] as (s: string) => string)(s))
        await client.query(`INSERT INTO ${s}.schema_version (version, applied_at) VALUES ($1, $2)`, [
          version,
          Math.floor(Date.now() / 1000),
        ])
      }
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.release()
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#pool.end()
  }

  protected statusUpdateSql(): string {
    return `UPDATE ${this.s}.principals
            SET status = $2::text,
                status_changed_at = CASE WHEN status <> $2::text AND $2::text <> 'active' THEN $3::bigint
                                    ELSE status_changed_at END
            WHERE id = $1 AND status <> 'revoked'`
  }

  protected sequenceReservationSql(): string {
    return `UPDATE ${this.s}.principals SET sequence_floor = GREATEST(sequence_floor, $2::bigint) + $3::bigint
            WHERE id = $1 AND status = 'active' AND GREATEST(sequence_floor, $2::bigint) + $3::bigint <= $4::bigint
            RETURNING sequence_floor`
  }

  protected async enroll(enrollment: Enrollment): Promise<EnrolledPrincipal | undefined> {
    const { tokenHash, now, principal } = enrollment
    return this.#transaction(async (client) => {
      const redeemed = await this.#query(this.redeemTokenSql(), [tokenHash, now, principal.id], client)
      if (redeemed.rowCount !== 1) return undefined
      const created = await this.insertPrincipal(principal, client)
      await this.#query(this.recordEnrollmentSql(), [tokenHash, created.kid, enrollment.certificatePem ?? null], client)
      return { principal: created, audit: await this.insertAudit(enrollment.audit(created), client) }
    })
  }

  protected async rows<Row>(sql: string, params: readonly unknown[] = []): Promise<Row[]> {
    return (await this.#query(sql, [...params])).rows as Row[]
  }

  protected async changes(sql: string, params: readonly unknown[] = []): Promise<number> {
    return (await this.#query(sql, [...params])).rowCount ?? 0
  }

  protected isUniqueViolation(err: unknown): boolean {
    return err instanceof DatabaseError && err.code === '23505'
  }

  protected async insertPrincipal(principal: NewPrincipal, on: Queryable = this.#pool): Promise<PrincipalRecord> {
    const s = this.s
    const row = await this.#one<PrincipalRow>(
      `WITH next_kid AS (UPDATE ${s}.counters SET value = value + 1 WHERE name = 'kid' RETURNING value)
       INSERT INTO ${s}.principals
         (kid, id, roles, username, signing_key, agreement_key, kem, status, created_at, certificate_serial)
       SELECT value, $1::text, $2::text, $3::text, $4::bytea, $5::bytea, $6::text, 'active', $7::bigint, $8::text
       FROM next_kid
       RETURNING *`,
      principalValues(principal),
      on,
    )
    if (!row) throw new Error(`PostgreSQL schema ${this.schema} has no kid counter: was it migrated?`)
    return toPrincipal(row)
  }

  /**
   * The insert first takes a per-schema transaction lock, so ids are handed out in commit
   * order (in a transaction, held until it commits): a reader paging with `afterId` can never
   * skip an entry that commits late with a smaller id.
   */
  protected async insertAudit(entry: NewAuditEntry, on: Queryable = this.#pool): Promise<AuditEntry> {
    const row = await this.#one<AuditRow>(
      `WITH commit_order AS MATERIALIZED (SELECT pg_advisory_xact_lock($7, hashtext($8)))
       INSERT INTO ${this.s}.audit (at, actor, action, subject, outcome, details)
       SELECT $1::bigint, $2::text, $3::text, $4::text, $5::text, $6::text FROM commit_order
       RETURNING *`,
      [...checkedAuditValues(entry), LOCK_CLASS + 1, this.schema],
      on,
    )
    return toAuditEntry(row as AuditRow)
  }

  async #one<Row>(sql: string, params: unknown[] = [], on: Queryable = this.#pool): Promise<Row | undefined> {
    const { rows } = await this.#query<Row & object>(sql, params, on)
    return rows[0]
  }

  /** One statement, on a pooled connection or a transaction's; see {@link #serve}. */
  #query<Row extends QueryResultRow = QueryResultRow>(
    sql: string,
    params: unknown[] = [],
    on: Queryable = this.#pool,
  ): Promise<QueryResult<Row>> {
    return this.#serve(() => on.query<Row>(sql, params))
  }

  /**
   * Runs `work` between BEGIN and COMMIT on one connection; any failure rolls it all back.
   * A connection that failed (or could not roll back) is destroyed, not returned to the pool.
   */
  async #transaction<T>(work: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#serve(() => this.#pool.connect())
    // A connection cut between two statements reports it at the next one (and its 'error' event
    // has the listener every connection gets in the constructor).
    let broken: Error | undefined
    try {
      await this.#query('BEGIN', [], client)
      const result = await work(client)
      await this.#query('COMMIT', [], client)
      return result
    } catch (err) {
      broken = await client.query('ROLLBACK').then(
        () => undefined,
        (rollbackError: unknown) => (rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError))),
      )
      throw err
    } finally {
      client.release(broken)
    }
  }

  /** Runs a driver call; a server that cannot serve now is StoreUnavailableError. */
  async #serve<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call()
    } catch (err) {
      if (isServerUnavailable(err))
        throw new StoreUnavailableError(`PostgreSQL at ${this.#where} cannot serve: ${describeError(err)}`, {
          cause: err,
        })
      throw err
    }
  }

  async #connect(): Promise<PoolClient> {
    try {
      return await this.#pool.connect()
    } catch (err) {
      throw new Error(`cannot connect to PostgreSQL at ${this.#where}: ${describeError(err)}`, { cause: err })
    }
  }
}

/** Where a statement runs: any pooled connection, or the one holding a transaction. */
type Queryable = Pool | PoolClient

/**
 * The server is unreachable, went away mid-query (restart, pg_terminate_backend), or refuses
 * new work for now: SQLSTATE classes 08 (connection exception) and 53 (insufficient resources),
 * 57P01-57P03 (shutdown, cannot connect now), socket errors, and pg's own connection errors.
 */
function isServerUnavailable(err: unknown): boolean {
  if (err instanceof DatabaseError) return /^(08|53|57P0[123])/.test(err.code ?? '')
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN)$/.test(code)) return true
  return (
    err instanceof Error &&
    /^Connection terminated|timeout exceeded when trying to connect|not queryable/.test(err.message)
  )
}

/** `host:port/database` from a connection string, without user or password. */
function describeServer(connectionString: string): string {
  try {
    const url = new URL(connectionString)
    const host = url.hostname || url.searchParams.get('host') || 'localhost'
    return `${host}:${url.port || '5432'}${url.pathname || '/'}`
  } catch {
    return 'the configured server'
  }
}

function describeError(err: unknown): string {
  // A host name with several addresses fails with an AggregateError whose own message is empty.
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(describeError).join('; ')
  if (err instanceof Error) return err.message || (err as NodeJS.ErrnoException).code || err.name
  return String(err)
}
