/**
 * The SDK's client (shared/api/ringwork-client.ts, served to browsers as `/sdk/ringwork.js`) against
 * the real server process with `--api-local-fallback`: streamed and whole answers equal the golden
 * text at temperature 0, every failure is a RingworkError with the server's code, and an abort
 * mid-stream ends the stream with ABORTED and frees the server's slot. (The browser side, across
 * origins, is tests/e2e/api-sdk.spec.ts.)
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRingworkClient, type RingworkClient } from '../../shared/api/ringwork-client';
import { isRingworkError } from '../../shared/errors';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { loadGolden } from '../helpers/golden';
import { scaled, waitUntil } from '../helpers/timeouts';

const GOLDEN = loadGolden().text.trimEnd();
const PROMPT = 'Once upon a time';
const KEY = 'rw-sdk-test-key-0123456789abcdef';

let server: SpawnedServer;
let rw: RingworkClient;

const codeOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'resolved',
    (e: unknown) => (isRingworkError(e) ? e.code : `not a RingworkError: ${String(e)}`),
  );

function apiStreams(): Promise<number> {
  return new Promise((resolve, reject) => {
    get(`${server.url}/healthz`, { agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve((JSON.parse(text) as { apiStreams: number }).apiStreams));
    }).on('error', reject);
  });
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ringwork-sdk-'));
  writeFileSync(join(dir, 'keys.txt'), `${KEY}\n`);
  server = await spawnServer(['--api-local-fallback', '--api-keys', join(dir, 'keys.txt')]);
  rw = createRingworkClient({ server: server.url, apiKey: KEY });
}, scaled(60_000));

afterAll(async () => {
  await server?.stop();
});

describe('the SDK client against the real server', () => {
  it('streams a chat answer chunk by chunk: prompt + text is the golden text', async () => {
    const stream = await rw.chat.completions.create({
      model: 'stories260K',
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 60,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let chunks = 0;
    let usage;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      usage = c.usage ?? usage;
      chunks++;
    }
    expect(PROMPT + text).toBe(GOLDEN);
    expect(chunks).toBeGreaterThan(30);
    expect(usage).toEqual({ prompt_tokens: 5, completion_tokens: 60, total_tokens: 65 });
  });

  it('whole answers, completions streamed, and the model list', async () => {
    const whole = await rw.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
    });
    expect(PROMPT + whole.choices[0]!.text).toBe(GOLDEN);
    expect(whole.ringwork?.path).toBe('server');
    let text = '';
    for await (const c of await rw.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
      stream: true,
    }))
      text += c.choices[0]?.text ?? '';
    expect(PROMPT + text).toBe(GOLDEN);
    const chat = await rw.chat.completions.create({
      model: 'stories260K',
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 20,
      temperature: 0,
    });
    expect(GOLDEN.startsWith(PROMPT + chat.choices[0]!.message.content)).toBe(true);
    const models = await rw.models.list();
    expect(models.data.find((m) => m.id === 'stories260K')?.ringwork).toMatchObject({
      contextLength: 512,
      localFallback: true,
    });
  });

  it("every failure is a RingworkError with the server's code", async () => {
    const chat = (p: Record<string, unknown>) =>
      rw.chat.completions.create({
        model: 'stories260K',
        messages: [{ role: 'user', content: 'x' }],
        ...p,
      } as Parameters<RingworkClient['chat']['completions']['create']>[0]);
    expect(await codeOf(chat({ model: 'nope' }))).toBe('API_MODEL_NOT_FOUND');
    expect(await codeOf(chat({ messages: [] }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(chat({ temperature: -1 }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(chat({ max_tokens: 100_000 }))).toBe('API_CONTEXT_EXCEEDED');
    expect(await codeOf(chat({ n: 2 }))).toBe('API_UNSUPPORTED');
    const anonymous = createRingworkClient({ server: server.url });
    expect(await codeOf(anonymous.models.list())).toBe('API_UNAUTHORIZED');
    // A port nobody listens on (the server's own, once stopped, would race): the discard port.
    expect(await codeOf(createRingworkClient({ server: 'http://127.0.0.1:9' }).models.list())).toBe(
      'API_UNREACHABLE',
    );
    expect(() => createRingworkClient({ server: 'ftp://x' })).toThrow(/http\(s\) URL/);
  });

  it('an abort mid-stream ends the stream with ABORTED and frees the server slot', async () => {
    const ac = new AbortController();
    const stream = await rw.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 400,
      temperature: 0.8,
      stream: true,
      signal: ac.signal,
    });
    let chunks = 0;
    const ended = (async () => {
      for await (const _ of stream) if (++chunks === 3) ac.abort();
    })();
    expect(await codeOf(ended)).toBe('ABORTED');
    expect(chunks).toBe(3);
    await waitUntil('the server freed the stream', async () => (await apiStreams()) === 0, {
      timeoutMs: scaled(10_000),
    });
    // Aborted before it was sent: nothing reaches the server.
    expect(await codeOf(rw.models.list({ signal: AbortSignal.abort() }))).toBe('ABORTED');
    // Leaving the loop early (break) closes the connection too.
    const again = await rw.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 400,
      stream: true,
    });
    for await (const _ of again) break;
    await waitUntil('the server freed the stream after a break', async () => (await apiStreams()) === 0, {
      timeoutMs: scaled(10_000),
    });
  });
});
