/**
 * Shared steps of the app's browser tests: a contributor tab with a declared capability, and one
 * golden-text question asked through the Chat page.
 */
import type { Browser, BrowserContext, Page } from '@playwright/test';
import { expect } from '@playwright/test';
import { TIMEOUTS } from '../helpers/timeouts';

/**
 * A contributor tab that joins at once with a declared capability (~1 MFLOP/s makes the planner
 * spread stories260K over every peer); `memory` is the memory it declares, bytes.
 */
export async function contributor(
  browser: Browser,
  url: string,
  tflops: number,
  memory = 4_000_000_000,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(['camera', 'microphone'], { origin: url });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log('[contributor]', e.message));
  await page.goto(`${url}/#/contribute?join=1&tflops=${tflops}&gbps=100&memory=${memory}`);
  return { context, page };
}

/**
 * A chat tab at the Chat page. It gets media permission like the contributor tabs: without it
 * Chromium offers only mDNS host names as ICE candidates, which nothing in the loopback namespace
 * resolves, and its WebRTC links to the ring time out.
 */
export async function chatTab(
  browser: Browser,
  url: string,
  /** Extra query of the chat page's URL (e.g. `log=1`: the requester logs to the console). */
  query = '',
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(['camera', 'microphone'], { origin: url });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log('[chat]', e.message));
  page.on(
    'console',
    (m) =>
      m.type() !== 'debug' &&
      !m.text().includes('onnxruntime') &&
      console.log('[chat console]', m.text().slice(0, 300)),
  );
  await page.goto(`${url}/#/chat${query ? `?${query}` : ''}`);
  return { context, page };
}

/** Waits until a contributor page says it is serving. */
export async function serving(page: Page): Promise<void> {
  await expect(page.getByTestId('contribute-phase')).toHaveText('serving', {
    timeout: TIMEOUTS.contributorServing,
  });
}

/** Fills the chat form for a greedy answer of `maxTokens` new tokens to `prompt` and sends it. */
export async function sendPrompt(chat: Page, prompt: string, maxTokens = 60): Promise<void> {
  await chat.getByTestId('tab-chat').click();
  await chat.getByTestId('temperature').fill('0');
  await chat.getByTestId('max-tokens').fill(String(maxTokens));
  await chat.getByTestId('prompt').fill(prompt);
  await chat.getByTestId('send').click();
}

/** Waits for the last answer to finish; returns its text, or throws with the chat's error. */
export async function lastAnswer(chat: Page): Promise<string> {
  const answer = chat.getByTestId('answer').last();
  await expect(answer.getByTestId('answer-meta').or(answer.getByTestId('answer-error'))).toBeVisible({
    timeout: TIMEOUTS.contributorServing,
  });
  if (await answer.getByTestId('answer-error').count()) {
    throw new Error(
      `the chat answered with an error: ${await answer.getByTestId('answer-error').textContent()}`,
    );
  }
  return (await answer.getByTestId('answer-text').textContent()) ?? '';
}

/** Asks "Once upon a time" greedily for 60 new tokens (the golden run) and returns the answer. */
export async function askGolden(chat: Page): Promise<string> {
  await sendPrompt(chat, 'Once upon a time');
  return lastAnswer(chat);
}
