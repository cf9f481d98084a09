/**
 * Cluster mode with real browsers: a `redis-server` and two server instances (`--redis`) inside the
 * loopback-only namespace, each Chromium tab pointed at its own instance. The two contributor tabs
 * are held by different instances, so every signal that forms their WebRTC links (offer, answer,
 * ICE candidates) crosses instances through Redis; the coordinator on the lease holder plans one
 * ring over both, the chat tab on the follower instance gets the ring through its own instance, and
 * the answer through that ring is llama2.c's golden text.
 */
import { loadGolden } from '../helpers/golden';
import { scaled, TIMEOUTS, waitUntil } from '../helpers/timeouts';
import { startRedis, type TestRedis } from '../../tools/testing/redis-server';
import { spawnServer, type SpawnedServer } from '../../tools/testing/spawn-server';
import { askGolden, contributor, serving } from './app-helpers';
import { expect, test } from '@playwright/test';

const golden = loadGolden();

interface Health {
  peers: number;
  cluster?: { instance: string; coordinator: boolean; leader: string | null; redis: 'up' | 'down' };
}
const health = async (s: SpawnedServer): Promise<Health> =>
  (await (await fetch(`${s.url}/healthz`)).json()) as Health;

let redis: TestRedis | undefined;
const servers: SpawnedServer[] = [];

test.beforeAll(async () => {
  redis = await startRedis(TIMEOUTS.serverStart);
  for (const name of ['a', 'b']) {
    servers.push(
      await spawnServer([
        '--redis',
        redis.url,
        '--instance-id',
        name,
        '--cluster-lease-ms',
        '1500',
        '--replan-debounce-ms',
        '100',
        // These desktop tabs declare CPU-class speeds and must still share the model over a ring.
        '--category-c-below-tflops',
        '0',
      ]),
    );
  }
});

test.afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await redis?.kill();
});

test('contributor tabs on two instances form one ring; a chat on the follower instance gets the golden text through it', async ({
  browser,
}) => {
  test.setTimeout(TIMEOUTS.browserTest);
  const [a, b] = servers as [SpawnedServer, SpawnedServer];
  // One coordinator, known to both instances, before any tab joins.
  await waitUntil(
    'one coordinator that both instances name',
    async () => {
      const hs = await Promise.all([a, b].map(health));
      const leaders = hs.filter((h) => h.cluster?.coordinator);
      return leaders.length === 1 && hs.every((h) => h.cluster?.leader === leaders[0]!.cluster!.instance);
    },
    { timeoutMs: scaled(15_000) },
  );
  const peers = [await contributor(browser, a.url, 1e-6), await contributor(browser, b.url, 1.2e-6)];
  for (const p of peers) await serving(p.page);
  // Each instance holds one contributor's socket.
  expect((await Promise.all([a, b].map(health))).map((h) => h.peers)).toEqual([1, 1]);

  // The chat tab on the follower: its ring request is forwarded to the coordinator on the other
  // instance, and the ring comes back posted to the follower's own channel.
  const follower = (await health(a)).cluster?.coordinator ? b : a;
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(['camera', 'microphone'], { origin: follower.url });
  const chat = await context.newPage();
  chat.on('pageerror', (e) => console.log('[chat]', e.message));
  await chat.goto(`${follower.url}/#/chat`);
  await expect(chat.getByTestId('ring-status')).toContainText('ring of 2 peers', {
    timeout: TIMEOUTS.ringForm,
  });
  expect((await askGolden(chat)) + '\n').toBe(golden.text);
  await expect(chat.getByTestId('answer-meta').last()).toContainText('served by');
  expect((await health(follower)).peers).toBe(2);
  // The Network page on the follower shows both instances, the coordinator, and who answered.
  await chat.goto(`${follower.url}/#/network`);
  const followerName = (await health(follower)).cluster!.instance;
  const leaderName = followerName === 'a' ? 'b' : 'a';
  const card = chat.getByTestId('instances');
  await expect(card).toContainText(`Answered by ${followerName}`, { timeout: scaled(15_000) });
  await expect(card.locator('tbody tr')).toHaveText(
    [leaderName, followerName]
      .sort()
      .map(
        (n) =>
          new RegExp(
            `^${n}${n === followerName ? ' \\(answered\\)' : ''}\\d+${n === leaderName ? 'coordinator' : 'follower'}$`,
          ),
      ),
    { timeout: scaled(15_000) },
  );
  await context.close();
  for (const p of peers) await p.context.close();
});
