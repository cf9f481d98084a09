/**
 * A contributor whose connection ends comes back by itself: it backs off (exponentially, with
 * jitter, on an injected fake clock), resumes its session when the server kept it, starts a new one
 * otherwise (new id: links and stage rebuilt, profile announced again) and keeps its loaded shard, so
 * an assignment of the same units serves at once without a second load. A "do not come back" verdict
 * stops the loop with a typed error. Real ORT runners on stories260K; in-memory signaling and links.
 */
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { createContributor, type ContributorOptions } from '../../../shared/app/contributor';
import type { AppClock } from '../../../shared/app/network-port';
import { RingworkError } from '../../../shared/errors';
import type { ShardRunner } from '../../../shared/runtime/shard-runner';
import { stories260KRunner } from '../../helpers/engine';
import { loadGolden } from '../../helpers/golden';
import { createFakeSignalingHub, type FakeSignalingHub } from '../../helpers/memory-signaling';
import { scaled } from '../../helpers/timeouts';
import {
  CAPABILITY,
  GOLDEN_SETTINGS,
  assign,
  contributorOn,
  pid,
  requesterOn,
  ringOf,
  warmUpOrt,
} from './app-fixture';

const golden = loadGolden();
const ask = { settings: GOLDEN_SETTINGS, history: [{ role: 'user' as const, text: 'Once upon a time' }] };
const SERVE_TIMEOUT = { timeout: scaled(30_000) };

/** A clock whose sleeps end only when the test says so; it records every delay asked for. */
function fakeClock() {
  let t = 0;
  const pending: { ms: number; resolve: () => void }[] = [];
  const delays: number[] = [];
  const clock: AppClock = {
    now: () => t,
    wallNow: () => 1_700_000_000_000 + t,
    sleep: (ms, signal) =>
      new Promise<void>((resolve) => {
        delays.push(ms);
        const entry = { ms, resolve };
        pending.push(entry);
        signal?.addEventListener(
          'abort',
          () => {
            pending.splice(pending.indexOf(entry), 1);
            resolve();
          },
          { once: true },
        );
      }),
  };
  return {
    clock,
    delays,
    pending: () => pending.length,
    /** Waits for the next sleep to start, then lets its time pass. */
    async tick(): Promise<void> {
      await vi.waitFor(() => expect(pending.length).toBeGreaterThan(0));
      const s = pending.shift()!;
      t += s.ms;
      s.resolve();
    },
  };
}

/** A contributor whose `network()` the test scripts, counting runners, shard loads and connects. */
function scriptedContributor(
  hub: FakeSignalingHub,
  o: { id: () => string; fail?: () => RingworkError | undefined } & Partial<ContributorOptions>,
) {
  const runners: ShardRunner[] = [];
  const loads: (readonly [number, number])[] = [];
  let connects = 0;
  const c = createContributor({
    network: async () => {
      connects++;
      const e = o.fail?.();
      if (e) throw e;
      return hub.network(o.id());
    },
    createRunner: () => {
      const r = stories260KRunner();
      runners.push(r);
      // A kept runner loads a new shard in place (contributor.ts): loads are counted, not runners.
      const load = r.load.bind(r);
      r.load = (spec, ...rest) => {
        loads.push(spec.range);
        return load(spec, ...rest);
      };
      return r;
    },
    connectTimeoutMs: 5000,
    ...o,
  });
  return { c, runners, loads, connects: () => connects };
}

