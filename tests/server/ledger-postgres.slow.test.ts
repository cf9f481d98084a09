/**
 * The ledger on a real PostgreSQL server (`--database postgres://…`, the `pg` client): a throwaway
 * cluster (initdb + pg_ctl in a temporary directory, unix socket only, no TCP) gets the same
 * migrations as PGlite, records credits and penalties, keeps them across a reopen, and the real
 * server process started with `--database` serves them. Skipped, saying why, when the PostgreSQL
 * binaries are not installed (`.ci/run` installs Debian's postgresql).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../signaling-server/src/clock';
import { openDatabase } from '../../signaling-server/src/ledger/database';
import { openLedger } from '../../signaling-server/src/ledger/ledger';
import { SCHEMA_VERSION } from '../../signaling-server/src/ledger/schema';
import { scaled } from '../helpers/timeouts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The directory holding initdb and pg_ctl (PATH first, then Debian's versioned directories). */
function postgresBin(): string | null {
  for (const d of (process.env.PATH ?? '').split(':'))
    if (d && existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl'))) return d;
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  for (const v of readdirSync(base).sort().reverse())
    if (existsSync(join(base, v, 'bin', 'initdb'))) return join(base, v, 'bin');
  return null;
}

const BIN = postgresBin();
// PostgreSQL refuses to run as root: the cluster then runs as the `postgres` system user.
const asUser = ((): { uid?: number; gid?: number } | null => {
  if (process.getuid?.() !== 0) return {};
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
    return { uid, gid };
  } catch {
    return null;
  }
})();
const skip = !BIN
  ? 'PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install postgresql'
  : asUser === null
    ? 'running as root without a postgres system user to run the cluster as'
    : null;

let dir = '';
let url = '';

beforeAll(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'ringwork-pg-'));
  if (asUser?.uid !== undefined && asUser.gid !== undefined) chownSync(dir, asUser.uid, asUser.gid);
  const data = join(dir, 'data');
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(join(BIN!, cmd), args, { ...asUser, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout}`);
  };
  run('initdb', ['-D', data, '-U', 'ringwork', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  // A private socket directory and no TCP listener: nothing collides with other servers here.
  const port = 20_000 + Math.floor(Math.random() * 30_000);
  run('pg_ctl', [
    '-D',
    data,
    '-l',
    join(dir, 'log'),
    '-w',
    '-o',
    `-k ${dir} -c listen_addresses= -p ${port} -c fsync=off`,
    'start',
  ]);
  url = `postgres://ringwork@${encodeURIComponent(dir)}:${port}/postgres`;
}, scaled(120_000));

afterAll(() => {
  if (!dir) return;
  spawnSync(join(BIN!, 'pg_ctl'), ['-D', join(dir, 'data'), '-m', 'immediate', 'stop'], { ...asUser });
  rmSync(dir, { recursive: true, force: true });
});

const flopsOf = (_m: string, [a, b]: readonly [number, number]) => (b - a) * 1000;
const silent = pino({ level: 'silent' });

describe.skipIf(skip !== null)(`ledger on PostgreSQL${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it(
    'migrates from empty, credits validated work, records penalties and keeps them across a reopen',
    async () => {
      const db = await openDatabase({ kind: 'postgres', url });
      const versions = await db.query<{ version: number }>(
        'SELECT version FROM schema_migrations ORDER BY version',
      );
      expect(versions.rows.map((r) => r.version)).toEqual(
        Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1),
      );
      await db.close();

      const a = privateKeyToAccount(generatePrivateKey()).address;
      const own = privateKeyToAccount(generatePrivateKey()).address;
      const ledger = await openLedger(
        { kind: 'postgres', url },
        { clock: systemClock, logger: silent, flopsOf },
      );
      for (let i = 0; i < 50; i++)
        void ledger.recordSteps({
          sessionId: `s-${i % 3}`,
          model: 'm',
          requester: { peerId: 'p_req', address: own },
          stages: [
            { peerId: 'p_a', address: a, units: [0, 3] },
            { peerId: 'p_own', address: own, units: [3, 5] },
          ],
          steps: 2,
          verdict: i % 10 === 9 ? 'failed' : 'passed',
        });
      await ledger.flush();
      await ledger.recordEvidence({
        hash: 'ab'.repeat(32),
        sessionId: 's-0',
        verdict: 'proven',
        payload: { x: 1 },
      });
      await ledger.recordPenalty({ address: a, reason: 'equivocation', evidenceHash: 'ab'.repeat(32) });
      expect(await ledger.account(a)).toMatchObject({ validatedSteps: 90, flops: 90 * 3000 });
      expect(await ledger.account(own)).toMatchObject({ validatedSteps: 0, flops: 0 });
      expect(await ledger.usage(own)).toEqual({ steps: 100, flops: 100 * 5000, requests: 0, tokens: 0 });
      await ledger.stop();

      const again = await openLedger(
        { kind: 'postgres', url },
        { clock: systemClock, logger: silent, flopsOf },
      );
      try {
        expect(await again.leaderboard()).toEqual([
          { address: a.toLowerCase(), flops: 270_000, validatedSteps: 90 },
        ]);
        expect((await again.penalties(a)).map((p) => p.reason)).toEqual(['equivocation']);
      } finally {
        await again.stop();
      }
    },
    scaled(120_000),
  );

  it(
    'the real server process starts on --database and serves the leaderboard from it',
    async () => {
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          'signaling-server/src/main.ts',
          '--port',
          '0',
          '--host',
          '127.0.0.1',
          '--database',
          url,
        ],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      try {
        const port = await new Promise<number>((done, fail) => {
          let buf = '';
          let err = '';
          child.stderr.on('data', (d: Buffer) => (err += d.toString()));
          child.stdout.on('data', (d: Buffer) => {
            buf += d.toString();
            const m = /RINGWORK_LISTENING (\d+)/.exec(buf);
            if (m) done(Number(m[1]));
          });
          child.once('exit', (code) => fail(new Error(`server exited ${code}: ${err}`)));
        });
        const body = (await (await fetch(`http://127.0.0.1:${port}/api/ledger/leaderboard`)).json()) as {
          enabled: boolean;
          leaderboard: Array<{ flops: number }>;
        };
        expect(body.enabled).toBe(true);
        expect(body.leaderboard.map((r) => r.flops)).toEqual([270_000]);
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
    },
    scaled(120_000),
  );
});
