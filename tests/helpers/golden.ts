import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Path of a file in the repo, relative to the repo root. */
export function repoPath(rel: string): string {
  return fileURLToPath(new URL(`../../${rel}`, import.meta.url));
}

/** The golden reference outputs of llama2.c on stories260K (tests/fixtures/golden). */
export interface Golden {
  text: string;
  promptTokens: number[];
  sequenceTokens: number[];
  argmax: number[];
  /** [64][512] */
  logits: Float32Array;
  /** [64][6][64] */
  hidden: Float32Array;
  nLayers: number;
  dim: number;
  vocab: number;
}

export function loadGolden(): Golden {
  const dir = 'tests/fixtures/golden/';
  const json = JSON.parse(readFileSync(repoPath(dir + 'stories260K_p1_n64.json'), 'utf8')) as {
    prompt_tokens: number[];
    sequence_tokens: number[];
    argmax_per_position: number[];
    config: { dim: number; n_layers: number; vocab_size: number };
  };
  const f32 = (f: string) => {
    const b = readFileSync(repoPath(dir + f));
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  return {
    text: readFileSync(repoPath(dir + 'stories260K_p1_n64.txt'), 'utf8'),
    promptTokens: json.prompt_tokens,
    sequenceTokens: json.sequence_tokens,
    argmax: json.argmax_per_position,
    logits: f32('stories260K_p1_n64.logits.f32'),
    hidden: f32('stories260K_p1_n64.hidden.f32'),
    nLayers: json.config.n_layers,
    dim: json.config.dim,
    vocab: json.config.vocab_size,
  };
}

/** Golden hidden state [dim] at `position` and boundary index (0 = embedding, l+1 = after block l). */
export function goldenHidden(g: Golden, position: number, index: number): Float32Array {
  const off = (position * (g.nLayers + 1) + index) * g.dim;
  return g.hidden.subarray(off, off + g.dim);
}
