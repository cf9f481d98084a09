import { describe, expect, it } from 'vitest';
import {
  answerEndNote,
  checkPromptFit,
  keepLastTokens,
  parseSetting,
  unrepresentableChars,
  unrepresentableError,
} from '../../../shared/app/chat-input';
import { parseLendMemory } from '../../../shared/app/contribute-input';
import { createHfTokenizer } from '../../../shared/tokenizer/hf-tokenizer';
import { createSynthTokenizerJson } from '../../../shared/tokenizer/synth-tokenizer';
import { stories260KTokenizer } from '../../helpers/engine';

const code = (r: ReturnType<typeof parseSetting> | ReturnType<typeof parseLendMemory>) =>
  r.ok ? 'ok' : r.error.code;

describe('settings fields', () => {
  it('temperature: 0..2 as typed; negative refused (never silently greedy), junk and empty refused', () => {
    expect(parseSetting('temperature', '0')).toEqual({ ok: true, value: 0 });
    expect(parseSetting('temperature', '.5')).toEqual({ ok: true, value: 0.5 });
    expect(parseSetting('temperature', ' 1.25 ')).toEqual({ ok: true, value: 1.25 });
    for (const raw of ['-1', '-0.5', '2.5', 'abc', '', '0.5.1', '1,5', 'Infinity', 'NaN'])
      expect(code(parseSetting('temperature', raw)), raw).toBe('CHAT_BAD_SETTING');
    const neg = parseSetting('temperature', '-1');
    expect(!neg.ok && neg.error.message).toMatch(/cannot be negative/);
    expect(!neg.ok && neg.error.details).toEqual({ field: 'temperature', raw: '-1' });
  });

  it('max new tokens: a whole number from 1 to the model limit (context − BOS)', () => {
    expect(parseSetting('maxTokens', '50', 511)).toEqual({ ok: true, value: 50 });
    expect(parseSetting('maxTokens', '511', 511)).toEqual({ ok: true, value: 511 });
    for (const raw of ['512', '1000000', '0', '-3', '1.5', ''])
      expect(code(parseSetting('maxTokens', raw, 511)), raw).toBe('CHAT_BAD_SETTING');
    const big = parseSetting('maxTokens', '1000000', 511);
    expect(!big.ok && big.error.message).toMatch(/at most 511/);
    // Without a model, the form's own bound.
    expect(code(parseSetting('maxTokens', '4097'))).toBe('CHAT_BAD_SETTING');
    expect(code(parseSetting('maxTokens', '4096'))).toBe('ok');
  });

  it('top-p within 0.05..1; seed a positive whole number, empty meaning random', () => {
    expect(parseSetting('topP', '0.9')).toEqual({ ok: true, value: 0.9 });
    for (const raw of ['0', '1.1', '-0.5'])
      expect(code(parseSetting('topP', raw)), raw).toBe('CHAT_BAD_SETTING');
    expect(parseSetting('seed', '')).toEqual({ ok: true, value: undefined });
    expect(parseSetting('seed', '42')).toEqual({ ok: true, value: 42 });
    for (const raw of ['0', '-3', '4.2', String(2 ** 31)])
      expect(code(parseSetting('seed', raw)), raw).toBe('CHAT_BAD_SETTING');
  });
});

describe('prompt against the context', () => {
  it('a prompt that fits leaves min(max tokens, room) new tokens and says when the context bounds it', () => {
    expect(checkPromptFit({ promptTokens: 5, contextLength: 512, maxTokens: 200 })).toEqual({
      kind: 'fits',
      promptTokens: 5,
      maxNewTokens: 200,
      clamped: false,
    });
    expect(checkPromptFit({ promptTokens: 500, contextLength: 512, maxTokens: 200 })).toMatchObject({
      kind: 'fits',
      maxNewTokens: 13,
      clamped: true,
    });
  });

  it('a prompt that fills the context is refused with an offer to keep its last tokens', () => {
    expect(checkPromptFit({ promptTokens: 512, contextLength: 512, maxTokens: 200 })).toMatchObject({
      kind: 'fits',
      maxNewTokens: 1,
    });
    for (const promptTokens of [513, 1601]) {
      const fit = checkPromptFit({ promptTokens, contextLength: 512, maxTokens: 200 });
      expect(fit.kind).toBe('too-long');
      if (fit.kind !== 'too-long') return;
      expect(fit.error.code).toBe('CHAT_PROMPT_TOO_LONG');
      // Room for a quarter of the context (128 < 200) after the kept text and BOS.
      expect(fit.keep).toBe(512 - 128);
      expect(fit.error.message).toContain(`${promptTokens} tokens`);
      expect(fit.error.details).toMatchObject({ promptTokens, contextLength: 512, keep: 384 });
      const after = checkPromptFit({ promptTokens: fit.keep + 1, contextLength: 512, maxTokens: 200 });
      expect(after).toMatchObject({ kind: 'fits', maxNewTokens: 128 });
    }
  });

  it('keepLastTokens cuts a long prompt at a token boundary to at most N tokens (the real tok512)', () => {
    const t = stories260KTokenizer();
    const text = 'The little dog ran to the park and played with a red ball. '.repeat(90) + 'The end 🐱.';
    expect(t.encode(text).length).toBeGreaterThan(1000);
    for (const keep of [384, 100, 7]) {
      const tail = keepLastTokens(t, text, keep);
      expect(t.encode(tail).length).toBeLessThanOrEqual(keep);
      expect(t.encode(tail).length).toBeGreaterThanOrEqual(keep - 2);
      expect(text.endsWith(tail)).toBe(true);
    }
    expect(keepLastTokens(t, 'short', 10)).toBe('short');
  });
});

describe('unrepresentable characters', () => {
  it('tok512 represents emoji and CJK through byte fallback', () => {
    expect(unrepresentableChars(stories260KTokenizer(), 'Once 🐱 猫 こんにちは')).toEqual([]);
  });

  it('a vocabulary without byte fallback loses them, and the chat says which', () => {
    const files = createSynthTokenizerJson(400);
    const json = files.tokenizerJson as { model: { byte_fallback: boolean } };
    json.model.byte_fallback = false;
    const t = createHfTokenizer({ ...files, name: 'no-fallback' });
    const lost = unrepresentableChars(t, 'cat 🐱 猫 猫 ok');
    expect(lost).toEqual(['🐱', '猫']);
    const e = unrepresentableError('tiny', lost);
    expect(e?.code).toBe('CHAT_UNREPRESENTABLE');
    expect(e?.message).toContain('🐱 猫');
    expect(unrepresentableError('tiny', [])).toBeUndefined();
  });
});

it('an answer that filled the context says so; a natural end says nothing', () => {
  expect(answerEndNote('context', 512)).toMatch(/end of the model's context \(512 tokens\)/);
  expect(answerEndNote('max-tokens')).toMatch(/max new tokens/);
  expect(answerEndNote('end')).toBeUndefined();
});

describe('memory to lend', () => {
  it('MB as typed; empty lends everything; zero, junk and more than the device has are refused', () => {
    expect(parseLendMemory('')).toEqual({ ok: true, value: undefined });
    expect(parseLendMemory('0.8')).toEqual({ ok: true, value: 800_000 });
    expect(parseLendMemory(' 512 ', 1e9)).toEqual({ ok: true, value: 512_000_000 });
    for (const raw of ['0', '-1', 'abc', '1e3', '0.0'])
      expect(code(parseLendMemory(raw)), raw).toBe('INVALID_ARGUMENT');
    const big = parseLendMemory('2000', 1e9);
    expect(!big.ok && big.error.message).toMatch(/at most 1000.0 MB/);
  });
});
