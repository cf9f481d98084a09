/**
 * Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) tokenizers, backed by
 * `@huggingface/tokenizers` for encoding/decoding and `@huggingface/jinja` for chat templates.
 */

import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { RingworkError } from '../errors.js';
import type { ChatMessage, ChatTemplateOptions, EncodeOptions, Tokenizer } from './types.js';

/** Inputs of {@link createHfTokenizer}. */
export interface HfTokenizerOptions {
  /** Parsed `tokenizer.json`. */
  tokenizerJson: object;
  /** Parsed `tokenizer_config.json` (special-token names, chat template, clean-up flag). */
  tokenizerConfig?: object;
  /** File or model name, used in error messages. */
  name: string;
  /**
   * Ids that end generation, e.g. from `generation_config.json`. Default: the config's
   * `eos_token` plus the well-known end-of-turn tokens (`<|im_end|>`, `<|eot_id|>`...) the
   * vocabulary has.
   */
  eosIds?: number[];
}

/** Special tokens that mark the start of a sequence in common model families. */
const KNOWN_BOS = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>'];
/** Special tokens after which common chat / base models stop generating. */
const KNOWN_EOS = [
  '</s>',
  '<|endoftext|>',
  '<|im_end|>',
  '<|eot_id|>',
  '<|end_of_text|>',
  '<|end|>',
  '<end_of_turn>',
  '<eos>',
];

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** tokenizer_config.json stores special tokens as strings or as serialised AddedToken objects. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

/** `chat_template` is a string, or a list of named templates of which "default" is the chat one. */
function resolveChatTemplate(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.filter(isObject);
    const pick = named.find((t) => t.name === 'default') ?? named[0];
    return pick && typeof pick.template === 'string' ? pick.template : undefined;
  }
  return undefined;
}

/** The length of the longest common prefix of two strings. */
function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/**
 * Decoding a token that ends inside a multi-byte UTF-8 character yields U+FFFD for the unfinished
 * bytes. Such a tail is not text yet: it is held back so it can be printed once the character is
 * complete (the next window decodes it together with the following token).
 */
function withoutPendingTail(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0xfffd) end--;
  return s.slice(0, end);
}

/**
 * Builds a {@link Tokenizer} from a Hugging Face `tokenizer.json`.
 *
 * - `encode` runs the tokenizer without its post-processor (so no implicit BOS/EOS) and adds
 *   `bosId` / the first of `eosIds` only when asked.
 * - `decode` skips special tokens and honours `clean_up_tokenization_spaces` from the config (the
 *   library default is true).
 * - `decodePiece(prev, token)` is `decode([prev, token])` minus `decode([prev])`. After a special
 *   token (BOS included) or with no valid `prev`, the token is decoded as the start of a text, so a
 *   SentencePiece-style decoder drops the dummy-prefix space exactly as llama2.c does after BOS.
 *   Special tokens print nothing. Bytes of an unfinished UTF-8 character are held back; a character
 *   spread over more than two byte tokens cannot be rebuilt from a two-token window and prints as
 *   U+FFFD (use `decode` on the accumulated ids for exact text).
 * - `applyChatTemplate` exists when the config has a `chat_template`.
 *
 * @throws RingworkError `TOKENIZER_BAD_FILE` when the files cannot be loaded (message names the file).
 */
