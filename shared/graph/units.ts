import { RingworkError } from '../errors.js';
import type { ModelConfig } from '../model/types.js';

/**
 * A model is a chain of "units", the granularity at which it can be split and planned:
 * unit 0 = token embedding, units 1..L = transformer blocks 0..L-1, unit L+1 = head (final norm +
 * output projection). A shard is a half-open unit range `[start, end)`.
 */
export type UnitRange = readonly [start: number, end: number];

/** Number of units of a model: L blocks + embedding + head. */
export function unitCount(config: Pick<ModelConfig, 'numLayers'>): number {
  return config.numLayers + 2;
}

/** Human-readable unit name, as used in the model profile. */
export function unitName(config: Pick<ModelConfig, 'numLayers'>, unit: number): string {
  if (unit === 0) return 'embed';
  if (unit === config.numLayers + 1) return 'head';
  return `block.${unit - 1}`;
}

/** Validates a unit range and throws a typed error that says what is allowed. */
export function checkUnitRange(config: Pick<ModelConfig, 'numLayers'>, range: UnitRange): void {
  const n = unitCount(config);
  const [a, b] = range;
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b > n || a >= b) {
    throw new RingworkError(
      'GRAPH_BAD_RANGE',
      `Unit range [${a}, ${b}) is invalid for a model with ${config.numLayers} layers: use integers 0 <= start < end <= ${n} (0 = embedding, 1..${config.numLayers} = blocks, ${n - 1} = head).`,
      { details: { range: [a, b], units: n } },
    );
  }
}

/** Transformer block indices (0-based) inside a unit range. */
export function blocksIn(config: Pick<ModelConfig, 'numLayers'>, range: UnitRange): number[] {
  const out: number[] = [];
  for (let u = Math.max(range[0], 1); u < Math.min(range[1], config.numLayers + 1); u++) out.push(u - 1);
  return out;
}

/**
 * Splits the whole model at the given unit boundaries: `[2, 4]` on 7 units gives
 * `[[0,2],[2,4],[4,7]]`.
 */
export function splitUnits(
  config: Pick<ModelConfig, 'numLayers'>,
  boundaries: readonly number[],
): UnitRange[] {
  const n = unitCount(config);
  const ranges: UnitRange[] = [];
  let start = 0;
  for (const c of boundaries) {
    if (!Number.isInteger(c) || c <= start || c >= n) {
      throw new RingworkError(
        'GRAPH_BAD_RANGE',
        `Split boundary ${c} is invalid: boundaries must be distinct integers in increasing order, strictly between 0 and ${n} for this model (${n} units).`,
        { details: { boundaries: [...boundaries], units: n } },
      );
    }
    ranges.push([start, c]);
    start = c;
  }
  ranges.push([start, n]);
  return ranges;
}
