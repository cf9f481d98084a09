/**
 * `npm run swarm -- --peers N --prompt "..." --steps 64 --temperature 0 [--seed S] [--model <id=path|dir|url>]
 *   [--kill-stage I --kill-after N [--standbys K]] [--timeout-s 120] [--json]
 *   [--draft q4 [--draft-k 4]] [--null-compute] [--trace] [--no-loop] [--perf]
 *   [--trace-out FILE] [--js-flags FLAGS] [--warm-answers N] [--warmup MS]`
 *
 * Generates through a real swarm: the real signaling server, N headless Chromium contributor pages
 * whose declared capabilities make the planner split the model over all N, and a requester page
 * whose chat UI is driven like a person would (see swarm/swarm-run.ts). Prints the text exactly as
 * `npm run generate` does for the same settings (steps = total positions, BOS and prompt included);
 * `--json` prints the text, the ring's layer ranges and the chat's timings instead (the UI shows no
 * token ids, so there are none). `--kill-stage I --kill-after N` closes the page holding ring stage I
 * (0-based, ring order) once N tokens were generated: the text must still be the undisturbed one,
 * and `--json` adds `failovers` (per loss: how it was noticed, `detectMs`, `recoveryMs` from the
 * close, and `viaStandby`). `--standbys K` adds K pages the planner leaves out of the ring (they declare
 * far less speed), which the coordinator makes loaded standby replicas of its stages: the lost
 * stage is then swapped for its standby instead of re-planned. Runs inside the loopback-only namespace (`npm run swarm` wraps it
 * in tests/e2e/isolated.sh) and refuses otherwise; exits 1 with the reason on any failure.
 * `--draft q4` (greedy only) ticks the chat's "Draft locally" setting: the requester page drafts up
 * to `--draft-k` tokens with a q4 copy of the model and the ring verifies them in one lap; the
 * text is the same as without it, and `--json` adds `accepted`, `drafted`, `laps`, `tokensPerLap`.
 * `--null-compute` (tooling) makes the stages skip the model: the text is meaningless, the timings
 * are the ring's protocol cost per token (pages allow it only with a test-mode server, which this
 * tool always spawns). `--trace` logs every contributor's assignment and load state at each change
 * and each page's shard-load breakdown (tools/swarm/swarm-trace.ts). `--no-loop` (tooling) opens the
 * requester page with `loop=0`: it sends every decode step itself instead of the ring's head feeding
 * each token to stage 0 (loop mode, the default; the text is the same). `--trace-out FILE`
 * (tooling) records a Chromium trace of the first answer (V8 GC and compile, wasm, timeline) to FILE
 * and prints, per page, what its threads ran per generated token and its garbage collections
 * (tools/swarm/chrome-trace.ts; `--json` has it as `chromeTrace`). `--js-flags FLAGS` passes V8
 * flags to every page (Chromium's `--js-flags`). `--perf` opens the pages with their debug timings
 * and adds the CPU per token by process (`cpu`, as `bench:swarm --perf`). `--warm-answers N` asks
 * N answers first and measures (and traces) the next one: pages whose engine has served before.
 * `--warmup MS` sets the contributor pages' engine warm-up (`warmup=MS`, as `bench:swarm`).
 */
import { parseArgs } from 'node:util';
import { assertLoopbackOnly } from '../bench/transport-ring.js';
import { RingworkError } from '../../shared/errors.js';
import { runSwarm } from '../swarm/swarm-run.js';
import { intFlag, numFlag, runCli, usage } from './cli-util.js';

