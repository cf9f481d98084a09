import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';
import { scaled } from './tests/helpers/timeouts';

/**
 * Runs `*.slow.test.ts` first (each group in vitest's own order: by last duration when cached,
 * else larger files first). On a clean clone there are no cached durations, and by file size a
 * 20 s file can start last and leave the other worker idle at the end; starting the long files
 * first packs the two workers evenly.
 */
class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const slow = (f: TestSpecification): boolean => f.moduleId.endsWith('.slow.test.ts');
    return [...sorted.filter(slow), ...sorted.filter((f) => !slow(f))];
  }
}

export default defineConfig({
  test: {
    include: ['tests/shared/**/*.test.ts', 'tests/server/**/*.test.ts', 'tests/web/**/*.test.ts'],
    environment: 'node',
    // Budgets scale with RINGWORK_TIMEOUT_SCALE (tests/helpers/timeouts.ts).
    testTimeout: scaled(60_000),
    hookTimeout: scaled(60_000),
    // Two cores: ORT wasm sessions are CPU-heavy; keep files from fighting each other.
    maxWorkers: 2,
    sequence: { sequencer: SlowFirstSequencer },
  },
});
