/**
 * `npm run model-profile -- --model <dir|file.bin|url> [--format f32|q8|q4] [--context 2048]
 * [--prefill 512] [--json]` prints per-unit FLOPs, weight bytes, KV bytes and hand-off bytes.
 */
import { parseArgs } from 'node:util';
import { WEIGHT_FORMATS, type WeightFormat } from '../../shared/graph/compile-shard.js';
import { profileModel } from '../../shared/model/profile.js';
import { openNodeModel } from '../../signaling-server/src/model/open-node-model.js';
import { intFlag, runCli, usage } from './cli-util.js';

runCli(async () => {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      format: { type: 'string', default: 'f32' },
      context: { type: 'string' },
      prefill: { type: 'string' },
      name: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values.model)
    throw usage(
      'npm run model-profile -- --model <dir|file.bin|url> [--format f32|q8|q4] [--context N] [--json]',
    );
  if (!WEIGHT_FORMATS.includes(values.format as WeightFormat))
    throw usage(`--format must be one of ${WEIGHT_FORMATS.join(', ')}.`);
  const { source } = await openNodeModel({ url: values.model });
  const profile = profileModel(
    values.name ?? values.model.replace(/\/+$/, '').split('/').pop()!,
    source.config,
    {
      format: values.format as WeightFormat,
      contextTokens: values.context ? intFlag('context', values.context, 2048, 1) : undefined,
      prefillTokens: values.prefill ? intFlag('prefill', values.prefill, 512, 1) : undefined,
    },
  );
  if (values.json) {
    process.stdout.write(JSON.stringify(profile, null, 2) + '\n');
    return;
  }
  const mb = (b: number) => (b / 1e6).toFixed(3);
  process.stdout.write(
    `${profile.name}: ${profile.layers.length} units, ${profile.weightFormat}, context ${profile.contextTokens}\n`,
  );
  process.stdout.write('unit          MFLOP/tok   weight MB   KV B/tok   out B/tok\n');
  for (const l of profile.layers) {
    process.stdout.write(
      `${l.name.padEnd(12)} ${(l.flopsPerToken / 1e6).toFixed(3).padStart(11)} ${mb(l.weightBytes).padStart(11)} ${String(l.kvBytesPerToken).padStart(10)} ${String(l.outBytesPerToken).padStart(11)}\n`,
    );
  }
  const total = profile.layers.reduce((a, l) => a + l.weightBytes, 0);
  process.stdout.write(`total weights ${mb(total)} MB\n`);
});
