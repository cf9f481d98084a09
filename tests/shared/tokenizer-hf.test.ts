import { describe, it, expect } from 'vitest';
import { isRingworkError, type RingworkError } from '../../shared/errors.js';
import {
  SYNTH_MIN_VOCAB_SIZE,
  createDecodeStream,
  createHfTokenizer,
  createSynthTokenizerJson,
  type Tokenizer,
} from '../../shared/tokenizer/index.js';

function expectError(fn: () => unknown, code: RingworkError['code'], file?: string): RingworkError {
  try {
    fn();
  } catch (e) {
    expect(isRingworkError(e, code)).toBe(true);
    const err = e as RingworkError;
    if (file !== undefined) {
      expect(err.details.file).toBe(file);
      expect(err.message).toContain(file);
    }
    return err;
  }
  throw new Error('expected an error');
}

function stream(tok: Tokenizer, ids: number[], first = -1): string {
  let out = '';
  let prev = first;
  for (const id of ids) {
    out += tok.decodePiece(prev, id);
    prev = id;
  }
  return out;
}

function streamDecode(tok: Tokenizer, ids: number[]): string {
  const ds = createDecodeStream(tok);
  let out = '';
  for (const id of ids) out += ds.push(id);
  return out + ds.flush();
}

const synthFiles = createSynthTokenizerJson(49152);
const synth = createHfTokenizer({ ...synthFiles, name: 'synth-49152' });

describe('createSynthTokenizerJson', () => {
  it('builds a tokenizer with exactly the requested vocab size', () => {
    expect(synth.vocabSize).toBe(49152);
    expect(synth.bosId).toBe(1);
    expect(synth.eosIds).toEqual([2]);
    const small = createHfTokenizer({ ...createSynthTokenizerJson(SYNTH_MIN_VOCAB_SIZE), name: 'synth-min' });
    expect(small.vocabSize).toBe(259);
    expect(small.decode(small.encode('hi there\n'))).toBe('hi there\n');
    expect(createHfTokenizer({ ...createSynthTokenizerJson(300), name: 'synth-300' }).vocabSize).toBe(300);
  });

  it('encodes "hello world" to ids inside the vocabulary and decodes it back', () => {
    const ids = synth.encode('hello world');
    expect(ids.length).toBe('hello world'.length);
    for (const id of ids) expect(id >= 0 && id < 49152).toBe(true);
    expect(synth.decode(ids)).toBe('hello world');
    expect(synth.encode('hello world', { bos: true, eos: true })).toEqual([1, ...ids, 2]);
  });

  it('round-trips all printable ASCII, whitespace and non-ASCII text', () => {
    let ascii = '';
    for (let c = 0x20; c <= 0x7e; c++) ascii += String.fromCharCode(c);
    for (const s of [
      ascii,
      '  leading and trailing  ',
      'a\nb\tc\r\n',
      'café 😀 日本',
      '<unk> and </s> are specials',
      '',
    ]) {
      const ids = synth.encode(s, { bos: true });
      const expected = s.replaceAll('<unk>', '').replaceAll('</s>', '');
      expect(synth.decode(ids), JSON.stringify(s)).toBe(expected);
      expect(streamDecode(synth, ids), JSON.stringify(s)).toBe(expected);
      // decodePiece sees two tokens, enough for characters of at most two byte tokens.
      if (![...s].some((c) => new TextEncoder().encode(c).length > 2)) {
        expect(stream(synth, ids), JSON.stringify(s)).toBe(expected);
      }
    }
  });

  it('decodes filler ids (what a random model generates) to readable text', () => {
    expect(synth.decode([1, 1000, 40000])).toBe(' tok_1000 tok_40000');
    expect(synth.decodePiece(1000, 40000)).toBe(' tok_40000');
  });

  it('has a chat template', () => {
    const chat = synth.applyChatTemplate?.(
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
      ],
      { addGenerationPrompt: true },
    );
    expect(chat).toBe('<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n');
    expect(synth.applyChatTemplate?.([{ role: 'user', content: 'Hi' }])).toBe('<|user|>\nHi</s>\n');
  });

  it('rejects unusable vocab sizes', () => {
    for (const v of [0, 258, 1.5, Number.NaN])
      expectError(() => createSynthTokenizerJson(v), 'INVALID_ARGUMENT');
  });
});

