/**
 * Hugging Face `config.json` <-> {@link ModelConfig}. Only Llama-family decoder-only models are
 * accepted (Llama, SmolLM, Mistral, Qwen2); everything else is refused up front with a typed error
 * rather than producing a graph that silently computes the wrong thing.
 */
import { z } from 'zod';
import { RingworkError } from '../errors.js';
import { formatZodIssues, zodIssueDetails } from '../util/zod-issues.js';
import type { Architecture, ModelConfig, RopeLayout, RopeScaling } from './types.js';

/** `model_type` values accepted in config.json, with the architecture each maps to. */
const MODEL_TYPES: Readonly<Record<string, Architecture>> = {
  llama: 'llama',
  mistral: 'mistral',
  qwen2: 'qwen2',
  // Not a Hugging Face model_type; accepted so that configs tagged by hand still load.
  smollm: 'smollm',
};

/** `architectures[0]` values accepted when `model_type` is absent. */
const ARCHITECTURE_CLASSES: Readonly<Record<string, Architecture>> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};

const SUPPORTED_TEXT =
  'llama (LlamaForCausalLM, incl. SmolLM/SmolLM2 and TinyLlama), mistral (MistralForCausalLM), qwen2 (Qwen2ForCausalLM)';

const positiveInt = z.number().int().positive();
const tokenId = z.number().int().nonnegative();

const ropeScalingSchema = z.looseObject({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  factor: z.number().positive().optional(),
  low_freq_factor: z.number().positive().optional(),
  high_freq_factor: z.number().positive().optional(),
  original_max_position_embeddings: positiveInt.optional(),
});

// Loose: real configs carry dozens of keys we do not need (torch_dtype, use_cache, ...).
const hfConfigSchema = z.looseObject({
  model_type: z.string().optional(),
  architectures: z.array(z.string()).nullish(),
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt.nullish(),
  head_dim: positiveInt.nullish(),
  vocab_size: positiveInt,
  max_position_embeddings: positiveInt.optional(),
  rms_norm_eps: z.number().positive().optional(),
  rope_theta: z.number().positive().optional(),
  rope_scaling: ropeScalingSchema.nullish(),
  tie_word_embeddings: z.boolean().optional(),
  attention_bias: z.boolean().optional(),
  mlp_bias: z.boolean().optional(),
  hidden_act: z.string().optional(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)]).nullish(),
  sliding_window: positiveInt.nullish(),
  use_sliding_window: z.boolean().optional(),
  _name_or_path: z.string().optional(),
  ringwork_rope_layout: z.enum(['interleaved', 'half']).optional(),
  ringwork_architecture: z.enum(['llama', 'mistral', 'qwen2', 'smollm']).optional(),
});

function unsupported(name: string, what: string, details: Record<string, unknown>): RingworkError {
  return new RingworkError(
    'MODEL_UNSUPPORTED_ARCHITECTURE',
    `${name}: ${what}. Supported: ${SUPPORTED_TEXT}. Pick a model of one of these families.`,
    { details: { file: name, supported: Object.keys(MODEL_TYPES), ...details } },
  );
}

function badConfig(name: string, what: string, details: Record<string, unknown> = {}): RingworkError {
  return new RingworkError('MODEL_BAD_CONFIG', `${name}: ${what}. Fix config.json or re-export the model.`, {
    details: { file: name, ...details },
  });
}

function resolveArchitecture(cfg: z.infer<typeof hfConfigSchema>, name: string): Architecture {
  const classes = cfg.architectures ?? [];
  let arch: Architecture | undefined;
  if (cfg.model_type !== undefined) {
    arch = MODEL_TYPES[cfg.model_type];
    if (!arch) {
      throw unsupported(name, `model_type "${cfg.model_type}" is not supported`, {
        modelType: cfg.model_type,
        architectures: classes,
      });
    }
  } else {
    const cls = classes[0];
    arch = cls === undefined ? undefined : ARCHITECTURE_CLASSES[cls];
    if (!arch) {
      throw unsupported(
        name,
        cls === undefined
          ? 'config.json has neither model_type nor architectures'
          : `architecture "${cls}" is not supported`,
        { architectures: classes },
      );
    }
  }
  // A llama model_type with e.g. LlamaForSequenceClassification has no LM head we could use.
  const bad = classes.find((c) => !c.endsWith('ForCausalLM'));
  if (bad !== undefined) {
    throw unsupported(name, `architecture "${bad}" is not a causal language model`, {
      architectures: classes,
    });
  }
  if (cfg.ringwork_architecture !== undefined) return cfg.ringwork_architecture;
  // SmolLM ships as model_type "llama"; the repo name is the only marker it leaves.
  if (arch === 'llama' && /smollm/i.test(`${cfg._name_or_path ?? ''} ${name}`)) return 'smollm';
  return arch;
}