export function createHfTokenizer(opts: HfTokenizerOptions): Tokenizer {
  const { name } = opts;
  const json = opts.tokenizerJson as unknown;
  const config: Json = isObject(opts.tokenizerConfig) ? opts.tokenizerConfig : {};
  if (!isObject(json) || !isObject(json.model)) {
    throw new RingworkError(
      'TOKENIZER_BAD_FILE',
      `${name}: not a Hugging Face tokenizer.json (no "model" object). Pass the parsed tokenizer.json of the model.`,
      { details: { file: name } },
    );
  }
  // tokenizers.js insists these keys exist; tokenizer.json files written by older libraries omit some.
  const normalizedJson: Json = {
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    added_tokens: [],
    ...json,
  };
  let impl: HfTokenizerImpl;
  try {
    impl = new HfTokenizerImpl(normalizedJson, config);
  } catch (cause) {
    throw new RingworkError(
      'TOKENIZER_BAD_FILE',
      `${name}: tokenizer.json could not be loaded (${cause instanceof Error ? cause.message : String(cause)}). Check that it is a complete tokenizer.json from the Hugging Face hub.`,
      { details: { file: name }, cause },
    );
  }

  let maxId = -1;
  for (const id of impl.get_vocab(true).values()) if (id > maxId) maxId = id;
  const vocabSize = maxId + 1;
  if (vocabSize <= 0) {
    throw new RingworkError('TOKENIZER_BAD_FILE', `${name}: tokenizer.json has an empty vocabulary.`, {
      details: { file: name },
    });
  }

  const specialIds = new Set<number>();
  for (const [id, added] of impl.get_added_tokens_decoder()) if (added.special) specialIds.add(id);

  const idOf = (token: string | undefined): number | undefined =>
    token === undefined ? undefined : impl.token_to_id(token);

  let bosId = idOf(tokenContent(config.bos_token)) ?? -1;
  if (bosId < 0) {
    for (const t of KNOWN_BOS) {
      const id = idOf(t);
      if (id !== undefined && specialIds.has(id)) {
        bosId = id;
        break;
      }
    }
  }

  let eosIds: number[];
  if (opts.eosIds) {
    eosIds = [...opts.eosIds];
  } else {
    const found = new Set<number>();
    const configEos = idOf(tokenContent(config.eos_token));
    if (configEos !== undefined) found.add(configEos);
    for (const t of KNOWN_EOS) {
      const id = idOf(t);
      if (id !== undefined && specialIds.has(id)) found.add(id);
    }
    eosIds = [...found];
  }

  const checkId = (id: number, what: string): void => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new RingworkError(
        'INVALID_ARGUMENT',
        `${name}: ${what} ${String(id)} is not a token id (0..${vocabSize - 1}). Pass ids produced for this vocabulary.`,
        { details: { file: name, id, vocabSize } },
      );
    }
  };

  /** The library rejects empty input; an empty id list is simply empty text. */
  const rawDecode = (ids: number[]): string =>
    ids.length === 0 ? '' : impl.decode(ids, { skip_special_tokens: true });

  function encode(text: string, encOpts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new RingworkError('INVALID_ARGUMENT', `${name}: encode() needs a string, got ${typeof text}.`, {
        details: { file: name },
      });
    }
    const ids = text.length === 0 ? [] : impl.encode(text, { add_special_tokens: false }).ids;
    const out: number[] = [];
    if (encOpts.bos && bosId >= 0) out.push(bosId);
    out.push(...ids);
    const eos = eosIds[0];
    if (encOpts.eos && eos !== undefined) out.push(eos);
    return out;
  }

  function decode(ids: number[]): string {
    for (const id of ids) checkId(id, 'id');
    return rawDecode(ids);
  }

  function decodePiece(prev: number, token: number): string {
    checkId(token, 'token');
    if (specialIds.has(token)) return '';
    const atStart = !Number.isInteger(prev) || prev < 0 || prev >= vocabSize || specialIds.has(prev);
    if (atStart) return withoutPendingTail(rawDecode([token]));
    const full = withoutPendingTail(rawDecode([prev, token]));
    const head = withoutPendingTail(rawDecode([prev]));
    return full.startsWith(head) ? full.slice(head.length) : full.slice(commonPrefixLength(full, head));
  }

  const tokenizer: Tokenizer = { vocabSize, bosId, eosIds, encode, decodePiece, decode };

  const templateSource = resolveChatTemplate(config.chat_template);
  if (templateSource !== undefined) {
    let template: Template;
    try {
      template = new Template(templateSource);
    } catch (cause) {
      throw new RingworkError(
        'TOKENIZER_BAD_FILE',
        `${name}: chat_template does not parse (${cause instanceof Error ? cause.message : String(cause)}). Fix or remove chat_template in tokenizer_config.json.`,
        { details: { file: name }, cause },
      );
    }
    const specials = {
      bos_token: tokenContent(config.bos_token) ?? '',
      eos_token: tokenContent(config.eos_token) ?? '',
      unk_token: tokenContent(config.unk_token) ?? '',
      pad_token: tokenContent(config.pad_token) ?? '',
    };
    tokenizer.applyChatTemplate = (messages: ChatMessage[], chatOpts: ChatTemplateOptions = {}): string => {
      try {
        return template.render({
          messages,
          add_generation_prompt: chatOpts.addGenerationPrompt ?? false,
          ...specials,
        });
      } catch (cause) {
        throw new RingworkError(
          'INVALID_ARGUMENT',
          `${name}: the chat template rejected the messages (${cause instanceof Error ? cause.message : String(cause)}). Check the roles and their order.`,
          { details: { file: name, messages: messages.length }, cause },
        );
      }
    };
  }
  return tokenizer;
}
