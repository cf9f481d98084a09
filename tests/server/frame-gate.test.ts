/**
 * The frame gate alone, on a hand-driven clock: budgets per connection and per address bucket
 * (shared by its sockets), a sender over budget paused until the budget refills to a quarter, a
 * fresh socket of a paused address starting paused.
 */
import { describe, expect, it } from 'vitest';
import type { Clock, TimerHandle } from '../../signaling-server/src/clock';
import { createFrameGate, type FrameGateLimits, type GatedConn } from '../../signaling-server/src/frame-gate';

/** A clock whose time only moves when the test says so; timers fire as it passes them. */
function manualClock() {
  let now = 1_000_000;
  let id = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const clock: Clock = {
    now: () => now,
    setTimeout: (fn, ms) => {
      timers.set(++id, { at: now + ms, fn });
      return id as unknown as TimerHandle;
    },
    clearTimeout: (h) => void timers.delete(h as unknown as number),
    setInterval: () => {
      throw new Error('not used');
    },
    clearInterval: () => undefined,
  };
  const advance = (ms: number): void => {
    now += ms;
    for (const [k, t] of [...timers].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at <= now) {
        timers.delete(k);
        t.fn();
      }
    }
  };
  return { clock, advance };
}

function socket(ipBucket: string) {
  const conn = {
    paused: false,
    pauses: 0,
    ipBucket,
    ws: {
      pause() {
        conn.paused = true;
        conn.pauses++;
      },
      resume() {
        conn.paused = false;
      },
    },
  };
  return conn satisfies GatedConn;
}

const LIMITS: FrameGateLimits = {
  rateBurst: 10,
  ratePerSecond: 10,
  bytesBurst: 1000,
  bytesPerSecond: 1000,
  framesBurstPerIp: 15,
  framesPerSecondPerIp: 10,
  bytesBurstPerIp: 4000,
  bytesPerSecondPerIp: 1000,
};

