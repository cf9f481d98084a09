/**
 * `npm run bench:proximity [-- --far-rtt 80] [--near-rtt 2] [--mbps 200] [--steps 64] [--rounds 3]
 * [--model public/models/stories260K/stories260K.bin] [--json]`
 *
 * A proximity-blind ring vs the ring the coordinator plans from probed links, on the same four
 * shaped in-memory peers, in one run: decode tok/s side by side (see tools/bench/proximity-bench.ts).
 */
import { parseArgs } from 'node:util';
import {
  formatProximityReport,
  runProximityBench,
  type ProximityBenchOptions,
} from '../bench/proximity-bench.js';
import { intFlag, numFlag, runCli } from './cli-util.js';

runCli(async () => {
  const { values } = parseArgs({
    options: {
      'far-rtt': { type: 'string' },
      'near-rtt': { type: 'string' },
      mbps: { type: 'string' },
      steps: { type: 'string' },
      rounds: { type: 'string' },
      model: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const o: ProximityBenchOptions = {
    modelPath: values.model ?? 'public/models/stories260K/stories260K.bin',
    farRttMs: numFlag('far-rtt', values['far-rtt'], 80),
    nearRttMs: numFlag('near-rtt', values['near-rtt'], 2),
    mbps: numFlag('mbps', values.mbps, 200),
    steps: intFlag('steps', values.steps, 64, 8),
    rounds: intFlag('rounds', values.rounds, 3, 1),
    log: (line) => process.stderr.write(`${line}\n`),
  };
  const r = await runProximityBench(o);
  process.stdout.write(values.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatProximityReport(r, o)}\n`);
});
