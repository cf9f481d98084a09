/**
 * The rules for what a person types into the chat: the settings fields (parsed on blur and on
 * submit, never rewritten per keystroke), the prompt against the model's context, and characters a
 * tokenizer cannot represent. Pure functions: the chat session store and the tests call them.
 */
import { RingworkError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/types.js';

/** A parsed field: its value, or a typed error whose message the form shows under the field. */
export type FieldResult<T> = { ok: true; value: T } | { ok: false; error: RingworkError };

/** The chat's numeric settings. */
export type SettingField = 'temperature' | 'topP' | 'maxTokens' | 'seed';

/** The ranges the sampler and the generation loop accept. */
export const SETTING_LIMITS = {
  temperature: { min: 0, max: 2 },
  topP: { min: 0.05, max: 1 },
  /** Upper bound before a model is known; a model lowers it to its context − 1 (BOS). */
  maxTokens: { min: 1, max: 4096 },
  seed: { min: 1, max: 2 ** 31 - 1 },
} as const;

const LABELS: Record<SettingField, string> = {
  temperature: 'Temperature',
  topP: 'Top-p',
  maxTokens: 'Max new tokens',
  seed: 'Seed',
};

const bad = (field: SettingField, raw: string, message: string): FieldResult<never> => ({
  ok: false,
  error: new RingworkError('CHAT_BAD_SETTING', message, { details: { field, raw } }),
});

/** A decimal number as people type it ("0.5", ".5", "-1", "1e3"); undefined for anything else. */
function parseDecimal(raw: string): number | undefined {
  const t = raw.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Parses one settings field as typed. `maxTokensLimit` is the model's real bound on new tokens
 * (its context − 1 for BOS; default {@link SETTING_LIMITS}.maxTokens.max). An empty seed means
 * "random per answer" (value undefined); every other empty field is an error.
 */
export function parseSetting(
  field: SettingField,
  raw: string,
  maxTokensLimit: number = SETTING_LIMITS.maxTokens.max,
): FieldResult<number | undefined> {
  const label = LABELS[field];
  if (raw.trim() === '') {
    if (field === 'seed') return { ok: true, value: undefined };
    return bad(field, raw, `${label} is empty: type a number.`);
  }
  const n = parseDecimal(raw);
  if (n === undefined) return bad(field, raw, `${label}: “${raw.trim()}” is not a number.`);
  switch (field) {
    case 'temperature': {
      const { min, max } = SETTING_LIMITS.temperature;
      if (n < min) return bad(field, raw, `${label} cannot be negative; 0 always picks the likeliest token.`);
      if (n > max) return bad(field, raw, `${label} is at most ${max}.`);
      return { ok: true, value: n };
    }
    case 'topP': {
      const { min, max } = SETTING_LIMITS.topP;
      if (n < min || n > max) return bad(field, raw, `${label} must be between ${min} and ${max}.`);
      return { ok: true, value: n };
    }
    case 'maxTokens': {
      const max = Math.min(SETTING_LIMITS.maxTokens.max, Math.floor(maxTokensLimit));
      if (!Number.isInteger(n)) return bad(field, raw, `${label} must be a whole number.`);
      if (n < 1) return bad(field, raw, `${label} must be at least 1.`);
      if (n > max) return bad(field, raw, `${label} is at most ${max} for this model (its context length).`);
      return { ok: true, value: n };
    }
    case 'seed': {
      const { min, max } = SETTING_LIMITS.seed;
      if (!Number.isInteger(n) || n < min || n > max)
        return bad(field, raw, `${label} must be a whole number from ${min} to ${max}, or empty.`);
      return { ok: true, value: n };
    }
  }
}

/** How a prompt fits a model's context, decided before sending. */
export type PromptFit =
  | {
      kind: 'fits';
      promptTokens: number;
      /** New tokens the answer may take: min(max tokens, context − prompt). */
      maxNewTokens: number;
      /** True when the context, not the max-tokens setting, bounds the answer. */
      clamped: boolean;
    }
  | {
      kind: 'too-long';
      promptTokens: number;
      contextLength: number;
      /**
       * Tokens of the prompt text to keep (its last ones; BOS not counted) so that an answer of
       * min(max tokens, a quarter of the context) tokens fits after them.
       */
      keep: number;
      error: RingworkError;
    };

/**
 * Checks a prompt of `promptTokens` tokens (BOS included) against a model's `contextLength`.
 * A prompt fits while at least one new token fits after it (up to `contextLength` tokens); a longer one is refused with the offer
 * to keep its last tokens, leaving room for `min(maxTokens, a quarter of the context)` new tokens.
 */
export function checkPromptFit(o: {
  promptTokens: number;
  contextLength: number;
  maxTokens: number;
}): PromptFit {
  // Positions 0..context−1 are read; the token sampled at the last one is still shown, so a
  // prompt of P tokens (BOS included) leaves context − P + 1 new tokens.
  const room = o.contextLength - o.promptTokens + 1;
  if (room >= 1) {
    const maxNewTokens = Math.min(o.maxTokens, room);
    return { kind: 'fits', promptTokens: o.promptTokens, maxNewTokens, clamped: maxNewTokens < o.maxTokens };
  }
  const reserve = Math.max(1, Math.min(o.maxTokens, Math.floor(o.contextLength / 4)));
  // keep + BOS = context − reserve + 1 positions: exactly `reserve` new tokens fit after them.
  const keep = Math.max(1, o.contextLength - reserve);
  return {
    kind: 'too-long',
    promptTokens: o.promptTokens,
    contextLength: o.contextLength,
    keep,
    error: new RingworkError(
      'CHAT_PROMPT_TOO_LONG',
      `The prompt is ${o.promptTokens} tokens but the model reads at most ${o.contextLength}: nothing could be generated. Keep its last ${keep} tokens?`,
      { details: { promptTokens: o.promptTokens, contextLength: o.contextLength, keep } },
    ),
  };
}

/**
 * The end of `text` that encodes to at most `keep` tokens (BOS not counted), cut at a token
 * boundary. Re-encoding a decoded tail can merge differently, so it is checked and shortened
 * until it fits.
 */
export function keepLastTokens(tokenizer: Tokenizer, text: string, keep: number): string {
  if (keep < 1) return '';
  const ids = tokenizer.encode(text);
  if (ids.length <= keep) return text;
  for (let n = keep; n >= 1; n--) {
    const tail = tokenizer.decode(ids.slice(ids.length - n)).replace(/^\uFFFD+/, '');
    if (tokenizer.encode(tail).length <= keep) return tail;
  }
  return '';
}

/**
 * The characters of `text` the tokenizer cannot represent (encoding then decoding loses them; a
 * byte-fallback vocabulary such as llama2.c's tok512 represents every character). Each listed once.
 */
export function unrepresentableChars(tokenizer: Tokenizer, text: string): string[] {
  const lost: string[] = [];
  const seen = new Set<string>();
  for (const ch of text) {
    if (seen.has(ch) || /\s/.test(ch)) continue;
    seen.add(ch);
    if (!tokenizer.decode(tokenizer.encode(ch)).includes(ch)) lost.push(ch);
  }
  return lost;
}

/** The typed error for {@link unrepresentableChars}' findings (undefined when there are none). */
export function unrepresentableError(model: string, chars: string[]): RingworkError | undefined {
  if (chars.length === 0) return undefined;
  return new RingworkError(
    'CHAT_UNREPRESENTABLE',
    `${model} cannot represent ${chars.length === 1 ? 'this character' : 'these characters'}: ${chars.slice(0, 12).join(' ')}. ${chars.length === 1 ? 'It' : 'They'} would reach the model as “unknown”.`,
    { details: { model, chars } },
  );
}

/** Why an answer ended, in the chat's words (`context`: it filled the model's context). */
export type AnswerEnd = 'end' | 'max-tokens' | 'context';

/** The chat's sentence for an answer's end, or undefined for a natural end. */
export function answerEndNote(end: AnswerEnd | undefined, contextLength?: number): string | undefined {
  if (end === 'context')
    return `Stopped at the end of the model's context${contextLength ? ` (${contextLength} tokens)` : ''}: it cannot read further back. Clear the history or shorten the prompt to continue.`;
  if (end === 'max-tokens') return 'Stopped at the max new tokens setting.';
  return undefined;
}
