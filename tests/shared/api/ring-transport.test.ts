/**
 * The SDK's ring transport over a real ring: two contributors serving stories260K in two stages
 * (real ORT runners, in-memory signaling and links) and a requester of that ring, read through the
 * OpenAI-shaped client. At temperature 0 the answer is llama2.c's golden text; `ringwork` names the
 * ring's peers and ranges; an abort (or leaving the loop) frees the stages' sessions.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRingTransportClient } from '../../../shared/api/ring-transport';
import { createRingworkClient } from '../../../shared/api/ringwork-client';
import type { ChatCompletionChunk, Completion } from '../../../shared/api/openai-wire';
import type { Contributor } from '../../../shared/app/contributor';
import { isRingworkError } from '../../../shared/errors';
import { loadGolden } from '../../helpers/golden';
import { createFakeSignalingHub } from '../../helpers/memory-signaling';
import { scaled } from '../../helpers/timeouts';
import {
  CAPABILITY,
  STORIES,
  assign,
  contributorOn,
  pid,
  requesterOn,
  ringOf,
  warmUpOrt,
} from '../app/app-fixture';

const GOLDEN = loadGolden().text.trimEnd();
const PROMPT = 'Once upon a time';
const order = [
  { peer: pid('a'), range: [0, 3] as [number, number] },
  { peer: pid('b'), range: [3, 7] as [number, number] },
];

/** The typed error a promise rejects (or an iteration throws) with. */
async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a failure');
}

