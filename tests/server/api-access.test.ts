import { describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { createApiAccess, SHARED_LIMITS_TIMEOUT_MS } from '../../signaling-server/src/api/api-access';
import { apiConfigSchema } from '../../signaling-server/src/api/api-config';
import { createStopMatcher } from '../../shared/api/stop-matcher';

const KEY = 'k'.repeat(24);
const OTHER = 'o'.repeat(24);

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return isRingworkError(e) ? e.code : 'not a RingworkError';
  }
};

function setup(overrides: Record<string, unknown> = {}) {
  let now = 1_000_000;
  const clock = { now: () => now };
  const access = createApiAccess(apiConfigSchema.parse(overrides), { keys: [KEY, OTHER], clock });
  return { access, advance: (ms: number) => (now += ms) };
}

describe('API access: keys, per-key budgets, the server-wide stream cap', () => {
  it('needs a known key unless anonymous use is on; anonymous callers are budgeted by address', () => {
    const { access } = setup();
    expect(codeOf(() => access.admit(undefined, 'a'))).toBe('API_UNAUTHORIZED');
    expect(codeOf(() => access.admit('Bearer nope-nope-nope-nope', 'a'))).toBe('API_UNAUTHORIZED');
    expect(codeOf(() => access.admit(`Basic ${KEY}`, 'a'))).toBe('API_UNAUTHORIZED');
    expect(access.admit(`Bearer ${KEY}`, 'a').principal).toMatch(/^key:[0-9a-f]{8}$/);
    const anon = setup({ anonymous: true, maxStreamsPerKey: 1 }).access;
    expect(anon.admit(undefined, '10.0.0.1').principal).toBe('anon:10.0.0.1');
    expect(codeOf(() => anon.admit(undefined, '10.0.0.1'))).toBe('API_RATE_LIMITED');
    expect(anon.admit(undefined, '10.0.0.2').principal).toBe('anon:10.0.0.2');
  });

  it('caps streams per key and per server; a released stream frees its slot (release twice is safe)', () => {
    const { access } = setup({ maxStreamsPerKey: 2, maxConcurrentStreams: 3 });
    const a = access.admit(`Bearer ${KEY}`, 'x');
    access.admit(`Bearer ${KEY}`, 'x');
    expect(codeOf(() => access.admit(`Bearer ${KEY}`, 'x'))).toBe('API_RATE_LIMITED');
    access.admit(`Bearer ${OTHER}`, 'x');
    expect(access.streams).toBe(3);
    expect(codeOf(() => access.admit(`Bearer ${OTHER}`, 'x'))).toBe('API_RATE_LIMITED');
    a.release();
    a.release();
    expect(access.streams).toBe(2);
    expect(access.admit(`Bearer ${KEY}`, 'x').principal).toMatch(/^key:/);
  });

  it('refuses past the request rate and the hourly token budget, and both refill with time', () => {
    const { access, advance } = setup({ requestsPerMinute: 2, tokensPerHour: 100 });
    access.admit(`Bearer ${KEY}`, 'x').release();
    access.admit(`Bearer ${KEY}`, 'x').release();
    expect(codeOf(() => access.admit(`Bearer ${KEY}`, 'x'))).toBe('API_RATE_LIMITED');
    advance(30_000); // one request back
    const g = access.admit(`Bearer ${KEY}`, 'x');
    g.spend(150); // a stream may overrun its budget; the next request waits for the refill
    g.release();
    advance(60_000);
    expect(codeOf(() => access.admit(`Bearer ${KEY}`, 'x'))).toBe('API_RATE_LIMITED');
    advance(36 * 60_000); // 60 tokens refilled: the level is positive again
    expect(access.admit(`Bearer ${KEY}`, 'x').principal).toMatch(/^key:/);
  });
});

describe('API access with shared (cluster) counts', () => {
  it('a shared store that does not answer in time: this instance decides alone (fail open), says so once', async () => {
    vi.useFakeTimers();
    try {
      const warnings: string[] = [];
      const access = createApiAccess(apiConfigSchema.parse({ maxStreamsPerKey: 1 }), {
        keys: [KEY],
        logger: { warn: (_o, m) => warnings.push(m), info: () => undefined },
      });
      const calls: string[] = [];
      const never = new Promise<never>(() => undefined);
      access.share({
        admit: () => (calls.push('admit'), never),
        spend: () => (calls.push('spend'), never),
        setMine: () => (calls.push('setMine'), never),
      });
      expect(access.counting).toBe('cluster');
      const pending = access.acquire(`Bearer ${KEY}`, 'x');
      await vi.advanceTimersByTimeAsync(SHARED_LIMITS_TIMEOUT_MS);
      const g = await pending;
      expect(access.counting).toBe('instance-fallback');
      // Alone, its own count holds: the key's one stream is taken here.
      const second = access.acquire(`Bearer ${KEY}`, 'x');
      const refused = second.then(
        () => 'granted',
        (e: unknown) => (isRingworkError(e) ? e.code : 'other'),
      );
      await vi.advanceTimersByTimeAsync(SHARED_LIMITS_TIMEOUT_MS);
      expect(await refused).toBe('API_RATE_LIMITED');
      g.release();
      expect(calls).toEqual(['admit', 'admit', 'setMine']);
      expect(warnings).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('stop strings over a token stream', () => {
  const run = (stops: string[], pieces: string[]) => {
    const m = createStopMatcher(stops);
    let out = '';
    let stopped = false;
    for (const p of pieces) {
      const r = m.push(p);
      out += r.emit;
      if (r.stopped) {
        stopped = true;
        break;
      }
    }
    if (!stopped) out += m.flush();
    return { out, stopped };
  };

  it('cuts before a stop string split across pieces and never emits part of it', () => {
    expect(run(['Lily'], ['named', ' L', 'i', 'ly', '.'])).toEqual({ out: 'named ', stopped: true });
    expect(run(['\n\n', 'END'], ['a', '\n', '\n', 'b'])).toEqual({ out: 'a', stopped: true });
  });

  it('holds back a possible start and releases it when it turns out not to be a stop', () => {
    const m = createStopMatcher(['Lily']);
    expect(m.push('Li')).toEqual({ emit: '', stopped: false });
    expect(m.push('on')).toEqual({ emit: 'Lion', stopped: false });
    expect(run(['xyz'], ['x', 'y'])).toEqual({ out: 'xy', stopped: false });
    expect(run([], ['a', 'b'])).toEqual({ out: 'ab', stopped: false });
  });
});
