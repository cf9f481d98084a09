/**
 * The OpenAI API through a 2-contributor Chromium swarm: the real server (no local fallback), two
 * contributor pages whose declared memory forces a 2-stage ring (as `npm run swarm` declares it),
 * and the official `openai` client asking the server. The server drives the ring over the two
 * pages' signaling sockets (`api-link`); the pages' stages talk WebRTC to each other. At
 * temperature 0 the prompt plus the completion is llama2.c's text.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect } from '@playwright/test';
import OpenAI from 'openai';
import { spawnServer } from '../../tools/testing/spawn-server';
import { SWARM_TFLOPS } from '../../tools/swarm/swarm-capability';
import { stories260KSplitMemory } from '../helpers/split-memory';
import { loadGolden } from '../helpers/golden';
import { scaled, TIMEOUTS, waitUntil } from '../helpers/timeouts';

const GOLDEN = loadGolden().text;
const PROMPT = 'Once upon a time';
const KEY = 'rw-e2e-api-key-0123456789abcdef';

test('the OpenAI API through a 2-contributor Chromium swarm gives the golden text', async ({ browser }) => {
  test.setTimeout(TIMEOUTS.swarmRun + scaled(60_000));
  const dir = mkdtempSync(join(tmpdir(), 'ringwork-e2e-api-'));
  writeFileSync(join(dir, 'keys.txt'), `${KEY}\n`);
  const server = await spawnServer(['--api-keys', join(dir, 'keys.txt'), '--category-c-below-tflops', '0']);
  try {
    const memory = await stories260KSplitMemory(2);
    for (let i = 0; i < 2; i++) {
      // As the swarm does: without media permission Chromium gathers ICE candidates only on the
      // default-route address, which the loopback-only namespace lacks, and no DataChannel opens.
      const context = await browser.newContext();
      await context.grantPermissions(['camera', 'microphone'], { origin: server.url });
      const page = await context.newPage();
      await page.goto(`${server.url}/#/contribute?join=1&tflops=${SWARM_TFLOPS}&gbps=100&memory=${memory}`);
    }
    const client = new OpenAI({
      baseURL: `${server.url}/v1`,
      apiKey: KEY,
      maxRetries: 0,
      timeout: scaled(90_000),
    });
    interface Models {
      data: { id: string; ringwork: { ringServing: boolean } }[];
    }
    await waitUntil(
      'a ring of the two pages serving stories260K',
      async () =>
        ((await client.models.list()) as unknown as Models).data.find((m) => m.id === 'stories260K')?.ringwork
          .ringServing === true,
      { timeoutMs: scaled(90_000), intervalMs: 500 },
    );
    // The pages may still be loading their shards: the requester retries a ring that is not serving yet.
    const r = await client.completions.create({
      model: 'stories260K',
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
    });
    expect(PROMPT + r.choices[0]!.text).toBe(GOLDEN.trimEnd());
    const rw = (r as unknown as { ringwork: { path: string; servedBy: unknown[] } }).ringwork;
    expect(rw.path).toBe('ring');
    expect(rw.servedBy).toHaveLength(2);
  } finally {
    await server.stop();
  }
});
