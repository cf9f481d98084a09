import { afterEach, describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import {
  createComputeQueue,
  createStageScheduler,
  type ComputeQueue,
  type StageSchedulerOptions,
} from '../../shared/ring/stage-scheduler';

const make = (o: Partial<StageSchedulerOptions> = {}) =>
  createStageScheduler({
    maxSessionsPerRequester: 2,
    kvBudgetBytes: 1000,
    kvBytesPerSession: 100,
    idleMs: 1000,
    onIdle: () => undefined,
    now: () => Date.now(),
    ...o,
  });

const codeOf = (fn: () => void) => {
  try {
    fn();
  } catch (e) {
    return isRingworkError(e) ? e.code : String(e);
  }
  return undefined;
};

afterEach(() => {
  vi.useRealTimers();
});

describe('stage scheduler', () => {
  it('serves requesters round-robin, one turn each; a multi-turn job yields between its turns', async () => {
    const s = make();
    const order: string[] = [];
    s.admit('a1', 'alice');
    s.admit('m1', 'mallory');
    s.admit('m2', 'mallory');
    // Mallory queues a 4-turn prefill and another job first; alice's single step comes last.
    let left = 4;
    s.enqueue('m1', async () => {
      order.push('m1');
      return --left === 0;
    });
    s.enqueue('m2', async () => {
      order.push('m2');
      return true;
    });
    await new Promise<void>((resolve) =>
      s.enqueue('a1', async () => {
        order.push('a1');
        resolve();
        return true;
      }),
    );
    await vi.waitFor(() => expect(s.stats().queuedTurns).toBe(0));
    // Alice waits for one of mallory's turns, not for mallory's whole backlog.
    expect(order).toEqual(['m1', 'a1', 'm1', 'm1', 'm1', 'm2']);
    s.stop();
  });

  it('keeps one requester’s work in arrival order', async () => {
    const s = make();
    const order: number[] = [];
    s.admit('x', 'r');
    for (let i = 0; i < 5; i++) {
      s.enqueue('x', async () => {
        await Promise.resolve();
        order.push(i);
        return true;
      });
    }
    await vi.waitFor(() => expect(order).toEqual([0, 1, 2, 3, 4]));
    s.stop();
  });

  it('refuses opens over the per-requester cap and over the KV budget with typed codes', () => {
    const s = make({ kvBudgetBytes: 350 });
    s.admit('a', 'r1');
    s.admit('b', 'r1');
    expect(codeOf(() => s.admit('c', 'r1'))).toBe('STAGE_SESSION_LIMIT');
    s.admit('d', 'r2');
    expect(codeOf(() => s.admit('e', 'r3'))).toBe('STAGE_KV_BUDGET');
    expect(s.stats()).toMatchObject({ sessions: 3, reservedKvBytes: 300 });
    s.release('a');
    s.admit('e', 'r3');
    expect(codeOf(() => s.admit('f', 'r1'))).toBe('STAGE_KV_BUDGET');
    s.stop();
  });

  it('drops a released session’s queued work', async () => {
    const s = make();
    s.admit('a', 'r');
    s.admit('b', 'r');
    const ran: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    s.enqueue('b', async () => {
      await gate;
      ran.push('b');
      return true;
    });
    s.enqueue('a', async () => {
      ran.push('a');
      return true;
    });
    s.release('a');
    release();
    await vi.waitFor(() => expect(s.stats().queuedTurns).toBe(0));
    expect(ran).toEqual(['b']);
    s.stop();
  });

  it('frees sessions idle for idleMs (nothing queued, no message), never a busy one', async () => {
    vi.useFakeTimers();
    const idle: string[] = [];
    const s = make({ idleMs: 1000, onIdle: (id) => idle.push(id) });
    s.admit('quiet', 'r1');
    s.admit('busy', 'r2');
    let finish!: () => void;
    s.enqueue('busy', () => new Promise<boolean>((r) => (finish = () => r(true))));
    await vi.advanceTimersByTimeAsync(600);
    s.touch('quiet');
    await vi.advanceTimersByTimeAsync(900);
    expect(idle).toEqual([]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(idle).toEqual(['quiet']);
    expect(s.has('quiet')).toBe(false);
    finish();
    await vi.advanceTimersByTimeAsync(2000);
    expect(idle).toEqual(['quiet', 'busy']);
    expect(s.stats()).toMatchObject({ sessions: 0, reservedKvBytes: 0 });
    s.stop();
  });

  describe('compute queue (fair by measured compute)', () => {
    /** A clock that moves only when a turn says how long it took. */
    let t = 0;
    const clockNow = () => t;
    const turn = (order: string[], name: string, ms: number) => async () => {
      order.push(name);
      t += ms;
      return true;
    };
    const settle = (q: ComputeQueue) => vi.waitFor(() => expect(q.queued()).toBe(0));

    it('serves the key that used the least compute: cheap turns are not held behind dear ones', async () => {
      const q = createComputeQueue({ now: clockNow });
      const order: string[] = [];
      for (let i = 1; i <= 3; i++)
        q.push({ key: 'm', turn: turn(order, `m${i}`, 10), onSettled: () => undefined });
      for (let i = 1; i <= 3; i++)
        q.push({ key: 'a', turn: turn(order, `a${i}`, 1), onSettled: () => undefined });
      await settle(q);
      // Round-robin would give m1 a1 m2 a2 m3 a3: alice's three 1 ms turns cost less than one of
      // mallory's 10 ms turns, so they all go before mallory's second.
      expect(order).toEqual(['m1', 'a1', 'a2', 'a3', 'm2', 'm3']);
      q.stop();
    });

    it('gives a key that comes back a bounded head start, never the credit of its whole idle time', async () => {
      const q = createComputeQueue({ now: clockNow, creditMs: 30 });
      const order: string[] = [];
      // Mallory keeps the device busy alone for a while (100 ms of turns) ...
      for (let i = 0; i < 10; i++)
        q.push({ key: 'm', turn: turn(order, 'm', 10), onSettled: () => undefined });
      await settle(q);
      // ... then alice comes with as much work: she may go ahead for ~30 ms, then they alternate.
      for (let i = 0; i < 10; i++)
        q.push({ key: 'a', turn: turn(order, 'a', 10), onSettled: () => undefined });
      for (let i = 0; i < 10; i++)
        q.push({ key: 'm', turn: turn(order, 'm', 10), onSettled: () => undefined });
      await settle(q);
      const after = order.slice(order.indexOf('a'));
      const lead = after.findIndex((x) => x === 'm');
      // She starts 30 ms below the last turn picked (90 ms), mallory's charge is 100 ms: 4 turns
      // (a 5th on the tie), not the 10 her whole idle time would have bought.
      expect(lead).toBeGreaterThanOrEqual(4);
      expect(lead).toBeLessThanOrEqual(5);
      // Once level, neither waits for more than one of the other's turns.
      const rest = after.slice(lead, lead + 10).join('');
      expect(rest).not.toMatch(/aaa|mmm/);
      q.stop();
    });

    it('is shared by the stages of one device, fair per requester across them', async () => {
      const q = createComputeQueue({ now: clockNow });
      const stage = () => make({ computeQueue: q, maxSessionsPerRequester: 4 });
      const [s0, s1] = [stage(), stage()];
      const order: string[] = [];
      // Mallory has sessions at both stages (admitted under each stage's own name for her, charged
      // to her one name), and a backlog at both; alice has one step at the second stage at a time.
      s0.admit('m0', 'mallory', 'mallory');
      s1.admit('m1', 's0>mallory', 'mallory');
      s1.admit('a1', 's0>alice', 'alice');
      for (let i = 0; i < 6; i++) {
        s0.enqueue('m0', turn(order, 'm', 1));
        s1.enqueue('m1', turn(order, 'm', 1));
      }
      for (let i = 0; i < 4; i++) s1.enqueue('a1', turn(order, 'a', 1));
      await settle(q);
      // One turn of mallory's (at either stage) per turn of alice's, not one per stage.
      const firstA = order.indexOf('a');
      expect(order.slice(firstA, firstA + 8).join('')).toBe('amamamam');
      expect(s0.stats().queuedTurns + s1.stats().queuedTurns).toBe(0);
      // Stopping one stage drops only its own work from the shared queue.
      s1.enqueue('a1', turn(order, 'y', 1)); // runs at once (the queue is idle) ...
      s0.enqueue('m0', turn(order, 'x', 1)); // ... so this one waits, and is dropped
      s0.stop();
      await settle(q);
      expect(order.slice(-1)).toEqual(['y']);
      expect(order).not.toContain('x');
      s1.stop();
    });
  });
});
