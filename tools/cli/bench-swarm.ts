/**
 * `npm run bench:swarm [-- --peers 3 --tokens 48 --model stories15M=.bench/stories15M --json]`
 *
 * Swarm scaling on the synthetic stories15M-shaped model (synthesized into .bench/stories15M when
 * missing): decode tok/s of a 3-peer swarm divided by a 1-peer swarm, both through the real server,
 * real Chromium pages and the chat UI, in one run, with each per-token time split into compute and
 * hops as the chat reports it. Target ratio >= 0.8 (splitting a model this small cannot be faster;
 * it must not cost much): prints PASS or MISS, not an exit code. Also each contributor page's
 * memory (renderer RSS, which holds the shard worker's wasm memory, and the main-thread JS heap)
 * next to its shard's weights + KV + 150 MB of browser overhead.
 *
 * Speed figures: the planner's single-request estimate (what the Network page shows before any request
 * is measured: 1 / planned per-token latency) next to the decode tok/s the request then measured, their
 * ratio and whether it is within 2x (PASS/MISS), the planned pipelined capacity, and the figure the
 * server shows once requests reported their laps. The swarm's pages declare a realistic wasm speed
 * and memory for 1/N of the model (tools/swarm/swarm-capability.ts), and the server plans with its
 * default per-stage overhead (`--stage-overhead-ms`), so the planned figure is a real prediction.
 *
 * The same two swarms then run again with `--null-compute` (tooling: the stages skip the model and
 * pass their data on, see shared/runtime/null-compute-runner.ts), so the ring's protocol cost per
 * token shows on its own: hops per token ÷ the wire hops a token crosses is the cost of one hop
 * (loop mode: first stage → … → head → first stage; without it requester → first stage → … →
 * head → requester), to compare with `npm run bench:transport`'s raw DataChannel hop.
 * `--json` prints all four, and `decodeRatio` (N-peer ÷ 1-peer decode tok/s, with the model) at the
 * top level. The load average before and after is printed too: on a shared machine it explains a lot.
 *
 * After the 1-peer swarm, the same model decodes in this Node process (wasm, 1 thread): the page's
 * compute per token ÷ Node's is printed (`nodeCompute`, target <= 1.3; `--no-node` skips it).
 * `--threads N` sets the contributor pages' wasm threads; `--also-threads M` runs the two model
 * swarms again at M threads, in turn with the others (`alsoThreads` in `--json`). `--warmup MS`
 * sets the pages' engine warm-up after their first load (0 = off; default the page's, 600 ms);
 * `--also-warmup MS` runs the two model swarms again with that warm-up, each right after its
 * counterpart (`alsoWarmUp`, `warmUpOne`, `warmUpMany` in `--json`): before/after in one run.
 * The requester page runs in loop mode (the ring's head feeds each token to stage 0: `stages` wire
 * hops per token, not `stages + 1`); `--also-no-loop` runs the two model swarms again with the
 * requester sending every step itself (`loop=0`), each right after its counterpart (`alsoNoLoop`,
 * `noLoopOne`, `noLoopMany` in `--json`). `ms per hop` divides by the wire hops a token crosses.
 *
 * `--perf` turns on the pages' debug timings of the hot path (shared/util/perf-trace.ts) and prints,
 * per swarm and page, the median of each: on a stage, queue (tensor arrived → its turn), runner
 * (the runner call; its overhead is that minus the model's own run: worker round trip and copies),
 * after runner (sampling/forwarding until sent) and arrived → sent; on the requester, the lap and
 * its part no stage computed (hops), and the time to stream a token to the chat. A second table
 * splits the runner call: page → worker message (post), the runner's own queue, building the
 * inputs, session.run (also over decode steps 1-8 and the last 8: a gap is the engine warming up
 * while it serves), reading the output, worker → page message (return), then the send onwards.
 * `--perf` also reads, over each model swarm's decode, the CPU time of every process of the run from
 * /proc (tools/swarm/decode-cpu.ts): per generated token by process (each page's renderer split into
 * main thread, workers and the rest; browser, GPU, network, server, this process), and all of them
 * against the wall time per token — how many of the machine's cores the run kept busy (`cpu` in `--json`).
 * `--js-flags FLAGS` (experiments) passes V8 flags to every page; to see what a page's threads run,
 * trace one swarm with `npm run swarm -- --trace-out FILE` (tools/swarm/chrome-trace.ts).
 */
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { ModelLocation } from '../../shared/model/open-model.js';
import { nodeOrt, openNodeModel } from '../../signaling-server/src/model/open-node-model.js';
import { fixedPrompt } from '../bench/measure.js';
import { assertLoopbackOnly } from '../bench/transport-ring.js';
import { loadInProcessVariant } from '../bench/variants.js';
import { table } from '../bench/transport-stats.js';
import { synthesizeModel } from '../model/synth.js';
import { parseModelArg, runSwarm, type SwarmResult } from '../swarm/swarm-run.js';
import { cpuLines } from '../swarm/process-cpu.js';
import { intFlag, runCli } from './cli-util.js';

