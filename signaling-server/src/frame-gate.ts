/**
 * The frame gate: what a connection's frames may cost, decided from the raw frame length before
 * anything parses them, and enforced by *not reading* — the cheapest thing a server can do.
 *
 * Budgets (token buckets, frames and bytes) exist per connection and per client address bucket
 * (an IPv4 address or an IPv6 /64) shared by every socket of that bucket, so opening more sockets
 * buys an attacker nothing. A frame that finds a budget short is dropped unparsed and its sender is
 * throttled: the connection (or, when the address bucket ran dry, every connection of that bucket)
 * is paused — its socket stops being read, the kernel's receive window fills and the sender's own
 * writes back up — until the budget has refilled to a quarter. While paused a flood costs the
 * server nothing: no unmasking, no UTF-8 check, no copy. Profiling the flood benchmark before this
 * showed exactly those (ws reading frames that were then dropped) as the server's main cost.
 *
 * Honest peers stay far below every budget (a heartbeat every few seconds, a few signals when a
 * link is set up), so they never meet the gate; the protocol layer closes a connection whose frames
 * keep being dropped (1008), so a sender that ignores the throttle is cut, never its receiver.
 *
 * A cut connection ({@link FrameGate.cut}) is never read again: its socket stays paused until it is
 * destroyed, so whatever the flooder had queued in its TCP buffers is discarded unread (before this,
 * a closing socket was resumed by its refill timer and ws parsed megabytes of queued frames during
 * the close handshake). Each cut is a strike against the address bucket, which is then *held back*
 * for a while ({@link FrameGate.heldBackMs}: 1 s, doubling per strike up to `holdBackMaxMs`, strikes
 * forgotten after a quiet `holdBackMaxMs`): the server refuses its new WebSocket upgrades before the
 * handshake, so a cut flooder cannot reconnect 20 ms later and flood again from fresh buffers.
 */
import { unrefTimer, type Clock, type TimerHandle } from './clock.js';
import { createTokenBucket, type TokenBucket } from './rate-limit.js';

/** The budgets of the gate (see config.ts `limits`). */
export interface FrameGateLimits {
  /** Frames per connection: burst and per second. */
  rateBurst: number;
  ratePerSecond: number;
  /** Bytes per connection: burst and per second. */
  bytesBurst: number;
  bytesPerSecond: number;
  /** Frames per client address bucket (all its sockets together): burst and per second. */
  framesBurstPerIp: number;
  framesPerSecondPerIp: number;
  /** Bytes per client address bucket: burst and per second. */
  bytesBurstPerIp: number;
  bytesPerSecondPerIp: number;
  /** First hold-back of an address bucket after a flood cut, ms (0: never hold back). */
  holdBackMs?: number;
  /** Longest hold-back; strikes are forgotten after this long without a cut. */
  holdBackMaxMs?: number;
}

/** Defaults of the hold-back after a flood cut. */
export const DEFAULT_HOLD_BACK_MS = 1_000;
export const DEFAULT_HOLD_BACK_MAX_MS = 60_000;

/** What the gate needs of a socket: the ws `pause()`/`resume()` pair (TCP back-pressure). */
export interface PausableSocket {
  pause(): void;
  resume(): void;
}

/** A gated connection: its socket and the address bucket it counts against. */
export interface GatedConn {
  readonly ws: PausableSocket;
  readonly ipBucket: string;
}

/** The budget a frame found short. */
export type GateRefusal = 'conn-frames' | 'conn-bytes' | 'ip-frames' | 'ip-bytes';

/** What the gate decided: 'ok' (parse it), a short budget, or 'paused' (its sender already is). */
export type GateVerdict = 'ok' | GateRefusal | 'paused';

/** Counters of the gate (reported in `/api/network`). */
export interface FrameGateStats {
  /** Frames refused, by the budget that was short. */
  refused: Record<GateRefusal, number>;
  /** Frames that arrived while their sender was already paused (dropped unread). */
  whilePaused: number;
  /** Times a connection (or an address bucket) was paused. */
  connPauses: number;
  bucketPauses: number;
  /** Connections paused right now. */
  pausedNow: number;
  /** Connections cut for flooding (never read again), and address buckets held back right now. */
  cuts: number;
  heldBackNow: number;
}

