/**
 * The chat as people use it, against one contributor tab serving stories260K: an answer keeps
 * streaming while the person looks at other pages; settings are checked with visible messages and
 * keep what was typed; a prompt longer than the context is offered its end; emoji and CJK come
 * back as characters.
 */
import type { BrowserContext, Page } from '@playwright/test';
import { loadGolden, repoPath } from '../helpers/golden';
import { test, expect } from './server-fixture';
import { askGolden, contributor, lastAnswer, sendPrompt, serving } from './app-helpers';
import { TIMEOUTS } from '../helpers/timeouts';
import { mkdirSync } from 'node:fs';

/** Where the drafted chat's screenshots go (as layout.spec.ts's). */
const SHOTS = repoPath('test-results/screenshots');

const golden = loadGolden();

test.describe.configure({ mode: 'serial' });

let peer: { context: BrowserContext; page: Page };
let chatContext: BrowserContext;
let chat: Page;

test.beforeAll(async ({ browser, server }) => {
  test.setTimeout(TIMEOUTS.browserTest);
  peer = await contributor(browser, server.url, 1e-6);
  await serving(peer.page);
  chatContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await chatContext.grantPermissions(['camera', 'microphone'], { origin: server.url });
  chat = await chatContext.newPage();
  chat.on('pageerror', (e) => console.log('[chat]', e.message));
  await chat.goto(`${server.url}/#/chat`);
  await expect(chat.getByTestId('ring-status')).toContainText('ring of 1 peer', {
    timeout: TIMEOUTS.ringForm,
  });
});

test.afterAll(async () => {
  await chatContext?.close();
  await peer?.context.close();
});

test('an answer keeps streaming while the person views Network and Contribute; it completes with the golden text', async () => {
  // The contributor computes 10 % of the time (the least the page allows: it rests 9× each step's
  // compute), so the answer takes long enough to walk away from. At 30 % a warmed-up engine could
  // finish the answer before the person had left the page.
  await peer.page.getByTestId('duty-cycle').fill('10');
  await sendPrompt(chat, 'Once upon a time');
  const answer = chat.getByTestId('answer').last();
  await expect(answer).toHaveAttribute('data-tokens', /^[1-9]/, { timeout: TIMEOUTS.contributorServing });
  for (let round = 0; round < 2; round++) {
    // Still streaming when the person first leaves the page (else this would prove nothing).
    if (round === 0) await expect(answer.getByTestId('answer-meta')).toHaveCount(0);
    await chat.getByTestId('tab-network').click();
    await expect(chat.getByTestId('peer-table')).toBeVisible();
    await chat.getByTestId('tab-contribute').click();
    await expect(chat.getByTestId('contribute-phase')).toBeVisible();
    await chat.getByTestId('tab-chat').click();
  }
  expect((await lastAnswer(chat)) + '\n').toBe(golden.text);
  await peer.page.getByTestId('duty-cycle').fill('100');
});

test('bad settings get a message beside the field, keep what was typed, and block sending', async () => {
  const temperature = chat.getByTestId('temperature');
  await temperature.fill('-0.5');
  await temperature.blur();
  await expect(chat.getByTestId('temperature-error')).toContainText('cannot be negative');
  await expect(temperature).toHaveValue('-0.5');
  const maxTokens = chat.getByTestId('max-tokens');
  await maxTokens.fill('1000000');
  await maxTokens.blur();
  await expect(chat.getByTestId('max-tokens-error')).toContainText('at most 511');
  // Clearing a field leaves it empty (it used to snap to 1, so typing 50 gave 150).
  await maxTokens.fill('');
  await maxTokens.pressSequentially('50');
  await expect(maxTokens).toHaveValue('50');
  const before = await chat.getByTestId('answer').count();
  await chat.getByTestId('prompt').fill('Once upon a time');
  await chat.getByTestId('send').click();
  await expect(chat.getByTestId('temperature-error')).toContainText('cannot be negative');
  expect(await chat.getByTestId('answer').count()).toBe(before);
  await expect(chat.getByTestId('prompt')).toHaveValue('Once upon a time');
  await temperature.fill('0');
  await temperature.blur();
  await expect(chat.getByTestId('temperature-error')).toHaveText('');
});

