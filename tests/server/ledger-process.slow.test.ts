/**
 * The ledger across processes: a writer killed with SIGKILL mid-write loses nothing it reported
 * committed (PGlite recovers from its WAL on the next open); the real server process refuses to
 * start on a data directory it cannot open, or on a postgres:// URL this build does not serve (typed
 * error, exit 1); an in-process server records signed-in sessions and serves credits that survive
 * its restart on the same directory.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createSiweMessage } from 'viem/siwe';
import { afterAll, describe, expect, it } from 'vitest';
import { SIGNALING_VERSION } from '../../shared/protocol/signaling';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { systemClock } from '../../signaling-server/src/clock';
import { openLedger } from '../../signaling-server/src/ledger/ledger';
import { createSignalingServer } from '../../signaling-server/src/server';
import { scaled } from '../helpers/timeouts';
import { connect } from './signaling-test-client';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'ringwork-ledger-proc-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const tsx = (args: string[]) =>
  spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });

describe('ledger durability and start-up', () => {
  it(
    'a writer killed mid-write loses nothing it reported committed',
    async () => {
      const dir = tempDir();
      const address = privateKeyToAccount(generatePrivateKey()).address;
      const child = tsx(['tests/server/ledger-crash-child.ts', join(dir, 'db'), address]);
      let committed = 0;
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      await new Promise<void>((done, fail) => {
        let buf = '';
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          for (const m of buf.matchAll(/COMMITTED (\d+)\n/g)) committed = Math.max(committed, Number(m[1]));
          // Well into the run, with records of the next round in flight: kill it.
          if (committed >= 200) {
            child.kill('SIGKILL');
            done();
          }
        });
        child.once('exit', (code) =>
          code === null ? undefined : fail(new Error(`child exited ${code}: ${err}`)),
        );
      });
      await new Promise((r) => child.once('exit', r));
      const ledger = await openLedger(
        { kind: 'dir', dataDir: join(dir, 'db') },
        { clock: systemClock, logger: pino({ level: 'silent' }), flopsOf: () => 1 },
      );
      try {
        const a = await ledger.account(address);
        expect(a.validatedSteps).toBeGreaterThanOrEqual(committed);
        // Whole records only: the kill never leaves half a batch (steps come in rounds of 10).
        expect(a.validatedSteps % 10).toBe(0);
        expect(a.flops).toBe(a.validatedSteps * 2000);
      } finally {
        await ledger.stop();
      }
    },
    scaled(180_000),
  );

  it(
    'the server process exits 1 with LEDGER_UNAVAILABLE when the database cannot be opened',
    async () => {
      const file = join(tempDir(), 'a-file');
      writeFileSync(file, 'x');
      for (const flags of [
        ['--data-dir', join(file, 'db')],
        ['--database', 'postgres://127.0.0.1:1/ringwork'],
      ]) {
        const child = tsx(['signaling-server/src/main.ts', '--port', '0', '--host', '127.0.0.1', ...flags]);
        let err = '';
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const code = await new Promise<number | null>((r) => child.once('exit', r));
        expect(code).toBe(1);
        expect(err).toContain('[LEDGER_UNAVAILABLE]');
      }
    },
    scaled(120_000),
  );

  it(
    'records signed-in sessions and serves credits that survive a server restart',
    async () => {
      const dataDir = join(tempDir(), 'db');
      const account = privateKeyToAccount(generatePrivateKey());
      const catalog = await loadCatalog([]);
      const start = async () => {
        const srv = createSignalingServer(
          { host: '127.0.0.1', port: 0, testMode: true, dataDir },
          { logger: pino({ level: 'silent' }), catalog },
        );
        const { port } = await srv.start();
        return { srv, port, host: `127.0.0.1:${port}` };
      };
      const first = await start();
      const n = (await (await fetch(`http://${first.host}/api/auth/nonce`)).json()) as { nonce: string };
      const message = createSiweMessage({
        address: account.address,
        chainId: 1,
        domain: first.host,
        nonce: n.nonce,
        uri: `http://${first.host}/`,
        version: '1',
        issuedAt: new Date(),
      });
      const verify = await fetch(`http://${first.host}/api/auth/verify`, {
        method: 'POST',
        body: JSON.stringify({ message, signature: await account.signMessage({ message }) }),
      });
      const { token } = (await verify.json()) as { token: string };
      const ws = await connect(first.port);
      ws.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['contributor'], identity: token });
      const welcome = await ws.next('welcome');
      const units = catalog[0]!.descriptor.units;
      await first.srv.ledger!.recordSteps({
        sessionId: 'chat-1',
        model: catalog[0]!.descriptor.id,
        requester: { peerId: 'p_someone_else_00' },
        stages: [{ peerId: welcome.peerId, address: account.address, units: [0, units] }],
        steps: 12,
        verdict: 'passed',
      });
      await first.srv.ledger!.flush();
      ws.close();
      const expected = 12 * catalog[0]!.profile.layers.reduce((s, l) => s + l.flopsPerToken, 0);
      const me = `/api/ledger/account/${account.address}`;
      const acc1 = (await (await fetch(`http://${first.host}${me}`)).json()) as Record<string, unknown>;
      expect(acc1).toMatchObject({ sessions: 1, validatedSteps: 12 });
      expect(acc1.flops as number).toBeCloseTo(expected, 3);
      await first.srv.stop();

      const second = await start();
      try {
        const board = (await (await fetch(`http://${second.host}/api/ledger/leaderboard`)).json()) as {
          leaderboard: Array<{ address: string; flops: number; validatedSteps: number }>;
        };
        expect(board.leaderboard).toHaveLength(1);
        expect(board.leaderboard[0]).toMatchObject({
          address: account.address.toLowerCase(),
          validatedSteps: 12,
        });
        expect(board.leaderboard[0]!.flops).toBeCloseTo(expected, 3);
      } finally {
        await second.srv.stop();
      }
    },
    scaled(180_000),
  );
});
