/**
 * Test tiers. `npm test` (CI) runs everything at full strength; `npm run test:quick` sets
 * `RINGWORK_TEST_TIER=quick`, skips `*.slow.test.ts` (real-shape synthesis, CLI
 * processes, the quantisation sweep) and runs a tenth of
 * each fuzz campaign (same seeds, so a quick run is a prefix of the full one).
 */
export const QUICK = process.env.RINGWORK_TEST_TIER === 'quick';

/** Property-test run count for this tier: `n` in the full suite, a tenth (≥ 50) in the quick one. */
export const runs = (n: number): number => (QUICK ? Math.max(50, Math.ceil(n / 10)) : n);

/** "3,000 cases" for test titles, for this tier. */
export const cases = (n: number): string => `${runs(n).toLocaleString('en-US')} cases`;