describe('ring transport (in-memory 2-stage ring, real ORT runners on stories260K)', () => {
  const hub = createFakeSignalingHub();
  let stages: Contributor[] = [];
  const openSessions = () => stages.map((c) => c.store.getState().stats.openSessions);

  beforeAll(async () => {
    await warmUpOrt();
    stages = order.map((s) => contributorOn(hub, s.peer));
    await Promise.all(stages.map((c) => c.start({ capability: CAPABILITY })));
    assign(hub, order, 1);
    for (const c of stages)
      await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    hub.onSend((from, m) => m.type === 'ring-request' && hub.push(from, ringOf(order, 1)));
  });
  afterAll(async () => {
    await Promise.all(stages.map((c) => c.stop()));
  });

  it('streams a completion in OpenAI chunks: the golden text, then finish_reason, usage and ringwork', async () => {
    const rw = createRingTransportClient({ requester: requesterOn(hub, pid('req1')) });
    const stream = await rw.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: Completion[] = [];
    for await (const c of stream) chunks.push(c);
    const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
    expect(PROMPT + text).toBe(GOLDEN);
    expect(chunks.length).toBeGreaterThan(30);
    // Every content chunk says how many tokens are out; the counts only grow.
    const counts = chunks.filter((c) => c.choices[0]?.text).map((c) => c.ringwork?.generated ?? -1);
    expect(counts.every((n, i) => n >= 1 && n >= (counts[i - 1] ?? 0))).toBe(true);
    const [finish, usage] = chunks.slice(-2);
    expect(finish!.choices[0]).toMatchObject({ text: '', finish_reason: 'length' });
    expect(finish!.ringwork).toMatchObject({
      securityLevel: 1,
      validated: false,
      path: 'ring',
      ringId: 'r1',
      servedBy: order,
      peers: order.map((s) => s.peer),
      failovers: [],
      stats: { end: 'max-tokens', contextLength: STORIES.contextLength },
    });
    expect(finish!.ringwork!.stats!.decodeTokPerS).toBeGreaterThan(0);
    expect(usage!.choices).toEqual([]);
    expect(usage!.usage).toEqual({ prompt_tokens: 5, completion_tokens: 60, total_tokens: 65 });
  });

  it('chat: a whole answer (the story as printed with echoPrompt), a role chunk first when streamed, stop strings cut', async () => {
    const rw = createRingTransportClient({ requester: requesterOn(hub, pid('req2')) });
    const messages = [{ role: 'user' as const, content: PROMPT }];
    // 20 tokens (the whole golden run is the test above): the story from its prompt on, as printed.
    const whole = await rw.chat.completions.create({
      model: 'stories260K',
      messages,
      max_tokens: 20,
      temperature: 0,
      ringwork: { echoPrompt: true },
    });
    expect(whole.object).toBe('chat.completion');
    const story = whole.choices[0]!.message.content;
    expect(story.length).toBeGreaterThan(PROMPT.length + 40);
    expect(GOLDEN.startsWith(story)).toBe(true);
    expect(whole.usage.completion_tokens).toBe(20);
    expect(whole.ringwork).toMatchObject({ path: 'ring', servedBy: order });

    const stream = await rw.chat.completions.create({
      model: 'stories260K',
      messages,
      max_tokens: 60,
      temperature: 0,
      stop: ['.'],
      stream: true,
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    const continuation = GOLDEN.slice(PROMPT.length);
    expect(text).toBe(continuation.slice(0, continuation.indexOf('.')));
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    await vi.waitFor(() => expect(openSessions()).toEqual([0, 0]));
  });

  it('an abort mid-stream ends the iteration with ABORTED and frees every stage’s session; leaving the loop does too', async () => {
    const rw = createRingTransportClient({ requester: requesterOn(hub, pid('req3')) });
    const ac = new AbortController();
    const stream = await rw.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 400,
      temperature: 0,
      stream: true,
      signal: ac.signal,
    });
    let seen = 0;
    let during: number[] = [];
    const err = await failure(
      (async () => {
        for await (const c of stream) {
          if (c.choices[0]?.text) seen++;
          if (seen === 10) {
            during = openSessions();
            ac.abort();
          }
        }
      })(),
    );
    expect(isRingworkError(err) && err.code).toBe('ABORTED');
    expect(seen).toBe(10);
    expect(during).toEqual([1, 1]);
    await vi.waitFor(() => expect(openSessions()).toEqual([0, 0]), { timeout: scaled(5000) });

    const again = await rw.chat.completions.create({
      model: 'stories260K',
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 400,
      stream: true,
    });
    for await (const c of again) if (c.ringwork?.generated === 5) break;
    await vi.waitFor(() => expect(openSessions()).toEqual([0, 0]), { timeout: scaled(5000) });
  });

  it('bad requests are typed errors before the ring is asked; no ring and no room here is NO_RING from create', async () => {
    const rw = createRingTransportClient({ requester: requesterOn(hub, pid('req4')) });
    const chat = (p: object) =>
      failure(
        rw.chat.completions.create({
          model: 'stories260K',
          messages: [{ role: 'user', content: PROMPT }],
          ...p,
        }),
      );
    expect(await chat({ temperature: -1 })).toMatchObject({
      code: 'INVALID_ARGUMENT',
      details: { param: 'temperature' },
    });
    expect(await chat({ messages: [] })).toMatchObject({
      code: 'INVALID_ARGUMENT',
      details: { param: 'messages' },
    });
    expect(await chat({ messages: [{ role: 'assistant', content: 'hi' }] })).toMatchObject({
      code: 'INVALID_ARGUMENT',
      details: { param: 'messages' },
    });
    expect(await chat({ n: 2 })).toMatchObject({ code: 'API_UNSUPPORTED', details: { param: 'n' } });
    expect(await chat({ ringwork: { security: 7 } })).toMatchObject({ code: 'INVALID_ARGUMENT' });
    // Spot checks are a mode of k = 2 only, with 0 < f <= 1.
    expect(await chat({ ringwork: { spot: {} } })).toMatchObject({
      code: 'INVALID_ARGUMENT',
      details: { param: 'ringwork.spot' },
    });
    expect(await chat({ ringwork: { security: 3, spot: {} } })).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await chat({ ringwork: { security: 2, spot: { f: 0 } } })).toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    expect(await failure(rw.models.list())).toMatchObject({ code: 'API_UNSUPPORTED' });

    const empty = createFakeSignalingHub();
    empty.onSend(
      (from, m) =>
        m.type === 'ring-request' &&
        empty.push(from, {
          type: 'no-ring',
          model: 'stories260K',
          reason: 'no contributors',
          descriptor: STORIES,
          totalBytes: 3e9,
        }),
    );
    const none = createRingTransportClient({
      requester: requesterOn(empty, pid('req5'), { localMemoryBytes: () => 0 }),
    });
    const e = await failure(
      none.chat.completions.create({
        model: 'stories260K',
        messages: [{ role: 'user', content: PROMPT }],
        stream: true,
      }),
    );
    expect(e).toMatchObject({ code: 'NO_RING', details: { missingBytes: 3e9 } });
  });

  it('the HTTP transport refuses ring-only options before sending anything (a security level it cannot promise)', async () => {
    let sent = 0;
    const http = createRingworkClient({
      server: 'http://127.0.0.1:9',
      fetch: () => {
        sent++;
        return Promise.reject(new Error('not reached'));
      },
    });
    const e = await failure(
      http.chat.completions.create({
        model: 'stories260K',
        messages: [{ role: 'user', content: PROMPT }],
        ringwork: { security: 2 },
      }),
    );
    expect(e).toMatchObject({ code: 'API_UNSUPPORTED', details: { param: 'ringwork' } });
    expect(sent).toBe(0);
  });
});
