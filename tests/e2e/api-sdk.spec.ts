/**
 * The browser SDK across origins: a page served from another origin (a second tiny HTTP server on
 * another loopback port) imports `/sdk/ringwork.js` from the Ringwork server and streams a chat
 * answer through it. With its origin listed (`--allow-origin`) the answer at temperature 0 is the
 * golden text; a page from an origin that is not listed gets a typed RingworkError from the SDK
 * (the browser's CORS refusal, which a page cannot tell from a network failure: API_UNREACHABLE).
 * The server runs the model itself (`--api-local-fallback`); the ring path is api-swarm.spec.ts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect, type Page } from '@playwright/test';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { loadGolden } from '../helpers/golden';
import { scaled } from '../helpers/timeouts';

const GOLDEN = loadGolden().text.trimEnd();
const PROMPT = 'Once upon a time';
const KEY = 'rw-e2e-sdk-key-0123456789abcdef';

/** The other site's page: imports the SDK from the server named in its query and streams a chat. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>another site</title>
<script type="module">
const q = new URLSearchParams(location.search);
const server = q.get('server');
try {
  const { createRingworkClient, RingworkError } = await import(server + '/sdk/ringwork.js');
  const rw = createRingworkClient({ server, apiKey: q.get('key') });
  try {
    const stream = await rw.chat.completions.create({
      model: 'stories260K',
      messages: [{ role: 'user', content: ${JSON.stringify(PROMPT)} }],
      max_tokens: 60,
      temperature: 0,
      stream: true,
    });
    let text = '';
    let chunks = 0;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      chunks++;
    }
    window.result = { ok: true, text, chunks };
  } catch (e) {
    window.result = { ok: false, typed: e instanceof RingworkError, code: e.code, message: e.message };
  }
} catch (e) {
  window.result = { ok: false, importFailed: String(e) };
}
</script>`;

interface PageResult {
  ok: boolean;
  text?: string;
  chunks?: number;
  typed?: boolean;
  code?: string;
  importFailed?: string;
}

/** A static server for {@link PAGE} on a free loopback port: another origin than the Ringwork server. */
async function pageServer(): Promise<{ server: Server; origin: string }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function run(page: Page, origin: string, ringwork: SpawnedServer): Promise<PageResult> {
  await page.goto(`${origin}/?server=${encodeURIComponent(ringwork.url)}&key=${KEY}`);
  await page.waitForFunction(() => (window as unknown as { result?: unknown }).result !== undefined, null, {
    timeout: scaled(30_000),
  });
  return page.evaluate(() => (window as unknown as { result: PageResult }).result);
}

test('a page of a listed origin streams the golden text through /sdk/ringwork.js; another origin gets a typed error', async ({
  page,
}) => {
  // Server start and model load included; the page's own part takes well under that.
  test.setTimeout(scaled(90_000));
  const [allowed, refused] = await Promise.all([pageServer(), pageServer()]);
  const dir = mkdtempSync(join(tmpdir(), 'ringwork-e2e-sdk-'));
  writeFileSync(join(dir, 'keys.txt'), `${KEY}\n`);
  const ringwork = await spawnServer([
    '--api-local-fallback',
    '--api-keys',
    join(dir, 'keys.txt'),
    '--allow-origin',
    allowed.origin,
  ]);
  try {
    // The server's engine thread loads the model on its first request: a one-token request from here
    // first, so the page's budget is the SDK's stream, not the model load.
    const warm = await fetch(`${ringwork.url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: PROMPT, max_tokens: 1 }),
    });
    expect(warm.status).toBe(200);
    const ok = await run(page, allowed.origin, ringwork);
    expect(ok.importFailed).toBeUndefined();
    expect(ok).toMatchObject({ ok: true });
    expect(PROMPT + ok.text).toBe(GOLDEN);
    expect(ok.chunks).toBeGreaterThan(30);

    const no = await run(page, refused.origin, ringwork);
    // The SDK module itself is public; what the page may call is the API's policy.
    expect(no.importFailed).toBeUndefined();
    expect(no).toMatchObject({ ok: false, typed: true, code: 'API_UNREACHABLE' });
  } finally {
    await ringwork.stop();
    allowed.server.close();
    refused.server.close();
  }
});
