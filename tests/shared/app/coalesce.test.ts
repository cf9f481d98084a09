/** shared/app/coalesce.ts: at most one delivery per interval, the latest value always delivered. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createCoalescer } from '../../../shared/app/coalesce';
import { systemAppClock } from '../../../shared/app/network-port';

describe('createCoalescer (fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const make = (everyMs: number, urgent?: (a: number | undefined, b: number) => boolean) => {
    const got: Array<[number, number]> = [];
    const c = createCoalescer<number>({
      everyMs,
      clock: systemAppClock,
      deliver: (v) => got.push([v, performance.now()]),
      ...(urgent ? { urgent } : {}),
    });
    return { c, got, values: () => got.map(([v]) => v) };
  };

  it('delivers the first value at once, then the latest once per interval', async () => {
    const { c, values } = make(250);
    c.push(1);
    expect(values()).toEqual([1]);
    // 100 values over 1 s, one per 10 ms (a fast ring's steps).
    for (let i = 2; i <= 101; i++) {
      await vi.advanceTimersByTimeAsync(10);
      c.push(i);
    }
    const during = values().length;
    // 1 s at one per 250 ms: the first, then about four more — not one per value.
    expect(during).toBeGreaterThanOrEqual(4);
    expect(during).toBeLessThanOrEqual(6);
    // The last value arrives by itself once its interval ends, with no further push.
    await vi.advanceTimersByTimeAsync(250);
    expect(values().at(-1)).toBe(101);
    expect(values()).toEqual([...values()].sort((a, b) => a - b));
    // Nothing more is pending: no duplicate.
    const n = values().length;
    await vi.advanceTimersByTimeAsync(1000);
    expect(values().length).toBe(n);
  });

  it('never delivers two values closer than the interval', async () => {
    const { c, got } = make(250);
    for (let i = 0; i < 200; i++) {
      c.push(i);
      await vi.advanceTimersByTimeAsync(3 + (i % 7));
    }
    await vi.advanceTimersByTimeAsync(250);
    for (let i = 1; i < got.length; i++) expect(got[i]![1] - got[i - 1]![1]).toBeGreaterThanOrEqual(250);
    expect(got.at(-1)![0]).toBe(199);
  });

  it('delivers an urgent value at once, and flush delivers what waits', async () => {
    const { c, values } = make(250, (last, next) => last !== undefined && next < 0);
    c.push(1);
    c.push(2);
    expect(values()).toEqual([1]);
    c.push(-1); // urgent: at once, and it replaces 2
    expect(values()).toEqual([1, -1]);
    c.push(3);
    expect(values()).toEqual([1, -1]);
    c.flush();
    expect(values()).toEqual([1, -1, 3]);
    c.flush(); // safe twice, nothing waits
    await vi.advanceTimersByTimeAsync(1000);
    expect(values()).toEqual([1, -1, 3]);
  });

  it('with everyMs 0 delivers every value', () => {
    const { c, values } = make(0);
    for (let i = 0; i < 5; i++) c.push(i);
    expect(values()).toEqual([0, 1, 2, 3, 4]);
  });
});
