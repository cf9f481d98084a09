/**
 * The ledger across processes: a writer killed with SIGKILL mid-write loses nothing it reported
 * committed (PGlite recovers from its WAL on the next open); the real server process refuses to
 * start on a data directory it cannot open, or on a postgres:// server it cannot reach (typed
 * error, exit 1); an in-process server records signed-in sessions and serves credits that survive
 * its restart on the same directory; and the real server process credits validated work of a real
 * ring to its signed-in contributors (the requester's own address excepted), is killed with SIGKILL,
 * restarts on the same --data-dir and still shows the credits on its leaderboard.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createSiweMessage } from 'viem/siwe';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { SIGNALING_VERSION } from '../../shared/protocol/signaling';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { systemClock } from '../../signaling-server/src/clock';
import { openLedger } from '../../signaling-server/src/ledger/ledger';
import { createSignalingServer } from '../../signaling-server/src/server';
import { provenWork } from '../helpers/work-proof';
import { scaled } from '../helpers/timeouts';
import { capability, connect, type TestClient } from './signaling-test-client';
import { signIn } from '../helpers/siwe';

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

/** Starts the real server process; resolves with its port once it prints RINGWORK_LISTENING. */
async function startProcess(args: string[]) {
  const child = tsx(['signaling-server/src/main.ts', '--port', '0', '--host', '127.0.0.1', ...args]);
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((done, fail) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /RINGWORK_LISTENING (\d+)/.exec(buf);
      if (m) done(Number(m[1]));
    });
    child.once('exit', (code) => fail(new Error(`server exited ${code}: ${err}`)));
  });
  return { child, port, host: `127.0.0.1:${port}` };
}

describe('credits from validated work in the real server process', () => {
  it(
    'credits each contributor its units’ FLOPs × steps proven by two rings’ signed commitments (not the requester’s word), survives SIGKILL and restart',
    async () => {
      const dataDir = join(tempDir(), 'db');
      const catalog = await loadCatalog([]);
      const model = catalog[0]!;
      // Six contributors: the primary ring and one validator ring (security level 2), disjoint.
      const accounts = [0, 1, 2, 3, 4, 5].map(() => privateKeyToAccount(generatePrivateKey()));
      const clients: TestClient[] = [];
      const first = await startProcess([
        '--data-dir',
        dataDir,
        '--replan-debounce-ms',
        '20',
        // As few stages as memory allows (not every peer, as throughput would take once all six
        // have joined): the peers left over form the validator ring.
        '--objective',
        'latency',
        // Every test peer is on 127.0.0.1: validator rings may not insist on other networks here.
        '--validator-networks',
        'any',
        // The test's peers send no heartbeats while the proof is generated (over 15 s on a busy
        // machine): the default timeout dropped them mid-test (PROTOCOL_TIMEOUT).
        '--heartbeat-timeout-ms',
        '600000',
      ]);
      try {
        const peers: string[] = [];
        const byPeer = new Map<string, TestClient>();
        for (const account of accounts) {
          const token = await signIn(first.host, account);
          const c = await connect(first.port);
          clients.push(c);
          c.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['contributor'], identity: token });
          const id = (await c.next('welcome')).peerId;
          peers.push(id);
          byPeer.set(id, c);
          c.send({ type: 'profile', v: 1, capability: capability(1_000_000) });
        }
        // The requester signed in as contributor 0's address: its own identity earns nothing.
        const req = await connect(first.port);
        clients.push(req);
        const reqToken = await signIn(first.host, accounts[0]!);
        req.send({ type: 'hello', v: SIGNALING_VERSION, roles: ['requester'], identity: reqToken });
        await req.next('welcome');
        req.send({ type: 'ring-request', v: 1, model: model.descriptor.id, security: { v: 1, k: 2 } });
        const ring = await vi.waitFor(
          async () => {
            const r = await req.next('ring');
            expect(r.validators?.length).toBe(1);
            return r;
          },
          { timeout: scaled(30_000) },
        );
        const validator = ring.validators![0]!;
        const inRings = [...ring.stages, ...validator.stages].map((s) => s.peer);
        expect(new Set(inRings).size).toBe(inRings.length);

        // Real commitments from two honest rings of the same shape, their keys registered by the
        // server peers standing in those places: the proof the server checks itself.
        const work = await provenWork({
          model: model.descriptor.id,
          ringIds: [ring.ringId, validator.ringId],
          stages: ring.stages.length,
          steps: 20,
        });
        [ring, validator].forEach((r, j) =>
          r.stages.forEach((s, i) =>
            byPeer.get(s.peer)!.send({ type: 'validation-key', v: 1, key: work.keys[j]![i]! }),
          ),
        );
        // Without a proof the requester's word credits nobody.
        req.send({
          type: 'validated-work',
          v: 1,
          model: model.descriptor.id,
          ringId: ring.ringId,
          steps: 20,
        });
        expect((await req.next('error')).code).toBe('VALIDATION_UNPROVEN_WORK');
        for (const m of work.messages) req.send({ ...m, v: 1 });
        const steps = work.steps;
        expect(steps).toBeGreaterThan(0);

        const perStep = (range: readonly [number, number]): number => {
          let f = 0;
          for (let u = range[0]; u < range[1]; u++) f += model.profile.layers[u]!.flopsPerToken;
          return f;
        };
        const expected = new Map<string, number>();
        for (const s of [...ring.stages, ...validator.stages]) {
          const i = peers.indexOf(s.peer);
          if (i !== 0) expected.set(accounts[i]!.address.toLowerCase(), steps * perStep(s.range));
        }
        const board = async (host: string) =>
          (
            (await (await fetch(`http://${host}/api/ledger/leaderboard`)).json()) as {
              leaderboard: Array<{ address: string; flops: number; validatedSteps: number }>;
            }
          ).leaderboard;
        const check = (rows: Awaited<ReturnType<typeof board>>) => {
          expect(rows.map((r) => r.address).sort()).toEqual([...expected.keys()].sort());
          for (const r of rows) {
            expect(r.validatedSteps).toBe(steps);
            expect(r.flops).toBeCloseTo(expected.get(r.address)!, 3);
          }
        };
        // The proof's messages are checked concurrently (signatures are async): wait for all of them.
        await vi.waitFor(async () => check(await board(first.host)), {
          timeout: scaled(30_000),
          interval: 200,
        });
        const own = (await (
          await fetch(`http://${first.host}/api/ledger/account/${accounts[0]!.address}`)
        ).json()) as { flops: number; usage: { steps: number } };
        expect(own.flops).toBe(0);
        // Its usage: the validated steps, once per ring it asked.
        expect(own.usage.steps).toBe(2 * steps);

        // A crash, not a shutdown: what the leaderboard showed was committed.
        for (const c of clients.splice(0)) c.ws.terminate();
        first.child.kill('SIGKILL');
        await new Promise((r) => first.child.once('exit', r));

        const second = await startProcess(['--data-dir', dataDir]);
        try {
          check(await board(second.host));
        } finally {
          second.child.kill('SIGTERM');
          await new Promise((r) => second.child.once('exit', r));
        }
      } finally {
        for (const c of clients) c.ws.terminate();
        if (first.child.exitCode === null && first.child.signalCode === null) first.child.kill('SIGKILL');
      }
    },
    scaled(240_000),
  );
});
