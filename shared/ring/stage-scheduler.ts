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
 *   Work is queued per requester in a {@link ComputeQueue}, one *turn* at a time: a turn is one
 *   bounded chunk of work (the stage splits a long prefill into chunks that take about as long as a
 *   decode step while others hold sessions). The queue serves the waiting requester that has used
 *   the least compute (start-time fair queuing on measured turn time): requesters that keep the
 *   device busy share it equally, and one that comes back after waiting elsewhere — an honest
 *   request whose step was at another stage — goes first, with a bounded credit (`creditMs`), so it
 *   waits for the chunk in progress and nothing more, never for another requester's backlog.
 *   Within one requester, work runs in arrival order, which keeps each session's steps consecutive.
 * - **One device, one queue.** Stages that share a device (a tab that serves a draining epoch and
 *   the next one; several stages in one process) share one {@link ComputeQueue}, keyed by the
 *   requester the ring serves: otherwise a requester with work at every co-located stage takes a
 *   turn at each of them for every one turn of a requester whose step is at one stage at a time.
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
  /** The device's compute queue, shared by the stages on one device (default: one of its own). */
  computeQueue?: ComputeQueue;
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
   * Admits a new session for `requester` (the identity the stage derived from the opening link:
   * the session cap counts per requester). `fairKey` (default `requester`) is whom its compute is
   * charged to in the {@link ComputeQueue}: the requester the ring serves, the same at every stage.
   * Throws `STAGE_SESSION_LIMIT` or `STAGE_KV_BUDGET` when it does not fit.
   */
  admit(session: string, requester: string, fairKey?: string): void;
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

/** One turn of work queued on a {@link ComputeQueue}. */
export interface ComputeJob {
  /** Whom the turn's compute is charged to. */
  readonly key: string;
  readonly turn: StageTurn;
  /**
   * Called once when the job leaves the queue: `true` when its turn returned true (finished),
   * `false` when it was dropped (or the queue stopped).
   */
  onSettled(finished: boolean): void;
}

/** A device's serial chain of compute turns, fair between keys (requesters). */
export interface ComputeQueue {
  /** Queues `job` behind its key's earlier jobs. */
  push(job: ComputeJob): void;
  /** Drops queued jobs matching `pred` (a job whose turn is running finishes that turn first). */
  drop(pred: (job: ComputeJob) => boolean): void;
  /** Jobs queued (one whose turn is running included). */
  queued(): number;
  /** Drops everything and stops serving; safe twice. */
  stop(): void;
}

/** Options of {@link createComputeQueue}. */
export interface ComputeQueueOptions {
  now?: () => number;
  yieldToEvents?: () => Promise<void>;
  /**
   * How far below the queue's virtual time (the charge of the key served last) a key that comes
   * back may start, ms of compute: how much priority waiting elsewhere earns (default 50 ms).
   * Bounded, so no key can bank credit.
   */
  creditMs?: number;
}

/** Keys whose usage is remembered while they have nothing queued (oldest forgotten first). */
const MAX_IDLE_KEYS = 1024;

/**
 * Creates a compute queue: start-time fair queuing over measured turn time. The next turn goes to
 * the key with work queued whose charged compute (`used`) is least; a turn's measured duration is
 * charged to its key when it returns. A key that becomes busy again starts at no less than the
 * queue's virtual time (the charge of the key picked last) minus `creditMs`, so it goes first for
 * a while but cannot bank what it did not use while idle.
 */
