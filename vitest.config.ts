import { defineConfig } from 'vitest/config';
import { scaled } from './tests/helpers/timeouts';

export default defineConfig({
  test: {
    include: ['tests/shared/**/*.test.ts', 'tests/server/**/*.test.ts', 'tests/web/**/*.test.ts'],
    environment: 'node',
    // Budgets scale with RINGWORK_TIMEOUT_SCALE (tests/helpers/timeouts.ts).
    testTimeout: scaled(60_000),
    hookTimeout: scaled(60_000),
    // Two cores: ORT wasm sessions are CPU-heavy; keep files from fighting each other.
    maxWorkers: 2,
  },
});
