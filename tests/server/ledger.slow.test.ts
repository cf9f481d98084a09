/**
 * The ledger on a real PGlite database in a temporary data directory: migration from empty, credit
 * = validated FLOPs by the model profile (checked against the stories260K profile), nothing for
 * failed or unvalidated steps, anonymous stages or a requester's own identity, credits that survive
 * a reopen, a database that fails mid-run (records kept, errors logged, caught up), bad records and
 * penalties without evidence refused, an unreachable database at start refused with a typed error.
 *
 * Slow: creating a PGlite cluster costs ~10 s on the shared 2-core machine; one directory is created
 * once and reused (the ledger is closed between uses).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isRingworkError, type ErrorCode } from '../../shared/errors';
import type { ModelProfile } from '../../shared/model/profile';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { systemClock } from '../../signaling-server/src/clock';
import { flopsFromProfiles, flopsPerStep } from '../../signaling-server/src/ledger/credit';
import { migrate, openDatabase, type SqlDb } from '../../signaling-server/src/ledger/database';
import { createLedger, type Ledger, type StepRecord } from '../../signaling-server/src/ledger/ledger';
import { SCHEMA_VERSION } from '../../signaling-server/src/ledger/schema';
import { scaled } from '../helpers/timeouts';

const silent = pino({ level: 'silent' });
let dir: string;
let profile: ModelProfile;
let flopsOf: ReturnType<typeof flopsFromProfiles>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ringwork-ledger-'));
  const catalog = await loadCatalog([]);
  profile = catalog[0]!.profile;
  flopsOf = flopsFromProfiles(new Map([[catalog[0]!.descriptor.id, profile]]));
}, scaled(30_000));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const addr = (): string => privateKeyToAccount(generatePrivateKey()).address;

async function codeOf(f: () => unknown): Promise<ErrorCode | 'ok'> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    if (isRingworkError(e)) return e.code;
    throw e;
  }
}

async function withLedger<T>(
  fn: (ledger: Ledger, db: SqlDb) => Promise<T>,
  opts: { wrap?: (db: SqlDb) => SqlDb; logger?: typeof silent } = {},
): Promise<T> {
  const raw = await openDatabase({ kind: 'dir', dataDir: dir });
  const db = opts.wrap ? opts.wrap(raw) : raw;
  const ledger = createLedger({
    db,
    clock: systemClock,
    logger: opts.logger ?? silent,
    flopsOf,
    retryMs: 20,
    maxRetryMs: 100,
  });
  try {
    return await fn(ledger, raw);
  } finally {
    await ledger.stop();
  }
}

describe('ledger on PGlite', () => {
  it(
    'migrates an empty data directory to the latest schema, once',
    async () => {
      const db = await openDatabase({ kind: 'dir', dataDir: dir });
      try {
        const v = await db.query<{ version: number }>(
          'SELECT version FROM schema_migrations ORDER BY version',
        );
        expect(v.rows.map((r) => r.version)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
        const tables = await db.query<{ table_name: string }>(
          "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
        );
        expect(tables.rows.map((r) => r.table_name)).toEqual([
          'api_usage',
          'credits',
          'evidence',
          'identities',
          'penalties',
          'requester_usage',
          'schema_migrations',
          'sessions_served',
          'slashes',
          'validated_work',
        ]);
        expect(await migrate(db)).toEqual([]);
      } finally {
        await db.close();
      }
    },
    // Creating a cluster takes 10 s on a quiet machine, minutes on a crowded one.
    scaled(240_000),
  );

  it(
    'credits validated FLOPs by the model profile, and nothing else',
    async () => {
      const n = profile.layers.length;
      const [a, b, c, req] = [addr(), addr(), addr(), addr()];
      const stages = [
        { peerId: 'p_a', address: a, units: [0, 2] as const },
        { peerId: 'p_b', address: b, units: [2, n - 1] as const },
        { peerId: 'p_c', address: c, units: [n - 1, n] as const },
      ];
      const rec = (over: Partial<StepRecord>): StepRecord => ({
        sessionId: 's1',
        model: 'stories260K',
        requester: { peerId: 'p_r', address: req },
        stages,
        steps: 10,
        verdict: 'passed',
        evidenceHash: 'ab'.repeat(16),
        ...over,
      });
      const sum = (from: number, to: number): number =>
        profile.layers.slice(from, to).reduce((s, l) => s + l.flopsPerToken, 0);
      await withLedger(async (ledger) => {
        await Promise.all([
          ledger.recordSteps(rec({})),
          ledger.recordSteps(rec({ steps: 7 })),
          ledger.recordSteps(rec({ verdict: 'failed', steps: 1000 })),
          ledger.recordSteps(rec({ verdict: 'unvalidated', steps: 1000 })),
          // The requester's own identity serving its own request, and an anonymous stage: no credit.
          ledger.recordSteps(
            rec({
              stages: [
                { peerId: 'p_own', address: req.toUpperCase().replace('0X', '0x'), units: [0, n] },
                { peerId: 'p_anon', units: [0, n] },
              ],
              steps: 500,
            }),
          ),
        ]);
        const board = await ledger.leaderboard(10);
        const byAddr = new Map(board.map((r) => [r.address, r]));
        expect(byAddr.get(a.toLowerCase())).toEqual({
          address: a.toLowerCase(),
          flops: 17 * sum(0, 2),
          validatedSteps: 17,
        });
        expect(byAddr.get(b.toLowerCase())?.flops).toBeCloseTo(17 * sum(2, n - 1), 6);
        expect(byAddr.get(c.toLowerCase())?.flops).toBeCloseTo(17 * sum(n - 1, n), 6);
        expect(byAddr.has(req.toLowerCase())).toBe(false);
        // Sorted by credit: the middle stage holds most units.
        expect(board[0]!.address).toBe(b.toLowerCase());
        expect(flopsPerStep(profile, [0, n])).toBeCloseTo(sum(0, n), 6);
        // Usage: every step the requester asked for, validated or not (steps counted once per record).
        expect((await ledger.usage(req)).steps).toBe(10 + 7 + 1000 + 1000 + 500);
      });
      // A reopen (a server restart) finds the same credits.
      await withLedger(async (ledger) => {
        expect(await ledger.account(a)).toMatchObject({ flops: 17 * sum(0, 2), validatedSteps: 17 });
      });
    },
    scaled(60_000),
  );

  it(
    'refuses bad records and a penalty without recorded evidence',
    async () => {
      await withLedger(async (ledger) => {
        const base: StepRecord = {
          sessionId: 's2',
          model: 'stories260K',
          requester: { peerId: 'p_r' },
          stages: [{ peerId: 'p_x', address: addr(), units: [0, 1] }],
          steps: 1,
          verdict: 'passed',
        };
        expect(await codeOf(() => ledger.recordSteps({ ...base, model: 'nope' }))).toBe('LEDGER_BAD_RECORD');
        expect(await codeOf(() => ledger.recordSteps({ ...base, steps: 0 }))).toBe('LEDGER_BAD_RECORD');
        expect(
          await codeOf(() =>
            ledger.recordSteps({ ...base, stages: [{ peerId: 'p_x', units: [0, 10_000] }] }),
          ),
        ).toBe('LEDGER_BAD_RECORD');
        const who = addr();
        expect(
          await codeOf(() =>
            ledger.recordPenalty({ address: who, reason: 'tampered', evidenceHash: 'cd'.repeat(16) }),
          ),
        ).toBe('LEDGER_BAD_RECORD');
        expect(
          await codeOf(() => ledger.recordPenalty({ address: who, reason: 'tampered', evidenceHash: '' })),
        ).toBe('LEDGER_BAD_RECORD');
        await ledger.recordEvidence({
          hash: 'cd'.repeat(16),
          sessionId: 's2',
          verdict: 'deviant',
          payload: { stage: 1 },
        });
        expect(
          await codeOf(() =>
            ledger.recordPenalty({ address: who, reason: 'tampered', evidenceHash: 'cd'.repeat(16) }),
          ),
        ).toBe('ok');
      });
    },
    scaled(60_000),
  );

  it(
    'keeps records while the database fails mid-run, logs loudly, and catches up',
    async () => {
      let down = false;
      const errors: string[] = [];
      const logger = pino({ level: 'error' }, { write: (s: string) => void errors.push(s) });
      const wrap = (db: SqlDb): SqlDb => ({
        ...db,
        query: (sql, params) => db.query(sql, params),
        exec: (sql) => db.exec(sql),
        close: () => db.close(),
        transaction: (fn) =>
          down ? Promise.reject(new Error('connection refused (simulated)')) : db.transaction(fn),
      });
      const who = addr();
      await withLedger(
        async (ledger) => {
          down = true;
          let committed = 0;
          const writes = Array.from({ length: 50 }, (_, i) =>
            ledger
              .recordSteps({
                sessionId: `s3-${i}`,
                model: 'stories260K',
                requester: { peerId: 'p_r' },
                stages: [{ peerId: 'p_w', address: who, units: [0, 1] }],
                steps: 2,
                verdict: 'passed',
              })
              .then(() => void committed++),
          );
          await vi.waitFor(() => expect(ledger.stats().failures).toBeGreaterThanOrEqual(2), {
            timeout: scaled(10_000),
          });
          expect(ledger.stats()).toMatchObject({ degraded: true, pending: 50 });
          expect(committed).toBe(0);
          expect(errors.some((e) => e.includes('ledger commit failed'))).toBe(true);
          down = false;
          await Promise.all(writes);
          expect(ledger.stats()).toMatchObject({ degraded: false, pending: 0, dropped: 0 });
          expect(await ledger.account(who)).toMatchObject({ validatedSteps: 100 });
        },
        { wrap, logger },
      );
    },
    scaled(60_000),
  );

  it('API usage per key: requests and tokens add up per principal; bad counts are LEDGER_BAD_RECORD', async () => {
    await withLedger(async (ledger) => {
      const key = `key:${process.pid.toString(16).padStart(8, '0').slice(-8)}`;
      const before = await ledger.apiUsage(key);
      await ledger.recordApiUsage({ principal: key, promptTokens: 5, completionTokens: 60 });
      await ledger.recordApiUsage({ principal: key, promptTokens: 3, completionTokens: 7 });
      await ledger.recordApiUsage({ principal: 'key:other000', promptTokens: 1, completionTokens: 1 });
      expect(await ledger.apiUsage(key)).toEqual({
        principal: key,
        requests: before.requests + 2,
        promptTokens: before.promptTokens + 8,
        completionTokens: before.completionTokens + 67,
      });
      expect(
        await codeOf(() => ledger.recordApiUsage({ principal: key, promptTokens: -1, completionTokens: 0 })),
      ).toBe('LEDGER_BAD_RECORD');
      expect(
        await codeOf(() => ledger.recordApiUsage({ principal: '', promptTokens: 1, completionTokens: 1 })),
      ).toBe('LEDGER_BAD_RECORD');
      expect((await ledger.apiUsage(key)).requests).toBe(before.requests + 2);
    });
  });

  it('an unreachable store at start is LEDGER_UNAVAILABLE', async () => {
    const file = join(dir, '..', `not-a-dir-${process.pid}`);
    writeFileSync(file, 'x');
    try {
      expect(await codeOf(() => openDatabase({ kind: 'dir', dataDir: join(file, 'db') }))).toBe(
        'LEDGER_UNAVAILABLE',
      );
    } finally {
      rmSync(file, { force: true });
    }
    expect(await codeOf(() => openDatabase({ kind: 'postgres', url: 'postgres://127.0.0.1:1/x' }))).toBe(
      'LEDGER_UNAVAILABLE',
    );
  });
});
