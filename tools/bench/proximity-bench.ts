/**
 * `npm run bench:proximity`: does measuring links make rings faster? Four in-process contributors
 * (real ring stages, real ORT runners, the real peer-link framing) on in-memory links shaped per
 * pair — every test peer shares one machine, so "far" is injected: two pairs at `farRttMs` RTT, the
 * rest at `nearRttMs`. In one run:
 *
 * 1. a real coordinator plans the four peers without link data (the proximity-blind ring);
 * 2. every pair probes its link (shared/ring/link-probe.ts) and both ends report to the coordinator
 *    (`reportLinks`, as `link-report` does), which re-plans with the matrix (the proximity-aware ring);
 * 3. both rings are built on the same shaped links and generate the same greedy text; decode tok/s
 *    is printed side by side, with the far links each ring uses.
 *
 * The far pairs are two edges of the blind ring: a planner without link data orders peers
 * arbitrarily with respect to distance, so this is the case it cannot see coming.
 */
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog.js';
import { createCoordinator, type Ring } from '../../signaling-server/src/coordinator.js';
import { createNodeShardRunner, openNodeModel } from '../../signaling-server/src/model/open-node-model.js';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline.js';
import { answerProbes, probeLink, type LinkReport } from '../../shared/ring/link-probe.js';
import { createRingStage, stageShardOf, type RingStage } from '../../shared/ring/ring-stage.js';
import { generate, type GenerateResult } from '../../shared/runtime/generate.js';
import { createSampler } from '../../shared/runtime/sampler.js';
import type { ShardRunner } from '../../shared/runtime/shard-runner.js';
import type { Tokenizer } from '../../shared/tokenizer/types.js';
import { shapeOf, type LinkShapeTable } from '../../shared/transport/link-shaping.js';
import {
  createMemoryTransportHub,
  type MemoryTransportHub,
} from '../../shared/transport/memory-transport.js';
import type { PeerLink, Transport } from '../../shared/transport/types.js';
import { GREEDY } from './memory-ring.js';

/** Options of {@link runProximityBench}. */
export interface ProximityBenchOptions {
  modelPath: string;
  /** RTT of the two far pairs, ms (default 80). */
  farRttMs: number;
  /** RTT of every other pair (and to the requester), ms (default 2). */
  nearRttMs: number;
  /** Link rate of every pair, Mbit/s (default 200). */
  mbps: number;
  /** Positions generated per run (BOS + prompt + continuation; default 64). */
  steps: number;
  /** Timed runs per ring (the median is reported; default 3). */
  rounds: number;
  log: (line: string) => void;
}

/** One planned ring as measured. */
export interface RingMeasurement {
  order: string[];
  ranges: Array<[number, number]>;
  /** Far pairs among the ring's edges (closing edge included, as the planner counts it). */
  farEdges: number;
  decodeTokPerS: number;
  msPerToken: number;
  text: string;
}

/** The bench's result. */
export interface ProximityBenchResult {
  peers: string[];
  farPairs: string[];
  measured: Array<LinkReport & { from: string }>;
  blind: RingMeasurement;
  aware: RingMeasurement;
  /** aware decode tok/s ÷ blind decode tok/s. */
  speedup: number;
  sameText: boolean;
}

