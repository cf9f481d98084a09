/**
 * Cross-origin use of the API (`--allow-origin`) and the SDK route, on the real API handler behind a
 * real HTTP server: listed origins get CORS headers on every answer (errors included) under the
 * same key and rate policy; any other page is refused before it costs anything; the SDK module
 * itself is public.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiConfigSchema } from '../../signaling-server/src/api/api-config';
import { createOpenAiApi, type OpenAiApi } from '../../signaling-server/src/api/openai-api';
import { createSdkRoutes, SDK_PATH } from '../../signaling-server/src/api/sdk-routes';
import { loadCatalog } from '../../signaling-server/src/catalog';
import type { Coordinator } from '../../signaling-server/src/coordinator';

const KEY = 'rw-cors-test-key-0123456789';
const ALLOWED = 'https://app.allowed.example';
const OTHER = 'https://evil.example';

let server: Server;
let api: OpenAiApi;
let base: string;
let host: string;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

function call(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const codeOf = (a: Answer): string | undefined =>
  (JSON.parse(a.text) as { error?: { code?: string } }).error?.code;

const POST = JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 4 });

beforeAll(async () => {
  const catalog = await loadCatalog([]);
  const root = mkdtempSync(join(tmpdir(), 'ringwork-sdk-root-'));
  mkdirSync(join(root, 'sdk'));
  writeFileSync(join(root, 'sdk', 'ringwork.js'), 'export const built = true;\n');
  writeFileSync(join(root, 'sdk', 'ringwork-ring-Ab12.js'), 'export const ring = true;\n');
  writeFileSync(join(root, 'secret.js'), 'export const secret = true;\n');
  api = createOpenAiApi({
    // One request a minute: the second POST of a key shows the rate policy is the same cross-origin.
    config: apiConfigSchema.parse({ requestsPerMinute: 1 }),
    catalog,
    // No ring and no local fallback: an admitted POST ends in 503, which costs no model run.
    coordinator: { snapshot: () => ({ models: [], peers: [] }) } as unknown as Pick<Coordinator, 'snapshot'>,
    allowedOrigins: [ALLOWED],
    logger: pino({ level: 'silent' }),
    keys: [KEY],
  });
  const sdk = createSdkRoutes({ root, onError: () => undefined });
  const missing = createSdkRoutes({ root: join(root, 'nothing-built'), onError: () => undefined });
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (api.handles(url.pathname)) api.handle(req, res, url, '127.0.0.1');
    else if (url.pathname === '/missing' + SDK_PATH) missing.handle(req, res, url, '127.0.0.1');
    else if (sdk.handles(url.pathname)) sdk.handle(req, res, url, '127.0.0.1');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  base = `http://${host}`;
});

afterAll(async () => {
  await api?.stop();
  await new Promise((r) => server?.close(r));
});

describe('the API across origins (--allow-origin)', () => {
  it("answers a listed origin's preflight with the methods and headers the SDK sends", async () => {
    const r = await call('OPTIONS', '/v1/chat/completions', {
      origin: ALLOWED,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type',
    });
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(r.headers['access-control-allow-methods']).toContain('POST');
    expect(r.headers['access-control-allow-headers']).toContain('authorization');
    expect(r.headers['access-control-allow-headers']).toContain('content-type');
    expect(r.headers.vary).toBe('Origin');
  });

  it('gives a listed origin CORS headers on answers and on errors, under the same key and rate policy', async () => {
    const models = await call('GET', '/v1/models', { origin: ALLOWED, authorization: `Bearer ${KEY}` });
    expect(models.status).toBe(200);
    expect(models.headers['access-control-allow-origin']).toBe(ALLOWED);
    // No key: refused as any client is, and the page can read why.
    const noKey = await call('GET', '/v1/models', { origin: ALLOWED });
    expect([noKey.status, codeOf(noKey)]).toEqual([401, 'API_UNAUTHORIZED']);
    expect(noKey.headers['access-control-allow-origin']).toBe(ALLOWED);
    const headers = { origin: ALLOWED, authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
    const first = await call('POST', '/v1/completions', headers, POST);
    expect([first.status, codeOf(first)]).toEqual([503, 'API_NO_CAPACITY']);
    const second = await call('POST', '/v1/completions', headers, POST);
    expect([second.status, codeOf(second)]).toEqual([429, 'API_RATE_LIMITED']);
    expect(second.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(Number(second.headers['retry-after'])).toBeGreaterThan(0);
    expect(second.headers['access-control-expose-headers']).toContain('Retry-After');
  });

  it('refuses any other origin with 403 API_ORIGIN_NOT_ALLOWED, no CORS headers, before reading its body', async () => {
    const pre = await call('OPTIONS', '/v1/chat/completions', {
      origin: OTHER,
      'access-control-request-method': 'POST',
    });
    expect(pre.status).toBe(403);
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    const get = await call('GET', '/v1/models', { origin: OTHER, authorization: `Bearer ${KEY}` });
    expect([get.status, codeOf(get)]).toEqual([403, 'API_ORIGIN_NOT_ALLOWED']);
    expect(get.headers['access-control-allow-origin']).toBeUndefined();
    // A "simple" request (text/plain, no preflight) is refused too: a foreign page costs no generation.
    // Its body is never sent here: the answer comes before it, so the API did not wait to read it.
    const simple = await new Promise<Answer>((resolve, reject) => {
      const req = request(
        `${base}/v1/completions`,
        {
          method: 'POST',
          headers: { origin: OTHER, 'content-type': 'text/plain', 'content-length': '100000' },
          agent: false,
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text });
            req.destroy();
          });
        },
      );
      req.on('error', reject);
      req.flushHeaders();
    });
    expect([simple.status, codeOf(simple)]).toEqual([403, 'API_ORIGIN_NOT_ALLOWED']);
    // `Origin: null` (sandboxed frames, file: pages) is no listed origin either.
    const nul = await call('GET', '/v1/models', { origin: 'null', authorization: `Bearer ${KEY}` });
    expect(nul.status).toBe(403);
  });

  it("serves the server's own pages (same origin) and clients without an Origin, without CORS headers", async () => {
    const same = await call('GET', '/v1/models', {
      origin: `http://${host}`,
      authorization: `Bearer ${KEY}`,
    });
    expect(same.status).toBe(200);
    expect(same.headers['access-control-allow-origin']).toBeUndefined();
    const cli = await call('GET', '/v1/models', { authorization: `Bearer ${KEY}` });
    expect(cli.status).toBe(200);
    expect(cli.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('the SDK route', () => {
  it('serves /sdk/ringwork.js to any origin as JavaScript, and says when it is not built', async () => {
    const r = await call('GET', SDK_PATH, { origin: OTHER });
    expect(r.status).toBe(200);
    expect(r.text).toBe('export const built = true;\n');
    expect(r.headers['content-type']).toMatch(/^text\/javascript/);
    expect(r.headers['access-control-allow-origin']).toBe('*');
    expect(r.headers['cross-origin-resource-policy']).toBe('cross-origin');
    const post = await call('POST', SDK_PATH, {}, 'x');
    expect(post.status).toBe(405);
    const missing = await call('GET', '/missing' + SDK_PATH);
    expect(missing.status).toBe(404);
    expect(missing.text).toContain('npm run build');
  });

  it('serves the modules the SDK loads on demand (/sdk/ringwork-*.js) alike, and nothing else', async () => {
    const ring = await call('GET', '/sdk/ringwork-ring-Ab12.js', { origin: OTHER });
    expect(ring.status).toBe(200);
    expect(ring.text).toBe('export const ring = true;\n');
    expect(ring.headers['access-control-allow-origin']).toBe('*');
    expect((await call('GET', '/sdk/ringwork-none.js')).status).toBe(404);
    const routes = createSdkRoutes({ root: 'unused', onError: () => undefined });
    for (const path of [
      '/sdk/../secret.js',
      '/sdk/%2e%2e/secret.js',
      '/sdk/secret.js',
      '/sdk/ringwork-a/b.js',
    ])
      expect(routes.handles(new URL(path, 'http://x').pathname)).toBe(false);
  });
});
