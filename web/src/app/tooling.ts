/**
 * Tooling-only switches a page takes from its URL, for benchmarks and the swarm driver — never for
 * people. `perf=1` keeps debug timings of the ring's hot path (shared/util/perf-trace.ts; timings
 * only, so any server allows it). `#/contribute?join=1&nullCompute=1` makes this tab's shard runner skip the model
 * (shared/runtime/null-compute-runner.ts) so that a ring measures its protocol cost alone. The
 * server must be in test mode (`/api/network` says `testMode: true`); anywhere else the load is
 * refused with `TOOLING_ONLY` and the tab serves nothing. `tamper=<name>` (test-only, the same
 * test-mode rule) makes the contributor a dishonest ring stage (shared/validation/test-tampers.ts)
 * for the validation e2e. `threads=N` (1-4; only this tab's own compute, so any server allows it)
 * sets the shard worker's ONNX Runtime wasm threads, for benchmarks that compare thread counts.
 * `warmup=MS` (0-5000; this tab's own compute) sets how long the shard worker warms its engine up
 * after its first load (`0` turns it off), for benchmarks that measure what the warm-up buys.
 * `log=1` sends the tab's requester and contributor logs to the browser console (logs only, so any
 * server allows it): a browser test prints them to see where an answer stalled.
 * `loop=0` (this tab's own requests, so any server allows it) turns the requester's loop mode off
 * (every decode step sent from this tab, as before issue 16's loop), for benchmarks that compare.
 */
import { RingworkError } from '../../../shared/errors';
import type { Logger } from '../../../shared/app/network-port';

/** The switches the URL asks for. */
export function toolingFromUrl(): {
  nullCompute: boolean;
  perf: boolean;
  log: boolean;
  /** False with `loop=0`: this tab's ring answers send every step themselves. */
  loop: boolean;
  tamper?: string;
  threads?: number;
  warmUpMs?: number;
} {
  const q = new URLSearchParams(location.hash.split('?')[1] ?? location.search);
  const tamper = q.get('tamper');
  const threads = Number(q.get('threads'));
  const warmUp = q.get('warmup') ?? '';
  const warmUpMs = /^\d{1,4}$/.test(warmUp) ? Number(warmUp) : NaN;
  return {
    nullCompute: q.get('nullCompute') === '1',
    perf: q.get('perf') === '1',
    log: q.get('log') === '1',
    loop: q.get('loop') !== '0',
    ...(tamper ? { tamper } : {}),
    ...(Number.isInteger(threads) && threads >= 1 && threads <= 4 ? { threads } : {}),
    ...(warmUpMs <= 5000 ? { warmUpMs } : {}),
  };
}

/** A logger writing to the browser console, prefixed by `name` (for `log=1` pages). */
export function consoleLogger(name: string): Logger {
  const line = (o: object, msg?: string) => {
    let fields: string;
    try {
      fields = JSON.stringify(o, (_k, v: unknown) =>
        v instanceof Error ? { name: v.name, message: v.message, code: (v as { code?: unknown }).code } : v,
      );
    } catch {
      fields = String(o);
    }
    return `[${name}] ${msg ?? ''} ${fields}`;
  };
  return {
    debug: (o, msg) => console.debug(line(o, msg)),
    info: (o, msg) => console.info(line(o, msg)),
    warn: (o, msg) => console.warn(line(o, msg)),
    error: (o, msg) => console.error(line(o, msg)),
  };
}

/**
 * Resolves when the server at `base` (default: this page's) runs in test mode; throws
 * `TOOLING_ONLY` otherwise, also when it cannot be asked.
 */
export async function requireTestModeServer(what: string, base = location.href): Promise<void> {
  let testMode = false;
  try {
    const r = await fetch(new URL('/api/network', base));
    testMode = r.ok && ((await r.json()) as { testMode?: unknown }).testMode === true;
  } catch {
    /* unreachable or not JSON: not a test-mode server */
  }
  if (!testMode) {
    throw new RingworkError('TOOLING_ONLY', `${what} is a tooling mode: only a test-mode server allows it.`, {
      details: { mode: what },
    });
  }
}