function resolveRopeScaling(
  raw: z.infer<typeof ropeScalingSchema> | null | undefined,
  name: string,
): RopeScaling | undefined {
  if (!raw) return undefined;
  const type = raw.rope_type ?? raw.type;
  if (type === undefined || type === 'default') return undefined;
  if (type !== 'llama3' && type !== 'linear') {
    throw unsupported(name, `rope_scaling type "${type}" is not supported (only llama3 and linear)`, {
      ropeScaling: raw,
    });
  }
  if (raw.factor === undefined)
    throw badConfig(name, `rope_scaling (${type}) has no factor`, { ropeScaling: raw });
  const out: RopeScaling = { type, factor: raw.factor };
  if (type === 'llama3') {
    if (
      raw.low_freq_factor === undefined ||
      raw.high_freq_factor === undefined ||
      raw.original_max_position_embeddings === undefined
    ) {
      throw badConfig(
        name,
        'rope_scaling llama3 needs low_freq_factor, high_freq_factor and original_max_position_embeddings',
        { ropeScaling: raw },
      );
    }
    out.lowFreqFactor = raw.low_freq_factor;
    out.highFreqFactor = raw.high_freq_factor;
    out.originalMaxPositionEmbeddings = raw.original_max_position_embeddings;
  }
  return out;
}

/**
 * Parses and validates a Hugging Face `config.json` into a normalised {@link ModelConfig}.
 *
 * Defaults follow transformers' `LlamaConfig` (kv heads = heads, head_dim = hidden/heads,
 * rope_theta 10000, rms_norm_eps 1e-6, untied, bos 1, eos 2). Qwen2 always has q/k/v biases.
 * RoPE layout is `'half'` (HF convention) unless the Ringwork-specific
 * `"ringwork_rope_layout": "interleaved"` key says otherwise.
 *
 * @param json - the parsed JSON document.
 * @param name - file name or URL, used in error messages.
 * @throws RingworkError `MODEL_UNSUPPORTED_ARCHITECTURE` for other model families / RoPE scalings,
 *   `MODEL_BAD_CONFIG` for missing or inconsistent fields.
 */
