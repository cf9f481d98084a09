/**
 * Who computes next on a ring stage, and who may hold a session there at all.
 *
 * A stage's requesters are strangers' tabs, so every resource is bounded per counterparty:
 * - **Admission.** Each requester may hold at most `maxSessionsPerRequester` sessions, and all
 *   sessions together may reserve at most `kvBudgetBytes` of KV cache. A session reserves its
 *   worst case (`kvBytesPerSession`, i.e. bytes per position × the shard's context) when it opens,
 *   so an admitted session never fails mid-generation for memory; an open over either bound is
 *   refused with `STAGE_SESSION_LIMIT` / `STAGE_KV_BUDGET`.
 * - **Fairness.** The runner computes one thing at a time (ORT sessions cannot run concurrently).
 *   Work is queued per requester, and requesters are served round-robin, one *turn* each: a turn is
 *   one bounded chunk of work (the stage splits a long prefill into chunks that take about as long
 *   as a decode step while others hold sessions), so an honest step waits for at most one chunk of
 *   every other active requester — never for another requester's whole backlog. Within one requester, work runs in arrival order,
 *   which keeps each session's steps consecutive.
 * - **Idle sessions** (no work queued and no message for `idleMs`) are handed to `onIdle` to be
 *   freed: a tab that opened a session and vanished releases its KV reservation quickly.
 */
import { RingworkError } from '../errors.js';

/** Bounds of one stage. */
export interface StageSchedulerLimits {
  /** Sessions one requester may hold at once. */
  maxSessionsPerRequester: number;
  /** KV-cache bytes all sessions together may reserve. */
  kvBudgetBytes: number;
  /** KV-cache bytes one session reserves (bytes per position × context length). */
  kvBytesPerSession: number;
  /** A session with nothing queued and no message for this long is freed. */
  idleMs: number;
}

/** Options of {@link createStageScheduler}. */
export interface StageSchedulerOptions extends StageSchedulerLimits {
  /** Frees a session that went idle (the stage closes its runner session and tells the next stage). */
  onIdle: (session: string) => void;
  now?: () => number;
  /** Repeating timer for the idle sweep (injectable for tests); returns a cancel function. */
  setInterval?: (fn: () => void, ms: number) => () => void;
  /** Resolves after pending I/O had a chance to run (default: one macrotask). */
  yieldToEvents?: () => Promise<void>;
}

/**
 * One unit of queued work. Returns `true` when the work is finished, `false` when it wants another
 * turn (it is then served again after every other waiting requester had one). It must not throw:
 * the stage reports its own errors.
 */
export type StageTurn = () => Promise<boolean>;

/** Counters for stats and benchmarks. */
export interface StageSchedulerStats {
  sessions: number;
  requesters: number;
  reservedKvBytes: number;
  queuedTurns: number;
}

export interface StageScheduler {
  /**
   * Admits a new session for `requester` (the identity the stage derived from the opening link).
   * Throws `STAGE_SESSION_LIMIT` or `STAGE_KV_BUDGET` when it does not fit.
   */
  admit(session: string, requester: string): void;
  /** Forgets a session: drops its queued work and its KV reservation. Unknown ids are ignored. */
  release(session: string): void;
  has(session: string): boolean;
  /** True when requesters other than this session's hold sessions here (its turns delay them). */
  contended(session: string): boolean;
  /** Marks a session as used now (postpones its idle release). */
  touch(session: string): void;
  /** Queues work for an admitted session, behind that requester's earlier work. */
  enqueue(session: string, turn: StageTurn): void;
  stats(): StageSchedulerStats;
  /** Drops all queued work and stops the idle sweep; safe twice. */
  stop(): void;
}

/**
 * One macrotask, as cheap as the host allows. Between turns the scheduler must let messages that
 * arrived meanwhile be delivered and queued: a runner that resolves in microtasks (ORT's wasm
 * backend in-process) would otherwise run one requester's whole backlog before another's step is
 * even seen, which is exactly the starvation round-robin is there to prevent.
 */
function nextMacrotask(): Promise<void> {
  const g = globalThis as unknown as {
    setImmediate?: (fn: () => void) => void;
    MessageChannel?: new () => {
      port1: { onmessage: (() => void) | null; close(): void };
      port2: { postMessage(m: unknown): void };
    };
  };
  return new Promise((resolve) => {
    if (typeof g.setImmediate === 'function') return g.setImmediate(resolve);
    if (typeof g.MessageChannel === 'function') {
      // setTimeout(0) is clamped to 4 ms after a few nestings in browsers; a message is not.
      const c = new g.MessageChannel();
      c.port1.onmessage = () => {
        c.port1.close();
        resolve();
      };
      return c.port2.postMessage(null);
    }
    setTimeout(resolve, 0);
  });
}

