/**
 * Converts a llama2.c tokenizer into an equivalent Hugging Face `tokenizer.json`, so a llama2.c
 * model can be served through the same {@link createHfTokenizer} path as hub models.
 *
 * The result is Llama/SentencePiece-BPE style: a normalizer that prepends "▁" and maps spaces to
 * "▁" (run.c's dummy-prefix token plus space handling), a byte-fallback BPE model, and the
 * Llama decoder chain (▁ → space, byte fallback, fuse, strip one leading space).
 *
 * Merges: llama2.c repeatedly merges the adjacent pair whose concatenation is in the vocabulary with
 * the highest score. HF BPE instead ranks explicit (left, right) merges. Emitting, for every piece,
 * all of its splits into two vocabulary pieces, ordered by the piece's score (highest first), gives
 * the same choices — the approach of HF's SentencePiece converter. Known differences:
 *
 * - Ties. run.c breaks equal scores by position (leftmost pair), HF by rank. That can only matter
 *   (a) between two different reachable pieces with the same score, (b) between two splits of one
 *   piece that overlap (x+y == y+z), or (c) when two occurrences of one piece come from different
 *   splits and a higher-scoring piece containing it can swallow part of the other occurrence.
 *   tests/shared/tokenizer-convert.test.ts proves tok512 has none of (a)-(c), and checks the
 *   result against run.c on thousands of strings.
 * - Text containing the special strings `<unk>`, `<s>`, `</s>` (HF turns them into the special
 *   ids; run.c spells them out), or the character "▁" U+2581 (HF reads it as a space).
 * - run.c can merge BOS with the following token and merge raw-byte tokens; HF never merges
 *   special or byte-fallback tokens. No exported SentencePiece vocabulary has such pieces.
 */

import { RingworkError } from '../errors.js';
import type { HfTokenizerFiles } from './types.js';
import {
  LLAMA2C_BOS_ID,
  LLAMA2C_EOS_ID,
  LLAMA2C_UNK_ID,
  type Llama2cTokenizerData,
} from './llama2c-tokenizer.js';

/** SentencePiece's whitespace marker. */
const SPACE_MARK = '\u2581';
/** run.c never merges pairs scoring at or below its initial best score (-1e10 as a float). */
const RUNC_MIN_SCORE = Math.fround(-1e10);

/** The HF names of llama2.c's three special ids (its file stores BOS/EOS as "\n<s>\n", "\n</s>\n"). */
const SPECIALS: readonly [number, string][] = [
  [LLAMA2C_UNK_ID, '<unk>'],
  [LLAMA2C_BOS_ID, '<s>'],
  [LLAMA2C_EOS_ID, '</s>'],
];

/**
 * Builds a Hugging Face `tokenizer.json` + `tokenizer_config.json` that tokenizes like llama2.c's
 * run.c for the given vocabulary (see the module comment for the exact equivalence and its limits).
 *
 * @throws RingworkError `TOKENIZER_BAD_FILE` when two ids map to the same HF token string (e.g. a
 *   piece already containing "▁" next to the same piece with a space), which HF cannot represent.
 */
export function llama2cTokenizerToHf(data: Llama2cTokenizerData): HfTokenizerFiles {
  const { pieces, scores, name } = data;
  const specialIds = new Set(SPECIALS.map(([id]) => id));
  const toHf = (piece: string): string => piece.replaceAll(' ', SPACE_MARK);

  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  pieces.forEach((piece, id) => {
    const special = SPECIALS.find(([sid]) => sid === id);
    const hf = special ? special[1] : toHf(piece);
    if (Object.prototype.hasOwnProperty.call(vocab, hf)) {
      throw new RingworkError(
        'TOKENIZER_BAD_FILE',
        `${name}: ids ${vocab[hf]} and ${id} both become the token ${JSON.stringify(hf)} in tokenizer.json. A vocabulary with duplicate pieces cannot be converted; use the llama2.c tokenizer directly.`,
        { details: { file: name, ids: [vocab[hf], id], token: hf } },
      );
    }
    vocab[hf] = id;
  });

  // Pieces llama2.c can merge into (and out of). Specials are excluded: HF splits them out of the
  // text before BPE and never merges them.
  const mergeable = new Map<string, number>();
  pieces.forEach((piece, id) => {
    if (!specialIds.has(id) && !mergeable.has(piece)) mergeable.set(piece, id);
  });

  interface Merge {
    score: number;
    id: number;
    cut: number;
    left: string;
    right: string;
  }
  const merges: Merge[] = [];
  for (const [piece, id] of mergeable) {
    const score = scores[id] as number;
    if (!(score > RUNC_MIN_SCORE)) continue;
    const cps = Array.from(piece);
    if (cps.length < 2) continue;
    for (let cut = 1; cut < cps.length; cut++) {
      const left = cps.slice(0, cut).join('');
      const right = cps.slice(cut).join('');
      if (mergeable.has(left) && mergeable.has(right)) {
        merges.push({ score, id, cut, left: toHf(left), right: toHf(right) });
      }
    }
  }
  // Highest score first, like run.c's choice; then id and split position only to be deterministic.
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.cut - b.cut);

  const addedTokens = SPECIALS.filter(([id]) => id < pieces.length).map(([id, content]) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    // Prepend + Replace (rather than a Metaspace pre-tokenizer) keeps the text one word, as run.c
    // merges across spaces, and always adds the prefix, as run.c always adds the " " token.
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPACE_MARK },
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARK },
      ],
    },
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
      special_tokens: { '<s>': { id: '<s>', ids: [LLAMA2C_BOS_ID], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_MARK }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
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
      // Must stay false: a whole word that is itself a piece still has to go through the merges,
      // as in run.c.
      ignore_merges: false,
      vocab,
      merges: merges.map((m) => [m.left, m.right]),
    },
  };

  const tokenizerConfig = {
    tokenizer_class: 'LlamaTokenizer',
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    add_bos_token: true,
    add_eos_token: false,
    // The library default (true) would rewrite " ." to "." and break equality with run.c's output.
    clean_up_tokenization_spaces: false,
  };

  return { tokenizerJson, tokenizerConfig };
}