const TARGET = 0.8;

/**
 * The model's compute per decode token in this Node process (onnxruntime-web wasm, 1 thread, the
 * whole model in one shard, greedy), after the page's prompt: the figure a contributor page's
 * compute is held against. `ortMsPerToken` is inside ORT's run, as the page's compute is.
 */
async function nodeDecodeCompute(
  model: ModelLocation,
  promptTokens: number,
  steps: number,
  contextLength: number,
): Promise<{
  ortMsPerToken: number;
  wallMsPerToken: number;
  cpuMsPerToken: number;
  steps: number;
  loadAvg: number;
}> {
  const config = (await openNodeModel(model)).source.config;
  const variant = await loadInProcessVariant({
    id: 'node',
    label: 'Node wasm 1 thread',
    model,
    ranges: [[0, config.numLayers + 2]],
    contextLength: Math.min(contextLength, config.maxPositions),
    ort: nodeOrt(1),
  });
  try {
    const settings = { prompt: fixedPrompt(config, promptTokens), vocabSize: config.vocabSize };
    // One untimed pass first: V8 tiers the wasm up over the first few hundred milliseconds.
    const warm = await variant.start(settings);
    await warm.prefill();
    await warm.decode(Math.min(steps, 16));
    await warm.close();
    const run = await variant.start(settings);
    try {
      await run.prefill();
      const t = await run.decode(steps);
      return {
        ortMsPerToken: t.ortMs / t.steps,
        wallMsPerToken: t.ms / t.steps,
        cpuMsPerToken: t.cpuMs / t.steps,
        steps: t.steps,
        loadAvg: loadavg()[0]!,
      };
    } finally {
      await run.close();
    }
  } finally {
    await variant.dispose();
  }
}
/** The planned single-request speed must be within this factor of the measured one. */
const SPEED_FACTOR = 2;
/** Browser overhead a page may use beyond its shard (the acceptance budget). */
const OVERHEAD = 150e6;

/** Decimal megabytes, one format for every column. */
const mb = (b: number | undefined) => (b === undefined ? '—' : `${(b / 1e6).toFixed(1)} MB`);