describe('createHfTokenizer', () => {
  it('streams a character split into byte-fallback tokens once it is complete', () => {
    const ids = synth.encode('xé'); // é is not in the synthetic vocab: <0xC3> <0xA9>
    expect(ids).toEqual([synth.encode('x')[0], 3 + 0xc3, 3 + 0xa9]);
    expect(synth.decodePiece(ids[0] as number, ids[1] as number)).toBe('');
    expect(synth.decodePiece(ids[1] as number, ids[2] as number)).toBe('é');
    expect(stream(synth, ids)).toBe('xé');
  });

  it('streams characters of three or more byte tokens through a decode stream, not decodePiece', () => {
    const ids = synth.encode('a€b😀c'); // € and 😀 fall back to 3 and 4 byte tokens
    // Two-token windows cannot rebuild them: a U+FFFD marks the spot instead.
    expect(stream(synth, ids)).toBe('a\uFFFDb\uFFFDc');
    const ds = createDecodeStream(synth);
    const pieces = ids.map((id) => ds.push(id));
    expect(pieces.join('') + ds.flush()).toBe('a€b😀c');
    expect(pieces.filter((p) => p !== '')).toEqual(['a', '€', 'b', '😀', 'c']);
    // Invalid bytes do not stall the stream forever.
    const junk = createDecodeStream(synth);
    const bytes = Array.from({ length: 20 }, () => 3 + 0x80);
    expect(bytes.map((id) => junk.push(id)).join('') + junk.flush()).toBe('\uFFFD'.repeat(20));
  });

  it('prints nothing for special tokens and treats text after them as a start', () => {
    expect(synth.decodePiece(5, 2)).toBe('');
    expect(synth.decodePiece(5, 1)).toBe('');
    expect(synth.decode([])).toBe('');
    expect(synth.decode([1, 2])).toBe('');
  });

  it('rejects ids outside the vocabulary', () => {
    expectError(() => synth.decodePiece(1, 49152), 'INVALID_ARGUMENT', 'synth-49152');
    expectError(() => synth.decode([-1]), 'INVALID_ARGUMENT', 'synth-49152');
  });

  it('rejects a file that is not a tokenizer.json, naming it', () => {
    expectError(
      () => createHfTokenizer({ tokenizerJson: {}, name: 'bad.json' }),
      'TOKENIZER_BAD_FILE',
      'bad.json',
    );
    expectError(
      () => createHfTokenizer({ tokenizerJson: { model: { type: 'Nope' } }, name: 'weird.json' }),
      'TOKENIZER_BAD_FILE',
      'weird.json',
    );
    expectError(
      () =>
        createHfTokenizer({
          ...synthFiles,
          tokenizerConfig: { ...synthFiles.tokenizerConfig, chat_template: '{% for %}' },
          name: 'broken-template.json',
        }),
      'TOKENIZER_BAD_FILE',
      'broken-template.json',
    );
  });

  it('reads special tokens, end-of-turn ids and named chat templates from the config', () => {
    const json = JSON.parse(JSON.stringify(synthFiles.tokenizerJson)) as {
      added_tokens: { id: number; content: string; special: boolean; normalized: boolean }[];
      model: { vocab: Record<string, number> };
    };
    // Repurpose two filler ids as ChatML markers, as a chat model's tokenizer.json would have them.
    for (const [id, content] of [
      [500, '<|im_start|>'],
      [501, '<|im_end|>'],
    ] as const) {
      const old = Object.keys(json.model.vocab).find((k) => json.model.vocab[k] === id) as string;
      delete json.model.vocab[old];
      json.model.vocab[content] = id;
      json.added_tokens.push({ id, content, special: true, normalized: false });
    }
    const tok = createHfTokenizer({
      tokenizerJson: json,
      tokenizerConfig: {
        bos_token: { __type: 'AddedToken', content: '<s>' },
        eos_token: '</s>',
        clean_up_tokenization_spaces: false,
        chat_template: [
          { name: 'tool_use', template: 'tools!' },
          {
            name: 'default',
            template:
              "{{ bos_token }}{% for m in messages %}{% if m.role == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}" +
              '<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}',
          },
        ],
      },
      name: 'chatml.json',
    });
    expect(tok.bosId).toBe(1);
    expect(tok.eosIds).toEqual([2, 501]);
    const text =
      tok.applyChatTemplate?.([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true }) ?? '';
    expect(text).toBe('<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    // Special-token text in a rendered template becomes the special ids.
    const ids = tok.encode(text);
    expect(ids[0]).toBe(1);
    expect(ids).toContain(500);
    expect(ids).toContain(501);
    expectError(
      () => tok.applyChatTemplate?.([{ role: 'bad', content: 'x' }]),
      'INVALID_ARGUMENT',
      'chatml.json',
    );
    expect(createHfTokenizer({ tokenizerJson: json, name: 'x', eosIds: [7] }).eosIds).toEqual([7]);
  });
});
