/**
 * `npm run bench:hostile`: what hostile tabs can do to a ring, measured in one run. The report is a
 * list of sections, each a few rows with a target; add a section by appending a
 * {@link HostileSection} runner to {@link HOSTILE_SECTIONS}.
 */
import type { Tokenizer } from '../../shared/tokenizer/types.js';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport.js';
import { createNodeShardRunner, openNodeModel } from '../../signaling-server/src/model/open-node-model.js';
import { sessionExhaustion } from './hostile-attacks.js';
import type { FloodKind } from './hostile-flooder.js';
import { relayFloodSection } from './hostile-relay.js';
import { askRing, buildMemoryRing, stopMemoryRing, type MemoryStage } from './memory-ring.js';

/** One measured figure. */
export interface HostileRow {
  metric: string;
  value: string;
  target?: string;
  /** Whether the target is met (undefined: no target). A miss is a finding, not a crash. */
  pass?: boolean;
}

export interface HostileSectionResult {
  title: string;
  rows: HostileRow[];
}

export interface HostileBenchOptions {
  /** llama2.c `.bin` to serve (default: the bundled stories260K). */
  modelPath: string;
  /** Honest request length, positions (default 20). */
  steps: number;
  /** Attacker sessions and their prompt length (default 250 × 500). */
  attackSessions: number;
  attackPrompt: number;
  /** Honest requests timed per condition (the median is reported). */
  rounds: number;
  /** KV budget per stage, in sessions' worth (each session reserves its full context). */
  budgetSessions: number;
  maxSessionsPerRequester: number;
  /** Flood section: measured time per phase (ms), attacker sockets and their addresses. */
  floodPhaseMs: number;
  floodSockets: number;
  floodAddresses: 'one-64' | 'distinct';
  /** Flood classes to run (default: all). */
  floodKinds?: readonly FloodKind[];
  log: (line: string) => void;
}

export type HostileSection = (o: HostileBenchOptions) => Promise<HostileSectionResult>;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

/**
 * Honest request time alone vs during a session-exhaustion attack, and stage memory under it.
 * `stages` = 1 is the faithful figure (one stage, one device). With 3 stages every stage computes
 * on this one thread, i.e. one device, so by default (`queues` = 'device', as `buildMemoryRing` and
 * any process hosting several stages does) they share one compute queue, fair per requester across
 * the three. 'per-stage' gives each stage its own queue, as three devices would have, but here
 * they still share one thread: three queues each run the attacker's chunks while the honest step is
 * at one stage, so the honest request waits for all three — an artefact of the emulation (a real
 * ring has a device per stage, where the one-stage figure applies per stage). That row is reported
 * for comparison, without a target.
 */