/** The `--perf` medians per swarm and page, as text tables (none without `--perf`). */
function perfTables(runs: ReadonlyArray<readonly [string, SwarmResult]>): string[] {
  const cols: Array<[string, string]> = [
    ['stage.queueMs', 'queue'],
    ['stage.runnerMs', 'runner'],
    ['stage.runnerOverheadMs', 'runner overhead'],
    ['stage.afterRunnerMs', 'after runner'],
    ['stage.arrivedToSentMs', 'arrived→sent'],
    ['requester.lapMs', 'lap'],
    ['requester.hopsMs', 'lap − compute'],
    ['requester.emitMs', 'stream token'],
  ];
  // The runner call by part, on the stages: page → worker message, the runner's own queue, inputs,
  // the model's run, reading the output, worker → page message; then the send to the next stage.
  const parts: Array<[string, string]> = [
    ['stage.runner.postMs', 'post'],
    ['stage.runner.queueMs', 'worker queue'],
    ['stage.runner.feedMs', 'feeds'],
    ['stage.modelMs', 'session.run'],
    ['stage.modelMs.early', 'run, steps 1-8'],
    ['stage.modelMs.late', 'run, last 8'],
    ['stage.runner.copyOutMs', 'copy out'],
    ['stage.runner.returnMs', 'return'],
    ['stage.sendMs', 'send'],
    ['requester.lapMs', 'lap mean'],
    ['requester.lapMs', 'lap p90'],
  ];
  const cell = (
    p: { stats: Record<string, { median: number; mean: number; p90: number }> },
    k: string,
    h: string,
  ) => {
    const st = p.stats[k];
    if (!st) return '—';
    return (h.endsWith('mean') ? st.mean : h.endsWith('p90') ? st.p90 : st.median).toFixed(2);
  };
  const out: string[] = [];
  for (const [what, r] of runs) {
    if (!r.perf) continue;
    out.push(`Hot path, ${r.stages.length} peer(s), ${what}: median ms per token (--perf)`);
    out.push(
      table(
        ['page', ...cols.map(([, h]) => h)],
        r.perf.map((p) => [p.page, ...cols.map(([k, h]) => cell(p, k, h))]),
      ),
      '',
      `The runner call by part, ${r.stages.length} peer(s), ${what}: median ms per token (--perf)`,
      table(
        ['page', ...parts.map(([, h]) => h)],
        r.perf.map((p) => [p.page, ...parts.map(([k, h]) => cell(p, k, h))]),
      ),
      '',
    );
  }
  return out;
}

