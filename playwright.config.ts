import { defineConfig } from '@playwright/test';
import { TIMEOUTS } from './tests/helpers/timeouts';

/** Debian's Chromium: Playwright cannot download its own browser on these machines. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const QUIET_FLAGS = [
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export default defineConfig({
  testDir: 'tests/e2e',
  // Two cores: one worker, browsers are heavy.
  workers: 1,
  // Every budget comes from tests/helpers/timeouts.ts (RINGWORK_TIMEOUT_SCALE multiplies them).
  timeout: TIMEOUTS.browserTest,
  // In CI one retry absorbs a browser crash on a busy 2-core machine; Playwright still reports the
  // test as flaky, so it is seen, not hidden.
  retries: process.env.CI ? 1 : 0,
  reporter: [['list']],
  outputDir: 'test-results',
  use: {
    browserName: 'chromium',
    launchOptions: {
      executablePath: CHROMIUM,
      args: [...QUIET_FLAGS, '--enable-unsafe-webgpu', '--allow-loopback-in-peer-connection'],
    },
  },
});