describe('contributor rejoin (fake clock, in-memory signaling, real ORT runner)', () => {
  beforeAll(warmUpOrt);

  it('resumes after a drop with exponential, capped, jittered back-off; keeps its stage and shard', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    const fc = fakeClock();
    let failures = 0;
    const { c, runners, connects } = scriptedContributor(hub, {
      id: () => a,
      fail: () =>
        failures > 0 && failures-- > 0 ? new RingworkError('SIGNALING_UNREACHABLE', 'down') : undefined,
      clock: fc.clock,
      random: () => 0.5, // jitter factor 0.75
      rejoin: { baseMs: 100, maxMs: 300 },
    });
    await c.start({ capability: CAPABILITY });
    assign(hub, [{ peer: a, range: [0, 7] }], 1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), SERVE_TIMEOUT);

    failures = 2;
    hub.drop(a, { code: 1006 });
    await fc.tick(); // attempt 1 fails
    expect(c.store.getState().rejoin).toMatchObject({ attempt: 1, reason: 'closed (1006)' });
    await fc.tick(); // attempt 2 fails
    await fc.tick(); // attempt 3 resumes
    await vi.waitFor(() => expect(c.store.getState().rejoins).toBe(1));
    // 100·2^n, capped at 300, times 0.75.
    expect(fc.delays).toEqual([75, 150, 225]);
    expect(connects()).toBe(4);
    expect(c.store.getState()).toMatchObject({ peerId: a, phase: 'serving', rejoin: undefined });
    // A resumed session keeps its capability on the server: no second profile.
    expect(hub.sent(a, 'profile')).toHaveLength(1);
    // The server re-sends the assignment on resume; the shard is not loaded again.
    assign(hub, [{ peer: a, range: [0, 7] }], 1);
    await hub.delivered();
    await c.settled();
    expect(runners).toHaveLength(1);
    expect(c.store.getState().phase).toBe('serving');
    await c.stop();
  });

  it('evicted: re-registers as a new peer, rebuilds its links and stage, reuses its shard: golden text again', async () => {
    const hub = createFakeSignalingHub();
    const [a, a2, b, req] = [pid('a'), pid('a2'), pid('b'), pid('req')];
    const fc = fakeClock();
    let id = a;
    const {
      c: ca,
      runners,
      loads,
    } = scriptedContributor(hub, {
      id: () => id,
      clock: fc.clock,
      random: () => 1,
    });
    const cb = contributorOn(hub, b);
    await Promise.all([ca.start({ capability: CAPABILITY }), cb.start({ capability: CAPABILITY })]);
    const order1 = [
      { peer: a, range: [0, 3] as [number, number] },
      { peer: b, range: [3, 7] as [number, number] },
    ];
    assign(hub, order1, 1);
    await vi.waitFor(() => expect(ca.store.getState().phase).toBe('serving'), SERVE_TIMEOUT);
    await vi.waitFor(() => expect(cb.store.getState().phase).toBe('serving'), SERVE_TIMEOUT);
    const fetched = ca.store.getState().download?.fetched;
    expect(fetched).toBeGreaterThan(0);

    // The server evicts `a`: its session is gone, so the next hello gets a new id.
    id = a2;
    hub.drop(a, { code: 4003, error: new RingworkError('PEER_EVICTED', 'evicted') });
    await fc.tick();
    expect(fc.delays).toEqual([500]);
    await hub.waitForSent(a2, (m) => m.type === 'profile', scaled(5000));
    expect(hub.sent(a2, 'profile')).toEqual([{ type: 'profile', capability: CAPABILITY }]);
    expect(ca.store.getState()).toMatchObject({ peerId: a2, phase: 'waiting', rejoins: 1 });

    // Re-planned with the new id on the same units: it serves at once, from the shard it holds.
    const order2 = [
      { peer: a2, range: [0, 3] as [number, number] },
      { peer: b, range: [3, 7] as [number, number] },
    ];
    assign(hub, order2, 2);
    await vi.waitFor(() => expect(ca.store.getState().phase).toBe('serving'), SERVE_TIMEOUT);
    await vi.waitFor(
      () => expect(cb.store.getState().assignment).toMatchObject({ epoch: 2, prev: a2 }),
      SERVE_TIMEOUT,
    );
    await cb.settled();
    expect(runners).toHaveLength(1);
    expect(loads).toHaveLength(1);
    expect(ca.store.getState().download?.fetched).toBe(fetched);
    expect(hub.sent(a2, 'assignment-status').map((m) => m.state)).toEqual(['ready']);

    hub.onSend((from, m) => {
      if (m.type === 'ring-request') hub.push(from, ringOf(order2, 2));
    });
    const r = await requesterOn(hub, req).ask({ ...ask, signal: new AbortController().signal });
    expect(r.text + '\n').toBe(golden.text);
    expect(r.stats.peers).toEqual([a2, b]);

    // Other units do need a load: the reuse is by model and range, not unconditional.
    assign(
      hub,
      [
        { peer: a2, range: [0, 4] },
        { peer: b, range: [4, 7] },
      ],
      3,
    );
    await vi.waitFor(() => expect(loads).toHaveLength(2));
    expect(loads[1]).toEqual([0, 4]);
    await vi.waitFor(() => expect(ca.store.getState().phase).toBe('serving'), SERVE_TIMEOUT);
    await ca.stop();
    await cb.stop();
  });

  it('a "do not come back" verdict stops the loop with a typed error', async () => {
    const hub = createFakeSignalingHub();
    const fc = fakeClock();
    const a = pid('a');
    const { c, connects } = scriptedContributor(hub, { id: () => a, clock: fc.clock });
    await c.start({ capability: CAPABILITY });
    hub.drop(a, {
      code: 1008,
      error: new RingworkError('PROTOCOL_BAD_VERSION', 'Protocol version 0 is not supported'),
    });
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('error'));
    expect(c.store.getState()).toMatchObject({
      errorCode: 'PROTOCOL_BAD_VERSION',
      error: 'Protocol version 0 is not supported',
      rejoin: undefined,
    });
    expect(fc.pending()).toBe(0);
    expect(connects()).toBe(1);

    // The verdict may also come as the answer to a rejoin attempt (a ban on hello).
    const b = pid('b');
    let banned = false;
    const s = scriptedContributor(hub, {
      id: () => b,
      clock: fc.clock,
      fail: () => (banned ? new RingworkError('PEER_BANNED', 'banned') : undefined),
    });
    await s.c.start({ capability: CAPABILITY });
    banned = true;
    hub.drop(b, { code: 1006 });
    await fc.tick();
    await vi.waitFor(() => expect(s.c.store.getState().errorCode).toBe('PEER_BANNED'));
    expect(s.c.store.getState().phase).toBe('error');
    expect(fc.pending()).toBe(0);
    expect(s.connects()).toBe(2);
  });

  it('replaced (4001) is not final: it comes back; stop() during the back-off ends the loop', async () => {
    const hub = createFakeSignalingHub();
    const fc = fakeClock();
    const a = pid('a');
    const { c, connects } = scriptedContributor(hub, { id: () => a, clock: fc.clock });
    await c.start({ capability: CAPABILITY });
    hub.drop(a, { code: 4001, error: new RingworkError('PROTOCOL_SESSION_REPLACED', 'replaced') });
    await vi.waitFor(() => expect(fc.pending()).toBe(1));
    expect(c.store.getState().rejoin).toMatchObject({ attempt: 1, reason: 'PROTOCOL_SESSION_REPLACED' });
    await c.stop();
    await c.stop();
    expect(fc.pending()).toBe(0);
    expect(connects()).toBe(1);
    expect(c.store.getState()).toMatchObject({ phase: 'idle', rejoin: undefined });

    // With rejoin off, a dropped contributor stays where it is.
    const b = pid('b');
    const off = scriptedContributor(hub, { id: () => b, clock: fc.clock, rejoin: false });
    await off.c.start({ capability: CAPABILITY });
    hub.drop(b, { code: 1006 });
    await hub.delivered();
    await new Promise((r) => setTimeout(r, 0)); // the drop's listeners run on the next macrotask
    expect(fc.pending()).toBe(0);
    expect(off.connects()).toBe(1);
    await off.c.stop();
  });
});
