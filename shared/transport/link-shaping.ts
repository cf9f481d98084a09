/**
 * Test-and-bench link shaping: every peer in a test shares 127.0.0.1, so links are all equally
 * close; to show the planner using measured proximity, a per-pair one-way delay and rate are
 * injected into the channel. Only the in-memory transport's hub option and the browser transport's
 * explicit test flag (`?shape=` in test mode) reach this; production code never shapes.
 *
 * The model is one FIFO serialiser per direction: a message of `b` bytes leaves after the link was
 * busy `b·8 / (mbps·1e6)` s and arrives `delayMs` later. Order is kept; `bufferedAmount` counts
 * bytes not yet handed to the underlying channel, so back-pressure sees the shaped queue.
 */
import { z } from 'zod';
import { parseWithSchema } from '../errors.js';
import type { MessageChannelLike } from './types.js';

/** One direction of a shaped link. */
export const linkShapeSchema = z
  .object({
    /** One-way delay added to every message, ms (a pair at 80 ms RTT has 40 here). */
    delayMs: z.number().nonnegative().max(10_000),
    /** Serialisation rate, Mbit/s (omitted: unlimited). */
    mbps: z.number().positive().max(1_000_000).optional(),
  })
  .strict();
export type LinkShape = z.infer<typeof linkShapeSchema>;

/** A shaping table: `"a|b"` (either order) → shape. Parsed from a test flag's JSON. */
export const linkShapeTableSchema = z.record(z.string().max(200), linkShapeSchema);
export type LinkShapeTable = z.infer<typeof linkShapeTableSchema>;

/** Parses a shaping table from untrusted JSON (a test flag); TRANSPORT_BAD_SHAPE when malformed. */
export function parseLinkShapeTable(value: unknown): LinkShapeTable {
  return parseWithSchema(linkShapeTableSchema, value, 'TRANSPORT_BAD_SHAPE', 'link shaping table');
}

/** The shape of the link between `a` and `b` in `table` (keys are unordered pairs `a|b`). */
export function shapeOf(table: LinkShapeTable, a: string, b: string): LinkShape | undefined {
  return table[`${a}|${b}`] ?? table[`${b}|${a}`];
}

/** Timer used by the shaper (injectable so tests can use fake timers). */
export interface ShapingClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
}

const defaultClock: ShapingClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- one store for the overloads' listener types
type Listener = (ev: any) => void;

/**
 * Wraps the sending side of `inner`: what `send` is given reaches `inner.send` after the shape's
 * serialisation and delay. Receiving, `readyState` and close pass through unchanged.
 */
export function shapeChannel(
  inner: MessageChannelLike,
  shape: LinkShape,
  clock: ShapingClock = defaultClock,
): MessageChannelLike {
  let queued = 0;
  let busyUntil = 0;
  let threshold = 0;
  const lowListeners = new Set<Listener>();
  const bytesOf = (d: string | ArrayBuffer) => (typeof d === 'string' ? d.length : d.byteLength);
  const wrapper: MessageChannelLike = {
    get readyState() {
      return inner.readyState;
    },
    get bufferedAmount() {
      return queued + inner.bufferedAmount;
    },
    get bufferedAmountLowThreshold() {
      return threshold;
    },
    set bufferedAmountLowThreshold(v: number) {
      threshold = v;
      inner.bufferedAmountLowThreshold = v;
    },
    get binaryType() {
      return inner.binaryType;
    },
    set binaryType(v: string | undefined) {
      if (v !== undefined) inner.binaryType = v;
    },
    send(data) {
      if (inner.readyState !== 'open') {
        inner.send(data); // let the channel throw its own closed error
        return;
      }
      const size = bytesOf(data);
      const copy = typeof data === 'string' ? data : data.slice(0);
      const now = clock.now();
      const txMs = shape.mbps ? (size * 8) / (shape.mbps * 1000) : 0;
      busyUntil = Math.max(busyUntil, now) + txMs;
      queued += size;
      clock.setTimeout(
        () => {
          queued -= size;
          if (inner.readyState === 'open') inner.send(copy);
          if (queued + inner.bufferedAmount <= threshold) for (const l of lowListeners) l(undefined);
        },
        Math.max(0, busyUntil - now + shape.delayMs),
      );
    },
    close: () => inner.close(),
    addEventListener(type: string, l: Listener) {
      if (type === 'bufferedamountlow') {
        lowListeners.add(l);
        // The inner channel drains too (its own queue after our hand-over).
        inner.addEventListener('bufferedamountlow', () => {
          if (queued + inner.bufferedAmount <= threshold) l(undefined);
        });
        return;
      }
      (inner.addEventListener as (t: string, l: Listener) => void)(type, l);
    },
  };
  return wrapper;
}
