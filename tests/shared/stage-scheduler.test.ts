import { afterEach, describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { createStageScheduler, type StageSchedulerOptions } from '../../shared/ring/stage-scheduler';

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
});
