/**
 * `npm run bench:transport [-- --sizes 16,4096,65536,1048576 --n 50 --n-large 20 --warmup 5
 *   --formations 4 --deadline-s 110 --json]`
 *
 * Measures the WebRTC DataChannel transport between real browsers: starts the real signaling server
 * (test mode), launches Chromium, opens 3 harness pages (one BrowserContext each, media permission
 * granted) and joins them with declared capabilities that force one ring of three. Then:
 * - tensor latency: for each size, untimed warm-up round trips, then `--n` (`--n-large` for 1 MiB and
 *   up) sequential round trips from one page around the ring and back; per-hop latency = round trip /
 *   hops (3), median and p95; throughput per hop = size / median per-hop latency;
 * - DataChannel connect time: from a peer receiving an assignment naming its `next` to that link
 *   being open (signaling relay + ICE + DTLS + SCTP), one sample per link; the ring is closed and
 *   formed again with fresh pages `--formations` times in all for more samples.
 *
 * It must run inside the loopback-only namespace (`npm run bench:transport` does that through
 * tests/e2e/isolated.sh) and refuses otherwise. Everything is bounded by `--deadline-s`: when it
 * runs out the bench prints what it has and stops.
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { chromium, type Browser } from '@playwright/test';
import { CHROMIUM, QUIET_FLAGS } from '../../playwright.config.js';
import {
  assertLoopbackOnly,
  openPeer,
  ringSize,
  RING_TFLOPS,
  startServer,
  waitForRing,
  waitNoRing,
  type BenchPeer,
  type HarnessWindow,
} from '../bench/transport-ring.js';
import { fmt, formatBytes, summarize, table, type Summary } from '../bench/transport-stats.js';
import { intFlag, runCli, usage } from './cli-util.js';

interface SizeResult {
  bytes: number;
  warmup: number;
  /** Round trips measured (fewer than asked when the deadline or a failure cut it short). */
  n: number;
  hops: number;
  rttMs: Summary;
  hopMs: Summary;
  /** Size / median per-hop latency, in MB/s (1 MB = 1e6 bytes). */
  hopMBps: number;
  rawRttMs: number[];
  error?: string;
}

interface FormationResult {
  /** From the last join answering to every link of the ring being open, as the bench saw it. */
  formMs: number;
  /** Per-link connect times the pages measured for the ring's final links. */
  connectMs: number[];
}

interface Report {
  chromium: string;
  node: string;
  cpus: number;
  hops: number;
  iceDropped: number;
  sizes: SizeResult[];
  formations: FormationResult[];
  connectMs: Summary;
  elapsedS: number;
  notes: string[];
}

/** Opens three fresh peers, waits for their ring and returns them with the formation's figures. */
async function formRing(
  browser: Browser,
  url: string,
  timeoutMs: number,
): Promise<{ peers: BenchPeer[]; formation: FormationResult }> {
  const peers = await Promise.all(RING_TFLOPS.map((t) => openPeer(browser, url, t)));
  const t0 = Date.now();
  const st = await waitForRing(peers, timeoutMs);
  const formMs = Date.now() - t0;
  // The sample for each peer's final `next`: earlier assignments (a plan made before all three had
  // joined) may have opened other links first; those are not this ring's links.
  const connectMs = st.flatMap((s) => {
    const c = [...(s.connects ?? [])].reverse().find((x) => x.next === s.assignment?.next);
    return c ? [Math.round(c.ms * 1000) / 1000] : [];
  });
  return { peers, formation: { formMs, connectMs } };
}

async function closePeers(peers: readonly BenchPeer[]): Promise<void> {
  await Promise.all(peers.map((p) => p.context.close().catch(() => undefined)));
}

