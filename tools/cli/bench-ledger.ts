/**
 * `npm run bench:ledger -- [--peers N] [--stages N] [--seconds S] [--target R] [--session-steps N] [--memory] [--json]`
 *
 * Step records per second the ledger commits on PGlite (after a 1 s warm-up), with `--peers` simulated contributors
 * (default 1,000) in rings of `--stages` (default 4): every ring step is one record per stage, and
 * a ring's steps belong to generation sessions of `--session-steps` steps (default 128, a chat
 * answer; 1 makes every step its own session, the worst case for the writer, which merges a batch's
 * records of one session and stage into one audit row). Two
 * phases on a fresh database (a temporary data directory unless `--memory`):
 * - paced: records offered at `--target` per second (default 20,000 = 1,000 peers × 20 steps/s) for
 *   `--seconds`; reports the committed rate and the write latency (enqueue → commit) p50/p99;
 * - saturated: as fast as the ledger takes them (at most 2 s of target load in flight); reports the
 *   sustained rate.
 * PASS when the paced phase keeps up with the target (≥ 95 % of it) and the saturated rate ≥ target.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { systemClock } from '../../signaling-server/src/clock.js';
import { openLedger, type Ledger } from '../../signaling-server/src/ledger/ledger.js';

const USAGE =
  'Usage: npm run bench:ledger -- [--peers N] [--stages N] [--seconds S] [--target R] [--session-steps N] [--memory] [--json]';

function num(name: string, v: string | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`--${name} must be a number >= ${min}, got "${v}".\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

const quantile = (sorted: number[], q: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

interface Phase {
  records: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** Simulated rings: peer i serves units [k, k+1) of ring floor(i / stages). */
function makeRings(
  peers: number,
  stages: number,
): Array<Array<{ peerId: string; address: string; units: [number, number] }>> {
  const rings: Array<Array<{ peerId: string; address: string; units: [number, number] }>> = [];
  for (let i = 0; i < peers; i++) {
    const r = Math.floor(i / stages);
    (rings[r] ??= []).push({
      peerId: `p_${String(i).padStart(16, '0')}`,
      address: `0x${i.toString(16).padStart(40, '0')}`,
      units: [i % stages, (i % stages) + 1],
    });
  }
  return rings;
}

async function run(
  ledger: Ledger,
  rings: ReturnType<typeof makeRings>,
  opts: { seconds: number; ratePerSecond: number | null; maxInFlight: number; sessionSteps: number },
): Promise<Phase> {
  const latencies: number[] = [];
  let committed = 0;
  let offered = 0;
  let inFlight = 0;
  let step = 0;
  const started = performance.now();
  const end = started + opts.seconds * 1000;
  const all: Array<Promise<void>> = [];
  while (performance.now() < end) {
    const elapsed = (performance.now() - started) / 1000;
    // Paced: offer what the target rate allows by now; saturated: whatever fits in flight.
    const allowed = opts.ratePerSecond === null ? Infinity : elapsed * opts.ratePerSecond - offered;
    let burst = 0;
    // No cap per turn beyond the in-flight bound: a commit holds the event loop (PGlite runs on this
    // thread), and the pacer must catch up after it, or it measures its own pauses.
    while (burst < allowed && inFlight < opts.maxInFlight) {
      const ringIndex = step % rings.length;
      const ring = rings[ringIndex]!;
      const round = Math.floor(step / rings.length);
      step++;
      const t0 = performance.now();
      inFlight += ring.length;
      offered += ring.length;
      burst += ring.length;
      const p = ledger
        .recordSteps({
          sessionId: `bench-${ringIndex}-${Math.floor(round / opts.sessionSteps)}`,
          model: 'bench',
          requester: { peerId: 'p_requester_000000' },
          stages: ring,
          steps: 1,
          verdict: 'passed',
        })
        .then(() => {
          latencies.push(performance.now() - t0);
          committed += ring.length;
          inFlight -= ring.length;
        });
      all.push(p);
      // Old batches are settled long ago; keep the list bounded (a failure still throws at the end via flush).
      if (all.length > 50_000) void all.splice(0, 25_000);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await ledger.flush();
  await Promise.all(all);
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    records: committed,
    seconds,
    perSecond: committed / seconds,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      peers: { type: 'string' },
      stages: { type: 'string' },
      seconds: { type: 'string' },
      target: { type: 'string' },
      'session-steps': { type: 'string' },
      memory: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const peers = num('peers', values.peers, 1000, 1);
  const stages = num('stages', values.stages, 4, 1);
  const seconds = num('seconds', values.seconds, 10, 1);
  const target = num('target', values.target, 20_000, 1);
  const sessionSteps = num('session-steps', values['session-steps'], 128, 1);
  const dir = values.memory ? null : mkdtempSync(join(tmpdir(), 'ringwork-bench-ledger-'));
  const t0 = performance.now();
  const ledger = await openLedger(dir ? { kind: 'dir', dataDir: dir } : { kind: 'memory' }, {
    clock: systemClock,
    logger: pino({ level: 'warn' }),
    flopsOf: (_m, [a, b]) => (b - a) * 1e9,
  });
  const openMs = performance.now() - t0;
  try {
    const rings = makeRings(peers, stages);
    // Warm-up, not counted: JIT, the wasm heap and the tables' first pages.
    await run(ledger, rings, { seconds: 1, ratePerSecond: null, maxInFlight: target, sessionSteps });
    const paced = await run(ledger, rings, {
      seconds,
      ratePerSecond: target,
      maxInFlight: target * 2,
      sessionSteps,
    });
    const saturated = await run(ledger, rings, {
      seconds,
      ratePerSecond: null,
      maxInFlight: target * 2,
      sessionSteps,
    });
    const pass = paced.perSecond >= 0.95 * target && saturated.perSecond >= target;
    if (values.json) {
      console.log(
        JSON.stringify({
          peers,
          stages,
          target,
          sessionSteps,
          load: loadavg(),
          store: dir ? 'dir' : 'memory',
          openMs,
          paced,
          saturated,
          pass,
        }),
      );
      return;
    }
    const row = (name: string, p: Phase): string =>
      `${name.padEnd(10)} ${p.records.toLocaleString('en-US').padStart(10)} records in ${p.seconds.toFixed(1)} s = ${Math.round(p.perSecond).toLocaleString('en-US').padStart(7)} records/s (${(p.perSecond / target).toFixed(2)}x target)  write latency p50 ${p.p50Ms.toFixed(1)} ms, p99 ${p.p99Ms.toFixed(1)} ms`;
    console.log(
      `ledger bench: PGlite ${dir ? 'data directory' : 'in memory'} (opened in ${(openMs / 1000).toFixed(1)} s), ${peers} peers in rings of ${stages}, sessions of ${sessionSteps} steps, target ${target.toLocaleString('en-US')} records/s`,
    );
    console.log(row('paced', paced));
    console.log(row('saturated', saturated));
    console.log(
      `load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} on ${availableParallelism()} cores (the bench shares them)`,
    );
    console.log(pass ? 'PASS' : 'FAIL');
    process.exitCode = pass ? 0 : 1;
  } finally {
    await ledger.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

await main();
