import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import {
  createDecodeStream,
  createHfTokenizer,
  createLlama2cTokenizer,
  llama2cTokenizerToHf,
  parseLlama2cTokenizer,
} from '../../shared/tokenizer/index.js';
import { loadGolden, repoPath } from '../helpers/golden.js';

const data = parseLlama2cTokenizer(
  new Uint8Array(readFileSync(repoPath('public/models/stories260K/tok512.bin'))),
  512,
  'tok512.bin',
);
const llama = createLlama2cTokenizer(data);
const converted = llama2cTokenizerToHf(data);
// Round-trip through JSON: the converted files are meant to be written to disk and served.
const files = JSON.parse(JSON.stringify(converted)) as typeof converted;
const hf = createHfTokenizer({ ...files, name: 'tok512 (converted)' });
const golden = loadGolden();

/** Deterministic pseudo-random strings over characters that exercise merges and byte fallback. */
function randomStrings(count: number, seed: number, alphabet: readonly string[], maxLen: number): string[] {
  let s = seed;
  const rnd = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  const out: string[] = [];
  for (let k = 0; k < count; k++) {
    const len = 1 + Math.floor(rnd() * maxLen);
    let str = '';
    for (let j = 0; j < len; j++) str += alphabet[Math.floor(rnd() * alphabet.length)];
    out.push(str);
  }
  return out;
}

/** ≥ 200 varied strings: golden-text sentences, words and windows, plus hand-picked edge cases. */
function variedStrings(): string[] {
  const text = golden.text;
  const out = new Set<string>();
  for (const sentence of text.split(/(?<=[.!?])\s+/)) out.add(sentence);
  for (const word of text.split(/\s+/)) if (word) out.add(word);
  for (let i = 0; i < text.length; i += 5) {
    for (const len of [1, 2, 3, 7, 13, 29]) out.add(text.slice(i, i + len));
  }
  for (const s of [
    text,
    'Hello, world!',
    'Wait... what?! (yes) [no] {maybe} #1 @home 50% $3.99 a+b=c*d/e~f|g\\h^i_j`k',
    '0123456789 3.14159 -42 1,000,000 2024-01-01',
    'café 😀',
    'naïve façade — “quoted” ‘single’ … ™ € ñ â é',
    '日本語のテキスト 中文 한국어 Ελληνικά русский',
    'emoji 👍🏽 family 👨‍👩‍👧 flag 🇫🇷',
    '  multiple   spaces  ',
    ' leading space',
    'trailing space ',
    ' ',
    '   ',
    'a',
    'line1\nline2\n\nline4',
    '\n',
    'tab\there\r\nwindows',
    '\u00a0non-breaking\u00a0space and hair\u200aspace',
    '<0x41> literal byte token text',
    '< > <> <<>>',
    'lone \uD800 surrogate',
    'x'.repeat(300),
    'The the THE tHe',
    '!!!???...,,,;;;:::',
    'Lily\'s mom said, "Don\'t go!"',
    'Once upon a time',
    'Once upon a time there was',
  ]) {
    out.add(s);
  }
  out.add('');
  return [...out];
}

