import { afterEach, describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import {
  answerProbes,
  createLinkProber,
  probeLink,
  RESPONDER_BURST,
  RESPONDER_REFILL_MS,
  type ProbeClock,
} from '../../shared/ring/link-probe';
import { parseLinkShapeTable, shapeChannel, shapeOf } from '../../shared/transport/link-shaping';
import { createMemoryChannelPair, createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { createPeerLink } from '../../shared/transport/peer-link';
import type { PeerLink } from '../../shared/transport/types';

const fakeClock = (): ProbeClock => ({
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
});

afterEach(() => {
  vi.useRealTimers();
});

describe('link shaping (test/bench only)', () => {
  it('delays each message by the one-way delay plus its serialisation, in order', async () => {
    vi.useFakeTimers();
    const [a, b] = createMemoryChannelPair();
    const shaped = shapeChannel(a, { delayMs: 40, mbps: 8 }, fakeClock()); // 8 Mbit/s = 1 byte/µs
    const got: Array<{ data: unknown; at: number }> = [];
    const t0 = Date.now();
    b.addEventListener('message', (ev) => got.push({ data: ev.data, at: Date.now() - t0 }));
    shaped.send('x'.repeat(10_000)); // 10 ms on the wire
    shaped.send('second');
    expect(shaped.bufferedAmount).toBe(10_006);
    await vi.advanceTimersByTimeAsync(45);
    expect(got).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(10);
    expect(got.map((g) => (g.data as string).length)).toEqual([10_000, 6]);
    expect(got[0]!.at).toBeGreaterThanOrEqual(50);
    expect(shaped.bufferedAmount).toBe(0);
  });

  it('parses a shaping table and looks pairs up in either order; rejects bad ones with a typed error', () => {
    const t = parseLinkShapeTable({ 'a|b': { delayMs: 40 } });
    expect(shapeOf(t, 'b', 'a')).toEqual({ delayMs: 40 });
    expect(shapeOf(t, 'a', 'c')).toBeUndefined();
    try {
      parseLinkShapeTable({ 'a|b': { delayMs: -1 } });
      expect.unreachable();
    } catch (e) {
      expect(isRingworkError(e, 'TRANSPORT_BAD_SHAPE')).toBe(true);
    }
  });
});

async function pair(shape?: { delayMs: number; mbps?: number }): Promise<[PeerLink, PeerLink]> {
  const hub = createMemoryTransportHub({ shape: () => shape });
  const ta = hub.transport('a');
  const tb = hub.transport('b');
  const incoming = new Promise<PeerLink>((resolve) => tb.onIncoming(resolve));
  const la = await ta.connect('b');
  return [la, await incoming];
}

describe('link probes', () => {
  it('measure a far link as far and a near one as near (shaped in-memory links, fake timers)', async () => {
    vi.useFakeTimers();
    const [nearA, nearB] = await pair({ delayMs: 1, mbps: 400 });
    const [farA, farB] = await pair({ delayMs: 40, mbps: 20 });
    answerProbes(nearB);
    answerProbes(farB);
    const measure = async (link: PeerLink) => {
      const p = probeLink(link, { pings: 3, fillBytes: 48 * 1024 });
      await vi.advanceTimersByTimeAsync(2000);
      return p;
    };
    const near = await measure(nearA);
    const far = await measure(farA);
    expect(far.rttMs).toBeGreaterThanOrEqual(80);
    expect(far.rttMs).toBeLessThan(85);
    expect(near.rttMs).toBeLessThan(5);
    // 48 KiB at 20 Mbit/s is ~20 ms on the wire: the estimate lands close to the shaped rate.
    expect(far.mbps).toBeGreaterThan(15);
    expect(far.mbps).toBeLessThan(25);
    expect(near.mbps).toBeGreaterThan(far.mbps * 5);
  });

  it('a responder acknowledges a bounded burst of pings, then one per refill period', async () => {
    vi.useFakeTimers();
    const [a, b] = createMemoryChannelPair();
    const la = createPeerLink('b', a);
    const lb = createPeerLink('a', b);
    answerProbes(lb, fakeClock());
    const acks: unknown[] = [];
    la.onControl((m) => {
      if (m.type === 'probe-ack') acks.push(m);
    });
    for (let i = 0; i < RESPONDER_BURST + 10; i++)
      la.sendControl({ type: 'probe-ping', v: 1, id: i, fill: 0 });
    await vi.advanceTimersByTimeAsync(10);
    expect(acks).toHaveLength(RESPONDER_BURST);
    await vi.advanceTimersByTimeAsync(RESPONDER_REFILL_MS);
    la.sendControl({ type: 'probe-ping', v: 1, id: 99, fill: 0 });
    la.sendControl({ type: 'probe-ping', v: 1, id: 100, fill: 0 });
    await vi.advanceTimersByTimeAsync(10);
    expect(acks).toHaveLength(RESPONDER_BURST + 1);
  });

  it('a probe without an answer fails with PROBE_TIMEOUT', async () => {
    vi.useFakeTimers();
    const [a] = createMemoryChannelPair();
    const la = createPeerLink('b', a);
    const p = probeLink(la, { pings: 1, timeoutMs: 500, clock: fakeClock() });
    const check = expect(p).rejects.toSatisfy((e) => isRingworkError(e, 'PROBE_TIMEOUT'));
    await vi.advanceTimersByTimeAsync(600);
    await check;
  });

  it('the prober measures each open link once per round and reports what answered', async () => {
    vi.useFakeTimers();
    const [a1, b1] = await pair({ delayMs: 2 });
    const [a2] = await pair({ delayMs: 2 }); // its far end does not answer probes
    answerProbes(b1);
    const reports: unknown[] = [];
    const prober = createLinkProber({
      links: () => [a1, a1, a2],
      report: (r) => reports.push(r),
      probe: { pings: 1, fillBytes: 12 * 1024, timeoutMs: 200 },
    });
    const round = prober.round();
    await vi.advanceTimersByTimeAsync(1000);
    const got = await round;
    expect(got.map((r) => r.peer)).toEqual(['b']);
    expect(got[0]!.rttMs).toBeGreaterThanOrEqual(3);
    expect(reports).toHaveLength(1);
    prober.stop();
    prober.stop();
  });
});
