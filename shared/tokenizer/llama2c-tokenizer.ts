/**
 * The llama2.c tokenizer (`tokenizer.bin` / `tok512.bin`): a SentencePiece BPE vocabulary exported
 * as (score, piece) pairs. Encoding and streaming decoding reproduce llama2.c `run.c` exactly
 * (`encode`, `decode` + `safe_printf`), because golden outputs and the reference model are defined
 * by that program, not by SentencePiece itself.
 */

import { RingworkError } from '../errors.js';
import type { EncodeOptions, Tokenizer } from './types.js';

/** The parsed contents of a llama2.c tokenizer file. */
export interface Llama2cTokenizerData {
  /** File name, used in error messages. */
  readonly name: string;
  /** The `max_token_length` header field (longest piece in bytes). */
  readonly maxTokenLength: number;
  /** Piece text per id (UTF-8 decoded). Id 0 = `<unk>`, 1 = BOS, 2 = EOS, 3..258 = `<0xHH>` bytes. */
  readonly pieces: readonly string[];
  /** Merge score per id (float32, as stored). */
  readonly scores: Float32Array;
}

// llama2.c hard-codes these ids (run.c: BOS = 1, EOS = 2, byte fallback = byte + 3).
/** Id of `<unk>` in a llama2.c vocabulary. */
export const LLAMA2C_UNK_ID = 0;
/** Id of BOS (`<s>`) in a llama2.c vocabulary. */
export const LLAMA2C_BOS_ID = 1;
/** Id of EOS (`</s>`) in a llama2.c vocabulary. */
export const LLAMA2C_EOS_ID = 2;
/** Byte fallback: byte `b` is token `b + LLAMA2C_BYTE_OFFSET` (`<0x00>` is id 3). */
export const LLAMA2C_BYTE_OFFSET = 3;

/** No real vocabulary has pieces anywhere near this long; a larger header means a corrupt file. */
const MAX_PLAUSIBLE_TOKEN_LENGTH = 1 << 16;
/** run.c starts its best-score search at -1e10 (a float), so pairs scoring at or below never merge. */
const RUNC_MIN_SCORE = Math.fround(-1e10);

function badFile(
  name: string,
  what: string,
  fix: string,
  details: Record<string, unknown> = {},
): RingworkError {
  return new RingworkError('TOKENIZER_BAD_FILE', `${name}: ${what}. ${fix}`, {
    details: { file: name, ...details },
  });
}

/**
 * Counts how many whole (score, length, bytes) records fit in `bytes` from `offset`, so a vocab-size
 * mismatch can report the size the file actually holds. Returns -1 when the records do not end
 * exactly at the end of the file (the bytes are not a run of tokens at all).
 */
function countRecords(view: DataView, offset: number): number {
  let count = 0;
  let o = offset;
  while (o + 8 <= view.byteLength) {
    const len = view.getInt32(o + 4, true);
    if (len < 0 || o + 8 + len > view.byteLength) return -1;
    o += 8 + len;
    count++;
  }
  return o === view.byteLength ? count : -1;
}

/**
 * Parses a llama2.c tokenizer file: int32 `max_token_length`, then per token float32 score, int32
 * byte length and the piece's UTF-8 bytes (little-endian, as written by llama2.c's tokenizer.py).
 *
 * @param bytes the whole file
 * @param vocabSize the model's vocabulary size (the file does not store it)
 * @param name file name for error messages
 * @throws RingworkError `TOKENIZER_BAD_FILE` when the file is truncated, has implausible lengths,
 *   invalid UTF-8, or holds a different number of tokens than `vocabSize`; `INVALID_ARGUMENT`
 *   when `vocabSize` is not a positive integer.
 */
