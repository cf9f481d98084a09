/**
 * `npm run bench:validation -- [--trials N] [--tamper <module.mjs>] [--json] [--honest N]
 * [--spot-trials N] [--overhead N] [--wired N] [--wired-only] [--wired-spot N] [--steps N] [--model PATH]`
 *
 * Result validation on an in-memory network of real stories260K shards: detection and location
 * per tamper class at k = 2, honest false positives, spot-check detection vs f, overhead (also on
 * the real wired path: ring protocol, commitments, the requester's pipeline with spot checks; `--wired
 * N` answers per mode, `--wired-only` runs that section alone, with spot-check detection vs f on
 * it: `--wired-spot N` trials per f and cheater). With
 * `--tamper` only that module's class runs (no spot-check or overhead sections). `--json` prints
 * `{"classes":[{"name","trials","detected","located",...}],"honest":{"comparisons","falsePositives",...},...}`.
 */
import { parseArgs } from 'node:util';
import { isRingworkError } from '../../shared/errors.js';
import { formatValidationReport, runValidationBench } from '../bench/validation-bench.js';
import {
  formatWiredOverhead,
  formatWiredSpot,
  runWiredOverhead,
  runWiredSpotDetection,
} from '../bench/validation-wired.js';
import { loadTamperModule, TAMPER_CLASSES } from '../bench/validation-tampers.js';

const USAGE = `Usage: npm run bench:validation -- [--trials N] [--tamper module.mjs] [--json]
  [--honest N] [--spot-trials N] [--overhead N] [--wired N] [--wired-only] [--wired-spot N]
  [--steps N] [--model PATH]
Built-in tamper classes: ${TAMPER_CLASSES.map((c) => c.name).join(', ')}`;

function int(name: string, v: string | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${name} must be an integer >= ${min}, got "${v}".\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      trials: { type: 'string' },
      tamper: { type: 'string' },
      json: { type: 'boolean' },
      honest: { type: 'string' },
      'spot-trials': { type: 'string' },
      overhead: { type: 'string' },
      wired: { type: 'string' },
      'wired-only': { type: 'boolean' },
      'wired-spot': { type: 'string' },
      steps: { type: 'string' },
      model: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (values['wired-only']) {
    const t0 = performance.now();
    const modelPath = values.model ?? 'public/models/stories260K/stories260K.bin';
    const steps = int('steps', values.steps, 64, 8);
    const rows = await runWiredOverhead({
      modelPath,
      steps,
      answers: int('wired', values.wired, 3, 1),
      f: 0.1,
      log,
    });
    const spotTrials = int('wired-spot', values['wired-spot'], 10, 0);
    const spot = spotTrials
      ? await runWiredSpotDetection({ modelPath, steps, trials: spotTrials, fs: [0.05, 0.1, 0.2, 0.5], log })
      : [];
    if (values.json) process.stdout.write(`${JSON.stringify({ wired: rows, wiredSpot: spot }, null, 2)}\n`);
    else
      process.stdout.write(
        `${[
          ...formatWiredOverhead(rows),
          ...(spot.length ? formatWiredSpot(spot) : []),
          `wall time: ${((performance.now() - t0) / 1000).toFixed(1)} s`,
        ].join('\n')}\n`,
      );
    return;
  }
  const classes = values.tamper ? [await loadTamperModule(values.tamper)] : TAMPER_CLASSES;
  const report = await runValidationBench({
    modelPath: values.model ?? 'public/models/stories260K/stories260K.bin',
    trials: int('trials', values.trials, 12, 1),
    honestTrials: int('honest', values.honest, 6, 0),
    spotTrials: int('spot-trials', values['spot-trials'], 10, 1),
    overheadTrials: int('overhead', values.overhead, 3, 1),
    wiredAnswers: int('wired', values.wired, 2, 0),
    steps: int('steps', values.steps, 64, 8),
    classes,
    classesOnly: values.tamper !== undefined,
    log,
  });
  if (values.json) {
    process.stderr.write(formatValidationReport(report));
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else process.stdout.write(formatValidationReport(report));
}

main().catch((e: unknown) => {
  process.stderr.write(
    isRingworkError(e)
      ? `error [${e.code}]: ${e.message}\n`
      : `${String(e instanceof Error ? e.stack : e)}\n`,
  );
  process.exit(1);
});
