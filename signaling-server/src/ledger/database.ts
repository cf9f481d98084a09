/**
 * The ledger's SQL connection: PGlite (PostgreSQL compiled to wasm) in-process on a data directory
 * (or in memory for tests), or a PostgreSQL server by `postgres://` URL through the `pg` client —
 * the same SQL and migrations on both. Opening checks the connection and migrates the schema to the
 * latest version (schema.ts); a store that cannot be reached or migrated is `LEDGER_UNAVAILABLE`.
 */
import { mkdirSync } from 'node:fs';
import { RingworkError } from '../../../shared/errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from './schema.js';

/** The SQL the ledger uses: queries with positional parameters and transactions. */
export interface SqlDb {
  /** `postgres`: a server through `pg` (no `options.blob` COPY; the ledger inserts with unnest). */
  readonly dialect?: 'pglite' | 'postgres';
  query<T>(sql: string, params?: unknown[]): Promise<{ rows: T[] }>;
  exec(sql: string): Promise<unknown>;
  transaction<T>(fn: (tx: SqlTx) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** A transaction: the same queries, committed together. */
export interface SqlTx {
  /** `options.blob` feeds `COPY … FROM '/dev/blob'` (PGlite's COPY FROM STDIN). */
  query<T>(sql: string, params?: unknown[], options?: { blob?: Blob }): Promise<{ rows: T[] }>;
  exec(sql: string): Promise<unknown>;
}

/** Where the ledger lives. */
export type LedgerStore =
  { kind: 'memory' } | { kind: 'dir'; dataDir: string } | { kind: 'postgres'; url: string };

/** Opens the store and migrates it; throws `LEDGER_UNAVAILABLE` naming the store when it cannot. */
export async function openDatabase(store: LedgerStore): Promise<SqlDb> {
  const where =
    store.kind === 'dir' ? store.dataDir : store.kind === 'postgres' ? redact(store.url) : 'memory';
  let db: SqlDb;
  try {
    if (store.kind === 'postgres') db = await openPostgres(store.url);
    else {
      if (store.kind === 'dir') mkdirSync(store.dataDir, { recursive: true });
      // Loaded on demand: a server without a ledger never pays for the wasm.
      const { PGlite } = await import('@electric-sql/pglite');
      db = await PGlite.create(store.kind === 'dir' ? store.dataDir : undefined);
    }
  } catch (e) {
    throw new RingworkError(
      'LEDGER_UNAVAILABLE',
      `Cannot open the ledger database at ${where}: ${e instanceof Error ? e.message : String(e)}`,
      { details: { store: where }, cause: e },
    );
  }
  try {
    await migrate(db);
  } catch (e) {
    await db.close().catch(() => undefined);
    if (e instanceof RingworkError) throw e;
    throw new RingworkError('LEDGER_UNAVAILABLE', `Cannot migrate the ledger database at ${where}.`, {
      details: { store: where },
      cause: e,
    });
  }
  return db;
}

/** The URL without its password, for messages and logs. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres (unparseable URL)';
  }
}

/**
 * A PostgreSQL server through a `pg` pool. The pool is checked with one query before it is used,
 * so an unreachable server fails the start; later connection errors surface as failed queries
 * (the ledger retries them) and the pool's own idle-client errors are swallowed here, not thrown
 * at the process.
 */
async function openPostgres(url: string): Promise<SqlDb> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 10_000 });
  pool.on('error', () => undefined);
  try {
    await pool.query('SELECT 1');
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw e;
  }
  const run = async <T>(
    c: { query: (sql: string, params?: unknown[]) => Promise<{ rows: unknown[] }> },
    sql: string,
    params?: unknown[],
  ) => ({ rows: (await c.query(sql, params)).rows as T[] });
  return {
    dialect: 'postgres',
    query: <T>(sql: string, params?: unknown[]) => run<T>(pool, sql, params),
    exec: (sql) => pool.query(sql),
    async transaction<T>(fn: (tx: SqlTx) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        const result = await fn({
          query: <R>(sql: string, params?: unknown[], options?: { blob?: Blob }) => {
            if (options?.blob) throw new Error('COPY from a blob is PGlite-only; use unnest on postgres.');
            return run<R>(client, sql, params);
          },
          exec: (sql) => client.query(sql),
        });
        await client.query('COMMIT');
        return result;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => (broken = true));
        throw e;
      } finally {
        client.release(broken);
      }
    },
    close: () => pool.end(),
  };
}

/** Applies the migrations the database lacks, each in its own transaction. Returns the versions applied. */
export async function migrate(db: SqlDb): Promise<number[]> {
  await db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
  );
  const have = new Set(
    (await db.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version),
  );
  const newest = Math.max(0, ...have);
  if (newest > SCHEMA_VERSION) {
    throw new RingworkError(
      'LEDGER_UNAVAILABLE',
      `The ledger database is at schema version ${newest}, newer than this build's ${SCHEMA_VERSION}; upgrade the server.`,
      { details: { version: newest, supported: SCHEMA_VERSION } },
    );
  }
  const applied: number[] = [];
  for (const m of MIGRATIONS) {
    if (have.has(m.version)) continue;
    await db.transaction(async (tx) => {
      await tx.exec(m.sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    });
    applied.push(m.version);
  }
  return applied;
}