export function parseLlama2cTokenizer(
  bytes: Uint8Array,
  vocabSize: number,
  name: string,
): Llama2cTokenizerData {
  if (!Number.isInteger(vocabSize) || vocabSize < 3) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `${name}: vocabSize must be an integer >= 3 (unk, BOS, EOS), got ${String(vocabSize)}. Pass the model header's vocab_size.`,
      { details: { file: name, vocabSize } },
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 4) {
    throw badFile(
      name,
      `only ${bytes.byteLength} bytes, too short for a llama2.c tokenizer header`,
      'The file is truncated; download it again.',
      { size: bytes.byteLength },
    );
  }
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0 || maxTokenLength > MAX_PLAUSIBLE_TOKEN_LENGTH) {
    throw badFile(
      name,
      `max_token_length is ${maxTokenLength}, expected 1..${MAX_PLAUSIBLE_TOKEN_LENGTH}`,
      'This is not a llama2.c tokenizer.bin (export one with llama2.c tokenizer.py).',
      { maxTokenLength },
    );
  }
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const pieces: string[] = new Array<string>(vocabSize);
  const scores = new Float32Array(vocabSize);
  let offset = 4;
  for (let i = 0; i < vocabSize; i++) {
    if (offset + 8 > bytes.byteLength) {
      const mismatch = offset === bytes.byteLength;
      throw badFile(
        name,
        mismatch
          ? `the file holds ${i} tokens but the model's vocab_size is ${vocabSize}`
          : `truncated inside the record of token ${i} (offset ${offset}, file size ${bytes.byteLength})`,
        mismatch
          ? 'Use the tokenizer that was exported with this model.'
          : 'The file is truncated; download it again.',
        { token: i, offset, size: bytes.byteLength, vocabSize, ...(mismatch ? { tokensInFile: i } : {}) },
      );
    }
    scores[i] = view.getFloat32(offset, true);
    const len = view.getInt32(offset + 4, true);
    if (len < 0 || len > maxTokenLength) {
      throw badFile(
        name,
        `token ${i} has byte length ${len}, outside 0..max_token_length (${maxTokenLength})`,
        'The file is corrupt or not a llama2.c tokenizer.bin; download or export it again.',
        { token: i, offset, length: len, maxTokenLength },
      );
    }
    const start = offset + 8;
    if (start + len > bytes.byteLength) {
      throw badFile(
        name,
        `truncated inside the bytes of token ${i} (needs ${len} bytes at offset ${start}, file size ${bytes.byteLength})`,
        'The file is truncated; download it again.',
        { token: i, offset: start, length: len, size: bytes.byteLength },
      );
    }
    try {
      pieces[i] = utf8.decode(bytes.subarray(start, start + len));
    } catch (cause) {
      throw new RingworkError(
        'TOKENIZER_BAD_FILE',
        `${name}: token ${i} is not valid UTF-8. The file is corrupt or not a llama2.c tokenizer.bin; export it again.`,
        { details: { file: name, token: i, offset: start }, cause },
      );
    }
    offset = start + len;
  }
  if (offset !== bytes.byteLength) {
    const extra = countRecords(view, offset);
    throw badFile(
      name,
      extra > 0
        ? `the file holds ${vocabSize + extra} tokens but the model's vocab_size is ${vocabSize}`
        : `${bytes.byteLength - offset} unexpected bytes after the last of ${vocabSize} tokens`,
      extra > 0
        ? 'Use the tokenizer that was exported with this model.'
        : 'The file is corrupt or does not belong to this model; download it again.',
      {
        size: bytes.byteLength,
        vocabSize,
        offset,
        ...(extra > 0 ? { tokensInFile: vocabSize + extra } : {}),
      },
    );
  }
  return { name, maxTokenLength, pieces, scores };
}

/**
 * run.c recognises raw-byte pieces with `sscanf(piece, "<0x%02hhX>", &b) == 1`, which only needs
 * `<0x` and one or two hex digits (the closing `>` does not affect the count).
 */
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{1,2})/;

