/**
 * `npm run bench:churn [-- --runs 20 --peers 3 --steps 40 --temperature 0 [--seed 42] [--rng 1]
 *   [--standby both|with|without] [--timeout-s 1800] [--trace] [--json]]`
 *
 * Churn: one real swarm (the real server, Chromium contributor pages, the chat UI) answers once
 * undisturbed — the reference text — and then `runs` more times, each time closing the page of a
 * random ring stage after a random number of generated tokens (a fresh page replaces it before the
 * next run, so every run starts from a full ring). Prints how many answers came out identical to
 * the reference (target: all of them) and the recovery time from the page's close to the new ring's
 * first token, p50 / p95, plus how the losses were noticed. `--standby both` (the default) runs two
 * such swarms one after the other with the same victims and kill points: one whose ring has a
 * loaded standby replica for every stage (`peers` more pages the planner leaves out; target p95
 * < 3 s) and one without (the survivors are re-planned and load new shards; target p95 < 10 s).
 * The victims and kill points come from a seeded generator (`--rng`), so a run can be repeated.
 * `--trace` logs (stderr) every contributor's assignment and load state at each change and each
 * page's shard-load breakdown (worker start, model open, graph build, session creation).
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { assertLoopbackOnly } from '../bench/transport-ring.js';
import { runSwarm, type FailoverBreakdown, type SwarmAnswer, type SwarmAsk } from '../swarm/swarm-run.js';
import { intFlag, numFlag, runCli, usage } from './cli-util.js';

/** Recovery targets (page close → next token), p95. */
const TARGET_P95_MS = { with: 3_000, without: 10_000 } as const;
type Mode = keyof typeof TARGET_P95_MS;

/** The steps of a recovery the bench breaks its time into (swarm-run.ts `FailoverBreakdown`). */
const BREAKDOWN_STEPS = [
  ['detect', 'page closed → the requester noticed'],
  ['replan', "→ the coordinator's replacement ring arrived"],
  ['retry', '→ the ring that took over (opening rings still loading)'],
  ['links', '→ links to its first stage and head open'],
  ['open', '→ open and replay sent'],
  ['replay', '→ replay and the re-sent step answered (the next token)'],
] as const satisfies ReadonlyArray<
  readonly [Exclude<keyof FailoverBreakdown, 'attempts' | 'retriedOn'>, string]
>;

const breakdownLine = (b: FailoverBreakdown): string =>
  BREAKDOWN_STEPS.map(([k]) => `${k} ${Math.round(b[k])}`).join(' + ') +
  (b.attempts > 1 ? `, ${b.attempts} rings tried (retried on ${b.retriedOn.join(', ')})` : '');

/** A small seeded generator (mulberry32): the bench's victims and kill points are repeatable. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The q-quantile (nearest rank) of `xs`. */
function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

