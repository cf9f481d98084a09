import { RingworkError } from '../errors.js';
import { checkUnitRange, unitCount, type UnitRange } from '../graph/units.js';
import type { ModelConfig } from './types.js';

/**
 * Canonical (Hugging Face) tensor names per unit. Units: 0 = embedding, 1..L = blocks, L+1 = head
 * (see shared/graph/units.ts). Loaders, the graph compiler and the synthesizer all use this list.
 */

/** Canonical tensor names that unit `unit` reads. */
export function tensorNamesForUnit(config: ModelConfig, unit: number): string[] {
  const head = unitCount(config) - 1;
  if (!Number.isInteger(unit) || unit < 0 || unit > head) {
    throw new RingworkError(
      'GRAPH_BAD_RANGE',
      `Unit ${unit} does not exist: this model has units 0..${head}.`,
      {
        details: { unit, units: head + 1 },
      },
    );
  }
  if (unit === 0) return ['model.embed_tokens.weight'];
  if (unit === head) {
    return ['model.norm.weight', config.tiedEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'];
  }
  const p = `model.layers.${unit - 1}`;
  const names = [`${p}.input_layernorm.weight`];
  for (const proj of ['q', 'k', 'v'] as const) {
    names.push(`${p}.self_attn.${proj}_proj.weight`);
    if (config.attentionBias) names.push(`${p}.self_attn.${proj}_proj.bias`);
  }
  names.push(
    `${p}.self_attn.o_proj.weight`,
    `${p}.post_attention_layernorm.weight`,
    `${p}.mlp.gate_proj.weight`,
    `${p}.mlp.up_proj.weight`,
    `${p}.mlp.down_proj.weight`,
  );
  return names;
}

/**
 * Canonical tensor names needed to run units `range` (default: the whole model), in unit order,
 * without duplicates (with tied embeddings, a range holding unit 0 and the head lists the
 * embedding once).
 */
export function requiredTensorNames(config: ModelConfig, range?: UnitRange): string[] {
  const [start, end] = range ?? [0, unitCount(config)];
  checkUnitRange(config, [start, end]);
  const out = new Set<string>();
  for (let u = start; u < end; u++) for (const name of tensorNamesForUnit(config, u)) out.add(name);
  return [...out];
}

/** The shape a canonical tensor must have under `config`, or undefined for a name it does not know. */
export function expectedTensorShape(config: ModelConfig, name: string): number[] | undefined {
  const d = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const ff = config.intermediateSize;
  if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') return [config.vocabSize, d];
  if (name === 'model.norm.weight') return [d];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!m || Number(m[1]) >= config.numLayers) return undefined;
  const shapes: Record<string, number[]> = {
    'input_layernorm.weight': [d],
    'post_attention_layernorm.weight': [d],
    'self_attn.q_proj.weight': [q, d],
    'self_attn.k_proj.weight': [kv, d],
    'self_attn.v_proj.weight': [kv, d],
    'self_attn.o_proj.weight': [d, q],
    'self_attn.q_proj.bias': [q],
    'self_attn.k_proj.bias': [kv],
    'self_attn.v_proj.bias': [kv],
    'mlp.gate_proj.weight': [ff, d],
    'mlp.up_proj.weight': [ff, d],
    'mlp.down_proj.weight': [d, ff],
  };
  return shapes[m[2]!];
}
