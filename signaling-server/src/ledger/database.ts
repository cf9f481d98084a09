/**
 * The ledger's SQL connection. PGlite (PostgreSQL compiled to wasm) runs in-process on a data
 * directory (or in memory for tests); a `postgres://` server is not wired in this build (no
 * client library is kept tested here) and is refused with a clear error. Opening migrates the schema
 * to the latest version (schema.ts).
 */
import { mkdirSync } from 'node:fs';
import { RingworkError } from '../../../shared/errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from './schema.js';

/** The SQL the ledger uses: queries with positional parameters and transactions. */
export interface SqlDb {
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
  if (store.kind === 'postgres') {
    throw new RingworkError(
      'LEDGER_UNAVAILABLE',
      'A postgres:// ledger is not supported by this build yet; use --data-dir (embedded PGlite).',
      { details: { store: 'postgres' } },
    );
  }
  const where = store.kind === 'dir' ? store.dataDir : 'memory';
  let db: SqlDb;
  try {
    if (store.kind === 'dir') mkdirSync(store.dataDir, { recursive: true });
    // Loaded on demand: a server without a ledger never pays for the wasm.
    const { PGlite } = await import('@electric-sql/pglite');
    db = await PGlite.create(store.kind === 'dir' ? store.dataDir : undefined);
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