const PROMPT = 'Once upon a time';
const pairKey = (a: string, b: string) => (a < b ? `${a}|${b}` : `${b}|${a}`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const ringEdges = (order: readonly string[]): string[] =>
  order.length < 2 ? [] : order.map((a, i) => pairKey(a, order[(i + 1) % order.length]!));

interface BuiltStage {
  id: string;
  transport: Transport;
  runner: ShardRunner;
  stage: RingStage;
}

/** Builds the ring `stages` (explicit peers and unit ranges) on `hub`, like contributor tabs. */
async function buildRing(
  hub: MemoryTransportHub,
  modelPath: string,
  stages: Ring['stages'],
  contextLength: number,
  epoch: number,
): Promise<BuiltStage[]> {
  const out: BuiltStage[] = [];
  const links = new Map<string, Map<string, PeerLink>>();
  for (let i = 0; i < stages.length; i++) {
    const { peer, range } = stages[i]!;
    const transport = hub.transport(peer);
    const runner = createNodeShardRunner();
    const load = await runner.load({
      model: { url: modelPath },
      range,
      weightFormat: 'f32',
      contextLength,
      logits: 'last',
      backend: 'wasm',
    });
    const mine = new Map<string, PeerLink>();
    links.set(peer, mine);
    const next = stages[i + 1]?.peer;
    const prev = stages[i - 1]?.peer;
    const stage = createRingStage({
      peerId: peer,
      runner,
      shard: stageShardOf(load, contextLength),
      epoch,
      isFirst: i === 0,
      isHead: i === stages.length - 1,
      next: () => (next ? mine.get(next) : undefined),
      prev: () => (prev ? mine.get(prev) : undefined),
      linkTo: (p) => mine.get(p),
    });
    transport.onIncoming((link) => {
      mine.set(link.remoteId, link);
      stage.attach(link);
    });
    out.push({ id: peer, transport, runner, stage });
  }
  for (let i = 0; i + 1 < out.length; i++) {
    const link = await out[i]!.transport.connect(out[i + 1]!.id);
    links.get(out[i]!.id)!.set(link.remoteId, link);
  }
  return out;
}

async function stopRing(stages: BuiltStage[]): Promise<void> {
  for (const s of stages) {
    await s.stage.stop();
    await s.transport.close();
    await s.runner.dispose();
  }
}

async function measureRing(
  o: ProximityBenchOptions,
  hub: MemoryTransportHub,
  ring: Ring,
  tokenizer: Tokenizer,
  contextLength: number,
  far: ReadonlySet<string>,
  label: string,
): Promise<RingMeasurement> {
  const built = await buildRing(hub, o.modelPath, ring.stages, contextLength, ring.epoch);
  const runs: GenerateResult[] = [];
  try {
    for (let r = 0; r < o.rounds + 1; r++) {
      const requester = `${label}-req${r}`;
      const transport = hub.transport(requester);
      const first = await transport.connect(built[0]!.id);
      const head = built.length === 1 ? first : await transport.connect(built.at(-1)!.id);
      try {
        const res = await generate({
          pipeline: createRemotePipeline({
            requesterId: requester,
            epoch: ring.epoch,
            first,
            head,
            sampler: GREEDY,
          }),
          tokenizer,
          prompt: PROMPT,
          steps: o.steps,
          sampler: createSampler({ temperature: 0 }),
          stopTokens: [],
        });
        // The first run warms the runners up (graph compile, first allocations); it is not timed.
        if (r > 0) runs.push(res);
      } finally {
        await transport.close();
      }
    }
  } finally {
    await stopRing(built);
  }
  const tps = median(runs.map((x) => x.timings.decodeTokPerS));
  const order = ring.stages.map((s) => s.peer);
  const m: RingMeasurement = {
    order,
    ranges: ring.stages.map((s) => s.range),
    farEdges: ringEdges(order).filter((e) => far.has(e)).length,
    decodeTokPerS: tps,
    msPerToken: 1000 / tps,
    text: runs[0]!.text,
  };
  o.log(`${label}: ${order.join(' → ')}: ${tps.toFixed(1)} tok/s decode, ${m.farEdges} far edge(s)`);
  return m;
}

/** Runs the benchmark (see the file comment). */
export async function runProximityBench(o: ProximityBenchOptions): Promise<ProximityBenchResult> {
  const catalog = await loadCatalog([]);
  const stories = catalog[0] as CatalogModel;
  const opened = await openNodeModel({ url: o.modelPath });
  const tokenizer = await opened.loadTokenizer();
  const contextLength = stories.descriptor.contextLength;
  const peers = ['a', 'b', 'c', 'd'].map((n) => `p_${n.repeat(16)}`);
  const co = createCoordinator({
    catalog: [stories],
    send: () => undefined,
    // Every pair of the bench's peers may probe each other (no signaling introductions in-process).
    allowAnyRelay: true,
  });
  co.start();
  for (const p of peers) {
    co.addPeer(p, ['contributor']);
    // Each peer holds about a third of the model: the ring needs all four.
    co.setCapability(p, {
      tflops: 10,
      bandwidthGBps: 100,
      memoryBytes: Math.ceil(stories.totalBytes * 0.35),
      backend: 'wasm',
      mobile: false,
    });
  }
  co.flush();
  const blindRing = co.getRing(stories.descriptor.id);
  if (!blindRing || blindRing.stages.length < 4)
    throw new Error(`the blind plan did not use all four peers: ${JSON.stringify(co.snapshot().models[0])}`);
  const b = blindRing.stages.map((s) => s.peer);
  const farPairs = [pairKey(b[0]!, b[1]!), pairKey(b[2]!, b[3]!)];
  const far = new Set(farPairs);
  const table: LinkShapeTable = {};
  for (let i = 0; i < peers.length; i++)
    for (let j = i + 1; j < peers.length; j++) {
      const k = pairKey(peers[i]!, peers[j]!);
      table[k] = { delayMs: (far.has(k) ? o.farRttMs : o.nearRttMs) / 2, mbps: o.mbps };
    }
  // Requesters are near every peer: the difference between the rings is theirs alone.
  const hub = createMemoryTransportHub({
    shape: (from, to) => shapeOf(table, from, to) ?? { delayMs: o.nearRttMs / 2, mbps: o.mbps },
  });
  o.log(`far pairs (${o.farRttMs} ms RTT): ${farPairs.join(', ')}; others ${o.nearRttMs} ms`);

  // Probing: every peer answers probes and measures its links to the others; both ends report.
  const transports = peers.map((p) => hub.transport(p));
  for (const t of transports) t.onIncoming((l) => answerProbes(l));
  const measured: Array<LinkReport & { from: string }> = [];
  for (let i = 0; i < peers.length; i++) {
    const reports: LinkReport[] = [];
    for (let j = 0; j < peers.length; j++) {
      if (i === j) continue;
      const link = await transports[i]!.connect(peers[j]!);
      answerProbes(link);
      const m = await probeLink(link, { pings: 3, fillBytes: 64 * 1024 });
      reports.push({ peer: peers[j]!, ...m });
      link.close();
    }
    co.reportLinks(peers[i]!, reports);
    measured.push(...reports.map((r) => ({ ...r, from: peers[i]! })));
  }
  await Promise.all(transports.map((t) => t.close()));
  co.flush();
  const awareRing = co.getRing(stories.descriptor.id)!;
  co.stop();

  const blind = await measureRing(o, hub, blindRing, tokenizer, contextLength, far, 'blind');
  const aware = await measureRing(o, hub, awareRing, tokenizer, contextLength, far, 'aware');
  return {
    peers,
    farPairs,
    measured,
    blind,
    aware,
    speedup: aware.decodeTokPerS / blind.decodeTokPerS,
    sameText: blind.text === aware.text,
  };
}

/** The side-by-side table the CLI prints. */
export function formatProximityReport(r: ProximityBenchResult, o: ProximityBenchOptions): string {
  const short = (id: string) => id.slice(2, 3);
  const rows = [
    ['', 'proximity-blind', 'proximity-aware'],
    ['ring', r.blind.order.map(short).join('→'), r.aware.order.map(short).join('→')],
    ['far edges used', String(r.blind.farEdges), String(r.aware.farEdges)],
    ['decode tok/s', r.blind.decodeTokPerS.toFixed(1), r.aware.decodeTokPerS.toFixed(1)],
    ['ms per token', r.blind.msPerToken.toFixed(1), r.aware.msPerToken.toFixed(1)],
  ];
  const w = [16, 18, 18];
  const lines = rows.map((row) =>
    row
      .map((c, i) => c.padEnd(w[i]!))
      .join(' ')
      .trimEnd(),
  );
  const probes = r.measured
    .filter((m) => m.from < m.peer)
    .map((m) => `${short(m.from)}–${short(m.peer)} ${m.rttMs.toFixed(1)} ms ${m.mbps.toFixed(0)} Mbit/s`)
    .join(', ');
  return [
    `4 peers, stories260K, ${o.steps} positions greedy, median of ${o.rounds}; far pairs ${o.farRttMs} ms RTT, others ${o.nearRttMs} ms, ${o.mbps} Mbit/s`,
    `measured by probes: ${probes}`,
    ...lines,
    `aware ÷ blind decode tok/s: ${r.speedup.toFixed(2)}×   same text: ${r.sameText ? 'yes' : 'NO'}`,
  ].join('\n');
}
