import type { WeightFormat } from '../../../shared/graph/compile-shard.js';
import { splitUnits, type UnitRange } from '../../../shared/graph/units.js';
import type { ModelLocation } from '../../../shared/model/open-model.js';
import type { ModelConfig } from '../../../shared/model/types.js';
import type { OrtModule } from '../../../shared/runtime/ort-shard-runner.js';
import { createPipeline, type Pipeline } from '../../../shared/runtime/pipeline.js';
import type { LoadResult, ShardRunner } from '../../../shared/runtime/shard-runner.js';
import type { Tokenizer } from '../../../shared/tokenizer/types.js';
import { createNodeShardRunner, openNodeModel } from './open-node-model.js';

/** A model split into in-process shard runners, chained. */
export interface LocalPipeline {
  config: ModelConfig;
  tokenizer: Tokenizer;
  ranges: UnitRange[];
  runners: ShardRunner[];
  loads: LoadResult[];
  pipeline: Pipeline;
  dispose(): Promise<void>;
}

/**
 * Opens a model and loads one in-process runner per unit range (`splits` are unit boundaries;
 * `[]` = whole model). Used by `npm run generate`, the benchmarks and the tests.
 */
export async function loadLocalPipeline(opts: {
  model: ModelLocation;
  splits?: number[];
  weightFormat?: WeightFormat;
  contextLength?: number;
  logits?: 'last' | 'all' | 'rows';
  ort?: OrtModule;
  signal?: AbortSignal;
}): Promise<LocalPipeline> {
  const opened = await openNodeModel(opts.model, opts.signal);
  const config = opened.source.config;
  const tokenizer = await opened.loadTokenizer(opts.signal);
  const ranges = splitUnits(config, opts.splits ?? []);
  const runners = ranges.map(() => createNodeShardRunner({ ort: opts.ort }));
  const loads: LoadResult[] = [];
  for (let i = 0; i < ranges.length; i++) {
    loads.push(
      await runners[i]!.load(
        {
          model: opts.model,
          range: ranges[i]!,
          weightFormat: opts.weightFormat ?? 'f32',
          contextLength: Math.min(opts.contextLength ?? config.maxPositions, config.maxPositions),
          logits: opts.logits ?? 'last',
          backend: 'wasm',
        },
        { signal: opts.signal },
      ),
    );
  }
  return {
    config,
    tokenizer,
    ranges,
    runners,
    loads,
    pipeline: createPipeline(runners),
    async dispose() {
      await Promise.all(runners.map((r) => r.dispose()));
    },
  };
}
