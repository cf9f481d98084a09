/**
 * The OpenAI-compatible API, driven by the official `openai` npm client against the real server
 * process (`--api-local-fallback`: the server's own engine in a worker thread). At temperature 0
 * the continuation of the golden prompt is llama2.c's exact text.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { get, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { loadGolden } from '../helpers/golden';
import { scaled } from '../helpers/timeouts';

const GOLDEN = loadGolden().text;
const PROMPT = 'Once upon a time';
const KEY = 'rw-test-key-0123456789abcdef';

let server: SpawnedServer;
/** A server with a small stream cap and sockets enough for a burst from one address. */
let busy: SpawnedServer;
let client: OpenAI;

/** A raw HTTP request (the client library cannot send malformed bodies). */
function raw(
  path: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: { error?: { code: string; type: string; param: string | null } } }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}${path}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text || '{}') }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `/healthz` on a fresh connection (a pooled keep-alive one may be closed by the server meanwhile). */
function health(on: SpawnedServer = server): Promise<{ apiStreams: number }> {
  return new Promise((resolve, reject) => {
    get(`${on.url}/healthz`, { agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(JSON.parse(text) as { apiStreams: number }));
    }).on('error', reject);
  });
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ringwork-api-'));
  const keys = join(dir, 'keys.txt');
  writeFileSync(keys, `# test keys\n${KEY}\n\n`);
  [server, busy] = await Promise.all([
    // A ledger (--data-dir): the key's usage is recorded and shown by /v1/usage.
    spawnServer(['--api-local-fallback', '--api-keys', keys, '--data-dir', join(dir, 'db')]),
    spawnServer([
      '--api-local-fallback',
      '--api-keys',
      keys,
      '--api-max-streams',
      '8',
      '--api-max-streams-per-key',
      '1000',
      '--api-requests-per-minute',
      '100000',
      '--max-sockets-per-ip',
      '2000',
      '--max-http-sockets',
      '2000',
    ]),
  ]);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: scaled(60_000) });
}, scaled(60_000));

afterAll(async () => {
  await Promise.all([server?.stop(), busy?.stop()]);
});