/** C-locale `isprint(b) || isspace(b)`: what run.c's safe_printf lets through for one-byte pieces. */
function isPrintableOrSpace(b: number): boolean {
  return (b >= 0x20 && b <= 0x7e) || (b >= 0x09 && b <= 0x0d);
}

/** A candidate merge of the adjacent tokens at `left` and `right` (node indices). */
interface PairEntry {
  score: number;
  left: number;
  right: number;
  id: number;
  leftVersion: number;
  rightVersion: number;
}

/** run.c's order: the highest score wins; among equal scores the leftmost pair wins. */
function before(a: PairEntry, b: PairEntry): boolean {
  return a.score > b.score || (a.score === b.score && a.left < b.left);
}

/** Minimal binary heap over {@link PairEntry} (no dependency, shared/ must stay lean). */
class PairHeap {
  private readonly items: PairEntry[] = [];

  get size(): number {
    return this.items.length;
  }

  push(e: PairEntry): void {
    const items = this.items;
    items.push(e);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as PairEntry;
      if (!before(e, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = e;
  }

  pop(): PairEntry | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= items.length) break;
      const r = l + 1;
      let c = l;
      if (r < items.length && before(items[r] as PairEntry, items[l] as PairEntry)) c = r;
      const child = items[c] as PairEntry;
      if (!before(child, last)) break;
      items[i] = child;
      i = c;
    }
    items[i] = last;
    return top;
  }
}

/**
 * Builds a {@link Tokenizer} that behaves exactly like llama2.c run.c.
 *
 * `encode` is run.c's `encode`: optional BOS, the dummy-prefix token for `" "` (non-empty text
 * only), one token per code point with byte fallback (id = byte + 3), then repeated merging of the
 * adjacent pair whose concatenation is in the vocabulary with the highest score (leftmost on ties),
 * optional EOS. A heap replaces run.c's quadratic rescans but picks the same pair every step.
 *
 * `decodePiece` is run.c's `decode` followed by `safe_printf`; `decode` concatenates pieces like a
 * SentencePiece decoder (control ids 0..2 give no text, byte pieces are joined as UTF-8, one leading
 * space of the result is dropped).
 */
