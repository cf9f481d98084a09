/**
 * The ledger's schema as ordered migrations. Each runs once, in its own transaction, and is recorded
 * in `schema_migrations`; a database is brought from empty (or any earlier version) to the latest at
 * start. Plain PostgreSQL: the same SQL runs on PGlite and on a server.
 *
 * Amounts of work are FLOPs as double precision (a contributor's lifetime total passes 2^53 soon
 * after 10 PFLOP; the relative error of a double is far below what credit needs).
 */

/** One migration: its version (1, 2, …) and its statements. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Every migration, oldest first. Append; never edit one that has shipped. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial ledger',
    sql: `
      CREATE TABLE identities (
        address text PRIMARY KEY,
        first_seen bigint NOT NULL,
        last_seen bigint NOT NULL
      );
      -- A signaling session that presented an identity (one row per session and address).
      CREATE TABLE sessions_served (
        id bigserial PRIMARY KEY,
        peer_id text NOT NULL,
        address text NOT NULL REFERENCES identities(address),
        started_at bigint NOT NULL
      );
      CREATE INDEX sessions_served_address ON sessions_served(address);
      -- One row per stage per record: the units it served for how many steps, and whether the steps
      -- passed validation. Only validated rows earn credit.
      CREATE TABLE validated_work (
        id bigserial PRIMARY KEY,
        session_id text NOT NULL,
        model text NOT NULL,
        peer_id text NOT NULL,
        address text,
        requester text NOT NULL,
        unit_start integer NOT NULL,
        unit_end integer NOT NULL,
        steps integer NOT NULL,
        flops double precision NOT NULL,
        verdict text NOT NULL CHECK (verdict IN ('passed', 'failed', 'unvalidated')),
        credited boolean NOT NULL,
        evidence_hash text,
        at bigint NOT NULL
      );
      -- No index on address: per-address totals live in credits; this table is the audit trail.
      CREATE TABLE credits (
        address text PRIMARY KEY,
        flops double precision NOT NULL DEFAULT 0,
        validated_steps bigint NOT NULL DEFAULT 0,
        updated_at bigint NOT NULL
      );
      CREATE INDEX credits_flops ON credits(flops DESC);
      CREATE TABLE evidence (
        hash text PRIMARY KEY,
        session_id text NOT NULL,
        verdict text NOT NULL,
        payload jsonb NOT NULL,
        at bigint NOT NULL
      );
      CREATE TABLE penalties (
        id bigserial PRIMARY KEY,
        address text NOT NULL,
        reason text NOT NULL,
        evidence_hash text NOT NULL REFERENCES evidence(hash),
        amount numeric NOT NULL DEFAULT 0,
        at bigint NOT NULL
      );
      -- What each requester (address, or peer id when anonymous) consumed.
      CREATE TABLE requester_usage (
        requester text PRIMARY KEY,
        steps bigint NOT NULL DEFAULT 0,
        flops double precision NOT NULL DEFAULT 0,
        updated_at bigint NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'validated work merged per batch',
    sql: `
      -- The writer merges the rows of one batch that share session, stage, units, verdict,
      -- requester and evidence: steps and flops are their sums and records how many
      -- step records were merged (1 for every row written before version 2).
      ALTER TABLE validated_work ADD COLUMN records integer NOT NULL DEFAULT 1;
    `,
  },
  {
    version: 3,
    name: 'on-chain slashes',
    sql: `
      -- One slash per proven deviation (its evidence): the stake slasher's state, the transaction
      -- that carried it once sent, and how many attempts it took (failures are retried).
      CREATE TABLE slashes (
        evidence_hash text PRIMARY KEY REFERENCES evidence(hash),
        address text NOT NULL,
        state text NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
        tx_hash text,
        attempts integer NOT NULL DEFAULT 0,
        last_error text,
        at bigint NOT NULL
      );
      CREATE INDEX slashes_address ON slashes(address);
    `,
  },
  {
    version: 4,
    name: 'API usage per key',
    sql: `
      -- What each API principal used (an API key by its hash prefix, never the key; or an
      -- anonymous client's address bucket): requests answered and tokens read and generated.
      CREATE TABLE api_usage (
        principal text PRIMARY KEY,
        requests bigint NOT NULL DEFAULT 0,
        prompt_tokens bigint NOT NULL DEFAULT 0,
        completion_tokens bigint NOT NULL DEFAULT 0,
        updated_at bigint NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: 'requests and tokens per requester',
    sql: `
      -- A signed-in requester's answers on rings and the tokens they generated (its ring-lap
      -- reports: its own word, about its own usage only), next to its validated steps.
      ALTER TABLE requester_usage ADD COLUMN requests bigint NOT NULL DEFAULT 0;
      ALTER TABLE requester_usage ADD COLUMN tokens bigint NOT NULL DEFAULT 0;
    `,
  },
];

/** The latest schema version this build knows. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
