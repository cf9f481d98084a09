/**
 * Stateful streaming decode. {@link Tokenizer.decodePiece} only sees two tokens, so a character
 * spread over three or more byte tokens (CJK or emoji through byte fallback) cannot come out right;
 * a stream remembers the tokens of an unfinished character and prints it once it is complete, so
 * the concatenated output always equals `decode(allIds)`.
 */

import type { Tokenizer } from './types.js';

/** Incremental text for one generated sequence (one stream per sequence; it keeps state). */
export interface DecodeStream {
  /** Feeds the next token; returns the text that became final with it (possibly ""). */
  push(token: number): string;
  /** Returns whatever is still held back (an unfinished character decodes as U+FFFD). */
  flush(): string;
}

/** One context token plus the up-to-4 byte tokens of one UTF-8 character, plus slack. */
const MAX_PENDING_TOKENS = 8;

/** Trailing U+FFFD is what an unfinished UTF-8 sequence decodes to: hold it back until it is done. */
function stablePart(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0xfffd) end--;
  return s.slice(0, end);
}

/**
 * Creates a {@link DecodeStream} over `tokenizer.decode`. Only the tokens since the last complete
 * character (plus one before them, for spacing rules such as SentencePiece's dropped leading space)
 * are re-decoded, so each push costs O(1) decodes of a few tokens.
 *
 * Pass the prompt's last token (e.g. BOS) as `context` when streaming a continuation, so the first
 * generated token is spaced as it would be inside the full text.
 */
export function createDecodeStream(tokenizer: Tokenizer, context: number[] = []): DecodeStream {
  let window = context.slice(-1);
  let emitted = tokenizer.decode(window).length;
  return {
    push(token: number): string {
      window.push(token);
      const text = tokenizer.decode(window);
      // A UTF-8 character has at most 4 bytes: a tail still unfinished after more tokens than that
      // is invalid bytes, not a character in progress, so it is printed (as U+FFFD) and dropped.
      const final = window.length > MAX_PENDING_TOKENS ? text : stablePart(text);
      const out = final.length > emitted ? final.slice(emitted) : '';
      emitted = Math.max(emitted, final.length);
      if (final.length === text.length) {
        // Everything so far is final: restart from this token alone (it is the spacing context).
        window = [token];
        emitted = tokenizer.decode(window).length;
      }
      return out;
    },
    flush(): string {
      const text = tokenizer.decode(window);
      const out = text.length > emitted ? text.slice(emitted) : '';
      window = window.slice(-1);
      emitted = tokenizer.decode(window).length;
      return out;
    },
  };
}