/** The gate. */
export interface FrameGate {
  /** Starts gating `conn` (paused at once when its address bucket is paused). */
  attach(conn: GatedConn): void;
  /** Forgets `conn` (closed): its timer is cleared; its bucket's budget outlives it. */
  detach(conn: GatedConn): void;
  /** Charges one frame of `bytes` to every budget of `conn`; anything but 'ok' means drop it. */
  admit(conn: GatedConn, bytes: number): GateVerdict;
  /** The fraction (0..1) available now of the emptiest budget of `conn` (its own and its address's). */
  level(conn: GatedConn): number;
  /**
   * `conn` is being closed for flooding: it is paused for good (never resumed) and its address
   * bucket gets a strike, which holds the bucket back from reconnecting ({@link heldBackMs}).
   */
  cut(conn: GatedConn): void;
  /** Milliseconds the address bucket must still wait before it may connect again (0: it may). */
  heldBackMs(ipBucket: string): number;
  /** Forgets address buckets without connections whose budgets refilled and that are not held back. */
  prune(): void;
  stats(): FrameGateStats;
}

interface ConnState {
  frames: TokenBucket;
  bytes: TokenBucket;
  group: Group;
  /** Paused until this time (ms); 0 when not paused by its own budget. */
  resumeAt: number;
  timer: TimerHandle | null;
  paused: boolean;
  /** Cut for flooding: stays paused until it closes. */
  cut: boolean;
}

interface Group {
  frames: TokenBucket;
  bytes: TokenBucket;
  conns: Set<GatedConn>;
  resumeAt: number;
  timer: TimerHandle | null;
  /** Flood cuts since the bucket was last quiet for `holdBackMaxMs`, and the last one's time. */
  strikes: number;
  lastCutAt: number;
  /** New connections from the bucket are refused until then (ms). */
  heldUntil: number;
}

/** A paused sender is resumed once the short budget has refilled to this share of its capacity. */
const RESUME_SHARE = 0.25;

