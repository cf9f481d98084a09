import { test as base } from '@playwright/test';
import { spawnServer } from '../../tools/testing/spawn-server';

/** Starts the real `signaling-server` process on a free loopback port, serving the built app. */
export const startServer = (args: string[] = []) => spawnServer(args);

/**
 * A Playwright test with a worker-scoped server. `test.use({ serverArgs: [...] })` starts it with
 * extra flags (a spec whose slow desktop tabs must take shards passes `--category-c-below-tflops 0`:
 * by default category C peers serve lightweight models whole and never take shards).
 */
export const test = base.extend<object, { server: { url: string }; serverArgs: string[] }>({
  serverArgs: [[], { scope: 'worker', option: true }],
  server: [
    async ({ serverArgs }, use) => {
      const s = await startServer(serverArgs);
      await use({ url: s.url });
      await s.stop();
    },
    { scope: 'worker' },
  ],
});
export { expect } from '@playwright/test';