describe('frame gate', () => {
  it('passes frames within budget and pauses a connection over its own, until a quarter refilled', () => {
    const { clock, advance } = manualClock();
    const gate = createFrameGate(LIMITS, clock);
    const a = socket('1.2.3.4');
    gate.attach(a);
    for (let i = 0; i < 10; i++) expect(gate.admit(a, 10)).toBe('ok');
    expect(gate.admit(a, 10)).toBe('conn-frames');
    expect(a.paused).toBe(true);
    // Frames already read while paused are dropped without a budget check.
    expect(gate.admit(a, 10)).toBe('paused');
    advance(200); // 2 of the 2.5 frames a quarter needs
    expect(a.paused).toBe(true);
    advance(100);
    expect(a.paused).toBe(false);
    expect(gate.admit(a, 10)).toBe('ok');
    expect(gate.stats()).toMatchObject({ refused: { 'conn-frames': 1 }, whilePaused: 1, connPauses: 1 });
  });

  it('counts bytes before anything else, per connection', () => {
    const { clock } = manualClock();
    const gate = createFrameGate(LIMITS, clock);
    const a = socket('1.2.3.4');
    gate.attach(a);
    expect(gate.admit(a, 900)).toBe('ok');
    expect(gate.admit(a, 200)).toBe('conn-bytes');
    expect(a.paused).toBe(true);
  });

  it('shares one budget among all sockets of an address bucket, and pauses them all', () => {
    const { clock, advance } = manualClock();
    const gate = createFrameGate(LIMITS, clock);
    const socks = [socket('2001:db8::/64'), socket('2001:db8::/64'), socket('2001:db8::/64')];
    const other = socket('5.6.7.8');
    for (const s of [...socks, other]) gate.attach(s);
    // 15 frames for the bucket in all, though each socket alone may send 10.
    let ok = 0;
    for (let i = 0; i < 30; i++) if (gate.admit(socks[i % 3]!, 10) === 'ok') ok++;
    expect(ok).toBe(15);
    expect(socks.every((s) => s.paused)).toBe(true);
    expect(other.paused).toBe(false);
    expect(gate.admit(other, 10)).toBe('ok');
    // A new socket of the paused bucket does not escape the throttle.
    const late = socket('2001:db8::/64');
    gate.attach(late);
    expect(late.paused).toBe(true);
    advance(400);
    expect([...socks, late].every((s) => !s.paused)).toBe(true);
    expect(gate.stats().bucketPauses).toBe(1);
  });

  it('reports the emptiest budget, and forgets idle refilled buckets', () => {
    const { clock, advance } = manualClock();
    const gate = createFrameGate(LIMITS, clock);
    const a = socket('1.2.3.4');
    gate.attach(a);
    expect(gate.level(a)).toBe(1);
    gate.admit(a, 500);
    expect(gate.level(a)).toBeCloseTo(0.5);
    gate.detach(a);
    expect(gate.stats().pausedNow).toBe(0);
    advance(10_000);
    gate.prune();
    // A fresh socket of that address starts with a full budget again.
    const b = socket('1.2.3.4');
    gate.attach(b);
    expect(gate.level(b)).toBe(1);
  });

  it('never resumes a connection cut for flooding, and holds its address back, doubling per cut', () => {
    const { clock, advance } = manualClock();
    const gate = createFrameGate({ ...LIMITS, holdBackMs: 1000, holdBackMaxMs: 8000 }, clock);
    const a = socket('2001:db8::/64');
    const b = socket('2001:db8::/64');
    const other = socket('5.6.7.8');
    for (const s of [a, b, other]) gate.attach(s);
    for (let i = 0; i < 10; i++) gate.admit(a, 10);
    expect(gate.admit(a, 10)).toBe('conn-frames');
    expect(a.paused).toBe(true);
    gate.cut(a);
    expect(gate.heldBackMs('2001:db8::/64')).toBe(1000);
    expect(gate.heldBackMs('5.6.7.8')).toBe(0);
    // The refill timer that would have resumed it fires, the budget refills: it stays unread.
    advance(5000);
    expect(a.paused).toBe(true);
    expect(gate.admit(a, 10)).toBe('paused');
    expect(gate.heldBackMs('2001:db8::/64')).toBe(0);
    // A second cut within the strike window doubles the hold-back; the bucket's other socket and
    // other addresses are not paused by it.
    gate.cut(b);
    expect(b.paused).toBe(true);
    expect(other.paused).toBe(false);
    expect(gate.heldBackMs('2001:db8::/64')).toBe(2000);
    gate.cut(b); // twice for one connection counts once
    expect(gate.heldBackMs('2001:db8::/64')).toBe(2000);
    // A held-back bucket is not pruned while it is held back or its strikes are remembered.
    gate.detach(a);
    gate.detach(b);
    advance(1000);
    gate.prune();
    expect(gate.heldBackMs('2001:db8::/64')).toBe(1000);
    expect(gate.stats()).toMatchObject({ cuts: 2, heldBackNow: 1, pausedNow: 0 });
    // After a quiet strike window the bucket starts over at the first hold-back.
    advance(9000);
    const c = socket('2001:db8::/64');
    gate.attach(c);
    gate.cut(c);
    expect(gate.heldBackMs('2001:db8::/64')).toBe(1000);
  });

  it('caps the hold-back, and can be turned off', () => {
    const { clock } = manualClock();
    const gate = createFrameGate({ ...LIMITS, holdBackMs: 1000, holdBackMaxMs: 3000 }, clock);
    for (let i = 0; i < 6; i++) {
      const s = socket('1.2.3.4');
      gate.attach(s);
      gate.cut(s);
    }
    expect(gate.heldBackMs('1.2.3.4')).toBe(3000);
    const off = createFrameGate({ ...LIMITS, holdBackMs: 0 }, clock);
    const s = socket('1.2.3.4');
    off.attach(s);
    off.cut(s);
    expect(s.paused).toBe(true);
    expect(off.heldBackMs('1.2.3.4')).toBe(0);
  });
});
