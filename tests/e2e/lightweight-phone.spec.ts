/**
 * Lightweight models on a phone: a Pixel 7-emulated tab (Playwright's device descriptor: Android
 * user agent, touch, 412 px) declares its speed and memory but is still a phone, so the coordinator
 * makes it category C and gives it stories260K (the catalog's lightweight model) whole, as its own
 * one-peer ring; a chat for stories260K is answered by that tab with the golden text. A synthetic
 * model registered as sharded (the server's catalog file) is never given to it: no ring has the
 * phone in it, and the phone serves no step of that chat.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { devices, test, expect } from '@playwright/test';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { synthesizeModel } from '../../tools/model/synth';
import { askGolden, sendPrompt, serving } from './app-helpers';
import { loadGolden } from '../helpers/golden';
import { TIMEOUTS } from '../helpers/timeouts';

const { defaultBrowserType: _unused, ...pixel7 } = devices['Pixel 7'];
const golden = loadGolden();
const SHARDED = 'synth-sharded';
let server: SpawnedServer;
let dir: string;

test.beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ringwork-lightweight-'));
  await synthesizeModel({ preset: 'test-tiny', outDir: join(dir, 'model'), seed: 7 });
  const catalog = join(dir, 'catalog.json');
  writeFileSync(catalog, JSON.stringify([{ id: SHARDED, path: join(dir, 'model'), serving: 'sharded' }]));
  server = await spawnServer(['--catalog', catalog]);
});
test.afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Net {
  peers: { id: string; roles: string[]; category: string | null }[];
  models: {
    id: string;
    serving?: string;
    ring: { stages: { peer: string; range: number[] }[] } | null;
    replicas?: { stages: { peer: string; range: number[] }[] }[];
    noRing: { reason: string } | null;
  }[];
  rings: { model: string; stages: { peer: string }[] }[];
}

test('a phone serves stories260K whole as a lightweight model and answers its chat; never a sharded model', async ({
  browser,
}) => {
  test.setTimeout(TIMEOUTS.browserTest);
  const t0 = Date.now();
  const mark = (what: string) => console.log(`[lightweight] ${what} at ${Date.now() - t0} ms`);
  const phoneContext = await browser.newContext({ ...pixel7 });
  await phoneContext.grantPermissions(['camera', 'microphone'], { origin: server.url });
  const phone = await phoneContext.newPage();
  phone.on('pageerror', (e) => console.log('[phone]', e.message));
  // The chat tab opens while the phone loads (a separate desktop browser).
  const chatContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await chatContext.grantPermissions(['camera', 'microphone'], { origin: server.url });
  const chat = await chatContext.newPage();
  await chat.goto(`${server.url}/#/chat`);
  await phone.goto(`${server.url}/#/contribute?join=1&tflops=0.000001&gbps=100&memory=4000000000`);
  await serving(phone);
  mark('phone serving');
  await expect(phone.getByTestId('serves-whole')).toHaveText(
    'This phone serves stories260K whole (lightweight)',
  );

  const net = async (): Promise<Net> => (await (await fetch(`${server.url}/api/network`)).json()) as Net;
  const first = await net();
  const me = first.peers.find((p) => p.roles.includes('contributor'))!;
  expect(me.category).toBe('C');
  const stories = first.models.find((m) => m.id === 'stories260K')!;
  expect(stories.serving).toBe('lightweight');
  expect(stories.replicas).toEqual([
    {
      ringId: expect.any(String),
      model: 'stories260K',
      epoch: expect.any(Number),
      stages: [{ peer: me.id, range: [0, 7] }],
    },
  ]);
  const sharded = first.models.find((m) => m.id === SHARDED)!;
  expect(sharded.serving).toBe('sharded');
  expect(sharded.ring).toBeNull();
  expect(sharded.noRing?.reason).toMatch(/category C/);

  // The chat for stories260K is answered by the phone (its one-peer ring), with the golden text.
  await expect(chat.getByTestId('ring-status')).toContainText('ring of 1 peer', {
    timeout: TIMEOUTS.ringForm,
  });
  mark('chat ring');
  expect((await askGolden(chat)) + '\n').toBe(golden.text);
  mark('golden');
  const served = Number(await phone.getByTestId('steps-served').textContent());
  expect(served).toBeGreaterThanOrEqual(60);

  // The Network page shows how each model is served.
  await chat.getByTestId('tab-network').click();
  await expect(chat.getByTestId('serving-stories260K')).toHaveText('lightweight');
  await expect(chat.getByTestId(`serving-${SHARDED}`)).toHaveText('sharded');
  await expect(chat.getByTestId('replicas-stories260K')).toContainText('Served whole by one peer on its own');

  // A chat for the sharded model: whatever the chat does without a ring, the phone serves none of it.
  await chat.getByTestId('tab-chat').click();
  await chat.getByRole('combobox', { name: 'Model' }).selectOption(SHARDED);
  await sendPrompt(chat, 'Once upon a time', 4);
  const answer = chat.getByTestId('answer').last();
  await expect(answer.getByTestId('answer-meta').or(answer.getByTestId('answer-error'))).toBeVisible({
    timeout: TIMEOUTS.contributorServing,
  });
  mark('sharded chat settled');
  const after = await net();
  expect(after.rings.filter((r) => r.stages.some((s) => s.peer === me.id)).map((r) => r.model)).toEqual([
    'stories260K',
  ]);
  expect(after.models.find((m) => m.id === SHARDED)!.ring).toBeNull();
  expect(Number(await phone.getByTestId('steps-served').textContent())).toBe(served);
  await chatContext.close();
  await phoneContext.close();
});
