/**
 * A contributor tab whose signaling socket is dropped by the server comes back by itself. The real
 * server process is restarted on the same port (every socket closed, every session forgotten): the
 * tab backs off, starts a new session, is planned in again, and serves the golden text to a chat tab
 * — from the shard it already holds, with no request for the model's bytes.
 */
import type { BrowserContext } from '@playwright/test';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { loadGolden } from '../helpers/golden';
import { TIMEOUTS } from '../helpers/timeouts';
import { expect, test } from './server-fixture';

const golden = loadGolden();

test('the server drops a contributor (restart): the tab rejoins by itself and serves the golden text again without re-downloading', async ({
  browser,
}) => {
  test.setTimeout(TIMEOUTS.browserTestLong);
  let srv: SpawnedServer = await spawnServer();
  const url = srv.url;
  const port = new URL(url).port;
  // Media permissions let Chromium offer loopback host candidates (no mDNS names) for WebRTC.
  const newContext = async () => {
    const c = await browser.newContext();
    await c.grantPermissions(['camera', 'microphone'], { origin: url });
    contexts.push(c);
    return c;
  };
  const contexts: BrowserContext[] = [];
  const context = await newContext();
  try {
    const page = await context.newPage();
    page.on('pageerror', (e) => console.log('[contributor]', e.message));
    page.on('console', (m) => {
      // Refused connects while the server is down are the expected part of this test.
      if ((m.type() === 'error' || m.type() === 'warning') && !m.text().includes('ERR_CONNECTION_REFUSED'))
        console.log('[contributor console]', m.text());
    });
    // Alone in the network, it is given the whole model.
    await page.goto(`${url}/#/contribute?join=1&tflops=1e-6&gbps=100&memory=4000000000`);
    const phase = page.getByTestId('contribute-phase');
    await expect(phase).toHaveText('serving', { timeout: TIMEOUTS.contributorServing });
    const firstPeer = await phase.getAttribute('data-peer');
    const fetched = Number(await page.getByTestId('fetched').getAttribute('data-bytes'));
    expect(fetched).toBeGreaterThan(1_000_000);

    // From now on, any request for the model (weights, header, shards) would be a re-download.
    const modelRequests: string[] = [];
    page.on('request', (r) => {
      if (/\/(models|catalog)\//.test(new URL(r.url()).pathname)) modelRequests.push(r.url());
    });

    await srv.stop();
    await expect(page.getByTestId('contribute-rejoin')).toBeVisible({ timeout: TIMEOUTS.replan });
    srv = await spawnServer(['--port', port]);

    // New server, new session: a new peer id, planned in, serving again.
    await expect(phase).not.toHaveAttribute('data-peer', firstPeer ?? '', {
      timeout: TIMEOUTS.contributorServing,
    });
    await expect(phase).toHaveAttribute('data-rejoins', '1');
    await expect(phase).toHaveText('serving', { timeout: TIMEOUTS.contributorServing });
    await expect(page.getByTestId('contribute-rejoin')).toHaveCount(0);

    // Its own window, as a person elsewhere would chat (a second tab of the same window is hidden).
    const chat = await (await newContext()).newPage();
    chat.on('pageerror', (e) => console.log('[chat]', e.message));
    await chat.goto(`${url}/#/chat`);
    await chat.getByTestId('temperature').fill('0');
    await chat.getByTestId('max-tokens').fill('60');
    await chat.getByTestId('prompt').fill('Once upon a time');
    await chat.getByTestId('send').click();
    const answer = chat.getByTestId('answer').last();
    await expect(answer.getByTestId('answer-meta').or(answer.getByTestId('answer-error'))).toBeVisible({
      timeout: TIMEOUTS.contributorServing,
    });
    if (await answer.getByTestId('answer-error').count())
      throw new Error(
        `the chat answered with an error: ${await answer.getByTestId('answer-error').textContent()}`,
      );
    expect((await answer.getByTestId('answer-text').textContent()) + '\n').toBe(golden.text);
    await expect(answer.getByTestId('answer-meta')).toContainText('served by');

    expect(modelRequests).toEqual([]);
    expect(Number(await page.getByTestId('fetched').getAttribute('data-bytes'))).toBe(fetched);
  } finally {
    for (const c of contexts) await c.close();
    await srv.stop();
  }
});