runCli(async () => {
  const { values } = parseArgs({
    options: {
      peers: { type: 'string', default: '3' },
      tokens: { type: 'string', default: '48' },
      model: { type: 'string', default: 'stories15M=.bench/stories15M' },
      prompt: { type: 'string', default: 'Once upon a time' },
      json: { type: 'boolean', default: false },
      'timeout-s': { type: 'string', default: '80' },
      /** Skip the two --null-compute swarms (half the time). */
      'no-null-compute': { type: 'boolean', default: false },
      perf: { type: 'boolean', default: false },
      /** Wasm threads of every contributor page (default: the page's own choice). */
      threads: { type: 'string' },
      /** Also run the two model swarms with the pages at this many threads, in turn with the others. */
      'also-threads': { type: 'string' },
      /** The contributor pages' engine warm-up after their first load, ms (0 = off; default: the page's). */
      warmup: { type: 'string' },
      /** Also run the two model swarms with the pages at this warm-up (ms), in turn with the others. */
      'also-warmup': { type: 'string' },
      /** Skip measuring the same model's decode compute in Node (wasm, 1 thread). */
      'no-node': { type: 'boolean', default: false },
      /** Also run the two model swarms with the requester sending every step (no loop mode). */
      'also-no-loop': { type: 'boolean', default: false },
      /** V8 flags for every page (Chromium's `--js-flags`), for experiments such as `--single-threaded-gc`. */
      'js-flags': { type: 'string' },
    },
  });
  const threads = values.threads === undefined ? undefined : intFlag('threads', values.threads, 1, 1);
  const alsoThreads =
    values['also-threads'] === undefined ? undefined : intFlag('also-threads', values['also-threads'], 1, 1);
  const warmUpMs = values.warmup === undefined ? undefined : intFlag('warmup', values.warmup, 0, 0);
  const alsoWarmUp =
    values['also-warmup'] === undefined ? undefined : intFlag('also-warmup', values['also-warmup'], 0, 0);
  const peers = intFlag('peers', values.peers, 3, 2);
  const tokens = intFlag('tokens', values.tokens, 48, 2);
  const timeoutS = intFlag('timeout-s', values['timeout-s'], 80, 10);
  const log = (m: string) => {
    if (!values.json) process.stderr.write(`${m}\n`);
  };
  assertLoopbackOnly();
  const started = Date.now();
  const { path } = parseModelArg(values.model);
  if (path === '.bench/stories15M' && !existsSync(`${path}/config.json`)) {
    log(`synthesizing stories15M into ${path}...`);
    await synthesizeModel({ preset: 'stories15M', outDir: path });
  }
  const load0 = loadavg();
  const run = (
    n: number,
    nullCompute = false,
    pageThreads = threads,
    pageWarmUp = warmUpMs,
    loop = true,
  ): Promise<SwarmResult> =>
    runSwarm({
      nullCompute,
      ...(loop ? {} : { loop: false }),
      ...(pageThreads !== undefined ? { threads: pageThreads } : {}),
      ...(pageWarmUp !== undefined ? { warmUpMs: pageWarmUp } : {}),
      perf: values.perf,
      ...(values['js-flags'] ? { jsFlags: values['js-flags'] } : {}),
      peers: n,
      prompt: values.prompt,
      // Only the new-token count matters here; steps just has to fit the context.
      steps: 2,
      maxNewTokens: tokens,
      temperature: 0,
      model: values.model,
      measureMemory: !nullCompute,
      timeoutMs: timeoutS * 1000,
      log: (m) => log(`  ${m}`),
    });
  log(`1-peer swarm, ${tokens} new tokens`);
  const one = await run(1);
  // Right after the 1-peer swarm, so both see about the same load: the same model's compute per
  // decode token in Node (onnxruntime-web wasm, 1 thread), next to the contributor page's.
  const node = values['no-node']
    ? undefined
    : await nodeDecodeCompute({ url: path }, one.promptTokens, tokens, one.contextLength);
  const alsoOne =
    alsoThreads === undefined
      ? undefined
      : (log(`1-peer swarm, pages at ${alsoThreads} thread(s)`), await run(1, false, alsoThreads));
  const warmOne =
    alsoWarmUp === undefined
      ? undefined
      : (log(`1-peer swarm, pages warming up ${alsoWarmUp} ms`), await run(1, false, threads, alsoWarmUp));
  const alsoNoLoop = values['also-no-loop'];
  const noLoopOne = alsoNoLoop
    ? (log(`1-peer swarm, no loop mode`), await run(1, false, threads, warmUpMs, false))
    : undefined;
  log(`${peers}-peer swarm, ${tokens} new tokens`);
  const many = await run(peers);
  const noLoopMany = alsoNoLoop
    ? (log(`${peers}-peer swarm, no loop mode`), await run(peers, false, threads, warmUpMs, false))
    : undefined;
  const warmMany =
    alsoWarmUp === undefined
      ? undefined
      : (log(`${peers}-peer swarm, pages warming up ${alsoWarmUp} ms`),
        await run(peers, false, threads, alsoWarmUp));
  const alsoMany =
    alsoThreads === undefined
      ? undefined
      : (log(`${peers}-peer swarm, pages at ${alsoThreads} thread(s)`), await run(peers, false, alsoThreads));
  const ratio = many.timings.decodeTokPerS / one.timings.decodeTokPerS;
  let nulls: { one: SwarmResult; many: SwarmResult } | undefined;
  if (!values['no-null-compute']) {
    log(`1-peer swarm, --null-compute`);
    const nOne = await run(1, true);
    log(`${peers}-peer swarm, --null-compute`);
    nulls = { one: nOne, many: await run(peers, true) };
  }
  const load1 = loadavg();
  /**
   * One swarm's per-token split, and per wire hop: `stages` hops per token in loop mode (none on one
   * stage: its "hops" are the stage's own handling), `stages + 1` when the requester sends each step.
   */
  const split = (r: SwarmResult, loop = true) => {
    const n = r.stages.length;
    const wireHops = loop ? (n > 1 ? n : 0) : n + 1;
    return {
      peers: r.stages.length,
      loop,
      decodeTokPerS: r.timings.decodeTokPerS,
      computeMsPerToken: r.timings.computeMsPerToken,
      hopMsPerToken: r.timings.hopMsPerToken,
      wireHopsPerToken: wireHops,
      hopMsPerHop: wireHops > 0 ? r.timings.hopMsPerToken / wireHops : null,
    };
  };
  const nullCompute = nulls
    ? {
        one: split(nulls.one),
        many: split(nulls.many),
        ratio: nulls.many.timings.decodeTokPerS / nulls.one.timings.decodeTokPerS,
      }
    : undefined;
  const verdict = ratio >= TARGET ? 'PASS' : 'MISS';
  const elapsedS = (Date.now() - started) / 1000;
  const speedRow = (r: SwarmResult) => {
    const planned = r.speed?.plannedTokPerS ?? undefined;
    const measured = r.timings.decodeTokPerS;
    const x = planned ? measured / planned : undefined;
    const within = x !== undefined && x <= SPEED_FACTOR && x >= 1 / SPEED_FACTOR;
    return {
      peers: r.stages.length,
      planned,
      measured,
      measuredOverPlanned: x,
      verdict: x === undefined ? 'n/a' : within ? 'PASS' : 'MISS',
      pipelined: r.speed?.pipelinedTokPerS ?? undefined,
      shown: r.speed?.observedTokPerS ?? undefined,
    };
  };
  const speeds = [speedRow(one), speedRow(many)];
  const f1 = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(1));

  if (values.json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          model: one.model,
          tokens,
          decodeRatio: ratio,
          target: TARGET,
          verdict,
          decode: { one: split(one), many: split(many) },
          pageThreads: threads ?? 'page default',
          pageWarmUpMs: warmUpMs ?? 'page default',
          ...(node
            ? {
                nodeCompute: {
                  ...node,
                  pageComputeMsPerToken: one.timings.computeMsPerToken,
                  pageOverNode: one.timings.computeMsPerToken / node.ortMsPerToken,
                },
              }
            : {}),
          ...(warmOne && warmMany
            ? {
                alsoWarmUp: {
                  warmUpMs: alsoWarmUp,
                  one: split(warmOne),
                  many: split(warmMany),
                  decodeRatio: warmMany.timings.decodeTokPerS / warmOne.timings.decodeTokPerS,
                  ...(node ? { pageOverNode: warmOne.timings.computeMsPerToken / node.ortMsPerToken } : {}),
                },
              }
            : {}),
          ...(noLoopOne && noLoopMany
            ? {
                alsoNoLoop: {
                  one: split(noLoopOne, false),
                  many: split(noLoopMany, false),
                  decodeRatio: noLoopMany.timings.decodeTokPerS / noLoopOne.timings.decodeTokPerS,
                  loopOverNoLoop: {
                    one: one.timings.decodeTokPerS / noLoopOne.timings.decodeTokPerS,
                    many: many.timings.decodeTokPerS / noLoopMany.timings.decodeTokPerS,
                  },
                },
              }
            : {}),
          ...(alsoOne && alsoMany
            ? {
                alsoThreads: {
                  threads: alsoThreads,
                  one: split(alsoOne),
                  many: split(alsoMany),
                  decodeRatio: alsoMany.timings.decodeTokPerS / alsoOne.timings.decodeTokPerS,
                },
              }
            : {}),
          nullCompute,
          ...(one.cpu && many.cpu
            ? {
                cpu: Object.fromEntries(
                  (
                    [
                      ['one', one.cpu],
                      ['many', many.cpu],
                    ] as const
                  ).map(([k, c]) => [
                    k,
                    {
                      wallMsPerToken: c.wallMsPerToken,
                      cpuMsPerToken: c.cpuMsPerToken,
                      coresBusy: c.coresBusy,
                      byProcess: Object.fromEntries(c.processes.map((p) => [p.label, p.cpuMsPerToken])),
                    },
                  ]),
                ),
              }
            : {}),
          loadAverage: { before: load0, after: load1 },
          one,
          many,
          ratio,
          speeds,
          ...(nulls ? { nullOne: nulls.one, nullMany: nulls.many } : {}),
          ...(warmOne && warmMany ? { warmUpOne: warmOne, warmUpMany: warmMany } : {}),
          ...(noLoopOne && noLoopMany ? { noLoopOne, noLoopMany } : {}),
          elapsedS,
        },
        null,
        2,
      )}\n`,
    );
    return;
  }
  const row = (r: SwarmResult) => [
    `${r.stages.length}`,
    r.stages.map((s) => `[${s.range[0]},${s.range[1]})`).join(' '),
    r.timings.decodeTokPerS.toFixed(1),
    r.timings.computeMsPerToken.toFixed(2),
    r.timings.hopMsPerToken.toFixed(2),
    r.timings.prefillTokPerS.toFixed(1),
  ];
  const mem = [one, many].flatMap((r) =>
    (r.memory ?? []).map((m) => {
      const budget = m.weightBytes + m.kvBytes + OVERHEAD;
      return [
        `${r.stages.length}`,
        m.peer.slice(0, 8),
        `[${m.range[0]},${m.range[1]})`,
        mb(m.rssBytes),
        mb(m.pssBytes),
        mb(m.jsHeapUsedBytes),
        mb(m.weightBytes),
        mb(m.kvBytes),
        mb(budget),
        m.rssBytes === undefined ? '?' : m.rssBytes <= budget ? 'within' : 'OVER',
        m.pssBytes === undefined ? '?' : m.pssBytes <= budget ? 'within' : 'OVER',
      ];
    }),
  );
  process.stdout.write(
    [
      `Ringwork swarm bench: ${one.model} (context ${one.contextLength}), ${tokens} new tokens at temperature 0, ` +
        `Node ${process.version}, ${cpus().length} CPUs`,
      '',
      table(
        ['peers', 'ranges', 'decode tok/s', 'compute ms/tok', 'hops ms/tok', 'prefill tok/s'],
        [row(one), row(many)],
      ),
      '',
      `decode tok/s ${peers} peers ÷ 1 peer = ${ratio.toFixed(2)} (target >= ${TARGET}): ${verdict}`,
      '',
      ...(node
        ? [
            `Compute per decode token, the whole model: contributor page ${one.timings.computeMsPerToken.toFixed(2)} ms ` +
              `(pages at ${threads ?? 'their default'} thread(s)), Node wasm 1 thread ${node.ortMsPerToken.toFixed(2)} ms ` +
              `(wall ${node.wallMsPerToken.toFixed(2)} ms, CPU ${node.cpuMsPerToken.toFixed(2)} ms): page ÷ Node = ` +
              `${(one.timings.computeMsPerToken / node.ortMsPerToken).toFixed(2)} (target <= 1.3)`,
            '',
          ]
        : []),
      ...(warmOne && warmMany
        ? [
            `The same swarms with the pages warming their engine up ${alsoWarmUp} ms after loading, run in turn with the ones above:`,
            table(
              ['peers', 'decode tok/s', 'compute ms/tok', 'hops ms/tok'],
              [warmOne, warmMany].map((r) => [
                `${r.stages.length}`,
                r.timings.decodeTokPerS.toFixed(1),
                r.timings.computeMsPerToken.toFixed(2),
                r.timings.hopMsPerToken.toFixed(2),
              ]),
            ),
            `decode tok/s ${peers} peers ÷ 1 peer = ${(warmMany.timings.decodeTokPerS / warmOne.timings.decodeTokPerS).toFixed(2)}` +
              (node
                ? `; page compute ÷ Node = ${(warmOne.timings.computeMsPerToken / node.ortMsPerToken).toFixed(2)}`
                : ''),
            '',
          ]
        : []),
      ...(noLoopOne && noLoopMany
        ? [
            'The same swarms with the requester sending every step (no loop mode), each run right after its counterpart:',
            table(
              ['peers', 'decode tok/s', 'compute ms/tok', 'hops ms/tok', 'loop ÷ no loop'],
              [
                [noLoopOne, one],
                [noLoopMany, many],
              ].map(([r, l]) => [
                `${r!.stages.length}`,
                r!.timings.decodeTokPerS.toFixed(1),
                r!.timings.computeMsPerToken.toFixed(2),
                r!.timings.hopMsPerToken.toFixed(2),
                (l!.timings.decodeTokPerS / r!.timings.decodeTokPerS).toFixed(2),
              ]),
            ),
            `decode tok/s ${peers} peers ÷ 1 peer without the loop = ${(noLoopMany.timings.decodeTokPerS / noLoopOne.timings.decodeTokPerS).toFixed(2)}`,
            '',
          ]
        : []),
      ...(alsoOne && alsoMany
        ? [
            `The same swarms with the pages at ${alsoThreads} thread(s), run in turn with the ones above:`,
            table(
              ['peers', 'decode tok/s', 'compute ms/tok', 'hops ms/tok'],
              [alsoOne, alsoMany].map((r) => [
                `${r.stages.length}`,
                r.timings.decodeTokPerS.toFixed(1),
                r.timings.computeMsPerToken.toFixed(2),
                r.timings.hopMsPerToken.toFixed(2),
              ]),
            ),
            `decode tok/s ${peers} peers ÷ 1 peer = ${(alsoMany.timings.decodeTokPerS / alsoOne.timings.decodeTokPerS).toFixed(2)}`,
            '',
          ]
        : []),
      ...(nullCompute
        ? [
            'The same swarms with --null-compute (stages skip the model): the ring protocol alone; one hop =',
            "hops per token ÷ wire hops per token (loop mode: stages; none on 1 stage), next to bench:transport's raw DataChannel hop.",
            table(
              ['peers', 'decode tok/s', 'compute ms/tok', 'hops ms/tok', 'ms per hop'],
              [nullCompute.one, nullCompute.many].map((r) => [
                `${r.peers}`,
                r.decodeTokPerS.toFixed(1),
                r.computeMsPerToken.toFixed(2),
                r.hopMsPerToken.toFixed(2),
                r.hopMsPerHop === null ? '—' : r.hopMsPerHop.toFixed(2),
              ]),
            ),
            `null-compute decode tok/s ${peers} peers ÷ 1 peer = ${nullCompute.ratio.toFixed(2)}`,
            '',
          ]
        : []),
      ...[one, many, ...(nulls ? [nulls.one, nulls.many] : [])].flatMap((r, i) =>
        r.cpu ? cpuLines(`${r.stages.length} peer(s)${i > 1 ? ', null compute' : ''}`, r.cpu, table) : [],
      ),
      ...perfTables([
        ['model', one],
        ['model', many],
        ...(warmOne && warmMany
          ? ([
              [`model, warm-up ${alsoWarmUp} ms`, warmOne],
              [`model, warm-up ${alsoWarmUp} ms`, warmMany],
            ] as const)
          : []),
        ...(noLoopOne && noLoopMany
          ? ([
              ['model, no loop', noLoopOne],
              ['model, no loop', noLoopMany],
            ] as const)
          : []),
        ...(nulls
          ? ([
              ['null compute', nulls.one],
              ['null compute', nulls.many],
            ] as const)
          : []),
      ]),
      `load average (1/5/15 min) before ${load0.map((l) => l.toFixed(1)).join('/')}, after ${load1
        .map((l) => l.toFixed(1))
        .join('/')}`,
      '',
      `Speed one request gets: the planner's single-request estimate (1 / per-token latency) vs the decode`,
      `tok/s the request measured (target: within ${SPEED_FACTOR}x); pipelined capacity as planned; the figure the`,
      `server shows after the request reported its lap (ring-lap).`,
      table(
        [
          'peers',
          'planned tok/s',
          'measured tok/s',
          'measured ÷ planned',
          `within ${SPEED_FACTOR}x`,
          'pipelined (planned)',
          'shown after',
        ],
        speeds.map((s) => [
          `${s.peers}`,
          f1(s.planned),
          f1(s.measured),
          s.measuredOverPlanned === undefined ? '—' : s.measuredOverPlanned.toFixed(2),
          s.verdict,
          f1(s.pipelined),
          f1(s.shown),
        ]),
      ),
      '',
      'Memory per contributor page: renderer RSS and PSS (both include the shard worker; PSS splits shared',
      `pages such as Chromium's code) and main-thread JS heap, next to the budget: shard weights + KV at`,
      `the served context + ${mb(OVERHEAD)}`,
      table(
        ['peers', 'peer', 'units', 'RSS', 'PSS', 'JS heap', 'weights', 'KV', 'budget', 'RSS', 'PSS'],
        mem,
      ),
      '',
      `elapsed ${elapsedS.toFixed(1)} s`,
    ].join('\n') + '\n',
  );
});