function printReport(r: Report): void {
  const out: string[] = [];
  out.push(
    `Ringwork transport bench: ${r.hops} Chromium pages in one ring, WebRTC DataChannels over loopback`,
    `Chromium ${r.chromium}, Node ${r.node}, ${r.cpus} CPUs; non-loopback ICE candidates dropped: ${r.iceDropped}`,
    '',
    `Tensor round trips from one page around the ring (${r.hops} hops); per hop = round trip / ${r.hops}`,
    table(
      ['size', 'n', 'hop p50 ms', 'hop p95 ms', 'RTT p50 ms', 'RTT p95 ms', 'RTT max ms', 'MB/s per hop'],
      r.sizes.map((s) => [
        formatBytes(s.bytes) + (s.error ? ' (!)' : ''),
        String(s.n),
        fmt(s.hopMs.p50, 3),
        fmt(s.hopMs.p95, 3),
        fmt(s.rttMs.p50, 3),
        fmt(s.rttMs.p95, 3),
        fmt(s.rttMs.max, 3),
        fmt(s.hopMBps, 1),
      ]),
    ),
    '',
    `DataChannel connect (assignment with a next -> link open), ${r.formations.length} ring formations, ` +
      `${r.connectMs.n} links:`,
    `  p50 ${fmt(r.connectMs.p50, 1)} ms, p95 ${fmt(r.connectMs.p95, 1)} ms, ` +
      `min ${fmt(r.connectMs.min, 1)} ms, max ${fmt(r.connectMs.max, 1)} ms`,
    // Per formation too: the first ring is formed by a cold browser and is usually the slowest.
    `  per formation, ms: ` +
      r.formations.map((f) => `[${f.connectMs.map((x) => fmt(x, 0)).join(' ')}]`).join(' '),
    `  ring formed (joined -> all links open), per formation: ` +
      r.formations.map((f) => `${f.formMs} ms`).join(', '),
    '',
    `elapsed ${fmt(r.elapsedS, 1)} s`,
  );
  for (const s of r.sizes) if (s.error) out.push(`(!) ${formatBytes(s.bytes)}: ${s.error}`);
  for (const n of r.notes) out.push(`note: ${n}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

runCli(async () => {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '16,4096,65536,1048576' },
      n: { type: 'string' },
      'n-large': { type: 'string' },
      warmup: { type: 'string' },
      formations: { type: 'string' },
      'deadline-s': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const sizes = values.sizes.split(',').map((x) => {
    const b = Number(x);
    // The harness sends float32 tensors: a size must be a whole number of floats.
    if (!Number.isInteger(b) || b < 4 || b % 4 !== 0)
      throw usage(`--sizes: "${x}" is not a multiple of 4 >= 4.`);
    return b;
  });
  const nSmall = intFlag('n', values.n, 50, 1);
  const nLarge = intFlag('n-large', values['n-large'], 20, 1);
  const warmup = intFlag('warmup', values.warmup, 5, 0);
  const formations = intFlag('formations', values.formations, 4, 1);
  const deadlineS = intFlag('deadline-s', values['deadline-s'], 110, 10);
  const log = (m: string) => {
    if (!values.json) process.stderr.write(`${m}\n`);
  };

  assertLoopbackOnly();
  const started = Date.now();
  const deadline = started + deadlineS * 1000;
  const left = () => deadline - Date.now();
  const notes: string[] = [];

  // Like ring.spec.ts: these ~1 MFLOP/s declared peers are category C under the default thresholds,
  // which serve a lightweight model whole, each on its own, instead of forming one ring.
  const server = await startServer(['--category-c-below-tflops', '0']);
  let browser: Browser | undefined;
  // Hard stop: whatever is in flight when the deadline passes is cut off by closing the browser, so
  // the bench always ends; the report then says what was measured.
  let hardStopped = false;
  const hardStop = setTimeout(() => {
    hardStopped = true;
    void browser?.close();
  }, deadlineS * 1000);

  const report: Report = {
    chromium: '?',
    node: process.version,
    cpus: cpus().length,
    hops: RING_TFLOPS.length,
    iceDropped: 0,
    sizes: [],
    formations: [],
    connectMs: summarize([]),
    elapsedS: 0,
    notes,
  };
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [...QUIET_FLAGS, '--enable-unsafe-webgpu', '--allow-loopback-in-peer-connection'],
    });
    report.chromium = browser.version();
    log(`server ${server.url}, Chromium ${report.chromium}; forming the ring...`);

    let { peers, formation } = await formRing(browser, server.url, Math.min(30_000, left()));
    report.formations.push(formation);
    const ring = await ringSize(server.url);
    report.hops = ring.stages;

    const origin = peers[0]!.page;
    for (const bytes of sizes) {
      const n = bytes >= 1 << 20 ? nLarge : nSmall;
      // Leave time for the re-formations; a size that no longer fits is skipped, not half-run.
      if (left() < 15_000) {
        notes.push(`deadline: skipped ${formatBytes(bytes)} and later sizes`);
        break;
      }
      log(`${formatBytes(bytes)}: ${warmup} warm-up + ${n} round trips`);
      const run = (count: number) =>
        origin.evaluate(
          ([b, c]) => (window as unknown as HarnessWindow).ringworkRing.roundTrips(b!, c!, 5000),
          [bytes, count],
        );
      const w = warmup > 0 ? await run(warmup) : { ok: true, ms: [] };
      const r = w.ok ? await run(n) : { ...w, ms: [] };
      const hopMs = summarize(r.ms.map((x) => x / report.hops));
      report.sizes.push({
        bytes,
        warmup,
        n: r.ms.length,
        hops: report.hops,
        rttMs: summarize(r.ms),
        hopMs,
        hopMBps: bytes / (hopMs.p50 / 1000) / 1e6,
        rawRttMs: r.ms.map((x) => Math.round(x * 1000) / 1000),
        ...(r.ok ? {} : { error: r.error ?? 'failed' }),
      });
    }

    // More rings for more connect samples: fresh pages each time, so every link is a new one.
    for (let f = 1; f < formations; f++) {
      if (left() < 12_000) {
        notes.push(`deadline: ${f} of ${formations} ring formations done`);
        break;
      }
      await closePeers(peers);
      await waitNoRing(server.url, Math.min(10_000, left()));
      log(`ring formation ${f + 1} of ${formations}`);
      ({ peers, formation } = await formRing(browser, server.url, Math.min(20_000, left())));
      report.formations.push(formation);
    }
    report.iceDropped = (await ringSize(server.url)).iceDropped;
    await closePeers(peers);
  } catch (e) {
    // A cut-off or failed bench still reports what it measured before it stopped.
    notes.push(
      hardStopped
        ? `deadline of ${deadlineS} s reached: stopped early`
        : `failed: ${e instanceof Error ? e.message : String(e)}`,
    );
    process.exitCode = 1;
  } finally {
    clearTimeout(hardStop);
    await browser?.close().catch(() => undefined);
    await server.stop();
  }

  report.connectMs = summarize(report.formations.flatMap((f) => f.connectMs));
  report.elapsedS = (Date.now() - started) / 1000;
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else printReport(report);
});
