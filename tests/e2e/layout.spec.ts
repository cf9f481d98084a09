/**
 * The app at phone, tablet and desktop widths: no page is wider than the viewport (measured as
 * `documentElement.scrollWidth` against the configured width — Chromium widens `innerWidth` to the
 * content on mobile), and screenshots of every page at 412 and 1280 px go to
 * test-results/screenshots/ for people to look at. One contributor tab serves stories260K so the
 * Network page has a ring and a peer table, and the phone's chat shows a real answer.
 */
import { mkdirSync } from 'node:fs';
import { devices, type Page } from '@playwright/test';
import { repoPath } from '../helpers/golden';
import { test, expect } from './server-fixture';
import { contributor, lastAnswer, sendPrompt, serving } from './app-helpers';
import { TIMEOUTS } from '../helpers/timeouts';

const SHOTS = repoPath('test-results/screenshots');
const PAGES = ['chat', 'contribute', 'network'] as const;
const { defaultBrowserType: _unused, ...pixel7 } = devices['Pixel 7'];

/** Widths, and whether they are phones (a mobile device descriptor). */
const SIZES = [
  { width: 360, height: 780, mobile: true },
  { width: 412, height: 915, mobile: true },
  { width: 768, height: 1024, mobile: false },
  { width: 1280, height: 900, mobile: false },
];

/** Opens `page` in the app and waits until its content is drawn. */
async function open(tab: Page, url: string, page: (typeof PAGES)[number]): Promise<void> {
  await tab.goto(`${url}/#/${page}`);
  if (page === 'network')
    await expect(tab.getByTestId('ring-stage')).toHaveCount(1, { timeout: TIMEOUTS.replan });
  if (page === 'chat') await expect(tab.getByTestId('ring-status')).toBeVisible({ timeout: TIMEOUTS.replan });
  if (page === 'contribute') await expect(tab.getByTestId('contribute-phase')).toBeVisible();
}

const scrollWidth = (tab: Page) => tab.evaluate(() => document.documentElement.scrollWidth);

test('every page fits 360, 412, 768 and 1280 px wide; screenshots at 412 and 1280 px', async ({
  browser,
  server,
}) => {
  test.setTimeout(TIMEOUTS.browserTest);
  mkdirSync(SHOTS, { recursive: true });
  const peer = await contributor(browser, server.url, 1e-6);
  await serving(peer.page);
  const wide: string[] = [];
  for (const size of SIZES) {
    const context = await browser.newContext(
      size.mobile
        ? { ...pixel7, viewport: { width: size.width, height: size.height } }
        : { viewport: { width: size.width, height: size.height } },
    );
    // Media permissions let Chromium offer loopback ICE candidates (not mDNS names) for WebRTC.
    await context.grantPermissions(['camera', 'microphone'], { origin: server.url });
    const tab = await context.newPage();
    tab.on('pageerror', (e) => console.log(`[${size.width}px]`, e.message));
    if (size.width === 412) {
      // A real answer on the phone: long text must wrap inside its bubble.
      await tab.goto(`${server.url}/#/chat`);
      await sendPrompt(tab, 'Once upon a time', 40);
      await lastAnswer(tab);
    }
    for (const page of PAGES) {
      await open(tab, server.url, page);
      const w = await scrollWidth(tab);
      if (w > size.width) wide.push(`${page} at ${size.width} px lays out ${w} px wide`);
      if (size.width === 412 || size.width === 1280)
        await tab.screenshot({ path: `${SHOTS}/${page}-${size.width}.png`, fullPage: true });
    }
    await context.close();
  }
  // The serving contributor's own page (assignment, download, live figures) at phone widths.
  for (const width of [360, 412]) {
    await peer.page.setViewportSize({ width, height: 900 });
    const w = await scrollWidth(peer.page);
    if (w > width) wide.push(`serving contribute at ${width} px lays out ${w} px wide`);
    if (width === 412)
      await peer.page.screenshot({ path: `${SHOTS}/contribute-serving-412.png`, fullPage: true });
  }
  await peer.page.setViewportSize({ width: 1280, height: 900 });
  await peer.page.screenshot({ path: `${SHOTS}/contribute-serving-1280.png`, fullPage: true });
  await peer.context.close();
  expect(wide).toEqual([]);
});
