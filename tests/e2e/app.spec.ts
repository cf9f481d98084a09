import { mkdirSync } from 'node:fs';
import { loadGolden, repoPath } from '../helpers/golden';
import { test, expect } from './server-fixture';
import { askGolden, chatTab, contributor } from './app-helpers';
import { TIMEOUTS } from '../helpers/timeouts';

// Its contributor tabs declare CPU-class speeds and must still share the model over a ring
// (by default category C peers serve lightweight models whole, one replica each).
test.use({ serverArgs: ['--category-c-below-tflops', '0'] });

const golden = loadGolden();
const SHOTS = repoPath('test-results/screenshots');

test('3 contributor tabs + a chat tab: golden text through the ring, layer ranges on the Network page, same text after a contributor leaves', async ({
  browser,
  server,
}) => {
  test.setTimeout(TIMEOUTS.browserTestLong);
  mkdirSync(SHOTS, { recursive: true });
  const peers = [];
  for (const t of [1e-6, 1.2e-6, 1.4e-6]) peers.push(await contributor(browser, server.url, t));
  for (const p of peers)
    await expect(p.page.getByTestId('contribute-phase')).toHaveText('serving', {
      timeout: TIMEOUTS.contributorServing,
    });

  const { context: chatContext, page: chat } = await chatTab(browser, server.url);
  await expect(chat.getByTestId('ring-status')).toContainText('ring of 3 peers', {
    timeout: TIMEOUTS.ringForm,
  });

  console.log('first request');
  const text = await askGolden(chat);
  expect(text + '\n').toBe(golden.text);
  await expect(chat.getByTestId('answer-meta').last()).toContainText('served by');
  await chat.screenshot({ path: `${SHOTS}/chat.png`, fullPage: true });

  await chat.getByTestId('tab-network').click();
  await expect(chat.getByTestId('ring-stage')).toHaveCount(3);
  const ranges = await chat.getByTestId('stage-range').allTextContents();
  expect(ranges.join(' | ')).toMatch(/units? 0(–\d+)?: embedding/);
  expect(ranges.join(' | ')).toMatch(/head/);
  await chat.screenshot({ path: `${SHOTS}/network.png`, fullPage: true });

  await peers[0]!.page.screenshot({ path: `${SHOTS}/contribute.png`, fullPage: true });
  const served = await Promise.all(
    peers.map(async (p) => Number(await p.page.getByTestId('steps-served').textContent())),
  );
  // Every stage ran every step of the answer (one prefill + 59 decode steps).
  expect(served.every((n) => n >= 60)).toBe(true);

  // A contributor leaves: the ring is re-planned over the two that remain and serves the same text.
  await peers[1]!.context.close();
  await chat.getByTestId('tab-chat').click();
  await expect(chat.getByTestId('ring-status')).toContainText('ring of 2 peers', {
    timeout: TIMEOUTS.replan,
  });
  console.log('second request');
  const again = await askGolden(chat);
  expect(again + '\n').toBe(golden.text);
  for (const p of [peers[0]!, peers[2]!]) await p.context.close();
  await chatContext.close();
});

test('a contributor downloads only its shard, and a reload serves it from the browser cache', async ({
  browser,
  server,
}) => {
  test.setTimeout(TIMEOUTS.browserTest);
  const { context, page } = await contributor(browser, server.url, 1e-6);
  const phase = page.getByTestId('contribute-phase');
  await expect(phase).toHaveText('serving', { timeout: TIMEOUTS.contributorServing });
  const fetched = page.getByTestId('fetched');
  const first = Number(await fetched.getAttribute('data-bytes'));
  const total = Number(await fetched.getAttribute('data-total'));
  // Alone in the network it holds the whole model: the weights it reads, plus headers, once.
  expect(total).toBeGreaterThan(1_000_000);
  expect(first).toBeGreaterThanOrEqual(total);
  expect(first).toBeLessThan(total * 1.05 + 4096);
  await page.reload();
  await expect(phase).toHaveText('serving', { timeout: TIMEOUTS.contributorServing });
  const second = Number(await page.getByTestId('fetched').getAttribute('data-bytes'));
  // Only the small header/config reads go to the network again.
  expect(second).toBeLessThan(16_384);
  await context.close();
});

test('one tab contributes and chats at once (its own stage serves it); a tab alone with no ring runs the model itself', async ({
  browser,
  server,
}) => {
  test.setTimeout(TIMEOUTS.browserTest);
  const { context, page } = await contributor(browser, server.url, 1e-6);
  await expect(page.getByTestId('contribute-phase')).toHaveText('serving', {
    timeout: TIMEOUTS.contributorServing,
  });
  expect((await askGolden(page)) + '\n').toBe(golden.text);
  await expect(page.getByTestId('answer-meta').last()).toContainText('served by');
  await context.close();

  // Nobody contributes now: the coordinator has no ring, so the chat tab runs the whole model.
  const lone = await browser.newContext();
  const chat = await lone.newPage();
  await chat.goto(`${server.url}/#/chat`);
  await expect(chat.getByTestId('ring-status')).toContainText('No ring', { timeout: TIMEOUTS.replan });
  expect((await askGolden(chat)) + '\n').toBe(golden.text);
  await expect(chat.getByTestId('answer-meta').last()).toContainText('ran in this tab');
  await lone.close();
});
