/**
 * Issue 11's swarm run with identities: three contributor tabs sign in (each with the key the
 * browser generates and keeps in IndexedDB), they serve stories260K whole as lightweight replicas
 * (CPU-class tabs), a chat at security level 3 runs every step on three of those replicas (each
 * checks the others), and the server credits each contributor exactly the validated FLOPs it
 * served (the model profile's FLOPs per token of the units it holds × the steps validated). The
 * server is then stopped and started again on the same data directory: the credits are still there
 * and the Network page's leaderboard shows them. The chat tab's "Your usage" shows its answer,
 * tokens and validated steps (`GET /api/usage` with its own token); a drafted answer at level 1
 * then adds as many tokens as its text has, like the plain one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect, type Page } from '@playwright/test';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { TIMEOUTS } from '../helpers/timeouts';
import { askGolden, chatTab, contributor } from './app-helpers';
import { startServer } from './server-fixture';
import { loadGolden, repoPath } from '../helpers/golden';

interface Account {
  enabled: boolean;
  flops: number;
  validatedSteps: number;
}

const golden = loadGolden();
const SHOTS = repoPath('test-results/screenshots');

test('3 signed-in contributor tabs + a chat at k = 3: each credited its validated FLOPs; the credits survive a restart', async ({
  browser,
}) => {
  test.setTimeout(TIMEOUTS.browserTestLong);
  const dataDir = mkdtempSync(join(tmpdir(), 'ringwork-credits-e2e-'));
  // CPU-class tabs (category C) each serve the lightweight model whole: three replicas, so k = 3.
  const args = ['--data-dir', join(dataDir, 'db')];
  let server = await startServer(args);
  try {
    const peers = [];
    for (let i = 0; i < 3; i++) peers.push(await contributor(browser, server.url, 1 + i));
    for (const p of peers)
      await expect(p.page.getByTestId('contribute-phase')).toHaveText('serving', {
        timeout: TIMEOUTS.contributorServing,
      });
    const addresses: string[] = [];
    for (const p of peers) {
      await expect(p.page.getByTestId('identity-address')).toContainText('key kept in this browser');
      addresses.push((await p.page.getByTestId('identity-address').getAttribute('title'))!.toLowerCase());
    }
    expect(new Set(addresses).size).toBe(3);

    const { context: chatContext, page: chat } = await chatTab(browser, server.url);
    await chat.getByTestId('security-level').selectOption('3');
    const text = await askGolden(chat);
    expect(text + '\n').toBe(golden.text);
    await expect(chat.getByTestId('answer').last()).toContainText('security level 3');

    // Every contributor served all units of every validated step (one-peer rings), so each is owed
    // validatedSteps × the profile's FLOPs per token, and the steps are those of the answer.
    const model = (await loadCatalog([])).find((m) => m.descriptor.id === 'stories260K')!;
    const perToken = model.profile.layers.reduce((s, l) => s + l.flopsPerToken, 0);
    const account = async (url: string, a: string): Promise<Account> =>
      (await (await fetch(`${url}/api/ledger/account/${a}`)).json()) as Account;
    const before = new Map<string, Account>();
    // The requester sends the proof after the answer; the server checks it, then credits.
    await expect
      .poll(
        async () => {
          for (const a of addresses) before.set(a, await account(server.url, a));
          return [...before.values()].map((x) => x.validatedSteps);
        },
        { timeout: TIMEOUTS.ringForm },
      )
      // 60 new tokens: one prefill step and 59 decode steps, each run and agreed on by all three.
      .toEqual([60, 60, 60]);
    for (const a of addresses)
      expect(before.get(a)!.flops).toBeCloseTo(before.get(a)!.validatedSteps * perToken, 3);
    // The tab's own card shows what the ledger holds.
    await expect(peers[0]!.page.getByTestId('identity-steps')).toHaveText('60', {
      timeout: TIMEOUTS.ringForm,
    });
    // The requester sees its own usage on the Chat page: this answer, as many tokens as its text
    // has (the answer's generated count, not its decode steps, one fewer), and its validated steps
    // (each of the 60 steps once per ring that ran it).
    const textTokens = golden.sequenceTokens.length - golden.promptTokens.length;
    await expect(chat.getByTestId('usage-text')).toHaveText(
      new RegExp(
        `^0x[0-9a-f]{4}…[0-9a-f]{4}: 1 answer, ${textTokens} tokens, ${3 * textTokens} validated ring steps$`,
        'i',
      ),
      { timeout: TIMEOUTS.ringForm },
    );
    // A drafted answer (level 1, a local q4 draft verified by one replica) counts the same: its
    // text's tokens, although its ring laps verify several tokens each.
    await chat.getByTestId('security-level').selectOption('1');
    await chat.getByTestId('temperature').fill('0');
    await chat.getByTestId('draft').check();
    await chat.getByTestId('draft-k').selectOption('4');
    expect((await askGolden(chat)) + '\n').toBe(golden.text);
    await expect(chat.getByTestId('answer').last().getByTestId('answer-draft')).toContainText(
      'drafted tokens accepted',
    );
    await expect(chat.getByTestId('usage-text')).toHaveText(
      new RegExp(`: 2 answers, ${2 * textTokens} tokens, \\d+ validated ring steps$`, 'i'),
      { timeout: TIMEOUTS.ringForm },
    );
    for (const width of [412, 1280]) {
      await chat.setViewportSize({ width, height: 900 });
      await chat.screenshot({ path: `${SHOTS}/chat-usage-${width}.png`, fullPage: true });
    }

    for (const p of peers) await p.context.close();
    await server.stop();
    server = await startServer(args);
    for (const a of addresses) expect(await account(server.url, a)).toEqual(before.get(a));
    await chat.goto(`${server.url}/#/network`);
    const board = chat.getByTestId('leaderboard');
    for (const a of addresses)
      await expect(board).toContainText(new RegExp(`${a.slice(0, 6)}…${a.slice(-4)}`, 'i'), {
        timeout: TIMEOUTS.ringForm,
      });
    await boardRows(chat).then((n) => expect(n).toBeGreaterThanOrEqual(3));
    await chatContext.close();
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

const boardRows = (page: Page): Promise<number> => page.getByTestId('leaderboard').locator('li, tr').count();