export function createLlama2cTokenizer(data: Llama2cTokenizerData): Tokenizer {
  const { pieces, scores, name } = data;
  const vocabSize = pieces.length;
  // run.c's str_lookup bsearches a sorted copy; with duplicate pieces the first id is as good a pick.
  const lookup = new Map<string, number>();
  pieces.forEach((p, id) => {
    if (!lookup.has(p)) lookup.set(p, id);
  });
  const dummyPrefix = lookup.get(' ');
  const utf8Encoder = new TextEncoder();
  const utf8Decoder = new TextDecoder('utf-8');

  function checkId(id: number, what: string): void {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new RingworkError(
        'INVALID_ARGUMENT',
        `${name}: ${what} ${String(id)} is not a token id (0..${vocabSize - 1}). Pass ids produced for this vocabulary.`,
        { details: { file: name, id, vocabSize } },
      );
    }
  }

  function bytePieceValue(piece: string): number | undefined {
    const m = BYTE_PIECE.exec(piece);
    return m ? parseInt(m[1] as string, 16) : undefined;
  }

  function mergePairs(tokens: number[]): number[] {
    const n = tokens.length;
    if (n < 2) return tokens;
    const tok = tokens.slice();
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const version = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap();
    const consider = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const id = lookup.get(
        (pieces[tok[left] as number] as string) + (pieces[tok[right] as number] as string),
      );
      if (id === undefined) return;
      const score = scores[id] as number;
      // Mirrors `vocab_scores[id] > best_score` with best_score = -1e10 (NaN never wins either).
      if (!(score > RUNC_MIN_SCORE)) return;
      heap.push({
        score,
        left,
        right,
        id,
        leftVersion: version[left] as number,
        rightVersion: version[right] as number,
      });
    };
    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
    while (heap.size > 0) {
      const e = heap.pop() as PairEntry;
      const { left, right } = e;
      // Stale entries (a side already merged away or changed) are skipped lazily.
      if (!alive[left] || !alive[right] || next[left] !== right) continue;
      if (version[left] !== e.leftVersion || version[right] !== e.rightVersion) continue;
      tok[left] = e.id;
      version[left] = version[left] + 1;
      alive[right] = 0;
      const after = next[right] as number;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      consider(prev[left] as number, left);
      consider(left, after);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i] as number) out.push(tok[i] as number);
    return out;
  }

  function encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new RingworkError('INVALID_ARGUMENT', `${name}: encode() needs a string, got ${typeof text}.`, {
        details: { file: name },
      });
    }
    const tokens: number[] = [];
    if (opts.bos) tokens.push(LLAMA2C_BOS_ID);
    // run.c always adds SentencePiece's dummy prefix (" ") in front of non-empty text.
    if (text.length > 0 && dummyPrefix !== undefined) tokens.push(dummyPrefix);
    for (const cp of text) {
      // A lone surrogate becomes U+FFFD, exactly what its UTF-8 encoding (EF BF BD) means to run.c.
      const ch = cp.length === 1 && cp.charCodeAt(0) >= 0xd800 && cp.charCodeAt(0) <= 0xdfff ? '\uFFFD' : cp;
      const id = lookup.get(ch);
      if (id !== undefined) {
        tokens.push(id);
        continue;
      }
      for (const b of utf8Encoder.encode(ch)) {
        const byteId = b + LLAMA2C_BYTE_OFFSET;
        if (byteId >= vocabSize) {
          throw new RingworkError(
            'TOKENIZER_BAD_FILE',
            `${name}: byte fallback for 0x${b.toString(16)} needs id ${byteId} but the vocabulary has ${vocabSize} ids. This is not a SentencePiece byte-fallback vocabulary.`,
            { details: { file: name, byte: b, vocabSize } },
          );
        }
        tokens.push(byteId);
      }
    }
    const merged = mergePairs(tokens);
    if (opts.eos) merged.push(LLAMA2C_EOS_ID);
    return merged;
  }

  function decodePiece(prevToken: number, token: number): string {
    checkId(token, 'token');
    let piece = pieces[token] as string;
    // SentencePiece drops the dummy-prefix space of the first piece after BOS (run.c PR #89).
    if (prevToken === LLAMA2C_BOS_ID && piece.startsWith(' ')) piece = piece.slice(1);
    const byte = bytePieceValue(piece);
    // run.c prints a byte piece as that single raw byte; safe_printf drops it unless it is printable
    // ASCII or whitespace (so bytes >= 0x80 of a multi-byte character print nothing).
    if (byte !== undefined) return isPrintableOrSpace(byte) ? String.fromCharCode(byte) : '';
    if (piece.length === 0) return '';
    // safe_printf: a one-byte piece is printed only if it is printable or whitespace.
    if (piece.length === 1 && piece.charCodeAt(0) < 0x80 && !isPrintableOrSpace(piece.charCodeAt(0)))
      return '';
    return piece;
  }

  function decode(ids: number[]): string {
    let out = '';
    let pending: number[] = [];
    const flush = (): void => {
      if (pending.length > 0) {
        out += utf8Decoder.decode(Uint8Array.from(pending));
        pending = [];
      }
    };
    for (const id of ids) {
      checkId(id, 'id');
      if (id <= LLAMA2C_EOS_ID) continue;
      const piece = pieces[id] as string;
      const byte = bytePieceValue(piece);
      if (byte !== undefined) {
        pending.push(byte);
      } else {
        flush();
        out += piece;
      }
    }
    flush();
    return out.startsWith(' ') ? out.slice(1) : out;
  }

  return {
    vocabSize,
    bosId: LLAMA2C_BOS_ID,
    eosIds: [LLAMA2C_EOS_ID],
    encode,
    decodePiece,
    decode,
  };
}
