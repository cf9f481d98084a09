import { test as base } from '@playwright/test';
import { spawnServer } from '../../tools/testing/spawn-server';

/** Starts the real `signaling-server` process on a free loopback port, serving the built app. */
export const startServer = () => spawnServer();

/** A Playwright test with a worker-scoped server. */
export const test = base.extend<object, { server: { url: string } }>({
  server: [
    // eslint-disable-next-line no-empty-pattern -- Playwright requires the destructuring form.
    async ({}, use) => {
      const s = await startServer();
      await use({ url: s.url });
      await s.stop();
    },
    { scope: 'worker' },
  ],
});
export { expect } from '@playwright/test';