runCli(async () => {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '20' },
      peers: { type: 'string', default: '3' },
      steps: { type: 'string', default: '40' },
      prompt: { type: 'string', default: 'Once upon a time' },
      temperature: { type: 'string', default: '0' },
      seed: { type: 'string' },
      rng: { type: 'string', default: '1' },
      standby: { type: 'string', default: 'both' },
      'timeout-s': { type: 'string', default: '1800' },
      json: { type: 'boolean', default: false },
      trace: { type: 'boolean', default: false },
    },
  });
  const runs = intFlag('runs', values.runs, 20, 1);
  const peers = intFlag('peers', values.peers, 3, 2);
  const steps = intFlag('steps', values.steps, 40, 16);
  const temperature = numFlag('temperature', values.temperature, 0);
  if (temperature < 0) throw usage('--temperature must be >= 0.');
  const modes: Mode[] =
    values.standby === 'both'
      ? ['with', 'without']
      : values.standby === 'with' || values.standby === 'without'
        ? [values.standby]
        : [];
  if (modes.length === 0) throw usage('--standby must be both, with or without.');
  // Sampling is only repeatable with a fixed seed.
  const seed = intFlag('seed', values.seed, temperature > 0 ? 42 : 1, 1);
  const next = rng(intFlag('rng', values.rng, 1, 0));
  const timeoutMs = intFlag('timeout-s', values['timeout-s'], 1800, 60) * 1000;
  const t0 = Date.now();
  // Progress on stderr, each line with the time since the start (where a slow run spends it).
  const log = (m: string) => {
    if (!values.json) process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${m}\n`);
  };
  assertLoopbackOnly();
  // Kill points leave the answer room to go on: between the 2nd token and the middle of the answer
  // (steps counts BOS and the prompt; "Once upon a time" is 5 positions). Later ones were missed:
  // on a loaded machine the chat can show the last tokens in one render, and the answer ends first.
  const lastKill = Math.max(2, Math.floor((steps - 5) / 2));
  // The same victims and kill points in both modes, so that they differ only in the standbys.
  const asks: SwarmAsk[] = Array.from({ length: runs }, () => ({
    temperature,
    seed,
    kill: { stage: Math.floor(next() * peers), after: 2 + Math.floor(next() * (lastKill - 1)) },
  }));

  const sections = [];
  for (const mode of modes) {
    const load0 = loadavg()[0]!;
    /** The 1-minute load average after each answer. */
    const loads: number[] = [];
    log(`--- ${mode} standby replicas (load average ${load0.toFixed(1)}) ---`);
    let result: Awaited<ReturnType<typeof runSwarm>>;
    try {
      result = await runSwarm({
        peers,
        prompt: values.prompt,
        steps,
        temperature,
        seed,
        more: asks,
        ...(mode === 'with' ? { standbys: peers } : {}),
        timeoutMs,
        log,
        ...(values.trace ? { trace: true } : {}),
        onAnswer: (a, n, reference) => {
          const f = a.failovers?.[0];
          loads.push(loadavg()[0]!);
          log(
            `run ${n}/${runs} (${mode} standby): stage ${asks[n - 1]!.kill!.stage} closed after ${f?.killedAfter ?? '?'} tokens → ` +
              `${f ? `${f.cause}${f.viaStandby ? ' (standby swapped in)' : ''}, noticed in ${Math.round(f.detectMs)} ms, recovered in ${Math.round(f.recoveryMs)} ms${f.breakdown ? ` (${breakdownLine(f.breakdown)})` : ''}` : 'no failover'}; ` +
              `text ${a.text === reference.text ? 'identical' : 'DIFFERENT'}; load ${loadavg()[0]!.toFixed(1)}`,
          );
        },
      });
    } catch (e) {
      // One mode's swarm failing to start (say) still lets the other run and be reported.
      const why = e instanceof Error ? e.message : String(e);
      log(`${mode} standby: the swarm failed: ${why}`);
      sections.push(summarise(mode, '', [], why, 0, load0, loads));
      continue;
    }
    sections.push(
      summarise(mode, result.text, result.more ?? [], result.moreError, result.elapsedS, load0, loads),
    );
  }
  const common = { asked: runs, peers, steps, temperature, seed };
  // Both swarms' undisturbed answers must agree too.
  const references = new Set(sections.filter((s) => s.reference !== '').map((s) => s.reference));
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ ...common, referencesAgree: references.size === 1, sections }, null, 2)}\n`,
    );
    return;
  }
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  const lines = [
    `churn: ${runs} runs per mode, ${peers}-peer ring, ${steps} steps, temperature ${temperature}${temperature > 0 ? `, seed ${seed}` : ''}`,
  ];
  for (const x of sections) {
    lines.push(
      '',
      `${x.mode} standby replicas (load average ${x.loadStart.toFixed(1)} at start, ${x.loadEnd.toFixed(1)} at end, ` +
        `${x.loadDuring.min.toFixed(1)}–${x.loadDuring.max.toFixed(1)} after the answers, median ${x.loadDuring.p50.toFixed(1)}):`,
      ...(x.stoppedEarly !== undefined
        ? [`  STOPPED EARLY after ${x.runs} of ${runs} runs: ${x.stoppedEarly}`]
        : []),
      `  identical text:        ${x.identical}/${x.runs}  (target ${runs}/${runs})`,
      `  failovers:             ${x.failovers}  (${Object.entries(x.causes)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}; a standby swapped in ${x.viaStandby})`,
      `  loss noticed after:    p50 ${s(x.detectMs.p50)}  p95 ${s(x.detectMs.p95)}`,
      `  recovery (close → next token): p50 ${s(x.recoveryMs.p50)}  p95 ${s(x.recoveryMs.p95)}  max ${s(x.recoveryMs.max)}  ` +
        `(target p95 < ${s(x.targetP95Ms)}: ${x.recoveryMs.p95 < x.targetP95Ms ? 'PASS' : 'MISS'})`,
      `  where it went (p50 / p95 over ${x.breakdown.n} recoveries):`,
      ...BREAKDOWN_STEPS.map(
        ([k, what]) => `    ${k.padEnd(7)} ${s(x.breakdown[k].p50)} / ${s(x.breakdown[k].p95)}  ${what}`,
      ),
      `    rings tried per recovery: p50 ${x.breakdown.attempts.p50}, max ${x.breakdown.attempts.max}` +
        (Object.keys(x.breakdown.retriedOn).length
          ? ` (tried again on ${Object.entries(x.breakdown.retriedOn)
              .map(([k, n]) => `${k} ×${n}`)
              .join(', ')})`
          : ''),
      `  elapsed:               ${x.elapsedS.toFixed(0)} s`,
    );
  }
  if (references.size > 1) lines.push('', "The two swarms' undisturbed answers DIFFER.");
  process.stdout.write(`${lines.join('\n')}\n`);

  function summarise(
    mode: Mode,
    reference: string,
    answers: SwarmAnswer[],
    stoppedEarly: string | undefined,
    elapsedS: number,
    loadStart: number,
    loads: number[],
  ) {
    const losses = answers.flatMap((a) => a.failovers ?? []);
    const recovery = losses.map((f) => f.recoveryMs).filter(Number.isFinite);
    const detect = losses.map((f) => f.detectMs).filter(Number.isFinite);
    const causes: Record<string, number> = {};
    for (const f of losses) causes[f.cause] = (causes[f.cause] ?? 0) + 1;
    const stats = (xs: number[]) => ({
      p50: quantile(xs, 0.5),
      p95: quantile(xs, 0.95),
      max: xs.length ? Math.max(...xs) : NaN,
    });
    const broken = losses.flatMap((f) => (f.breakdown ? [f.breakdown] : []));
    const breakdown = {
      n: broken.length,
      ...(Object.fromEntries(BREAKDOWN_STEPS.map(([k]) => [k, stats(broken.map((b) => b[k]))])) as Record<
        (typeof BREAKDOWN_STEPS)[number][0],
        ReturnType<typeof stats>
      >),
      attempts: stats(broken.map((b) => b.attempts)),
      retriedOn: {} as Record<string, number>,
    };
    for (const c of broken.flatMap((b) => b.retriedOn))
      breakdown.retriedOn[c] = (breakdown.retriedOn[c] ?? 0) + 1;
    return {
      mode,
      runs: answers.length,
      ...(stoppedEarly !== undefined ? { stoppedEarly } : {}),
      identical: answers.filter((a) => a.text === reference).length,
      failovers: losses.length,
      viaStandby: losses.filter((f) => f.viaStandby).length,
      causes,
      recoveryMs: stats(recovery),
      detectMs: stats(detect),
      targetP95Ms: TARGET_P95_MS[mode],
      breakdown,
      loadStart,
      loadEnd: loadavg()[0]!,
      loadDuring: { ...stats(loads), min: loads.length ? Math.min(...loads) : NaN },
      elapsedS,
      reference,
      perRun: answers.map((a, i) => ({
        kill: asks[i]!.kill,
        identical: a.text === reference,
        failovers: a.failovers ?? [],
      })),
    };
  }
});
