/**
 * The API's shared wire pieces: the SSE decoder the SDK reads streams with, and the error mapping
 * both ends use (a code leaves the server in OpenAI's body and comes back as the same code).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apiErrorFromBody, openAiErrorBody, sseData, SSE_DONE } from '../../../shared/api/openai-wire';
import { createSseDecoder, MAX_SSE_EVENT_CHARS, readSseData } from '../../../shared/api/sse';
import { ERROR_CODES, isRingworkError, RingworkError } from '../../../shared/errors';

/** A byte stream of `parts`, recording whether it was cancelled. */
function bytes(parts: string[]) {
  const enc = new TextEncoder();
  let i = 0;
  const state = { cancelled: false };
  return {
    state,
    getReader: () => ({
      read: async () => (i < parts.length ? { done: false, value: enc.encode(parts[i++]) } : { done: true }),
      cancel: async () => {
        state.cancelled = true;
      },
    }),
  };
}

async function collect(parts: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const d of readSseData(bytes(parts))) out.push(d);
  return out;
}

describe('SSE decoding', () => {
  it('decodes events however the bytes are split, with CRLF, CR or LF line ends', async () => {
    const events = [{ a: 1 }, { b: 'two\nlines' }, { c: 'ü 日本' }];
    const text = events.map(sseData).join('') + SSE_DONE;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.nat(text.length), { maxLength: 8 }),
        fc.constantFrom('\n', '\r\n', '\r'),
        async (cuts, eol) => {
          const t = text.replace(/\n/g, eol);
          const at = [...new Set(cuts.map((c) => Math.min(c, t.length)))].sort((x, y) => x - y);
          const parts = [0, ...at].map((s, k) => t.slice(s, at[k] ?? t.length)).filter((p) => p !== '');
          expect((await collect(parts)).map((d) => JSON.parse(d) as unknown)).toEqual(events);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('skips comments and other fields, joins multi-line data, and splits UTF-8 across chunks', async () => {
    const d = createSseDecoder();
    expect(d.push(': keep-alive\nevent: x\nid: 3\ndata: one\ndata:two\n\n')).toEqual(['one\ntwo']);
    const enc = new TextEncoder().encode('data: 日本\n\ndata: [DONE]\n\n');
    // Cut inside the multi-byte character.
    const parts = [enc.slice(0, 8), enc.slice(8)];
    let i = 0;
    const out: string[] = [];
    for await (const x of readSseData({
      getReader: () => ({
        read: async () => (i < parts.length ? { done: false, value: parts[i++] } : { done: true }),
        cancel: async () => undefined,
      }),
    }))
      out.push(x);
    expect(out).toEqual(['日本']);
  });

  it('a stream cut before [DONE] fails with API_BAD_RESPONSE; leaving the loop early cancels the body', async () => {
    const err = await collect([sseData({ a: 1 })]).catch((e: unknown) => e);
    expect(isRingworkError(err, 'API_BAD_RESPONSE')).toBe(true);
    const b = bytes([sseData({ a: 1 }), sseData({ a: 2 }), SSE_DONE]);
    for await (const _ of readSseData(b)) break;
    expect(b.state.cancelled).toBe(true);
  });

  it('refuses an event larger than any API chunk instead of buffering it', () => {
    const d = createSseDecoder();
    expect(() => d.push('data: ' + 'x'.repeat(MAX_SSE_EVENT_CHARS + 1))).toThrow(RingworkError);
    const e = createSseDecoder();
    const line = 'data: ' + 'x'.repeat(MAX_SSE_EVENT_CHARS / 2) + '\n';
    expect(() => e.push(line + line + line)).toThrow(/larger than any API chunk/);
  });
});

describe('API errors across the wire', () => {
  it('every code the server sends comes back as the same code, with status, param and Retry-After', () => {
    for (const code of ERROR_CODES) {
      const sent = new RingworkError(code, `m-${code}`, { details: { param: 'messages' } });
      const { status, body } = openAiErrorBody(sent);
      const back = apiErrorFromBody(status, JSON.parse(JSON.stringify(body)), '7');
      expect(back.code).toBe(code);
      expect(back.message).toBe(`m-${code}`);
      expect(back.details).toMatchObject({ status, param: 'messages', retryAfterS: 7 });
    }
  });

  it('statuses map to their codes when a body is not the API’s; unknown codes are kept as remoteCode', () => {
    expect(apiErrorFromBody(429, '<html>').code).toBe('API_RATE_LIMITED');
    expect(apiErrorFromBody(401, undefined).code).toBe('API_UNAUTHORIZED');
    expect(apiErrorFromBody(502, {}).code).toBe('SERVER_INTERNAL');
    expect(apiErrorFromBody(418, null).code).toBe('API_BAD_RESPONSE');
    const openai = apiErrorFromBody(400, {
      error: { message: 'x', type: 'invalid_request_error', code: 'context_length_exceeded', param: null },
    });
    expect([openai.code, openai.details.remoteCode]).toEqual(['INVALID_ARGUMENT', 'context_length_exceeded']);
    // A non-Ringwork error on the server is a 500 without its internals.
    expect(openAiErrorBody(new Error('secret path /etc')).body.error).toMatchObject({
      code: 'SERVER_INTERNAL',
      message: expect.not.stringContaining('/etc') as unknown,
    });
  });
});