export function createComputeQueue(o: ComputeQueueOptions = {}): ComputeQueue {
  const now = o.now ?? (() => performance.now());
  const yieldToEvents = o.yieldToEvents ?? nextMacrotask;
  const creditMs = o.creditMs ?? 50;
  const queues = new Map<string, ComputeJob[]>();
  /** Compute charged per key (ms); kept for idle keys too, bounded by MAX_IDLE_KEYS. */
  const used = new Map<string, number>();
  /**
   * The queue's virtual time: the charge its key had when the latest turn was picked. A key that
   * becomes busy again starts no lower than this minus the credit.
   */
  let vtime = 0;
  let running: ComputeJob | null = null;
  /** The running job was dropped: it leaves the queue when its turn returns, whatever it says. */
  let runningDropped = false;
  let pumping = false;
  let stopped = false;

  const next = (): ComputeJob[] | undefined => {
    let best: { q: ComputeJob[]; u: number } | undefined;
    for (const [k, q] of queues) {
      const u = used.get(k) ?? 0;
      if (!best || u < best.u) best = { q, u };
    }
    if (best) vtime = best.u;
    return best?.q;
  };

  const pump = async () => {
    if (pumping) return;
    pumping = true;
    try {
      while (!stopped) {
        const queue = next();
        const job = queue?.[0];
        if (!queue || !job) break;
        running = job;
        runningDropped = false;
        const t0 = now();
        let done = true;
        try {
          done = await job.turn();
        } catch {
          // A turn reports its own failures; a throw here must not stop everyone else's work.
        }
        running = null;
        // At least a microsecond per turn: turns that measure as 0 ms still alternate.
        used.set(job.key, (used.get(job.key) ?? 0) + Math.max(0.001, now() - t0));
        // The job may have been dropped (its session released) while its turn ran.
        if (queue[0] === job && (done || runningDropped)) {
          queue.shift();
          job.onSettled(done && !runningDropped);
        }
        if (queue.length === 0 && queues.get(job.key) === queue) queues.delete(job.key);
        await yieldToEvents();
      }
    } finally {
      pumping = false;
    }
  };

  return {
    push(job) {
      if (stopped) return;
      let queue = queues.get(job.key);
      if (!queue) {
        // Busy again: start no lower than the queue's virtual time minus the credit.
        used.set(job.key, Math.max(used.get(job.key) ?? 0, vtime - creditMs));
        queue = [];
        queues.set(job.key, queue);
        if (used.size > MAX_IDLE_KEYS) {
          for (const k of used.keys()) {
            if (used.size <= MAX_IDLE_KEYS) break;
            if (!queues.has(k)) used.delete(k);
          }
        }
      }
      queue.push(job);
      void pump();
    },
    drop(pred) {
      const dropped: ComputeJob[] = [];
      for (const [k, queue] of queues) {
        // Keep a running head in place (the pump removes it when its turn returns).
        const kept = queue.filter((j) => {
          if (!pred(j)) return true;
          if (j === running) {
            runningDropped = true;
            return true;
          }
          dropped.push(j);
          return false;
        });
        if (kept.length === queue.length) continue;
        queue.splice(0, queue.length, ...kept);
        if (queue.length === 0) queues.delete(k);
      }
      for (const j of dropped) j.onSettled(false);
    },
    queued() {
      let n = 0;
      for (const q of queues.values()) n += q.length;
      return n;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      const all = [...queues.values()].flat().filter((j) => j !== running);
      queues.clear();
      for (const j of all) j.onSettled(false);
    },
  };
}

/** A stage's job: which session it computes for, so a released session's work can be dropped. */
interface StageJob extends ComputeJob {
  readonly session: string;
}

export function createStageScheduler(o: StageSchedulerOptions): StageScheduler {
  const now = o.now ?? (() => performance.now());
  const queue =
    o.computeQueue ??
    createComputeQueue({ now, ...(o.yieldToEvents ? { yieldToEvents: o.yieldToEvents } : {}) });
  const ownQueue = o.computeQueue === undefined;
  const sessions = new Map<
    string,
    { requester: string; fairKey: string; lastUsed: number; queued: number }
  >();
  const perRequester = new Map<string, number>();
  /** This stage's jobs (a shared queue holds other stages' too). */
  const mine = new WeakSet<ComputeJob>();
  const isMine = (j: ComputeJob): j is StageJob => mine.has(j);
  let reserved = 0;
  let queuedHere = 0;
  let stopped = false;

  const release = (session: string) => {
    const s = sessions.get(session);
    if (!s) return;
    sessions.delete(session);
    reserved -= o.kvBytesPerSession;
    const n = (perRequester.get(s.requester) ?? 1) - 1;
    if (n > 0) perRequester.set(s.requester, n);
    else perRequester.delete(s.requester);
    queue.drop((j) => isMine(j) && j.session === session);
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
    admit(session, requester, fairKey = requester) {
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
      sessions.set(session, { requester, fairKey, lastUsed: now(), queued: 0 });
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
      queuedHere++;
      const job: StageJob = {
        key: s.fairKey,
        session,
        turn,
        onSettled: () => {
          queuedHere--;
          // (A released session's work is dropped; a new one may have reused the id meanwhile.)
          if (sessions.get(session) === s) {
            s.queued--;
            s.lastUsed = now();
          }
        },
      };
      mine.add(job);
      queue.push(job);
    },
    stats() {
      return {
        sessions: sessions.size,
        requesters: perRequester.size,
        reservedKvBytes: reserved,
        queuedTurns: queuedHere,
      };
    },
    stop() {
      if (stopped) return;
      stopped = true;
      stopSweep();
      queue.drop(isMine);
      if (ownQueue) queue.stop();
    },
  };
}