/** Creates a frame gate. `clock` drives refills and resume timers (fake in tests). */
export function createFrameGate(limits: FrameGateLimits, clock: Clock): FrameGate {
  const conns = new WeakMap<GatedConn, ConnState>();
  const groups = new Map<string, Group>();
  const stats: FrameGateStats = {
    refused: { 'conn-frames': 0, 'conn-bytes': 0, 'ip-frames': 0, 'ip-bytes': 0 },
    whilePaused: 0,
    connPauses: 0,
    bucketPauses: 0,
    pausedNow: 0,
    cuts: 0,
    heldBackNow: 0,
  };
  const holdBackMs = limits.holdBackMs ?? DEFAULT_HOLD_BACK_MS;
  const holdBackMaxMs = Math.max(holdBackMs, limits.holdBackMaxMs ?? DEFAULT_HOLD_BACK_MAX_MS);

  const bucket = (capacity: number, refillPerSecond: number): TokenBucket =>
    createTokenBucket({ capacity, refillPerSecond, clock });

  const groupOf = (key: string): Group => {
    let g = groups.get(key);
    if (!g) {
      g = {
        frames: bucket(limits.framesBurstPerIp, limits.framesPerSecondPerIp),
        bytes: bucket(limits.bytesBurstPerIp, limits.bytesPerSecondPerIp),
        conns: new Set(),
        resumeAt: 0,
        timer: null,
        strikes: 0,
        lastCutAt: 0,
        heldUntil: 0,
      };
      groups.set(key, g);
    }
    return g;
  };

  /** Milliseconds until `b` holds max(`need`, a quarter of its capacity) again. */
  const refillMs = (b: TokenBucket, need: number, perSecond: number): number => {
    const target = Math.min(b.capacity, Math.max(need, b.capacity * RESUME_SHARE));
    return Math.max(1, Math.ceil(((target - b.level()) / perSecond) * 1000));
  };

  const setPaused = (conn: GatedConn, s: ConnState, paused: boolean): void => {
    if (s.paused === paused || (s.cut && !paused)) return;
    s.paused = paused;
    stats.pausedNow += paused ? 1 : -1;
    if (paused) conn.ws.pause();
    else conn.ws.resume();
  };

  /** Resumes `conn` when neither its own nor its bucket's pause is still running. */
  const maybeResume = (conn: GatedConn): void => {
    const s = conns.get(conn);
    if (!s) return;
    // Timers may fire a millisecond early by the wall clock: allow that much.
    if (clock.now() + 1 >= Math.max(s.resumeAt, s.group.resumeAt)) setPaused(conn, s, false);
  };

  const pauseConn = (conn: GatedConn, s: ConnState, ms: number): void => {
    const until = clock.now() + ms;
    if (s.paused && s.resumeAt >= until) return;
    stats.connPauses++;
    s.resumeAt = until;
    setPaused(conn, s, true);
    if (s.timer) clock.clearTimeout(s.timer);
    s.timer = unrefTimer(
      clock.setTimeout(() => {
        s.timer = null;
        maybeResume(conn);
      }, ms),
    );
  };

  const pauseGroup = (g: Group, ms: number): void => {
    const until = clock.now() + ms;
    if (g.resumeAt >= until) return;
    stats.bucketPauses++;
    g.resumeAt = until;
    for (const c of g.conns) {
      const s = conns.get(c);
      if (s) setPaused(c, s, true);
    }
    if (g.timer) clock.clearTimeout(g.timer);
    g.timer = unrefTimer(
      clock.setTimeout(() => {
        g.timer = null;
        for (const c of g.conns) maybeResume(c);
      }, ms),
    );
  };

  return {
    attach(conn) {
      const group = groupOf(conn.ipBucket);
      const s: ConnState = {
        frames: bucket(limits.rateBurst, limits.ratePerSecond),
        bytes: bucket(limits.bytesBurst, limits.bytesPerSecond),
        group,
        resumeAt: 0,
        timer: null,
        paused: false,
        cut: false,
      };
      conns.set(conn, s);
      group.conns.add(conn);
      // A fresh socket does not escape its address's throttle.
      if (group.resumeAt > clock.now()) setPaused(conn, s, true);
    },
    detach(conn) {
      const s = conns.get(conn);
      if (!s) return;
      if (s.timer) clock.clearTimeout(s.timer);
      if (s.paused) stats.pausedNow--;
      conns.delete(conn);
      // The bucket's timer (if any) keeps running: a socket that reconnects meanwhile waits for it.
      s.group.conns.delete(conn);
    },
    admit(conn, bytes) {
      const s = conns.get(conn);
      if (!s) return 'ok';
      const g = s.group;
      // Frames still arriving from a paused sender (read before the pause took effect): drop them
      // without even looking at the budgets.
      if (s.paused) {
        stats.whilePaused++;
        return 'paused';
      }
      // Check everything first, take only when all can pay: a refused frame costs no budget.
      let verdict: GateRefusal | null = null;
      if (g.bytes.level() < bytes) {
        verdict = 'ip-bytes';
        pauseGroup(g, refillMs(g.bytes, bytes, limits.bytesPerSecondPerIp));
      } else if (g.frames.level() < 1) {
        verdict = 'ip-frames';
        pauseGroup(g, refillMs(g.frames, 1, limits.framesPerSecondPerIp));
      } else if (s.bytes.level() < bytes) {
        verdict = 'conn-bytes';
        pauseConn(conn, s, refillMs(s.bytes, bytes, limits.bytesPerSecond));
      } else if (s.frames.level() < 1) {
        verdict = 'conn-frames';
        pauseConn(conn, s, refillMs(s.frames, 1, limits.ratePerSecond));
      }
      if (verdict) {
        stats.refused[verdict]++;
        return verdict;
      }
      g.bytes.take(bytes);
      g.frames.take(1);
      s.bytes.take(bytes);
      s.frames.take(1);
      return 'ok';
    },
    cut(conn) {
      const s = conns.get(conn);
      if (!s || s.cut) return;
      setPaused(conn, s, true);
      s.cut = true;
      if (s.timer) clock.clearTimeout(s.timer);
      s.timer = null;
      stats.cuts++;
      if (holdBackMs <= 0) return;
      const g = s.group;
      const now = clock.now();
      if (now - g.lastCutAt > holdBackMaxMs) g.strikes = 0;
      g.strikes++;
      g.lastCutAt = now;
      const ms = Math.min(holdBackMaxMs, holdBackMs * 2 ** Math.min(30, g.strikes - 1));
      g.heldUntil = Math.max(g.heldUntil, now + ms);
    },
    heldBackMs(ipBucket) {
      const g = groups.get(ipBucket);
      return g ? Math.max(0, g.heldUntil - clock.now()) : 0;
    },
    level(conn) {
      const s = conns.get(conn);
      if (!s) return 1;
      return Math.min(
        ...[s.frames, s.bytes, s.group.frames, s.group.bytes].map((b) => b.level() / b.capacity),
      );
    },
    prune() {
      const now = clock.now();
      for (const [k, g] of groups) {
        if (
          g.conns.size === 0 &&
          g.heldUntil <= now &&
          (g.strikes === 0 || now - g.lastCutAt > holdBackMaxMs) &&
          g.bytes.level() >= g.bytes.capacity &&
          g.frames.level() >= g.frames.capacity
        )
          groups.delete(k);
      }
    },
    stats: () => {
      const now = clock.now();
      let held = 0;
      for (const g of groups.values()) if (g.heldUntil > now) held++;
      return { ...stats, heldBackNow: held, refused: { ...stats.refused } };
    },
  };
}
