import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { ShardRunner } from '../../../shared/runtime/shard-runner';
import { scaled } from '../../helpers/timeouts';
import { loadGolden } from '../../helpers/golden';
import { createFakeSignalingHub } from '../../helpers/memory-signaling';
import { createContributor } from '../../../shared/app/contributor';
import { RING_PROTOCOL_VERSION } from '../../../shared/ring/ring-protocol';
import { stories260KRunner } from '../../helpers/engine';
import {
  CAPABILITY,
  GOLDEN_SETTINGS,
  STORIES,
  assign,
  contributorOn,
  gatedRunner,
  pid,
  requesterOn,
  ringOf,
  warmUpOrt,
} from './app-fixture';

const golden = loadGolden();
const ask = { settings: GOLDEN_SETTINGS, history: [{ role: 'user' as const, text: 'Once upon a time' }] };

/** Answers every ring-request with `ring()` (the coordinator's current word). */
function answerRings(
  hub: ReturnType<typeof createFakeSignalingHub>,
  ring: () => Parameters<typeof hub.push>[1],
) {
  hub.onSend((from, m) => {
    if (m.type === 'ring-request') hub.push(from, ring());
  });
}

describe('contributor (in-memory signaling and links, real ORT runner on stories260K)', () => {
  beforeAll(warmUpOrt);

  it('serves its assigned stage: a 2-peer ring gives the requester the golden text', async () => {
    const hub = createFakeSignalingHub();
    const [a, b, req] = [pid('a'), pid('b'), pid('req')];
    const ca = contributorOn(hub, a);
    const cb = contributorOn(hub, b);
    await Promise.all([ca.start({ capability: CAPABILITY }), cb.start({ capability: CAPABILITY })]);
    expect(hub.sent(a, 'profile')).toEqual([{ type: 'profile', capability: CAPABILITY }]);
    const order = [
      { peer: a, range: [0, 3] as [number, number] },
      { peer: b, range: [3, 7] as [number, number] },
    ];
    assign(hub, order, 1);
    await vi.waitFor(
      () => expect(ca.store.getState()).toMatchObject({ phase: 'serving', error: undefined }),
      { timeout: scaled(30_000) },
    );
    await vi.waitFor(() => expect(cb.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    expect(hub.sent(a, 'assignment-status').map((m) => m.state)).toEqual(['loading', 'ready']);
    expect(ca.store.getState().assignment).toMatchObject({ epoch: 1, range: [0, 3], next: b, prev: b });

    answerRings(hub, () => ringOf(order, 1));
    const r = await requesterOn(hub, req).ask({ ...ask, signal: new AbortController().signal });
    expect(r.text + '\n').toBe(golden.text);
    expect(r.stats.peers).toEqual([a, b]);
    // The requester reports what it measured (one request's per-token time) for the speed figures,
    // and what the answer generated (its usage): 60 tokens, one prefill and 59 decode steps.
    const laps = hub.sent(req, 'ring-lap');
    expect(laps).toEqual([
      {
        type: 'ring-lap',
        ringId: 'r1',
        tokens: 59,
        msPerToken: expect.any(Number),
        generated: { v: 1, tokens: 60 },
      },
    ]);
    // The same decode steps the chat's tok/s comes from (step time only, so a little less).
    const lapRatio = laps[0]!.msPerToken! / (1000 / r.stats.decodeTokPerS);
    expect(lapRatio).toBeGreaterThan(0.5);
    expect(lapRatio).toBeLessThanOrEqual(1.05);
    // One prefill and 59 decode steps, each answered by one sampled token on the head.
    await vi.waitFor(() => expect(cb.store.getState().stats.tokensServed).toBe(60));
    expect(ca.store.getState().stats.stepsServed).toBe(60);
    await ca.stop();
    await ca.stop(); // safe twice
    await cb.stop();
    expect(ca.store.getState().phase).toBe('idle');
  });

  it('statsEveryMs: the stage counters reach the store a few times per second, not per step; the last always', async () => {
    const hub = createFakeSignalingHub();
    const [a, b, req] = [pid('a'), pid('b'), pid('req')];
    // `a` coalesces (as the web page's contributor does); `b` delivers after every step (default).
    const ca = createContributor({
      network: async () => hub.network(a),
      createRunner: stories260KRunner,
      connectTimeoutMs: 5000,
      statsEveryMs: 250,
    });
    const cb = contributorOn(hub, b);
    await Promise.all([ca.start({ capability: CAPABILITY }), cb.start({ capability: CAPABILITY })]);
    const order = [
      { peer: a, range: [0, 3] as [number, number] },
      { peer: b, range: [3, 7] as [number, number] },
    ];
    assign(hub, order, 1);
    for (const c of [ca, cb])
      await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    const updates = { a: 0, b: 0 };
    const offA = ca.store.subscribe((s, p) => void (s.stats !== p.stats && updates.a++));
    const offB = cb.store.subscribe((s, p) => void (s.stats !== p.stats && updates.b++));
    answerRings(hub, () => ringOf(order, 1));
    const t0 = performance.now();
    const r = await requesterOn(hub, req).ask({ ...ask, signal: new AbortController().signal });
    expect(r.text + '\n').toBe(golden.text);
    // Every one of the 60 steps reached the coalescing store too, in the end.
    await vi.waitFor(() => expect(ca.store.getState().stats.stepsServed).toBe(60));
    await vi.waitFor(() => expect(ca.store.getState().stats.openSessions).toBe(0));
    const elapsed = performance.now() - t0;
    offA();
    offB();
    // b: one delivery per step at least; a: the interval's worth, plus the session's open and
    // end (delivered at once) and the trailing value.
    expect(updates.b).toBeGreaterThanOrEqual(60);
    expect(updates.a).toBeLessThanOrEqual(Math.ceil(elapsed / 250) + 4);
    expect(updates.a).toBeLessThan(updates.b);
    await ca.stop();
    await cb.stop();
  });

  it('start() twice joins once; an old assignment finishing its load after a newer one does not win', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const runners: (ShardRunner & { disposed: boolean })[] = [];
    const c = contributorOn(hub, a, () => {
      // The first shard loads slowly (held at the gate); later ones load at once.
      const r = runners.length === 0 ? gatedRunner(gate) : gatedRunner(Promise.resolve());
      runners.push(r);
      return r;
    });
    await Promise.all([c.start({ capability: CAPABILITY }), c.start({ capability: CAPABILITY })]);
    expect(hub.sent(a, 'profile')).toHaveLength(1);

    assign(hub, [{ peer: a, range: [0, 3] }], 1); // epoch 1: the slow load
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('loading'));
    assign(hub, [{ peer: a, range: [0, 7] }], 2); // epoch 2 arrives while epoch 1 loads
    await hub.delivered();
    expect(c.store.getState()).toMatchObject({ phase: 'loading', assignment: { epoch: 1 } });
    release(); // epoch 1's load finishes after epoch 2 arrived
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    await c.settled();

    expect(c.store.getState().assignment).toMatchObject({ epoch: 2, range: [0, 7] });
    const statuses = hub.sent(a, 'assignment-status');
    expect(statuses.filter((s) => s.state === 'ready').map((s) => s.epoch)).toEqual([2]);
    // One runner: epoch 2's shard replaced epoch 1's in the same worker (no second runtime start-up,
    // which is what a re-planned survivor of a failover waits for).
    expect(runners).toHaveLength(1);
    expect(runners[0]!.disposed).toBe(false);
    expect(await runners[0]!.info()).toMatchObject({ loaded: true, range: [0, 7] });

    // The stage serves epoch 2: a request for it gets the golden text, one for epoch 1 is refused.
    const order = [{ peer: a, range: [0, 7] as [number, number] }];
    let epoch = 1;
    answerRings(hub, () => ringOf(order, epoch));
    const stale = requesterOn(hub, pid('old'), { retryWindowMs: 0 });
    await expect(stale.ask({ ...ask, signal: new AbortController().signal })).rejects.toMatchObject({
      code: 'RING_STALE_EPOCH',
      details: expect.objectContaining({ requested: 1, serving: 2 }),
    });
    epoch = 2;
    const r = await requesterOn(hub, pid('new')).ask({ ...ask, signal: new AbortController().signal });
    expect(r.text + '\n').toBe(golden.text);
    await c.stop();
  });

  it('a re-plan that only renumbers the epoch while the shard loads serves the loaded shard (no failure, no reload)', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const runners: ShardRunner[] = [];
    const c = contributorOn(hub, a, () => {
      const r = gatedRunner(runners.length === 0 ? gate : Promise.resolve());
      runners.push(r);
      return r;
    });
    await c.start({ capability: CAPABILITY });
    assign(hub, [{ peer: a, range: [0, 7] }], 1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('loading'));
    // Same units, next epoch (the coordinator re-planned around another peer meanwhile).
    assign(hub, [{ peer: a, range: [0, 7] }], 2);
    await hub.delivered();
    release();
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    await c.settled();
    // A failed status would take the model from this peer for good (the coordinator's failedModels).
    expect(hub.sent(a, 'assignment-status').map((s) => `${s.state}@${s.epoch}`)).toEqual([
      'loading@1',
      'ready@2',
    ]);
    expect(runners).toHaveLength(1);
    const order = [{ peer: a, range: [0, 7] as [number, number] }];
    answerRings(hub, () => ringOf(order, 2));
    const r = await requesterOn(hub, pid('req')).ask({ ...ask, signal: new AbortController().signal });
    expect(r.text + '\n').toBe(golden.text);
    await c.stop();
  });

  it('a kept runner that cannot take the next shard is replaced by a fresh one, which serves it', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    const runners: (ShardRunner & { disposed: boolean })[] = [];
    const c = contributorOn(hub, a, () => {
      const r = gatedRunner(Promise.resolve());
      if (runners.length === 0) {
        // The first runner loads its first shard, then fails every later load (a dead worker).
        const load = r.load;
        let loads = 0;
        r.load = (...args) =>
          loads++ === 0 ? load(...args) : Promise.reject(new Error('the worker is gone'));
      }
      runners.push(r);
      return r;
    });
    await c.start({ capability: CAPABILITY });
    assign(hub, [{ peer: a, range: [0, 3] }], 1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    assign(hub, [{ peer: a, range: [0, 7] }], 2);
    await hub.delivered();
    await c.settled();
    expect(c.store.getState()).toMatchObject({ phase: 'serving', assignment: { epoch: 2 } });
    expect(hub.sent(a, 'assignment-status').map((s) => `${s.state}@${s.epoch}`)).toEqual([
      'loading@1',
      'ready@1',
      'loading@2',
      'ready@2',
    ]);
    expect(runners).toHaveLength(2);
    expect(runners[0]!.disposed).toBe(true);
    const order = [{ peer: a, range: [0, 7] as [number, number] }];
    answerRings(hub, () => ringOf(order, 2));
    const r = await requesterOn(hub, pid('req')).ask({ ...ask, signal: new AbortController().signal });
    expect(r.text + '\n').toBe(golden.text);
    await c.stop();
  });

  it('a standby loads its units ahead without serving; an assignment of the same units then serves with no download', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    const runners: ShardRunner[] = [];
    const c = contributorOn(hub, a, () => {
      const r = gatedRunner(Promise.resolve());
      runners.push(r);
      return r;
    });
    await c.start({ capability: CAPABILITY });
    hub.push(a, { type: 'standby', epoch: 1, ringId: 'r1', model: STORIES, range: [0, 7] });
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('standby'), { timeout: scaled(30_000) });
    expect(c.store.getState()).toMatchObject({ standby: { range: [0, 7], epoch: 1 }, assignment: undefined });
    // Backing up is not serving: a requester of the ring it backs up is refused.
    const order = [{ peer: a, range: [0, 7] as [number, number] }];
    let epoch = 1;
    answerRings(hub, () => ringOf(order, epoch));
    const early = requesterOn(hub, pid('early'), { retryWindowMs: 0 });
    await expect(early.ask({ ...ask, signal: new AbortController().signal })).rejects.toMatchObject({
      code: 'RING_STAGE_NOT_SERVING',
    });
    // Swapped in (the stage it backed up was lost): serves at once from the loaded units.
    assign(hub, order, 2);
    epoch = 2;
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    await c.settled();
    expect(hub.sent(a, 'assignment-status').map((s) => `${s.state}@${s.epoch}`)).toEqual([
      'loading@1',
      'ready@1',
      'ready@2',
    ]);
    expect(runners).toHaveLength(1);
    expect(c.store.getState().standby).toBeUndefined();
    const r = await requesterOn(hub, pid('req')).ask({ ...ask, signal: new AbortController().signal });
    expect(r.text + '\n').toBe(golden.text);
    await c.stop();
  });

  it('an unassignment that arrives while a shard loads ends with no stage and no ready report', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const runner = gatedRunner(gate);
    const c = contributorOn(hub, a, () => runner);
    await c.start({ capability: CAPABILITY });
    assign(hub, [{ peer: a, range: [0, 7] }], 1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('loading'));
    hub.push(a, { type: 'unassigned', epoch: 2, reason: 'not needed', lightweightModels: [] });
    await hub.delivered();
    release();
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('unassigned'), { timeout: scaled(30_000) });
    await c.settled();
    expect(c.store.getState()).toMatchObject({ unassignedReason: 'not needed', assignment: undefined });
    expect(hub.sent(a, 'assignment-status').map((s) => s.state)).toEqual(['loading']);
    expect(runner.disposed).toBe(true);
    await c.stop();
  });

  it('a peer planned out of its ring answers a requester’s open with a typed error (never silence)', async () => {
    const hub = createFakeSignalingHub();
    const [a, req] = [pid('a'), pid('req')];
    const c = contributorOn(hub, a);
    await c.start({ capability: CAPABILITY });
    assign(hub, [{ peer: a, range: [0, 7] }], 1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    // A requester linked while the peer served (its ring answer predates the re-plan).
    const link = await hub.network(req).transport.connect(a);
    const errors: unknown[] = [];
    link.onControl((m) => void ((m as { type?: string }).type === 'error' && errors.push(m)));
    hub.push(a, { type: 'unassigned', epoch: 2, reason: 'not needed', lightweightModels: [] });
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('unassigned'), { timeout: scaled(30_000) });
    link.sendControl({
      type: 'open',
      v: RING_PROTOCOL_VERSION,
      session: 's-after-replan',
      epoch: 1,
      requester: req,
      sampler: { temperature: 0, topP: 1, topK: 0, seed: 1 },
    });
    await vi.waitFor(() => expect(errors.length).toBeGreaterThan(0), { timeout: scaled(10_000) });
    expect(errors[0]).toMatchObject({
      type: 'error',
      session: 's-after-replan',
      code: 'RING_STAGE_NOT_SERVING',
    });
    await c.stop();
  });

  it('pause tells the coordinator (withdraw, withdrawn) and stops serving; an assignment during the pause waits; resume serves it', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    let created = 0;
    const c = contributorOn(hub, a, () => (created++, stories260KRunner()));
    await c.start({ capability: CAPABILITY });
    const whole = [{ peer: a, range: [0, 7] as [number, number] }];
    assign(hub, whole, 1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });

    await c.pause();
    await c.pause(); // safe twice
    expect(c.store.getState().phase).toBe('paused');
    // Pause is a message, not "memory = 0": the capability stays what it was.
    expect(hub.sent(a, 'profile').map((m) => m.capability.memoryBytes)).toEqual([4e9]);
    expect(hub.sent(a, 'withdraw')).toEqual([{ type: 'withdraw', mode: 'pause', drainMs: 30_000 }]);
    expect(hub.sent(a, 'withdrawn')).toHaveLength(1);
    let epoch = 1;
    answerRings(hub, () => ringOf(whole, epoch));
    const refused = requesterOn(hub, pid('r1'), { retryWindowMs: 0 });
    await expect(refused.ask({ ...ask, signal: new AbortController().signal })).rejects.toMatchObject({
      code: 'RING_STAGE_NOT_SERVING',
    });

    assign(hub, whole, 2);
    await vi.waitFor(() => expect(c.store.getState().assignment?.epoch).toBe(2));
    await c.settled();
    expect(c.store.getState().phase).toBe('paused');
    expect(created).toBe(1); // nothing loaded while paused

    c.resume();
    c.resume(); // safe twice
    expect(hub.sent(a, 'resume')).toHaveLength(1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    expect(created).toBe(2);
    epoch = 2;
    const r = await requesterOn(hub, pid('r2')).ask({ ...ask, signal: new AbortController().signal });
    expect(r.text + '\n').toBe(golden.text);
    await c.stop();
  });

  it('leave during an answer: the answer completes with the golden text, then the peer goes; new opens are refused meanwhile', async () => {
    const hub = createFakeSignalingHub();
    const [a, b] = [pid('a'), pid('b')];
    const ca = contributorOn(hub, a);
    const cb = contributorOn(hub, b);
    await Promise.all([ca.start({ capability: CAPABILITY }), cb.start({ capability: CAPABILITY })]);
    const order = [
      { peer: a, range: [0, 3] as [number, number] },
      { peer: b, range: [3, 7] as [number, number] },
    ];
    assign(hub, order, 1);
    await vi.waitFor(() => expect(ca.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    await vi.waitFor(() => expect(cb.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    answerRings(hub, () => ringOf(order, 1));
    let leaving: Promise<void> | undefined;
    const answer = requesterOn(hub, pid('req')).ask({
      ...ask,
      signal: new AbortController().signal,
      // A few tokens in, the first stage's tab leaves.
      onText: (t) => {
        if (!leaving && t.length > 'Once upon a time'.length + 10) leaving = ca.leave();
      },
    });
    await vi.waitFor(() => expect(ca.store.getState().phase).toBe('draining'), { timeout: scaled(30_000) });
    expect(ca.store.getState().draining?.mode).toBe('leave');
    // Meanwhile the draining stage takes no new session (a retryable code: the requester re-plans).
    const other = requesterOn(hub, pid('other'), { retryWindowMs: 0 });
    await expect(other.ask({ ...ask, signal: new AbortController().signal })).rejects.toMatchObject({
      code: 'RING_STAGE_DRAINING',
    });
    const r = await answer;
    expect(r.text + '\n').toBe(golden.text);
    await leaving;
    expect(ca.store.getState().phase).toBe('idle');
    expect(
      hub
        .sent(a)
        .map((m) => m.type)
        .filter((t) => t.startsWith('withdraw')),
    ).toEqual(['withdraw', 'withdrawn']);
    await cb.stop();
  });

  it('warms one runner when it joins, before any assignment, and loads its first shard on that runner', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    const made: Array<{ warmed: number; loads: number }> = [];
    const createRunner = (): ShardRunner => {
      const inner = stories260KRunner();
      const seen = { warmed: 0, loads: 0 };
      made.push(seen);
      return {
        ...inner,
        warm: async () => {
          seen.warmed++;
          await inner.warm?.();
        },
        load: (r, o) => (seen.loads++, inner.load(r, o)),
      };
    };
    const c = createContributor({ network: async () => hub.network(a), createRunner });
    await c.start({ capability: CAPABILITY });
    // Joined, nothing assigned: one runner already started and warming.
    expect(made).toEqual([{ warmed: 1, loads: 0 }]);
    assign(hub, [{ peer: a, range: [0, 7] }], 1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    expect(made).toEqual([{ warmed: 1, loads: 1 }]);
    await c.stop();
    // Without prewarm the runner starts with the first shard.
    const cold: typeof made = [];
    const c2 = createContributor({
      network: async () => hub.network(pid('b')),
      prewarm: false,
      createRunner: () => (cold.push({ warmed: 0, loads: 0 }), stories260KRunner()),
    });
    await c2.start({ capability: CAPABILITY });
    expect(cold).toEqual([]);
    await c2.stop();
  });

  it('probes its ring neighbours slowly and reports the links it is part of (link-report)', async () => {
    const hub = createFakeSignalingHub();
    const [a, b] = [pid('a'), pid('b')];
    const make = (id: string) =>
      createContributor({
        network: async () => hub.network(id),
        createRunner: stories260KRunner,
        probeIntervalMs: 100,
      });
    const [ca, cb] = [make(a), make(b)];
    await Promise.all([ca.start({ capability: CAPABILITY }), cb.start({ capability: CAPABILITY })]);
    assign(
      hub,
      [
        { peer: a, range: [0, 3] as [number, number] },
        { peer: b, range: [3, 7] as [number, number] },
      ],
      1,
    );
    await hub.waitForSent(a, (m) => m.type === 'link-report', scaled(30_000));
    const [report] = hub.sent(a, 'link-report');
    expect(report!.links.map((l) => l.peer)).toEqual([b]);
    expect(report!.links[0]!.rttMs).toBeGreaterThan(0);
    expect(report!.links[0]!.mbps).toBeGreaterThan(0);
    await ca.stop();
    await cb.stop();
  });

  it('the drain is bounded: a session that never ends does not hold a leaving peer past drainMs', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    let wake: (() => void) | undefined;
    const slept: number[] = [];
    const c = createContributor({
      network: async () => hub.network(a),
      createRunner: stories260KRunner,
      drainMs: 5000,
      // A fake clock: the drain's timer fires when the test says.
      clock: {
        now: () => 0,
        wallNow: () => 0,
        sleep: (ms) => {
          slept.push(ms);
          return new Promise<void>((resolve) => (wake = resolve));
        },
      },
    });
    await c.start({ capability: CAPABILITY });
    assign(hub, [{ peer: a, range: [0, 7] as [number, number] }], 1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    // A requester opens a session and never ends it.
    const link = await hub.network(pid('req')).transport.connect(a);
    link.sendControl({
      type: 'open',
      v: 1,
      session: 's1',
      epoch: 1,
      requester: pid('req'),
      sampler: { temperature: 0, topP: 1, topK: 0, seed: 1 },
    });
    await vi.waitFor(() => expect(c.store.getState().stats.openSessions).toBe(1));
    const leaving = c.leave();
    await vi.waitFor(() => expect(slept).toEqual([5000]));
    expect(hub.sent(a, 'withdrawn')).toHaveLength(0);
    expect(c.store.getState().phase).toBe('draining');
    wake!();
    await leaving;
    expect(hub.sent(a, 'withdrawn')).toHaveLength(1);
    expect(c.store.getState().phase).toBe('idle');
  });

  it('a peer that contributes and chats at once reaches its own stage over the in-memory self link', async () => {
    const hub = createFakeSignalingHub();
    const [f, self] = [pid('first'), pid('self')];
    const cf = contributorOn(hub, f);
    const cs = contributorOn(hub, self);
    await Promise.all([cf.start({ capability: CAPABILITY }), cs.start({ capability: CAPABILITY })]);
    // This peer holds the head: the head answers the requester, which is itself.
    const order = [
      { peer: f, range: [0, 4] as [number, number] },
      { peer: self, range: [4, 7] as [number, number] },
    ];
    assign(hub, order, 3);
    await vi.waitFor(() => expect(cs.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    await vi.waitFor(() => expect(cf.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    let ring = ringOf(order, 3);
    answerRings(hub, () => ring);
    await vi.waitFor(() => expect(cf.openLink(self)?.isOpen).toBe(true));
    const neighbourLink = cf.openLink(self);
    const chat = requesterOn(hub, self, {
      localStageLink: () => cs.localStageLink(),
      existingLink: (peer) => cs.openLink(peer),
    });
    const r = await chat.ask({ ...ask, signal: new AbortController().signal });
    expect(r.text + '\n').toBe(golden.text);
    expect(r.stats.peers).toEqual([f, self]);
    expect(cs.store.getState().stats.tokensServed).toBe(60);
    // The ring's own links carried the request: the neighbours still hold theirs, nothing replaced them.
    expect(cf.openLink(self)).toBe(neighbourLink);
    expect(cs.openLink(f)?.isOpen).toBe(true);
    // And a one-peer ring of itself: everything over the in-memory self link.
    const solo = [{ peer: self, range: [0, 7] as [number, number] }];
    assign(hub, solo, 4);
    ring = ringOf(solo, 4);
    await vi.waitFor(() => expect(cs.store.getState().assignment?.epoch).toBe(4));
    await cs.settled();
    const r2 = await requesterOn(hub, self, { localStageLink: () => cs.localStageLink() }).ask({
      ...ask,
      settings: { ...GOLDEN_SETTINGS, model: 'stories260K' },
      signal: new AbortController().signal,
    });
    expect(r2.text).toBe(r.text);
    await cf.stop();
    await cs.stop();
  });
});