const sessionExhaustionSection =
  (stageCount: 1 | 3, queues: 'per-stage' | 'device' = 'device'): HostileSection =>
  async (o) => {
    const opened = await openNodeModel({ url: o.modelPath });
    const tokenizer: Tokenizer = await opened.loadTokenizer();
    const config = opened.source.config;
    const contextLength = Math.min(512, config.maxPositions);
    const hub = createMemoryTransportHub();
    const probe = await buildMemoryRing({
      hub,
      makeRunner: () => createNodeShardRunner(),
      model: { url: o.modelPath },
      numLayers: config.numLayers,
      splits: [],
      contextLength,
      prefix: 'probe',
    });
    const wholeKv = probe[0]!.kvBytesPerSession;
    await stopMemoryRing(probe);
    // The budget allows `budgetSessions` sessions of the whole model's KV per stage.
    const splits =
      stageCount === 3 && config.numLayers >= 3
        ? [1 + Math.floor(config.numLayers / 3), 1 + Math.floor((2 * config.numLayers) / 3)]
        : [];
    const stages = await buildMemoryRing({
      hub,
      makeRunner: () => createNodeShardRunner(),
      model: { url: o.modelPath },
      numLayers: config.numLayers,
      splits,
      contextLength,
      ...(queues === 'per-stage' ? { computeQueue: 'per-stage' as const } : {}),
      limits: {
        kvBudgetBytes: o.budgetSessions * wholeKv,
        maxSessionsPerRequester: o.maxSessionsPerRequester,
      },
    });
    const prompt = 'Once upon a time';
    let n = 0;
    const timeHonest = async () => {
      const t0 = performance.now();
      await askRing({ hub, stages, requester: `honest${n++}`, tokenizer, prompt, steps: o.steps });
      return performance.now() - t0;
    };
    const budgets = stages.map((s) => ({
      perSession: s.kvBytesPerSession,
      budget: o.budgetSessions * wholeKv,
    }));
    const peak = stages.map(() => 0);
    const sample = async () => {
      const counts = await Promise.all(
        stages.map(async (s: MemoryStage) => (await s.runner.info()).sessions),
      );
      counts.forEach((c, i) => (peak[i] = Math.max(peak[i]!, c * budgets[i]!.perSession)));
    };
    try {
      await timeHonest(); // warm-up: first ORT runs compile kernels
      const alone: number[] = [];
      for (let i = 0; i < o.rounds; i++) alone.push(await timeHonest());
      o.log(`  honest alone: ${alone.map((x) => x.toFixed(0)).join(', ')} ms`);
      const attack = await sessionExhaustion({
        hub,
        stages,
        attacker: 'mallory',
        sessions: o.attackSessions,
        promptLength: Math.min(o.attackPrompt, contextLength - 1),
        vocabSize: config.vocabSize,
        sustain: true,
      });
      const sampler = setInterval(() => void sample(), 20);
      const during: number[] = [];
      try {
        for (let i = 0; i < o.rounds; i++) during.push(await timeHonest());
      } finally {
        clearInterval(sampler);
        await sample();
      }
      o.log(`  honest during the attack: ${during.map((x) => x.toFixed(0)).join(', ')} ms`);
      const refusedLimit = attack.refused.STAGE_SESSION_LIMIT ?? 0;
      const refusedBudget = attack.refused.STAGE_KV_BUDGET ?? 0;
      const opens = attack.opened;
      await attack.close();
      const a = median(alone);
      const d = median(during);
      const rows: HostileRow[] = [
        {
          metric: `honest ${o.steps}-step request alone (median of ${o.rounds})`,
          value: `${a.toFixed(0)} ms`,
        },
        {
          metric: `... during ${o.attackSessions} × ${o.attackPrompt}-token opens without end (sustained)`,
          value: `${d.toFixed(0)} ms (${(d / a).toFixed(2)}×)`,
          // Per-stage queues on one thread stand for three devices they do not have: no target.
          ...(queues === 'per-stage' ? {} : { target: '≤ 2×', pass: d <= 2 * a }),
        },
        {
          metric: 'attacker opens refused (session limit / KV budget)',
          value: `${refusedLimit} / ${refusedBudget} of ${opens}`,
        },
      ];
      stages.forEach((s, i) =>
        rows.push({
          metric: `stage ${i} peak KV (runner sessions × ${mib(budgets[i]!.perSession)})`,
          value: mib(peak[i]!),
          target: `≤ budget ${mib(budgets[i]!.budget)}`,
          pass: peak[i]! <= budgets[i]!.budget,
        }),
      );
      const title =
        stageCount === 1
          ? 'Session exhaustion on one ring stage (whole model, in-memory links, ORT wasm)'
          : queues === 'per-stage'
            ? 'Session exhaustion on a 3-stage ring, a compute queue per stage (three devices emulated on one thread: comparison only, no target)'
            : 'Session exhaustion on a 3-stage ring (three stages in one process: one device, one compute queue, the default)';
      return { title, rows };
    } finally {
      await stopMemoryRing(stages);
    }
  };

/** The report's sections, in order. */
export const HOSTILE_SECTIONS: { name: string; run: HostileSection }[] = [
  { name: 'relay-floods', run: relayFloodSection },
  { name: 'session-exhaustion', run: sessionExhaustionSection(1) },
  { name: 'session-exhaustion-ring3', run: sessionExhaustionSection(3) },
  { name: 'session-exhaustion-ring3-per-stage', run: sessionExhaustionSection(3, 'per-stage') },
];

/** Formats sections as aligned text tables. */
export function formatHostileReport(sections: HostileSectionResult[]): string {
  const out: string[] = [];
  for (const s of sections) {
    out.push(s.title);
    const w = Math.max(...s.rows.map((r) => r.metric.length));
    const v = Math.max(...s.rows.map((r) => r.value.length));
    for (const r of s.rows) {
      const mark = r.pass === undefined ? '' : r.pass ? '  PASS' : '  MISS';
      out.push(
        `  ${r.metric.padEnd(w)}  ${r.value.padEnd(v)}${r.target ? `  target ${r.target}` : ''}${mark}`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}