describe('OpenAI-compatible API (official client, real server process)', () => {
  it('lists the catalog with context length and whether a ring serves it', async () => {
    const list = await client.models.list();
    const m = list.data.find((x) => x.id === 'stories260K') as unknown as {
      ringwork: { contextLength: number; ringServing: boolean; units: number };
    };
    expect(m.ringwork).toMatchObject({ contextLength: 512, ringServing: false, units: 7 });
  });

  it('completions at temperature 0: prompt + completion is the golden text', async () => {
    const r = await client.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
    });
    expect(PROMPT + r.choices[0]!.text).toBe(GOLDEN.trimEnd());
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage).toEqual({ prompt_tokens: 5, completion_tokens: 60, total_tokens: 65 });
    expect((r as unknown as { ringwork: { path: string } }).ringwork.path).toBe('server');
  });

  it("the ledger records each key's usage; /v1/usage shows the caller's own (by key hash, never the key)", async () => {
    const usageOf = async (url: string, key?: string) => {
      const r = await fetch(`${url}/v1/usage`, key ? { headers: { authorization: `Bearer ${key}` } } : {});
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const before = await usageOf(server.url, KEY);
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({ object: 'ringwork.usage', ledger: true });
    expect(before.body.principal).toMatch(/^key:[0-9a-f]{8}$/);
    expect(JSON.stringify(before.body)).not.toContain(KEY);
    const r = await client.completions.create({ model: 'stories260K', prompt: PROMPT, max_tokens: 7 });
    await vi.waitFor(
      async () => {
        const after = (await usageOf(server.url, KEY)).body;
        expect(after.requests).toBe((before.body.requests as number) + 1);
        expect(after.prompt_tokens).toBe((before.body.prompt_tokens as number) + r.usage!.prompt_tokens);
        expect(after.completion_tokens).toBe(
          (before.body.completion_tokens as number) + r.usage!.completion_tokens,
        );
      },
      { timeout: scaled(10_000) },
    );
    expect((await usageOf(server.url)).status).toBe(401);
    // A server without a ledger says so instead of inventing numbers.
    expect((await usageOf(busy.url, KEY)).body).toMatchObject({ ledger: false });
  });

  it('completions streamed: the same text, chunk by chunk, then [DONE]', async () => {
    const stream = await client.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
      stream: true,
    });
    let text = '';
    let chunks = 0;
    let finish: string | null = null;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
      chunks++;
    }
    expect(PROMPT + text).toBe(GOLDEN.trimEnd());
    expect(chunks).toBeGreaterThan(30);
    expect(finish).toBe('length');
  });

  it('chat completions, plain and streamed with usage; a model without a template continues the text', async () => {
    const messages = [{ role: 'user' as const, content: PROMPT }];
    const plain = await client.chat.completions.create({
      model: 'stories260K',
      messages,
      max_tokens: 20,
      temperature: 0,
    });
    const stream = await client.chat.completions.create({
      model: 'stories260K',
      messages,
      max_tokens: 20,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: unknown = null;
    let role: string | undefined;
    for await (const c of stream) {
      role ??= c.choices[0]?.delta.role;
      text += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(plain.choices[0]!.message.content).toBe(text);
    expect(GOLDEN.startsWith(PROMPT + text)).toBe(true);
    expect(role).toBe('assistant');
    expect(usage).toEqual({ prompt_tokens: 5, completion_tokens: 20, total_tokens: 25 });
  });

  it('stop strings end the answer before the stop text; seeded sampling repeats', async () => {
    const r = await client.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
      stop: ['Lily'],
    });
    const cut = GOLDEN.indexOf('Lily') - PROMPT.length;
    expect(r.choices[0]!.text).toBe(GOLDEN.slice(PROMPT.length, PROMPT.length + cut));
    expect(r.choices[0]!.finish_reason).toBe('stop');
    const a = await client.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 30,
      temperature: 0.8,
      seed: 42,
    });
    const b = await client.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 30,
      temperature: 0.8,
      seed: 42,
    });
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
  });

  it('bad input: typed OpenAI-shaped errors with the right status, and the server keeps serving', async () => {
    const cases: Array<[string, string | Buffer, number, string, Record<string, string>?]> = [
      [
        '/v1/chat/completions',
        JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
        404,
        'API_MODEL_NOT_FOUND',
      ],
      [
        '/v1/chat/completions',
        JSON.stringify({ model: 'stories260K', messages: [] }),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        '/v1/chat/completions',
        JSON.stringify({ model: 'stories260K', messages: [{ role: 'wizard', content: 'x' }] }),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        '/v1/completions',
        JSON.stringify({ model: 'stories260K', prompt: 'x', max_tokens: 100_000 }),
        400,
        'API_CONTEXT_EXCEEDED',
      ],
      [
        '/v1/completions',
        JSON.stringify({ model: 'stories260K', prompt: 'x', temperature: -1 }),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        '/v1/completions',
        JSON.stringify({ model: 'stories260K', prompt: 'x', n: 2 }),
        400,
        'API_UNSUPPORTED',
      ],
      [
        '/v1/chat/completions',
        JSON.stringify({
          model: 'stories260K',
          messages: [{ role: 'user', content: 'x' }],
          tools: [{ type: 'function' }],
        }),
        400,
        'API_UNSUPPORTED',
      ],
      ['/v1/completions', '{"model": ', 400, 'INVALID_ARGUMENT'],
      ['/v1/completions', Buffer.alloc(10 * 1024 * 1024, 0x20), 413, 'API_BODY_TOO_LARGE'],
      [
        '/v1/completions',
        JSON.stringify({ model: 'stories260K', prompt: 'x' }),
        401,
        'API_UNAUTHORIZED',
        { authorization: 'Bearer wrong-key-0123456789' },
      ],
      [
        '/v1/completions',
        JSON.stringify({ model: 'stories260K', prompt: 'x' }),
        401,
        'API_UNAUTHORIZED',
        { authorization: '' },
      ],
    ];
    for (const [path, body, status, code, headers] of cases) {
      const r = await raw(path, body, headers);
      expect({ path, status: r.status, code: r.json.error?.code }).toEqual({ path, status, code });
    }
    // Fields that do not change the output, and fields newer clients add, are ignored (README).
    const ignored = await raw(
      '/v1/completions',
      JSON.stringify({
        model: 'stories260K',
        prompt: PROMPT,
        max_tokens: 5,
        temperature: 0,
        user: 'someone',
        metadata: { app: 'x' },
        store: false,
        a_field_from_the_future: { x: 1 },
        tools: [],
        frequency_penalty: 0,
      }),
    );
    expect(ignored.status).toBe(200);
    const ok = await client.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 5,
      temperature: 0,
    });
    expect(ok.choices[0]!.text.length).toBeGreaterThan(0);
  });

  it('a client that goes away mid-stream stops its generation and frees its slot', async () => {
    const ctl = new AbortController();
    const first = await client.completions.create(
      { model: 'stories260K', prompt: PROMPT, max_tokens: 400, temperature: 0, stream: true },
      { signal: ctl.signal },
    );
    for await (const _ of first) break; // one chunk, then the client hangs up
    ctl.abort();
    await vi.waitFor(async () => expect((await health()).apiStreams).toBe(0), {
      timeout: scaled(10_000),
      interval: 50,
    });
    const after = await client.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 5,
      temperature: 0,
    });
    expect(after.choices[0]!.finish_reason).toBe('length');
  });

  it('1,000 concurrent requests: at most the stream cap run, the excess get 429, every answer is right', async () => {
    const body = JSON.stringify({ model: 'stories260K', prompt: PROMPT, max_tokens: 20, temperature: 0 });
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, (await health(busy)).apiStreams);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const results = await Promise.all(
      Array.from({ length: 1000 }, () =>
        fetch(`${busy.url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
          body,
        }).then(async (r) => ({ status: r.status, json: (await r.json()) as Record<string, unknown> })),
      ),
    );
    sampling = false;
    await sampler;
    const statuses = new Map<number, number>();
    for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    expect([...statuses.keys()].sort()).toEqual([200, 429]);
    expect(statuses.get(429)!).toBeGreaterThan(500);
    expect(peak).toBeLessThanOrEqual(8);
    const expected = GOLDEN.slice(PROMPT.length);
    for (const r of results) {
      if (r.status === 200) {
        const text = (r.json as { choices: Array<{ text: string }> }).choices[0]!.text;
        expect(expected.startsWith(text) && text.length > 0).toBe(true);
      } else expect((r.json as { error: { code: string } }).error.code).toBe('API_RATE_LIMITED');
    }
    expect((await health(busy)).apiStreams).toBe(0);
  });
});
