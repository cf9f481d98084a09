/**
 * Every test timeout comes from here, so one factor adapts the whole suite to a slow machine.
 *
 * `RINGWORK_TIMEOUT_SCALE` (a number ≥ 1) multiplies every budget below. Without it the factor is
 * 1, or 2 under CI (`CI=true`), where the two cores are shared with the rest of a clean install.
 * The budgets are generous on purpose: a timeout only fires when something is wrong, and then a
 * waiting step should fail first, saying what it waited for, rather than the whole test.
 */

function readScale(): number {
  const raw = process.env.RINGWORK_TIMEOUT_SCALE;
  if (raw !== undefined && raw !== '') {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 1)
      throw new Error(
        `RINGWORK_TIMEOUT_SCALE must be a number ≥ 1 (got "${raw}"), e.g. RINGWORK_TIMEOUT_SCALE=3`,
      );
    return n;
  }
  return process.env.CI ? 2 : 1;
}

/** The factor every budget is multiplied by. */
export const TIMEOUT_SCALE = readScale();

/** `ms` scaled by {@link TIMEOUT_SCALE}. */
export const scaled = (ms: number): number => Math.round(ms * TIMEOUT_SCALE);

/** Named budgets (milliseconds, already scaled). */
export const TIMEOUTS = {
  /** Playwright's default per-test budget. */
  browserTest: scaled(180_000),
  /** A test that starts several pages and generates through them. */
  browserTestLong: scaled(300_000),
  /** The real server process: spawn until it prints its address. */
  serverStart: scaled(30_000),
  /** A contributor page: profile, download its shard, load it into the runner. */
  contributorServing: scaled(60_000),
  /** A ring of pages: every link open after the assignments. */
  ringForm: scaled(30_000),
  /** The coordinator noticing a change and pushing it to the pages. */
  replan: scaled(15_000),
  /** One `npm run swarm` CLI run (real server, N pages, 64 steps). */
  swarmRun: scaled(75_000),
} as const;

/**
 * Polls `probe` until it returns a value that is not `undefined`/`false`; on timeout throws an
 * error naming what was awaited and the last state `describe` gives, so a slow step says what it
 * was waiting for instead of the whole test timing out.
 */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs: number; intervalMs?: number; describe?: () => Promise<string> | string },
): Promise<T> {
  const started = Date.now();
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - started > opts.timeoutMs) {
      const state = opts.describe ? `; last state: ${await opts.describe()}` : '';
      throw new Error(
        `timed out after ${(opts.timeoutMs / 1000).toFixed(0)} s waiting for ${what}${state} (RINGWORK_TIMEOUT_SCALE=${TIMEOUT_SCALE})`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250));
  }
}