test('a prompt longer than the context is refused before sending, and its end is kept on request', async () => {
  const long = 'The little dog ran to the park and played with a red ball. '.repeat(90);
  await sendPrompt(chat, long, 20);
  const offer = chat.getByTestId('prompt-too-long');
  await expect(offer).toContainText('reads at most 512');
  const keep = Number(await offer.getAttribute('data-keep'));
  expect(keep).toBeGreaterThan(100);
  expect(keep).toBeLessThan(512);
  // What was typed is still there.
  await expect(chat.getByTestId('prompt')).toHaveValue(long);
  await chat.getByTestId('keep-end').click();
  const text = await lastAnswer(chat);
  // The answer continues the kept end of the prompt and generated new tokens after it.
  expect(text.length).toBeGreaterThan(200);
  expect(text.length).toBeLessThan(long.length);
  const question = (await chat.getByTestId('question').last().textContent()) ?? '';
  expect(long.trim().endsWith(question.trim())).toBe(true);
});

test('a prompt with emoji and CJK comes back with those characters', async () => {
  const prompt = 'Once upon a time 🐱 saw a 猫 and said こんにちは';
  await sendPrompt(chat, prompt, 20);
  const text = await lastAnswer(chat);
  for (const ch of ['🐱', '猫', 'こんにちは']) expect(text).toContain(ch);
  expect(text).not.toContain('\uFFFD');
});

test('the golden text still comes back after all that (fields as typed were applied)', async () => {
  expect((await askGolden(chat)) + '\n').toBe(golden.text);
});

test('a page joins the ring through the SDK module itself (transport: ring): the golden text, with the ring named in `ringwork`', async () => {
  // The same page, but a client of its own: its own signaling connection (requester role) and
  // WebRTC links to the ring, loaded lazily from /sdk/ringwork.js as any page of this origin would.
  const r = await chat.evaluate(async () => {
    type Chunk = { choices: { text?: string; finish_reason: string | null }[]; ringwork?: unknown };
    type Sdk = {
      createRingworkClient(o: object): {
        completions: { create(p: object): Promise<AsyncIterable<Chunk>> };
      };
    };
    const sdk = (await import(`${location.origin}/sdk/ringwork.js`)) as Sdk;
    const rw = sdk.createRingworkClient({ server: location.origin, transport: 'ring' });
    const stream = await rw.completions.create({
      model: 'stories260K',
      prompt: 'Once upon a time',
      max_tokens: 60,
      temperature: 0,
      stream: true,
    });
    let text = '';
    let info: unknown;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? '';
      if (c.choices[0]?.finish_reason) info = c.ringwork;
    }
    return { text, info };
  });
  expect('Once upon a time' + r.text).toBe(golden.text.trimEnd());
  expect(r.info).toMatchObject({
    path: 'ring',
    securityLevel: 1,
    validated: false,
    servedBy: [{ range: [0, 7] }],
    stats: { end: 'max-tokens' },
  });
});

test('Draft locally: off with the reason while sampling; greedy, the drafted answer is the golden text with accepted tokens per lap shown', async () => {
  test.setTimeout(TIMEOUTS.browserTest);
  await chat.getByTestId('tab-chat').click();
  const box = chat.getByTestId('draft');
  const temperature = chat.getByTestId('temperature');
  // Sampling: the setting is disabled and says why (as typed, before the field is committed).
  await temperature.fill('0.8');
  await expect(box).toBeDisabled();
  await expect(box).not.toBeChecked();
  await expect(chat.getByTestId('draft-why')).toContainText('greedy only');
  await temperature.fill('0');
  await expect(box).toBeEnabled();
  await expect(chat.getByTestId('draft-why')).toContainText('MB');
  await box.check();
  await chat.getByTestId('draft-k').selectOption('4');
  expect((await askGolden(chat)) + '\n').toBe(golden.text);
  const note = chat.getByTestId('answer').last().getByTestId('answer-draft');
  await expect(note).toContainText('drafted tokens accepted');
  const accepted = Number(await note.getAttribute('data-accepted'));
  const laps = Number(await note.getAttribute('data-laps'));
  expect(accepted).toBeGreaterThan(0);
  expect(laps).toBeGreaterThan(0);
  // Fewer ring laps than the 60 generated tokens: the drafts did save laps.
  expect(laps).toBeLessThan(60);
  mkdirSync(SHOTS, { recursive: true });
  for (const width of [1280, 412]) {
    await chat.setViewportSize({ width, height: 900 });
    await chat.screenshot({ path: `${SHOTS}/chat-draft-${width}.png`, fullPage: true });
  }
  await chat.setViewportSize({ width: 1280, height: 900 });
  await box.uncheck();
});
