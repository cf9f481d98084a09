/**
 * Server-sent events as the API streams them (`data: {...}` events, `data: [DONE]` last), read from a
 * byte stream. The decoder follows the SSE rules the API relies on: events end at a blank line,
 * `data:` lines join with newlines, comment lines (`:`) and other fields are skipped, and CRLF, CR
 * or LF end a line. Bounded: an event longer than {@link MAX_SSE_EVENT_CHARS} is refused, so a
 * wrong server cannot make a page buffer without end.
 */
import { RingworkError } from '../errors.js';

/** Longest event the decoder buffers (an API chunk is a few hundred characters). */
export const MAX_SSE_EVENT_CHARS = 1 << 20;

/** An incremental SSE decoder: text in, each complete event's data out. */
export interface SseDecoder {
  /** Feeds decoded text; returns the data of the events it completed. */
  push(text: string): string[];
  /** The data of a last event not followed by a blank line (a stream cut short), if any. */
  flush(): string[];
}

/** Creates an {@link SseDecoder}. */
export function createSseDecoder(): SseDecoder {
  let buf = '';
  let data: string[] = [];
  let dataChars = 0;

  const line = (l: string, out: string[]): void => {
    if (l === '') {
      if (data.length > 0) out.push(data.join('\n'));
      data = [];
      dataChars = 0;
      return;
    }
    if (l.startsWith(':')) return;
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    if (field !== 'data') return;
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    dataChars += value.length;
    if (dataChars > MAX_SSE_EVENT_CHARS)
      throw new RingworkError('API_BAD_RESPONSE', 'A streamed event is larger than any API chunk.', {
        details: { limit: MAX_SSE_EVENT_CHARS },
      });
    data.push(value);
  };

  return {
    push(text) {
      buf += text;
      const out: string[] = [];
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buf);
        // A lone CR at the end may be half of a CRLF: wait for the next piece.
        if (!m || (m[0] === '\r' && m.index === buf.length - 1)) break;
        line(buf.slice(0, m.index), out);
        buf = buf.slice(m.index + m[0].length);
      }
      if (buf.length > MAX_SSE_EVENT_CHARS)
        throw new RingworkError('API_BAD_RESPONSE', 'A streamed line is larger than any API chunk.', {
          details: { limit: MAX_SSE_EVENT_CHARS },
        });
      return out;
    },
    flush() {
      const out: string[] = [];
      if (buf !== '') line(buf.replace(/\r$/, ''), out);
      buf = '';
      line('', out);
      return out;
    },
  };
}

/** The reader side of a WHATWG `ReadableStream<Uint8Array>` (a `fetch` response body), in shared/'s types. */
export interface ByteStreamLike {
  getReader(): {
    read(): Promise<{ done: boolean; value?: Uint8Array }>;
    cancel(reason?: unknown): Promise<void>;
  };
}

/**
 * The data of each event of `body`, in order, up to (not including) `[DONE]`. Throws
 * `API_BAD_RESPONSE` when the stream ends without `[DONE]` (the server or the connection broke off).
 * Leaving the loop early (break, throw) cancels the body, which closes the connection: the server
 * sees the client go away and stops the generation.
 */
export async function* readSseData(body: ByteStreamLike): AsyncGenerator<string, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  const sse = createSseDecoder();
  try {
    for (;;) {
      const r = await reader.read();
      const events = r.done
        ? [...sse.push(decoder.decode()), ...sse.flush()]
        : sse.push(decoder.decode(r.value, { stream: true }));
      for (const e of events) {
        if (e === '[DONE]') return;
        yield e;
      }
      if (r.done)
        throw new RingworkError(
          'API_BAD_RESPONSE',
          'The API stream ended before [DONE]: the answer is incomplete.',
        );
    }
  } finally {
    // Ended early (break, error) or at [DONE]: let the connection go (a no-op on a finished body).
    await reader.cancel().catch(() => undefined);
  }
}
