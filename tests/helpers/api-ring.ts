/**
 * The OpenAI API checks that the ring-path tests share (one server, or a cluster asked on the
 * instance that holds none of the ring): golden text streamed and not, and a client that walks away
 * mid-stream frees its sessions on every stage.
 */
import type OpenAI from 'openai';
import { expect } from 'vitest';
import { loadGolden } from './golden';
import { scaled, waitUntil } from './timeouts';

const GOLDEN = loadGolden().text;
/** The golden prompt (llama2.c's reference run). */
export const API_PROMPT = 'Once upon a time';

/**
 * A 60-token greedy completion: prompt + completion is the golden text, usage counts every token,
 * and a ring of `stages` peers served it. Returns the ring's steps served meanwhile, as counted by
 * `stepsServed` (the contributors' own stats).
 */
export async function expectGoldenCompletion(
  client: OpenAI,
  stepsServed: () => number,
  stages = 2,
): Promise<number> {
  const before = stepsServed();
  const r = await client.completions.create({
    model: 'stories260K',
    prompt: API_PROMPT,
    max_tokens: 60,
    temperature: 0,
  });
  expect(API_PROMPT + r.choices[0]!.text).toBe(GOLDEN.trimEnd());
  expect(r.usage).toEqual({ prompt_tokens: 5, completion_tokens: 60, total_tokens: 65 });
  const rw = (r as unknown as { ringwork: { path: string; servedBy: { peer: string }[] } }).ringwork;
  expect(rw.path).toBe('ring');
  expect(rw.servedBy.length).toBe(stages);
  const served = stepsServed() - before;
  expect(served).toBeGreaterThanOrEqual(60);
  return served;
}

/** A streamed greedy chat completion: the pieces add up to the golden text. */
export async function expectGoldenChatStream(client: OpenAI): Promise<void> {
  const stream = await client.chat.completions.create({
    model: 'stories260K',
    messages: [{ role: 'user', content: API_PROMPT }],
    max_tokens: 60,
    temperature: 0,
    stream: true,
  });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
  expect(API_PROMPT + text).toBe(GOLDEN.trimEnd());
}

/**
 * Starts a long sampled stream, walks away after 5 chunks, and waits until the stages hold no
 * session (`openSessions` counts them over every contributor).
 */
export async function expectAbandonedStreamFreed(client: OpenAI, openSessions: () => number): Promise<void> {
  const ac = new AbortController();
  const stream = await client.completions.create(
    { model: 'stories260K', prompt: API_PROMPT, max_tokens: 400, temperature: 0.8, stream: true },
    { signal: ac.signal },
  );
  let chunks = 0;
  let during = 0;
  try {
    for await (const _ of stream) {
      if (++chunks === 5) {
        during = openSessions();
        ac.abort();
      }
    }
  } catch {
    /* the client may end the iteration with an abort error */
  }
  expect(chunks).toBe(5);
  expect(during).toBeGreaterThan(0);
  await waitUntil('ring sessions released', () => openSessions() === 0, { timeoutMs: scaled(10_000) });
}
