/**
 * Slashing on chain: a deviant that validation proved (the ledger's `onDeviant` hook, with the
 * evidence hash the ledger recorded) loses stake through `slash(peer, amount, evidenceHash)`, sent
 * with the slasher key. Each evidence hash is slashed once: before sending (and after a failure) the
 * contract's `evidenceUsed` is read, so a retry after a transaction that did land records it instead
 * of sending again. A failure is logged and retried with back-off, never thrown at the server; every
 * attempt is recorded in the ledger (`slashes`: state, tx hash, attempts, last error).
 */
import type { Logger } from 'pino';
import type { Hex } from 'viem';
import { isRingworkError } from '../../../shared/errors.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { SlashRow } from '../ledger/ledger.js';
import type { DeviantToSlash } from '../ledger/validation-credit.js';
import type { StakeChain } from './stake-chain.js';

/** The slasher. */
export interface Slasher {
  /** Queues the slash of a proven deviant (anonymous deviants have nothing to slash: ignored). */
  slash(d: DeviantToSlash): void;
  /** Resolves once nothing is queued or in flight (tests, shutdown). */
  idle(): Promise<void>;
  stats(): { queued: number; sent: number; failures: number };
  /** Stops retrying; safe twice. */
  stop(): void;
}

/** What the slasher is built from. */
export interface SlasherDeps {
  readonly chain: Pick<StakeChain, 'slash' | 'evidenceUsed'>;
  /** Where attempts are recorded (the ledger; absent: logged only). */
  readonly record?: (s: SlashRow) => Promise<void>;
  readonly clock: Clock;
  readonly logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Wei taken per deviation (default: all of it, `2^256 - 1`; the contract takes what there is). */
  readonly amountWei?: bigint;
  /** First retry delay (ms), doubling up to `maxRetryMs`. */
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
  /** A slash landed: the address's cached stake is stale. */
  readonly onSlashed?: (address: string, txHash: Hex) => void;
}

const ALL = 2n ** 256n - 1n;

interface Job {
  readonly address: string;
  readonly evidenceHash: Hex;
  attempts: number;
}

/** Creates the slasher. */
export function createSlasher(deps: SlasherDeps): Slasher {
  const { chain, clock, logger } = deps;
  const retryMs = deps.retryMs ?? 1000;
  const maxRetryMs = deps.maxRetryMs ?? 60_000;
  const amount = deps.amountWei ?? ALL;
  const queue: Job[] = [];
  const seen = new Set<string>();
  let running: Promise<void> | null = null;
  let timer: TimerHandle | null = null;
  let delay = retryMs;
  let stopped = false;
  const counters = { sent: 0, failures: 0 };
  let waiters: Array<() => void> = [];

  // Rows are written in order (an upsert per evidence hash: the last state must win).
  let recording: Promise<void> = Promise.resolve();
  const record = (row: SlashRow): Promise<void> =>
    (recording = recording.then(async () => {
      try {
        await deps.record?.(row);
      } catch (e) {
        logger.error({ err: e, evidenceHash: row.evidenceHash }, 'stake: slash not recorded in the ledger');
      }
    }));

  const settleIfIdle = (): void => {
    if (queue.length > 0 || running || timer) return;
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  /** One attempt at the head job; true when it is done (sent, or found done on chain). */
  const attempt = async (job: Job): Promise<boolean> => {
    job.attempts++;
    try {
      // Idempotent: a slash that landed before (a retry after a lost receipt) is not sent again.
      if (job.attempts > 1 && (await chain.evidenceUsed(job.evidenceHash))) {
        logger.info(
          { address: job.address, evidenceHash: job.evidenceHash },
          'stake: slash already on chain',
        );
        await record({ ...job, state: 'sent' });
        return true;
      }
      const txHash = await chain.slash(job.address, amount, job.evidenceHash);
      counters.sent++;
      logger.info({ address: job.address, evidenceHash: job.evidenceHash, txHash }, 'stake: deviant slashed');
      await record({ ...job, state: 'sent', txHash });
      deps.onSlashed?.(job.address, txHash);
      return true;
    } catch (e) {
      counters.failures++;
      const message = isRingworkError(e) || e instanceof Error ? e.message : String(e);
      logger.error(
        {
          err: e,
          address: job.address,
          evidenceHash: job.evidenceHash,
          attempts: job.attempts,
          retryInMs: delay,
        },
        'stake: slash failed; retrying',
      );
      await record({ ...job, state: 'failed', lastError: message });
      return false;
    }
  };

  const run = (): void => {
    if (running || stopped) return;
    running = (async () => {
      while (queue.length > 0 && !stopped) {
        const job = queue[0]!;
        if (await attempt(job)) {
          queue.shift();
          delay = retryMs;
          continue;
        }
        // Back off; the queue keeps its order (the failed job first).
        timer = clock.setTimeout(() => {
          timer = null;
          run();
        }, delay);
        delay = Math.min(maxRetryMs, delay * 2);
        break;
      }
    })().finally(() => {
      running = null;
      settleIfIdle();
    });
  };

  return {
    slash(d) {
      if (stopped) return;
      if (!d.address) {
        logger.warn({ peer: d.peerId }, 'stake: anonymous deviant; nothing to slash');
        return;
      }
      if (seen.has(d.evidenceHash)) return;
      seen.add(d.evidenceHash);
      const job: Job = { address: d.address, evidenceHash: d.evidenceHash, attempts: 0 };
      queue.push(job);
      void record({ ...job, state: 'pending' });
      if (!timer) run();
    },
    idle: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        settleIfIdle();
      }),
    stats: () => ({ queued: queue.length, ...counters }),
    stop() {
      stopped = true;
      if (timer) clock.clearTimeout(timer);
      timer = null;
      settleIfIdle();
    },
  };
}
