/**
 * `npm run synth -- --preset <name> --out <dir> [--seed N] [--dtype f32|f16|bf16]
 * [--max-shard-bytes N]`: writes a synthetic Hugging Face model directory (random weights with the
 * real shapes of the preset) for tests, benchmarks and demos without downloads.
 */
import { parseArgs } from 'node:util';
import { isRingworkError } from '../../shared/errors.js';
import { SYNTH_PRESETS, isSynthPresetName, synthesizeModel } from '../model/synth.js';

const USAGE = `Usage: npm run synth -- --preset <name> --out <dir> [--seed N] [--dtype f32|f16|bf16] [--max-shard-bytes N]
Presets: ${Object.keys(SYNTH_PRESETS).join(', ')}`;

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseCount(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  // Accept plain integers and 1e9-style or 500M/2G suffixes: shard sizes are usually round numbers.
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)([kmg]?)b?$/i.exec(raw.trim());
  if (!m) fail(`--${name} must be a number, got "${raw}".`);
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase()]!;
  const n = Math.floor(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n)) fail(`--${name} must be a safe integer, got "${raw}".`);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        preset: { type: 'string' },
        out: { type: 'string' },
        seed: { type: 'string' },
        dtype: { type: 'string' },
        'max-shard-bytes': { type: 'string' },
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
  const preset = values.preset;
  if (!preset) fail('--preset is required.');
  if (!isSynthPresetName(preset)) fail(`Unknown preset "${preset}".`);
  if (!values.out) fail('--out is required.');
  const dtype = (values.dtype ?? 'f32').toLowerCase();
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16')
    fail(`--dtype must be f32, f16 or bf16, got "${dtype}".`);
  const seed = parseCount('seed', values.seed) ?? 1;
  const maxShardBytes = parseCount('max-shard-bytes', values['max-shard-bytes']);

  const started = performance.now();
  let lastPrint = 0;
  const result = await synthesizeModel({
    preset,
    outDir: values.out,
    seed,
    dtype: dtype,
    maxShardBytes,
    onProgress: ({ file, loadedBytes, totalBytes }) => {
      // Progress on stderr, at most twice a second, and only when someone is watching.
      const now = performance.now();
      if (!process.stderr.isTTY || (now - lastPrint < 500 && loadedBytes < totalBytes)) return;
      lastPrint = now;
      process.stderr.write(
        `\r${file}: ${(loadedBytes / 1e6).toFixed(0)} / ${(totalBytes / 1e6).toFixed(0)} MB`,
      );
    },
  });
  if (process.stderr.isTTY) process.stderr.write('\n');
  const c = result.config;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stdout.write(
    `Wrote ${preset} (${c.numLayers} layers, dim ${c.hiddenSize}, vocab ${c.vocabSize}, ${dtype}, seed ${seed}) to ${result.outDir} in ${seconds}s\n` +
      `  weights: ${result.weightFiles.join(', ')} (${(result.weightBytes / 1e6).toFixed(1)} MB)\n` +
      `  files:   ${result.files.join(', ')}\n`,
  );
}

main().catch((e: unknown) => {
  if (isRingworkError(e)) process.stderr.write(`synth: ${e.code}: ${e.message}\n`);
  else process.stderr.write(`synth: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
