import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { isRingworkError, type RingworkError } from '../../shared/errors.js';
import {
  createLlama2cTokenizer,
  parseLlama2cTokenizer,
  type Llama2cTokenizerData,
} from '../../shared/tokenizer/index.js';
import { loadGolden, repoPath } from '../helpers/golden.js';

const TOK_FILE = 'tok512.bin';
const tokBytes = new Uint8Array(readFileSync(repoPath('public/models/stories260K/tok512.bin')));
const data = parseLlama2cTokenizer(tokBytes, 512, TOK_FILE);
const tok = createLlama2cTokenizer(data);
const golden = loadGolden();

/** A line-by-line port of run.c's encode (quadratic rescans), the reference for the heap version. */
function runcEncode(d: Llama2cTokenizerData, text: string, bos: boolean, eos: boolean): number[] {
  const lookup = new Map<string, number>();
  d.pieces.forEach((p, i) => {
    if (!lookup.has(p)) lookup.set(p, i);
  });
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (text !== '') tokens.push(lookup.get(' ') as number);
  for (const b of utf8CodepointChunks(text)) {
    const id = lookup.get(new TextDecoder().decode(b));
    if (id !== undefined) tokens.push(id);
    else for (const x of b) tokens.push(x + 3);
  }
  for (;;) {
    let best = Math.fround(-1e10);
    let bestIdx = -1;
    let bestId = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = lookup.get(
        (d.pieces[tokens[i] as number] as string) + (d.pieces[tokens[i + 1] as number] as string),
      );
      if (id !== undefined && (d.scores[id] as number) > best) {
        best = d.scores[id] as number;
        bestIdx = i;
        bestId = id;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(2);
  return tokens;
}

/** run.c's byte walk: a lead byte plus its continuation bytes (at most 4) form one lookup string. */
function utf8CodepointChunks(text: string): Uint8Array[] {
  const bytes = new TextEncoder().encode(text);
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    const nextIsCont = i + 1 < bytes.length && ((bytes[i + 1] as number) & 0xc0) === 0x80;
    if (nextIsCont && i + 1 - start < 4) continue;
    out.push(bytes.subarray(start, i + 1));
    start = i + 1;
  }
  return out;
}

function expectError(fn: () => unknown, code: RingworkError['code'], file: string): RingworkError {
  try {
    fn();
  } catch (e) {
    expect(isRingworkError(e, code)).toBe(true);
    const err = e as RingworkError;
    expect(err.details.file).toBe(file);
    expect(err.message).toContain(file);
    return err;
  }
  throw new Error('expected an error');
}

/** Deterministic pseudo-random strings over characters that exercise merges and byte fallback. */
function randomStrings(count: number, seed: number): string[] {
  let s = seed;
  const rnd = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  const alphabet = [
    ...'etaohnidsrlywmupgcbfkvTSLHOIBM.,!?"\' ',
    ' the',
    ' Lily',
    'ing',
    '\n',
    '\t',
    'é',
    '😀',
    '中',
    '€',
    '\u00a0',
    '<',
    '>',
    '0x',
  ];
  const out: string[] = [];
  for (let k = 0; k < count; k++) {
    const len = 1 + Math.floor(rnd() * 30);
    let str = '';
    for (let j = 0; j < len; j++) str += alphabet[Math.floor(rnd() * alphabet.length)];
    out.push(str);
  }
  return out;
}

describe('parseLlama2cTokenizer', () => {
  it('reads tok512.bin', () => {
    expect(data.pieces.length).toBe(512);
    expect(data.scores.length).toBe(512);
    expect(data.maxTokenLength).toBe(7);
    expect(data.pieces[0]).toBe('<unk>');
    expect(data.pieces[1]).toBe('\n<s>\n');
    expect(data.pieces[2]).toBe('\n</s>\n');
    expect(data.pieces[3 + 0x0a]).toBe('<0x0A>');
    expect(data.pieces[403]).toBe(' Once');
  });

  it('rejects a truncated file, naming it', () => {
    expectError(
      () => parseLlama2cTokenizer(tokBytes.subarray(0, 2), 512, TOK_FILE),
      'TOKENIZER_BAD_FILE',
      TOK_FILE,
    );
    const err = expectError(
      () => parseLlama2cTokenizer(tokBytes.subarray(0, tokBytes.length - 3), 512, TOK_FILE),
      'TOKENIZER_BAD_FILE',
      TOK_FILE,
    );
    expect(err.message).toMatch(/truncated/);
  });

  it('rejects negative and absurd lengths', () => {
    const negLen = tokBytes.slice();
    new DataView(negLen.buffer).setInt32(4 + 4, -5, true); // length of token 0
    expect(
      expectError(() => parseLlama2cTokenizer(negLen, 512, TOK_FILE), 'TOKENIZER_BAD_FILE', TOK_FILE).details
        .token,
    ).toBe(0);
    const hugeLen = tokBytes.slice();
    new DataView(hugeLen.buffer).setInt32(4 + 4, 1 << 30, true);
    expectError(() => parseLlama2cTokenizer(hugeLen, 512, TOK_FILE), 'TOKENIZER_BAD_FILE', TOK_FILE);
    for (const max of [-1, 0, 1 << 30]) {
      const bad = tokBytes.slice();
      new DataView(bad.buffer).setInt32(0, max, true);
      expectError(() => parseLlama2cTokenizer(bad, 512, TOK_FILE), 'TOKENIZER_BAD_FILE', TOK_FILE);
    }
  });

  it('rejects a vocab size that does not match the file', () => {
    const fewer = expectError(
      () => parseLlama2cTokenizer(tokBytes, 511, TOK_FILE),
      'TOKENIZER_BAD_FILE',
      TOK_FILE,
    );
    expect(fewer.details.tokensInFile).toBe(512);
    expect(fewer.message).toMatch(/512 tokens/);
    const more = expectError(
      () => parseLlama2cTokenizer(tokBytes, 513, TOK_FILE),
      'TOKENIZER_BAD_FILE',
      TOK_FILE,
    );
    expect(more.details.tokensInFile).toBe(512);
    expectError(() => parseLlama2cTokenizer(tokBytes, 0, TOK_FILE), 'INVALID_ARGUMENT', TOK_FILE);
    expectError(() => parseLlama2cTokenizer(tokBytes, 1.5, TOK_FILE), 'INVALID_ARGUMENT', TOK_FILE);
  });

  it('rejects pieces that are not UTF-8', () => {
    const bad = tokBytes.slice();
    // token 0 is "<unk>" (5 bytes at offset 12); make its first byte a lone continuation byte.
    bad[12] = 0x80;
    expectError(() => parseLlama2cTokenizer(bad, 512, TOK_FILE), 'TOKENIZER_BAD_FILE', TOK_FILE);
  });
});

describe('createLlama2cTokenizer', () => {
  it('exposes the llama2.c special ids', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.bosId).toBe(1);
    expect(tok.eosIds).toEqual([2]);
    expect(tok.applyChatTemplate).toBeUndefined();
  });

  it('encodes the golden prompt like run.c', () => {
    expect(tok.encode('Once upon a time', { bos: true })).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode('Once upon a time', { bos: true })).toEqual(golden.promptTokens);
    expect(tok.encode('Once upon a time')).toEqual([403, 407, 261, 378]);
    expect(tok.encode('Once upon a time', { bos: true, eos: true })).toEqual([1, 403, 407, 261, 378, 2]);
  });

  it('adds the dummy prefix only to non-empty text', () => {
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('', { bos: true, eos: true })).toEqual([1, 2]);
    expect(tok.encode(' ')).toEqual(runcEncode(data, ' ', false, false));
  });

  it('falls back to bytes (id = byte + 3) for characters outside the vocabulary', () => {
    const ids = tok.encode('\n😀');
    const emoji = [...new TextEncoder().encode('😀')].map((b) => b + 3);
    expect(ids.slice(-emoji.length)).toEqual(emoji);
    expect(ids).toContain(0x0a + 3);
    expect(tok.encode('\uD800')).toEqual(tok.encode('\uFFFD'));
  });

  it('matches a literal port of run.c encode on thousands of strings', () => {
    const fixed = [
      golden.text,
      'café 😀',
      '  multiple   spaces  ',
      'line1\nline2\n\n',
      '<0x41> <s> </s> <unk>',
      '\u2581 marker',
      'lone \uD800 surrogate',
    ];
    for (const s of [...fixed, ...randomStrings(2000, 7)]) {
      for (const [bos, eos] of [
        [true, false],
        [false, true],
      ] as const) {
        expect(tok.encode(s, { bos, eos }), JSON.stringify(s)).toEqual(runcEncode(data, s, bos, eos));
      }
    }
  });

  it('streams the golden sequence exactly as run.c prints it', () => {
    const seq = golden.sequenceTokens;
    let printed = '';
    for (let i = 1; i < seq.length; i++) printed += tok.decodePiece(seq[i - 1] as number, seq[i] as number);
    expect(printed + '\n').toBe(golden.text);
  });

  it('decodes the golden sequence to its text', () => {
    expect(tok.decode(golden.sequenceTokens)).toBe(golden.text.slice(0, -1));
    expect(tok.decode([])).toBe('');
  });

  it('follows run.c decode + safe_printf piece by piece', () => {
    expect(tok.decodePiece(1, 403)).toBe('Once'); // space dropped after BOS only
    expect(tok.decodePiece(378, 403)).toBe(' Once');
    expect(tok.decodePiece(-1, 403)).toBe(' Once');
    expect(tok.decodePiece(426, 3 + 0x0a)).toBe('\n'); // <0x0A>
    expect(tok.decodePiece(426, 3 + 0x41)).toBe('A');
    expect(tok.decodePiece(426, 3 + 0x01)).toBe(''); // not printable
    expect(tok.decodePiece(426, 3 + 0x00)).toBe('');
    expect(tok.decodePiece(426, 3 + 0xc3)).toBe(''); // bytes >= 0x80 are dropped by safe_printf
    expect(tok.decodePiece(426, 2)).toBe('\n</s>\n');
    expect(tok.decodePiece(1, 410)).toBe(''); // " " right after BOS
    expect(tok.decodePiece(426, 485)).toBe('é');
  });

  it('joins byte pieces into UTF-8 in decode', () => {
    for (const s of ['café 😀', 'a\nb\tc', '日本語 text', 'x™€ñ']) {
      expect(tok.decode(tok.encode(s, { bos: true, eos: true }))).toBe(s);
    }
  });

  it('rejects ids outside the vocabulary', () => {
    expectError(() => tok.decodePiece(1, 512), 'INVALID_ARGUMENT', TOK_FILE);
    expectError(() => tok.decode([1, -1]), 'INVALID_ARGUMENT', TOK_FILE);
    expectError(() => tok.decode([1.5]), 'INVALID_ARGUMENT', TOK_FILE);
  });
});
