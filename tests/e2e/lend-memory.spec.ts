/**
 * Sharding you can see on one machine, as the README tells it: a server started with
 * `--category-c-below-tflops 0` (CPU-class tabs may take shards), three Contribute tabs each lending
 * 0.8 MB through the page's "memory to lend" field (stories260K with its KV cache needs 1.83 MB, so
 * no two of them can hold it) are planned as a 3-stage ring that a chat tab sees.
 */
import { test, expect, type BrowserContext, type Page } from '@playwright/test';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { askGolden, serving } from './app-helpers';
import { loadGolden } from '../helpers/golden';
import { TIMEOUTS } from '../helpers/timeouts';

const golden = loadGolden();
let server: SpawnedServer;
test.beforeAll(async () => {
  server = await spawnServer(['--category-c-below-tflops', '0']);
});
test.afterAll(async () => {
  await server?.stop();
});

test('three tabs lending 0.8 MB each shard stories260K over a 3-stage ring that answers the golden text', async ({
  browser,
}) => {
  test.setTimeout(TIMEOUTS.browserTestLong);
  const tabs: { context: BrowserContext; page: Page }[] = [];
  for (let i = 0; i < 3; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['camera', 'microphone'], { origin: server.url });
    const page = await context.newPage();
    page.on('pageerror', (e) => console.log(`[tab ${i}]`, e.message));
    page.on(
      'console',
      (m) =>
        m.type() !== 'debug' &&
        !m.text().includes('onnxruntime') &&
        console.log(`[tab ${i}]`, m.text().slice(0, 300)),
    );
    // A declared device (4 GB, ~1 MFLOP/s) that waits for the button: the field decides what it lends.
    await page.goto(`${server.url}/#/contribute?tflops=${1e-6 * (1 + i / 10)}&gbps=100&memory=4000000000`);
    const lend = page.getByTestId('lend-memory');
    await lend.fill('0');
    await lend.blur();
    await expect(page.getByTestId('lend-memory-error')).toContainText('more than 0 MB');
    await lend.fill('0.8');
    await page.getByTestId('join').click();
    await expect(page.getByTestId('memory-lent')).toHaveText('800 KB of 4.0 GB usable');
    tabs.push({ context, page });
  }
  for (const t of tabs) await serving(t.page);
  const ranges = await Promise.all(
    tabs.map(async (t) => (await t.page.getByTestId('assignment').textContent()) ?? ''),
  );
  // Three disjoint stages: the embedding, middle blocks, and the head.
  expect(ranges.filter((r) => r.includes('embedding')).length).toBe(1);
  expect(ranges.filter((r) => r.includes('head')).length).toBe(1);
  expect(ranges.filter((r) => !r.includes('embedding') && !r.includes('head')).length).toBe(1);

  const chatContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await chatContext.grantPermissions(['camera', 'microphone'], { origin: server.url });
  const chat = await chatContext.newPage();
  chat.on('console', (m) => m.type() !== 'debug' && console.log('[chat]', m.text().slice(0, 300)));
  await chat.goto(`${server.url}/#/chat`);
  await expect(chat.getByTestId('ring-status')).toContainText('ring of 3 peers', {
    timeout: TIMEOUTS.ringForm,
  });
  // Every stage serving again (a link-driven re-plan may have re-ordered the ring meanwhile).
  for (const t of tabs) await serving(t.page);
  expect((await askGolden(chat)) + '\n').toBe(golden.text);
  await chatContext.close();
  for (const t of tabs) await t.context.close();
});
