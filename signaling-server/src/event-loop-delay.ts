/**
 * The server's own event-loop delay, in windows: how late a timer fires is how long any frame
 * (an honest heartbeat too) waits before the server even looks at it. Reported in `/api/network`
 * so an operator — and `npm run bench:hostile` — can tell server-side stalls apart from delay
 * added by clients or the network.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { unrefTimer, type Clock, type TimerHandle } from './clock.js';

/** One closed window of event-loop delay samples. */
export interface EventLoopWindow {
  /** When the window closed (ms since the epoch, the server's clock). */
  endedAt: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** A running monitor; `start`/`stop` are safe twice. */
export interface EventLoopMonitor {
  start(): void;
  stop(): void;
  /** The last closed windows, oldest first. */
  windows(): EventLoopWindow[];
}

/** Options of {@link createEventLoopMonitor}. */
export interface EventLoopMonitorOptions {
  clock: Clock;
  /** Window length, ms (default 1000). */
  windowMs?: number;
  /** Windows kept (default 30). */
  keep?: number;
  /** Sampling resolution, ms (default 5): a timer this often measures how late it fires. */
  resolutionMs?: number;
}

const ms = (ns: number): number => Math.round(ns / 1e4) / 100;

/** Creates an event-loop delay monitor (perf_hooks' histogram, rotated every window). */
export function createEventLoopMonitor(o: EventLoopMonitorOptions): EventLoopMonitor {
  const windowMs = o.windowMs ?? 1000;
  const keep = o.keep ?? 30;
  const closed: EventLoopWindow[] = [];
  let h: IntervalHistogram | null = null;
  let timer: TimerHandle | null = null;
  const rotate = (): void => {
    if (!h) return;
    if (h.count > 0) {
      closed.push({
        endedAt: o.clock.now(),
        p50Ms: ms(h.percentile(50)),
        p99Ms: ms(h.percentile(99)),
        maxMs: ms(h.max),
      });
      if (closed.length > keep) closed.shift();
    }
    h.reset();
  };
  return {
    start() {
      if (h) return;
      h = monitorEventLoopDelay({ resolution: o.resolutionMs ?? 5 });
      h.enable();
      timer = unrefTimer(o.clock.setInterval(rotate, windowMs));
    },
    stop() {
      if (timer) o.clock.clearInterval(timer);
      timer = null;
      h?.disable();
      h = null;
    },
    windows: () => closed.map((w) => ({ ...w })),
  };
}
