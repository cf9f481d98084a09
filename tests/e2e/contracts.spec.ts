/**
 * The contract suites of tests/contracts on the browser implementations: the WebRTC transport
 * (several signaling sessions in one page, relayed by the real server) and the Web Worker shard
 * runner on stories260K. The cases are the same objects vitest runs on the memory transport and the
 * in-process runner; here each becomes one Playwright test that runs it in the harness page.
 */
import { test as base, expect, type Page } from '@playwright/test';
import { spawnServer } from '../../tools/testing/spawn-server';
import { contract as runnerContract, type ContractGolden } from '../contracts/shard-runner';
import { contract as transportContract } from '../contracts/transport';
import { loadGolden } from '../helpers/golden';
import { TIMEOUT_SCALE, TIMEOUTS } from '../helpers/timeouts';

/** The real server in test mode, relaying between any two peers (the transports dial freely). */
const test = base.extend<object, { server: { url: string } }>({
  server: [
    // eslint-disable-next-line no-empty-pattern -- Playwright requires the destructuring form.
    async ({}, use) => {
      const s = await spawnServer(['--allow-any-relay']);
      await use({ url: s.url });
      await s.stop();
    },
    { scope: 'worker' },
  ],
});

const POSITIONS = 16;
const g = loadGolden();
const golden: ContractGolden = {
  tokens: g.sequenceTokens,
  logits: g.logits.slice(0, POSITIONS * g.vocab),
  hidden: g.hidden.slice(0, POSITIONS * (g.nLayers + 1) * g.dim),
  positions: POSITIONS,
  nLayers: g.nLayers,
  dim: g.dim,
  vocab: g.vocab,
};

// Only the names are needed here: the cases run in the page, against the browser implementations.
const unused = () => Promise.reject(new Error('cases run in the page'));
const SUITES = {
  transport: transportContract(unused, { scale: TIMEOUT_SCALE }),
  'shard-runner': runnerContract({ create: unused, model: { url: '' }, golden, scale: TIMEOUT_SCALE }),
};

let page: Page;

test.beforeAll(async ({ browser, server }) => {
  const context = await browser.newContext();
  // Without media permission Chromium gathers candidates only on the default-route address, which
  // does not exist in the loopback-only namespace, and ICE never completes.
  await context.grantPermissions(['camera', 'microphone'], { origin: server.url });
  page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && console.log('[page]', m.text()));
  await page.goto(`${server.url}/contracts.html`);
  await page.waitForFunction(() => 'ringworkContracts' in window);
  await page.evaluate(([gi, scale]) => window.ringworkContracts.configure(gi, scale), [
    { ...golden, logits: Array.from(golden.logits), hidden: Array.from(golden.hidden) },
    TIMEOUT_SCALE,
  ] as const);
});

test.afterAll(async () => {
  await page?.context().close();
});

for (const [suite, cases] of Object.entries(SUITES)) {
  test.describe(`${suite} contract in Chromium`, () => {
    test('the page runs the same cases', async () => {
      expect(await page.evaluate((s) => window.ringworkContracts.names(s), suite)).toEqual(
        cases.map((c) => c.name),
      );
    });
    for (const c of cases) {
      test(c.name, async () => {
        test.setTimeout(Math.max(TIMEOUTS.browserTest, c.timeoutMs + TIMEOUTS.serverStart));
        const r = await page.evaluate(([s, n]) => window.ringworkContracts.run(s, n), [
          suite,
          c.name,
        ] as const);
        if (!r.ok) console.log(`[${suite}] ${c.name}\n${r.stack ?? r.error}`);
        expect(r.ok ? 'passed' : r.error).toBe('passed');
      });
    }
  });
}