runCli(async () => {
  const { values } = parseArgs({
    options: {
      peers: { type: 'string', default: '3' },
      prompt: { type: 'string', default: '' },
      steps: { type: 'string', default: '256' },
      temperature: { type: 'string', default: '0' },
      seed: { type: 'string' },
      'kill-stage': { type: 'string' },
      'kill-after': { type: 'string' },
      standbys: { type: 'string', default: '0' },
      model: { type: 'string' },
      'timeout-s': { type: 'string' },
      json: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      'null-compute': { type: 'boolean', default: false },
      trace: { type: 'boolean', default: false },
      'trace-out': { type: 'string' },
      'js-flags': { type: 'string' },
      perf: { type: 'boolean', default: false },
      'warm-answers': { type: 'string', default: '0' },
      warmup: { type: 'string' },
      'no-loop': { type: 'boolean', default: false },
      draft: { type: 'string' },
      'draft-k': { type: 'string', default: '4' },
    },
  });
  if (values.draft !== undefined && values.draft !== 'q4')
    throw usage(`--draft: the chat drafts with a q4 copy of the model (--draft q4), got "${values.draft}".`);
  const draftK = intFlag('draft-k', values['draft-k'], 4, 1);
  if (![1, 2, 3, 4, 6, 8].includes(draftK)) throw usage('--draft-k: the chat offers 1, 2, 3, 4, 6 or 8.');
  const peers = intFlag('peers', values.peers, 3, 1);
  if (peers > 16) throw usage('--peers: at most 16 pages on one machine.');
  const temperature = numFlag('temperature', values.temperature, 0);
  if (temperature < 0) throw usage('--temperature must be >= 0.');
  if (values.draft !== undefined && temperature !== 0) {
    throw new RingworkError(
      'SPECULATIVE_UNSUPPORTED',
      '--draft is greedy only: pass --temperature 0 (sampling with a draft would change the output distribution).',
      { details: { temperature } },
    );
  }
  if ((values['kill-stage'] === undefined) !== (values['kill-after'] === undefined))
    throw usage('--kill-stage and --kill-after go together.');
  const kill =
    values['kill-stage'] !== undefined
      ? {
          stage: intFlag('kill-stage', values['kill-stage'], 0, 0),
          after: intFlag('kill-after', values['kill-after'], 1, 1),
        }
      : undefined;
  const standbys = intFlag('standbys', values.standbys, 0, 0);
  if (standbys > 0 && !kill) throw usage('--standbys goes with --kill-stage (a failover run).');
  if (peers + standbys > 16) throw usage('--peers + --standbys: at most 16 pages on one machine.');
  if (kill && kill.stage >= peers) throw usage(`--kill-stage: the ring has ${peers} stages (0-based).`);
  assertLoopbackOnly();
  const result = await runSwarm({
    peers,
    prompt: values.prompt,
    steps: intFlag('steps', values.steps, 256, 2),
    temperature,
    ...(values.seed !== undefined ? { seed: intFlag('seed', values.seed, 1, 1) } : {}),
    ...(values.draft !== undefined ? { draft: { format: 'q4' as const, k: draftK } } : {}),
    ...(kill ? { kill } : {}),
    ...(standbys > 0 ? { standbys } : {}),
    ...(values.model ? { model: values.model } : {}),
    ...(values['null-compute'] ? { nullCompute: true } : {}),
    ...(values.trace ? { trace: true } : {}),
    ...(values['trace-out'] ? { chromeTrace: values['trace-out'] } : {}),
    ...(values['js-flags'] ? { jsFlags: values['js-flags'] } : {}),
    ...(values.perf ? { perf: true } : {}),
    ...(values.warmup !== undefined ? { warmUpMs: intFlag('warmup', values.warmup, 600, 0) } : {}),
    warmAnswers: intFlag('warm-answers', values['warm-answers'], 0, 0),
    ...(values['no-loop'] ? { loop: false } : {}),
    timeoutMs: intFlag('timeout-s', values['timeout-s'], 120, 10) * 1000,
    log: (m) => {
      if (!values.quiet) process.stderr.write(`${m}\n`);
    },
  });
  const spec = result.speculative;
  if (values.json) {
    // Drafted: accepted, drafted, laps and tokensPerLap at the top level, as `npm run generate` prints them.
    const { speculative: _, ...rest } = result;
    process.stdout.write(
      `${JSON.stringify(
        spec
          ? {
              ...rest,
              draft: { format: spec.format, k: spec.k },
              accepted: spec.accepted,
              drafted: spec.drafted,
              laps: spec.laps,
              tokensPerLap: spec.tokensPerLap,
            }
          : rest,
        null,
        2,
      )}\n`,
    );
    return;
  }
  process.stdout.write(`${result.text}\n`);
  const t = result.timings;
  // Like `npm run generate`: the figures go to stderr so stdout is only the text.
  process.stderr.write(
    `achieved tok/s: decode ${t.decodeTokPerS}, prefill ${t.prefillTokPerS}; per token ` +
      `${t.computeMsPerToken} ms compute + ${t.hopMsPerToken} ms hops; ring ` +
      result.stages.map((s) => `[${s.range[0]}, ${s.range[1]})`).join(' → ') +
      '\n',
  );
  if (spec)
    process.stderr.write(
      `draft ${spec.format} k=${spec.k}: ${spec.accepted}/${spec.drafted} drafted tokens accepted, ` +
        `${spec.laps} ring laps, ${spec.tokensPerLap.toFixed(2)} tokens per lap\n`,
    );
  for (const f of result.failovers ?? [])
    process.stderr.write(
      `failover: stage ${f.stage} closed after ${f.killedAfter} tokens; noticed by ${f.cause} in ${f.detectMs} ms, ` +
        `answer went on after ${f.recoveryMs} ms (${f.replayed} positions replayed` +
        `${f.viaStandby ? '; a standby replica took the stage over' : ''})\n`,
    );
});
