/**
 * `npm run bench:speculative [-- --hop-ms 20] [--stages 3] [--steps 64] [--k 2,4,6] [--mbps 200]
 * [--model public/models/stories260K/stories260K.bin] [--no-synthetic] [--synth-dir .bench/stories15M] [--json]`
 *
 * Greedy decoding through an in-process ring with shaped links, without and with a q4 draft, in one
 * run; then the synthetic-model agreement check (see tools/bench/speculative-bench.ts).
 */
import { parseArgs } from 'node:util';
import { ensureSynthModel } from '../bench/engine-bench.js';
import { formatSpeculativeReport, runSpeculativeBench } from '../bench/speculative-bench.js';
import { intFlag, numFlag, runCli, usage } from './cli-util.js';

runCli(async () => {
  const { values } = parseArgs({
    options: {
      'hop-ms': { type: 'string' },
      mbps: { type: 'string' },
      stages: { type: 'string' },
      steps: { type: 'string' },
      k: { type: 'string', default: '2,4,6' },
      model: { type: 'string', default: 'public/models/stories260K/stories260K.bin' },
      prompt: { type: 'string', default: 'Once upon a time' },
      'no-synthetic': { type: 'boolean', default: false },
      'synth-dir': { type: 'string', default: '.bench/stories15M' },
      json: { type: 'boolean', default: false },
    },
  });
  const ks = values.k.split(',').map((x) => Number(x.trim()));
  if (ks.some((k) => !Number.isInteger(k) || k < 1 || k > 64))
    throw usage(`--k takes comma-separated draft lengths from 1 to 64, got "${values.k}".`);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const synthDir = values['synth-dir'];
  const r = await runSpeculativeBench({
    modelPath: values.model,
    hopMs: numFlag('hop-ms', values['hop-ms'], 20),
    mbps: numFlag('mbps', values.mbps, 200),
    stages: intFlag('stages', values.stages, 3, 1),
    steps: intFlag('steps', values.steps, 64, 8),
    ks,
    prompt: values.prompt,
    syntheticSteps: 48,
    // Same seed as bench:engine, so both benches share one written model.
    ...(values['no-synthetic'] ? {} : { synthetic: () => ensureSynthModel(synthDir, 'stories15M', 1, log) }),
    log,
  });
  process.stdout.write(values.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatSpeculativeReport(r)}\n`);
});