const defaultInterval = (fn: () => void, ms: number) => {
  const t = setInterval(fn, ms);
  return () => clearInterval(t);
};

export function createStageScheduler(o: StageSchedulerOptions): StageScheduler {
  const now = o.now ?? (() => performance.now());
  const yieldToEvents = o.yieldToEvents ?? nextMacrotask;
  const sessions = new Map<string, { requester: string; lastUsed: number; queued: number }>();
  const perRequester = new Map<string, number>();
  const queues = new Map<string, { session: string; turn: StageTurn }[]>();
  /** Requesters with queued work, in serving order. */
  const rotation: string[] = [];
  let reserved = 0;
  let running = false;
  let stopped = false;

  const pump = async () => {
    if (running) return;
    running = true;
    try {
      while (!stopped) {
        const requester = rotation.shift();
        if (requester === undefined) break;
        const queue = queues.get(requester);
        const job = queue?.[0];
        if (!queue || !job) {
          queues.delete(requester);
          continue;
        }
        let done = true;
        try {
          done = await job.turn();
        } catch {
          // A turn reports its own failures; a throw here must not stop everyone else's work.
        }
        // The session may have been released (and its work dropped) while the turn ran.
        if (queue[0] === job && done) {
          queue.shift();
          const s = sessions.get(job.session);
          if (s) {
            s.queued--;
            s.lastUsed = now();
          }
        }
        if (queue.length > 0) rotation.push(requester);
        else if (queues.get(requester) === queue) queues.delete(requester);
        await yieldToEvents();
      }
    } finally {
      running = false;
    }
  };

  const release = (session: string) => {
    const s = sessions.get(session);
    if (!s) return;
    sessions.delete(session);
    reserved -= o.kvBytesPerSession;
    const n = (perRequester.get(s.requester) ?? 1) - 1;
    if (n > 0) perRequester.set(s.requester, n);
    else perRequester.delete(s.requester);
    const queue = queues.get(s.requester);
    if (queue) {
      // Keep a running head in place (pump removes it when its turn returns); drop the rest.
      const kept = queue.filter((j, i) => j.session !== session || (i === 0 && running));
      queue.splice(0, queue.length, ...kept);
    }
  };

  const stopSweep = (o.setInterval ?? defaultInterval)(
    () => {
      const cutoff = now() - o.idleMs;
      for (const [id, s] of [...sessions]) {
        if (s.queued === 0 && s.lastUsed < cutoff) {
          release(id);
          o.onIdle(id);
        }
      }
    },
    Math.max(50, Math.min(o.idleMs / 2, 5_000)),
  );

  return {
    admit(session, requester) {
      if (sessions.has(session)) return;
      const held = perRequester.get(requester) ?? 0;
      if (held >= o.maxSessionsPerRequester) {
        throw new RingworkError(
          'STAGE_SESSION_LIMIT',
          `This stage already serves ${held} sessions for this requester (limit ${o.maxSessionsPerRequester}); end one first.`,
          { details: { held, limit: o.maxSessionsPerRequester } },
        );
      }
      if (reserved + o.kvBytesPerSession > o.kvBudgetBytes) {
        throw new RingworkError(
          'STAGE_KV_BUDGET',
          `This stage's KV-cache budget is full (${reserved} of ${o.kvBudgetBytes} bytes reserved; a session needs ${o.kvBytesPerSession}); retry shortly.`,
          { details: { reserved, budget: o.kvBudgetBytes, perSession: o.kvBytesPerSession } },
        );
      }
      sessions.set(session, { requester, lastUsed: now(), queued: 0 });
      perRequester.set(requester, held + 1);
      reserved += o.kvBytesPerSession;
    },
    release,
    has: (session) => sessions.has(session),
    contended(session) {
      const s = sessions.get(session);
      return perRequester.size > (s && perRequester.has(s.requester) ? 1 : 0);
    },
    touch(session) {
      const s = sessions.get(session);
      if (s) s.lastUsed = now();
    },
    enqueue(session, turn) {
      const s = sessions.get(session);
      if (!s || stopped) return;
      s.queued++;
      s.lastUsed = now();
      let queue = queues.get(s.requester);
      if (!queue) {
        queue = [];
        queues.set(s.requester, queue);
        rotation.push(s.requester);
      }
      queue.push({ session, turn });
      void pump();
    },
    stats() {
      let queuedTurns = 0;
      for (const q of queues.values()) queuedTurns += q.length;
      return {
        sessions: sessions.size,
        requesters: perRequester.size,
        reservedKvBytes: reserved,
        queuedTurns,
      };
    },
    stop() {
      if (stopped) return;
      stopped = true;
      stopSweep();
      queues.clear();
      rotation.length = 0;
    },
  };
}
