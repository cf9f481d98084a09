/**
 * A Hugging Face tokenizer for synthetic (randomly initialised) models of any vocabulary size, so
 * they run through exactly the same tokenizer path as real hub models.
 */

import { RingworkError } from '../errors.js';
import type { HfTokenizerFiles } from './types.js';

/** SentencePiece's whitespace marker. */
const SPACE_MARK = '\u2581';
const SPECIALS = ['<unk>', '<s>', '</s>'] as const;
/** Specials plus one token per byte: the least that can encode any text through byte fallback. */
export const SYNTH_MIN_VOCAB_SIZE = SPECIALS.length + 256;

/**
 * A ChatML-like template written only with plain text, so it needs no extra special tokens.
 * `eos_token` closes each turn, so a model trained on it would stop on EOS.
 */
export const SYNTH_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/**
 * Builds a byte-fallback BPE `tokenizer.json` with exactly `vocabSize` ids:
 * `<unk>`=0, `<s>`=1, `</s>`=2, `<0x00>`..`<0xFF>`=3..258, then "▁" (space) and the printable ASCII
 * characters as far as they fit, then filler pieces "▁tok_N" (N = id) up to `vocabSize`. There are
 * no merges, so text encodes to one id per ASCII character (bytes for anything else) and decodes
 * back exactly; fillers only appear when a (synthetic) model generates them, and decode with a
 * leading space so generated text stays readable.
 *
 * @throws RingworkError `INVALID_ARGUMENT` when `vocabSize` is not an integer >= 259.
 */
export function createSynthTokenizerJson(vocabSize: number): HfTokenizerFiles {
  if (!Number.isInteger(vocabSize) || vocabSize < SYNTH_MIN_VOCAB_SIZE || vocabSize > 1 << 24) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `Synthetic tokenizer: vocabSize ${String(vocabSize)} is not supported; use an integer from ${SYNTH_MIN_VOCAB_SIZE} (3 specials + 256 bytes) to ${1 << 24}.`,
      { details: { file: 'synthetic tokenizer.json', vocabSize } },
    );
  }
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  let next = 0;
  for (const s of SPECIALS) vocab[s] = next++;
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = next++;
  const chars = [SPACE_MARK];
  for (let c = 0x21; c <= 0x7e; c++) chars.push(String.fromCharCode(c));
  for (const c of chars) {
    if (next >= vocabSize) break;
    vocab[c] = next++;
  }
  while (next < vocabSize) {
    vocab[`${SPACE_MARK}tok_${next}`] = next;
    next++;
  }

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    // No dummy prefix: synthetic text should round-trip byte for byte, leading spaces included.
    // Without room for "▁" a space simply falls back to its byte <0x20>.
    normalizer:
      SPACE_MARK in vocab ? { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARK } : null,
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_MARK }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: [] as [string, string][],
    },
  };
  const tokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    add_bos_token: true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    chat_template: SYNTH_CHAT_TEMPLATE,
  };
  return { tokenizerJson, tokenizerConfig };
}