describe('llama2cTokenizerToHf', () => {
  it('produces a Llama-style byte-fallback BPE tokenizer.json', () => {
    const json = files.tokenizerJson as {
      model: {
        type: string;
        byte_fallback: boolean;
        vocab: Record<string, number>;
        merges: [string, string][];
      };
      added_tokens: { id: number; content: string; special: boolean }[];
      normalizer: unknown;
      decoder: unknown;
    };
    expect(json.model.type).toBe('BPE');
    expect(json.model.byte_fallback).toBe(true);
    expect(Object.keys(json.model.vocab)).toHaveLength(512);
    expect(json.model.vocab['<unk>']).toBe(0);
    expect(json.model.vocab['<s>']).toBe(1);
    expect(json.model.vocab['</s>']).toBe(2);
    expect(json.model.vocab['<0x0A>']).toBe(13);
    expect(json.model.vocab['\u2581Once']).toBe(403);
    expect(json.model.vocab['\u2581']).toBe(410);
    expect(json.added_tokens.map((t) => [t.id, t.content, t.special])).toEqual([
      [0, '<unk>', true],
      [1, '<s>', true],
      [2, '</s>', true],
    ]);
    // The first merge is the highest-scoring piece " t" (score -0); " the" has two splits.
    expect(json.model.merges[0]).toEqual(['\u2581', 't']);
    const the = json.model.merges.filter(([a, b]) => a + b === '\u2581the');
    expect(the).toHaveLength(2);
    expect(files.tokenizerConfig).toMatchObject({
      bos_token: '<s>',
      eos_token: '</s>',
      clean_up_tokenization_spaces: false,
    });
    expect(hf.vocabSize).toBe(512);
    expect(hf.bosId).toBe(1);
    expect(hf.eosIds).toEqual([2]);
  });

  it('satisfies the conditions under which rank-ordered merges equal run.c (checked for tok512)', () => {
    // See the module comment of shared/tokenizer/convert-llama2c.ts: HF and run.c only disagree on
    // ties. Verify tok512 has none that BPE can reach.
    const lookup = new Map(data.pieces.map((p, i) => [p, i] as const));
    const mergeable = (p: string): boolean => (lookup.get(p) ?? 0) > 2;
    const splits = new Map<string, [string, string][]>();
    data.pieces.forEach((piece, id) => {
      if (id <= 2) return;
      const cps = Array.from(piece);
      for (let cut = 1; cut < cps.length; cut++) {
        const a = cps.slice(0, cut).join('');
        const b = cps.slice(cut).join('');
        if (mergeable(a) && mergeable(b)) splits.set(piece, [...(splits.get(piece) ?? []), [a, b]]);
      }
    });
    const score = (p: string): number => data.scores[lookup.get(p) as number] as number;
    // 1. Reachable pieces have pairwise distinct scores (no cross-piece ties).
    const reachableScores = [...splits.keys()].map(score);
    expect(new Set(reachableScores).size).toBe(reachableScores.length);
    for (const [piece, s] of splits) {
      if (s.length < 2) continue;
      // 2. No two splits overlap as x+y == y+z (run.c would merge the left one, HF the lower rank).
      for (const [, y] of s)
        expect(
          s.some(([y2]) => y2 === y),
          piece,
        ).toBe(false);
      // 3. Occurrences of the piece formed by different splits may merge in another order in HF
      //    (rank) than in run.c (leftmost first). That is harmless unless a higher-scoring piece
      //    built around one occurrence can swallow a component of the other one: a piece P that
      //    contains the piece with a split's right part somewhere before it, or a left part after it.
      const rights = s.map(([, y]) => y);
      const lefts = s.map(([x]) => x);
      for (const other of splits.keys()) {
        if (other === piece || score(other) <= score(piece)) continue;
        for (let k = other.indexOf(piece); k >= 0; k = other.indexOf(piece, k + 1)) {
          const before = other.slice(0, k);
          const after = other.slice(k + piece.length);
          expect(
            rights.some((y) => before.includes(y)) || lefts.some((x) => after.includes(x)),
            `${other} / ${piece}`,
          ).toBe(false);
        }
      }
    }
    // 4. run.c could merge BOS or raw-byte pieces if some piece extended them; none does.
    for (const p of data.pieces) {
      const id = lookup.get(p) as number;
      if (id <= 258) continue;
      expect(p.includes('<0x') || p.includes('<s>'), p).toBe(false);
    }
  });

  it('encodes exactly like run.c on ≥ 200 varied strings', () => {
    const strings = variedStrings();
    expect(strings.length).toBeGreaterThanOrEqual(200);
    for (const s of strings) {
      expect(hf.encode(s, { bos: true }), JSON.stringify(s)).toEqual(llama.encode(s, { bos: true }));
    }
    expect(hf.encode('Once upon a time', { bos: true })).toEqual([1, 403, 407, 261, 378]);
    expect(hf.encode('Once upon a time', { bos: true, eos: true })).toEqual([1, 403, 407, 261, 378, 2]);
    expect(hf.encode('')).toEqual([]);
  });

  it('encodes exactly like run.c on thousands of random strings', () => {
    const pieces = data.pieces.slice(259).filter((p) => !p.includes('<'));
    const chars = [...'etaohnidsrlywmupgcbfkvTSLHOIBM.,!?"\' \n'];
    const extra = ['\n', '\t', '  ', 'é', '😀', '中', '€', '\u00a0', '<', '>', 'Z'];
    for (const s of [
      ...randomStrings(1500, 1, [...pieces, ...extra], 12),
      ...randomStrings(1500, 2, [...chars, ...extra], 40),
    ]) {
      expect(hf.encode(s, { bos: true }), JSON.stringify(s)).toEqual(llama.encode(s, { bos: true }));
    }
  });

  it('decodes like the llama2.c tokenizer', () => {
    const seq = golden.sequenceTokens;
    expect(hf.decode(seq)).toBe(llama.decode(seq));
    expect(hf.decode(seq)).toBe(golden.text.slice(0, -1));
    let printed = '';
    for (let i = 1; i < seq.length; i++) printed += hf.decodePiece(seq[i - 1] as number, seq[i] as number);
    expect(printed + '\n').toBe(golden.text);
    for (const s of variedStrings()) {
      const ids = llama.encode(s, { bos: true });
      expect(hf.decode(ids), JSON.stringify(s)).toBe(llama.decode(ids));
    }
  });

  it('streams any text exactly through a decode stream', () => {
    for (const s of variedStrings()) {
      const ids = llama.encode(s, { bos: true });
      for (const tok of [llama, hf]) {
        const ds = createDecodeStream(tok);
        const out = ids.map((id) => ds.push(id)).join('') + ds.flush();
        expect(out, JSON.stringify(s)).toBe(tok.decode(ids));
      }
    }
    const prompt = golden.sequenceTokens.slice(0, 5);
    const ds = createDecodeStream(hf, prompt);
    const continuation =
      golden.sequenceTokens
        .slice(5)
        .map((id) => ds.push(id))
        .join('') + ds.flush();
    expect(hf.decode(prompt) + continuation + '\n').toBe(golden.text);
  });

  it('streams printable ASCII exactly like run.c', () => {
    const ascii = [...' abcdefghijklmnopqrstuvwxyzABCDELOST0123456789.,!?"\'()-\n\t'];
    for (const s of randomStrings(300, 3, ascii, 40)) {
      const ids = llama.encode(s, { bos: true });
      let a = '';
      let b = '';
      for (let i = 1; i < ids.length; i++) {
        a += llama.decodePiece(ids[i - 1] as number, ids[i] as number);
        b += hf.decodePiece(ids[i - 1] as number, ids[i] as number);
      }
      expect(b, JSON.stringify(s)).toBe(a);
      expect(a).toBe(s); // only the dummy-prefix space is dropped
    }
  });

  it('differs from run.c only on the documented inputs: special-token text and "▁"', () => {
    // HF splits special tokens out of the text; run.c spells them out character by character.
    expect(hf.encode('a <s> b')).toContain(1);
    expect(llama.encode('a <s> b')).not.toContain(1);
    // HF reads U+2581 as a space; run.c falls back to its UTF-8 bytes.
    expect(hf.encode('a\u2581b')).toEqual(llama.encode('a b'));
    expect(llama.encode('a\u2581b')).toContain(0xe2 + 3);
  });
});
