import type { Browser, BrowserContext, Page } from '@playwright/test';
import { loadGolden } from '../helpers/golden';
import { TIMEOUTS } from '../helpers/timeouts';
import { expect, test } from './server-fixture';

// Its contributor tabs declare CPU-class speeds and must still share the model over a ring
// (by default category C peers serve lightweight models whole, one replica each).
test.use({ serverArgs: ['--category-c-below-tflops', '0'] });

const golden = loadGolden();

async function contributor(
  browser: Browser,
  url: string,
  tflops: number,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(['camera', 'microphone'], { origin: url });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log('[contributor]', e.message));
  await page.goto(`${url}/#/contribute?join=1&tflops=${tflops}&gbps=100&memory=4000000000`);
  return { context, page };
}

test('Leave during an answer drains: the answer completes with the golden text, no error, then the ring is re-planned without the tab', async ({
  browser,
  server,
}) => {
  test.setTimeout(TIMEOUTS.browserTestLong);
  const peers = [];
  for (const t of [1e-6, 1.2e-6, 1.4e-6]) peers.push(await contributor(browser, server.url, t));
  for (const p of peers)
    await expect(p.page.getByTestId('contribute-phase')).toHaveText('serving', {
      timeout: TIMEOUTS.contributorServing,
    });
  // The leaving tab computes at most 10% of the time, so the answer is still streaming when it leaves.
  const leaving = peers[1]!;
  await leaving.page.getByLabel(/Compute limit/).fill('10');

  const chatContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await chatContext.grantPermissions(['camera', 'microphone'], { origin: server.url });
  const chat = await chatContext.newPage();
  chat.on('pageerror', (e) => console.log('[chat]', e.message));
  await chat.goto(`${server.url}/#/chat`);
  await expect(chat.getByTestId('ring-status')).toContainText('ring of 3 peers', {
    timeout: TIMEOUTS.ringForm,
  });
  await chat.getByTestId('temperature').fill('0');
  await chat.getByTestId('max-tokens').fill('60');
  await chat.getByTestId('prompt').fill('Once upon a time');
  await chat.getByTestId('send').click();
  const answer = chat.getByTestId('answer').last();
  // A few tokens in, the middle tab's owner clicks Leave.
  await expect(answer.getByTestId('answer-text')).toHaveText(/^Once upon a time.{8,}/, {
    timeout: TIMEOUTS.contributorServing,
  });
  await leaving.page.getByTestId('leave').click();
  const atLeave = (await answer.getByTestId('answer-text').textContent()) ?? '';
  // The tab drains ("finishing its open answers" while its stage finishes the open answer). A fast
  // ring (in loop mode the chat's text lags the ring) may finish before the badge is read, so the
  // proof that the answer was open at Leave is the drain's own record: the sessions it had open.
  const badge = leaving.page.getByTestId('contribute-phase');
  await expect(badge).toHaveAttribute('data-drained-sessions', /^[1-9]/, { timeout: TIMEOUTS.replan });

  await expect(answer.getByTestId('answer-meta').or(answer.getByTestId('answer-error'))).toBeVisible({
    timeout: TIMEOUTS.contributorServing,
  });
  if (await answer.getByTestId('answer-error').count()) {
    throw new Error(
      `the chat answered with an error: ${await answer.getByTestId('answer-error').textContent()}`,
    );
  }
  const text = (await answer.getByTestId('answer-text').textContent()) ?? '';
  expect(text + '\n').toBe(golden.text);
  // Leave was clicked mid-answer: the text then was shorter than the whole answer.
  expect(atLeave.length).toBeLessThan(text.length);
  // A drain is no loss: the tab served its open answer to the end, so nothing failed over.
  await expect(answer.getByTestId('answer-failover')).toHaveCount(0);
  // Drained, the tab goes, and the coordinator re-plans over the two that remain.
  await expect(leaving.page.getByTestId('contribute-phase')).toHaveText('not contributing', {
    timeout: TIMEOUTS.replan,
  });
  await expect(chat.getByTestId('ring-status')).toContainText('ring of 2 peers', {
    timeout: TIMEOUTS.replan,
  });
  for (const p of peers) await p.context.close();
  await chatContext.close();
});
