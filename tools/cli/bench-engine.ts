/**
 * `npm run bench:engine [-- --quick] [--json] [--rounds N] [--steps N] [--prompt N]
 * [--models stories260K,stories15M] [--no-threads2] [--no-fused] [--no-kv-compare]
 * [--positions 8,240,1000] [--synth-dir .bench/stories15M-1k]`
 *
 * Measures, in one run and for each model: (a) onnxruntime-web wasm in Node, (b) onnxruntime-node
 * native CPU on the same compiled graphs, (c) the memory-bandwidth bound on decode, and a 3-way
 * split chained in-process against the whole model; prints a table with the targets (a/b >= 0.5,
 * split/whole >= 0.95) marked PASS/MISS; the default `rows` KV cache next to the `concat` one
 * (before/after) and every variant's decode step at a few positions (short to near the context). A MISS is a finding, not a failure: the exit code is 0.
 * With `--json` the table goes to stderr and the JSON result to stdout.
 */
import { parseArgs } from 'node:util';
import { isRingworkError } from '../../shared/errors.js';
import {
  ensureSynthModel,
  runEngineBench,
  type BenchModelSpec,
  type EngineBenchOptions,
} from '../bench/engine-bench.js';
import { formatEngineBenchReport } from '../bench/engine-report.js';

const USAGE = `Usage: npm run bench:engine -- [--quick] [--json] [--rounds N] [--steps N] [--prompt N]
  [--models stories260K,stories15M] [--no-threads2] [--no-fused] [--no-kv-compare]
  [--positions P,P,...] [--synth-dir DIR]`;

const MODEL_NAMES = ['stories260K', 'stories15M'] as const;
/** Fixed so every machine benchmarks the same synthetic weights. */
const SYNTH_SEED = 1;
/**
 * The synthetic stories15M is written with 1024 positions (the real one has 256; the weights are
 * the same) so that the position sweep reaches a context where the KV cache costs as much as the
 * weights.
 */
const SYNTH_POSITIONS = 1024;

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a positive integer, got "${raw}".`);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        steps: { type: 'string' },
        prompt: { type: 'string' },
        models: { type: 'string' },
        'no-threads2': { type: 'boolean', default: false },
        'no-fused': { type: 'boolean', default: false },
        'no-kv-compare': { type: 'boolean', default: false },
        positions: { type: 'string' },
        'synth-dir': { type: 'string', default: '.bench/stories15M-1k' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const quick = values.quick;
  const names = (values.models ?? MODEL_NAMES.join(',')).split(',').map((s) => s.trim());
  for (const n of names) {
    if (!(MODEL_NAMES as readonly string[]).includes(n))
      fail(`Unknown model "${n}": use ${MODEL_NAMES.join(', ')}.`);
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);

  const models: BenchModelSpec[] = [];
  for (const n of names) {
    if (n === 'stories260K') {
      models.push({ name: n, note: 'real', model: { url: 'public/models/stories260K/stories260K.bin' } });
    } else {
      const model = await ensureSynthModel(
        values['synth-dir'],
        'stories15M',
        SYNTH_SEED,
        log,
        SYNTH_POSITIONS,
      );
      models.push({ name: n, note: `synthetic, seed ${SYNTH_SEED}, ${SYNTH_POSITIONS} positions`, model });
    }
  }

  // Full: 5 rounds of 3 prefills (32 tokens) + 128 decode steps per variant keeps both models
  // near 2 minutes on 2 busy cores; quick: the shape of the numbers in about 20 seconds.
  const options: EngineBenchOptions = {
    models,
    promptTokens: positiveInt('prompt', values.prompt, quick ? 16 : 32),
    decodeSteps: positiveInt('steps', values.steps, quick ? 32 : 128),
    decodeBlock: 16,
    prefillRepeats: quick ? 1 : 3,
    rounds: positiveInt('rounds', values.rounds, quick ? 2 : 5),
    warmupRounds: 1,
    minWarmupMs: quick ? 1500 : 3000,
    splitParts: 3,
    wasmThreads2: !quick && !values['no-threads2'],
    nativeThreads2: !values['no-threads2'],
    fusedAttention: !values['no-fused'],
    kvCompare: !values['no-kv-compare'],
    positions: (values.positions ?? (quick ? '8,240' : '8,240,1000'))
      .split(',')
      .map((p) => positiveInt('positions', p.trim(), 1)),
    positionSteps: 16,
    positionRounds: quick ? 1 : 3,
    bandwidth: quick ? { bytes: 64 * 2 ** 20, repeats: 3 } : { bytes: 256 * 2 ** 20, repeats: 5 },
    log,
  };
  const result = await runEngineBench(options);
  const report = formatEngineBenchReport(result);
  if (values.json) {
    process.stderr.write(`${report}\n`);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    process.stdout.write(`${report}\n`);
  }
}

main().then(
  // ORT's thread pools can keep the event loop alive after the last session is released.
  () => process.exit(0),
  (e: unknown) => {
    if (isRingworkError(e)) process.stderr.write(`bench:engine: ${e.code}: ${e.message}\n`);
    else process.stderr.write(`bench:engine: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
