/**
 * The pages' polling of ledger and stake endpoints: it keeps asking while the feature is on, and
 * stops after `{enabled: false}` so a server without stake or ledger is not asked (and a failed
 * request not logged in the console) every few seconds.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { featureOff, pollJson, type PollDeps } from '../../web/src/app/poll-json';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A fake server answering each request with the next of `answers` (the last one repeats). */
function fakeServer(answers: unknown[]): { deps: PollDeps; urls: string[] } {
  const urls: string[] = [];
  const deps: PollDeps = {
    fetch: (url) => {
      urls.push(url);
      const answer = answers[Math.min(urls.length - 1, answers.length - 1)];
      return answer instanceof Error
        ? Promise.reject(answer)
        : Promise.resolve({ json: () => Promise.resolve(answer) });
    },
    setInterval: (fn, ms) => setInterval(fn, ms),
    clearInterval: (h) => clearInterval(h as ReturnType<typeof setInterval>),
  };
  return { deps, urls };
}

describe('pollJson', () => {
  it('asks every interval while the feature is on, and stops when told to', async () => {
    const { deps, urls } = fakeServer([{ enabled: true, stakeWei: '0' }]);
    const seen: unknown[] = [];
    const stop = pollJson('/api/stake/0xabc', 10_000, (d) => seen.push(d), undefined, deps);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(urls).toHaveLength(4);
    expect(seen).toHaveLength(4);
    stop();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(urls).toHaveLength(4);
  });

  it('asks once when the server says the feature is off', async () => {
    const { deps, urls } = fakeServer([{ enabled: false }]);
    const seen: unknown[] = [];
    pollJson('/api/stake/0xabc', 10_000, (d) => seen.push(d), undefined, deps);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(urls).toEqual(['/api/stake/0xabc']);
    expect(seen).toEqual([{ enabled: false }]);
  });

  it('keeps asking after a failed request, and hands nothing over after stop', async () => {
    const { deps, urls } = fakeServer([new TypeError('network'), { enabled: true }]);
    const seen: unknown[] = [];
    const stop = pollJson('/api/usage', 5_000, (d) => seen.push(d), undefined, deps);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(urls).toHaveLength(2);
    expect(seen).toEqual([{ enabled: true }]);
    stop();
    stop();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(seen).toHaveLength(1);
  });

  it('reads only an explicit enabled: false as off', () => {
    expect(featureOff({ enabled: false })).toBe(true);
    expect(featureOff({ enabled: true })).toBe(false);
    expect(featureOff({ error: { code: 'AUTH_BAD_TOKEN' } })).toBe(false);
    expect(featureOff(null)).toBe(false);
    expect(featureOff('off')).toBe(false);
  });
});