export function parseHfConfig(json: unknown, name: string): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw badConfig(name, 'config.json is not a JSON object');
  }
  // Refuse foreign architectures before field validation: a GPT-2 config lacks hidden_size, and
  // "unsupported architecture" is the message that tells the user what to do.
  const obj = json as Record<string, unknown>;
  if (typeof obj.model_type === 'string' && !(obj.model_type in MODEL_TYPES)) {
    throw unsupported(name, `model_type "${obj.model_type}" is not supported`, {
      modelType: obj.model_type,
      architectures: obj.architectures,
    });
  }
  const firstClass = Array.isArray(obj.architectures) ? (obj.architectures[0] as unknown) : undefined;
  if (
    obj.model_type === undefined &&
    typeof firstClass === 'string' &&
    !(firstClass in ARCHITECTURE_CLASSES)
  ) {
    throw unsupported(name, `architecture "${firstClass}" is not supported`, {
      architectures: obj.architectures,
    });
  }
  const parsed = hfConfigSchema.safeParse(json);
  if (!parsed.success) {
    throw badConfig(name, `invalid config.json: ${formatZodIssues(parsed.error)}`, {
      issues: zodIssueDetails(parsed.error),
    });
  }
  const cfg = parsed.data;
  const architecture = resolveArchitecture(cfg, name);
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu' && cfg.hidden_act !== 'swish') {
    throw unsupported(name, `hidden_act "${cfg.hidden_act}" is not supported (only silu)`, {
      hiddenAct: cfg.hidden_act,
    });
  }
  if (cfg.mlp_bias === true) throw unsupported(name, 'mlp_bias=true is not supported', {});

  const numHeads = cfg.num_attention_heads;
  const numKvHeads = cfg.num_key_value_heads ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw badConfig(
      name,
      `num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`,
      {
        numHeads,
        numKvHeads,
      },
    );
  }
  let headDim = cfg.head_dim ?? undefined;
  if (headDim === undefined) {
    if (cfg.hidden_size % numHeads !== 0) {
      throw badConfig(
        name,
        `hidden_size (${cfg.hidden_size}) is not divisible by num_attention_heads (${numHeads}) and head_dim is not given`,
        {
          hiddenSize: cfg.hidden_size,
          numHeads,
        },
      );
    }
    headDim = cfg.hidden_size / numHeads;
  }
  if (headDim % 2 !== 0) throw badConfig(name, `head_dim (${headDim}) must be even for RoPE`, { headDim });

  let maxPositions = cfg.max_position_embeddings ?? 2048;
  // Sliding-window attention equals full attention only within the window, so cap the context
  // there (Mistral v0.1: 4096 of 32768) instead of silently computing something else beyond it.
  if (cfg.sliding_window != null && cfg.use_sliding_window !== false && cfg.sliding_window < maxPositions) {
    maxPositions = cfg.sliding_window;
  }

  const eos = cfg.eos_token_id;
  const eosTokenIds = eos == null ? [2] : Array.isArray(eos) ? [...eos] : [eos];
  const ropeLayout: RopeLayout = cfg.ringwork_rope_layout ?? 'half';
  const config: ModelConfig = {
    architecture,
    hiddenSize: cfg.hidden_size,
    intermediateSize: cfg.intermediate_size,
    numLayers: cfg.num_hidden_layers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: cfg.vocab_size,
    maxPositions,
    rmsNormEps: cfg.rms_norm_eps ?? 1e-6,
    ropeTheta: cfg.rope_theta ?? 10000,
    ropeLayout,
    tiedEmbeddings: cfg.tie_word_embeddings ?? false,
    attentionBias: architecture === 'qwen2' ? true : (cfg.attention_bias ?? false),
    bosTokenId: cfg.bos_token_id ?? 1,
    eosTokenIds,
  };
  const ropeScaling = resolveRopeScaling(cfg.rope_scaling, name);
  if (ropeScaling) config.ropeScaling = ropeScaling;
  return config;
}

/** Options of {@link toHfConfig}. */
export interface ToHfConfigOptions {
  /** Value written to `torch_dtype` (default `float32`). */
  torchDtype?: 'float32' | 'float16' | 'bfloat16';
}

/**
 * The inverse of {@link parseHfConfig}: a `config.json` object that transformers can load and
 * that parses back to an equal {@link ModelConfig}. SmolLM is written as `model_type: "llama"`
 * (what transformers expects) with a `ringwork_architecture` key so the round trip is exact.
 */
export function toHfConfig(config: ModelConfig, opts: ToHfConfigOptions = {}): Record<string, unknown> {
  const modelType = config.architecture === 'smollm' ? 'llama' : config.architecture;
  const cls = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[
    modelType
  ];
  const out: Record<string, unknown> = {
    architectures: [cls],
    model_type: modelType,
    hidden_act: 'silu',
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    head_dim: config.headDim,
    vocab_size: config.vocabSize,
    max_position_embeddings: config.maxPositions,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: config.tiedEmbeddings,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : [...config.eosTokenIds],
    torch_dtype: opts.torchDtype ?? 'float32',
  };
  // Qwen2 has no attention_bias key (its biases are unconditional).
  if (modelType !== 'qwen2') out.attention_bias = config.attentionBias;
  if (modelType === 'mistral') out.sliding_window = null;
  const rs = config.ropeScaling;
  if (rs) {
    out.rope_scaling =
      rs.type === 'llama3'
        ? {
            rope_type: 'llama3',
            factor: rs.factor,
            low_freq_factor: rs.lowFreqFactor,
            high_freq_factor: rs.highFreqFactor,
            original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
          }
        : { rope_type: 'linear', factor: rs.factor };
  }
  if (config.ropeLayout === 'interleaved') out.ringwork_rope_layout = 'interleaved';
  if (config.architecture === 'smollm') out.ringwork_architecture = 'smollm';
  return out;
}
