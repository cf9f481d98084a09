/**
 * What a page's threads did during one answer, from a Chromium trace (tools/swarm/swarm-run.ts
 * `chromeTrace`; `npm run swarm -- --trace-out FILE`): per page, per thread group (main, dedicated
 * workers, Chromium's thread pool, the rest), the time of the trace events each group ran, by event
 * name, and the garbage collections (minor and major, with the bytes each freed). Used to tell
 * what the `ThreadPoolForeg` CPU that `--perf` reports per token is: V8's GC helpers (concurrent
 * marking, sweeping, the ArrayBuffer sweeper), wasm compile jobs, or something else.
 *
 * Each event counts its self time (its duration less that of the events nested in it on the same
 * thread), so the sums per thread do not double count and name what ran, not the task runner. The
 * duration is the thread's CPU time (`tdur`) where the event has it, else its wall time: on a busy
 * machine a background compile job's wall time was 5x its CPU time (the thread waited for a core).
 * Recording the trace slows V8's compile jobs too; read the figures as shares, and the CPU per
 * token from `--perf` (/proc) as the amounts.
 */

/** One event of Chromium's JSON trace format (the fields this reads). */
export interface TraceEvent {
  ph: string;
  name: string;
  pid: number;
  tid: number;
  /** µs. */
  ts: number;
  /** µs of wall time, on `X` (complete) events. */
  dur?: number;
  /** µs of the thread's CPU time, on events that record it (what the summary counts when present). */
  tdur?: number;
  args?: Record<string, unknown>;
}

/** Which group a thread belongs to, by its trace name. */
export type TraceThreadGroup = 'main' | 'worker' | 'threadPool' | 'other';

/** Groups a thread by the name Chromium gives it in the trace's `thread_name` metadata. */
export function traceThreadGroup(name: string): TraceThreadGroup {
  if (name === 'CrRendererMain') return 'main';
  if (name.startsWith('DedicatedWorker')) return 'worker';
  if (name.startsWith('ThreadPool')) return 'threadPool';
  return 'other';
}

/** One thread group's events: total ms and self ms by event name (busiest first). */
export interface TraceGroupSummary {
  ms: number;
  byName: Array<{ name: string; ms: number; count: number }>;
}

/** Garbage collections seen in a page's threads (any thread). */
export interface TraceGcSummary {
  minor: number;
  major: number;
  /** Heap bytes freed by the minor GCs (`usedHeapSizeBefore - After`): ≈ what the page allocated. */
  minorFreedBytes: number;
  majorFreedBytes: number;
}

/** One page's summary. */
export interface TracePageSummary {
  page: string;
  pid: number;
  groups: Record<TraceThreadGroup, TraceGroupSummary>;
  gc: Record<TraceThreadGroup, TraceGcSummary>;
}

const MINOR = new Set(['MinorGC', 'ScavengeGC', 'MinorMS']);
const MAJOR = new Set(['MajorGC']);

/** Complete (`X`) and begin/end (`B`/`E`) events as spans, per thread. */
function spans(events: readonly TraceEvent[], pid: number): Map<number, TraceEvent[]> {
  const out = new Map<number, TraceEvent[]>();
  const open = new Map<number, TraceEvent[]>();
  for (const e of events) {
    if (e.pid !== pid) continue;
    const list = out.get(e.tid) ?? [];
    out.set(e.tid, list);
    if (e.ph === 'X') list.push(e);
    else if (e.ph === 'B') {
      const stack = open.get(e.tid) ?? [];
      open.set(e.tid, stack);
      stack.push({ ...e });
    } else if (e.ph === 'E') {
      const b = open.get(e.tid)?.pop();
      if (b) list.push({ ...b, ph: 'X', dur: e.ts - b.ts, args: { ...b.args, ...e.args } });
    }
  }
  return out;
}

/**
 * Summarises `events` for each page in `pages` (renderer pid → label), over the whole trace.
 * Threads are named from the `thread_name` metadata events; one without a name counts as `other`.
 */
export function summariseTrace(
  events: readonly TraceEvent[],
  pages: ReadonlyMap<number, string>,
): TracePageSummary[] {
  const names = new Map<string, string>();
  for (const e of events) {
    if (e.ph === 'M' && e.name === 'thread_name' && typeof e.args?.name === 'string')
      names.set(`${e.pid}:${e.tid}`, e.args.name);
  }
  const out: TracePageSummary[] = [];
  for (const [pid, page] of pages) {
    const zeroGc = (): TraceGcSummary => ({ minor: 0, major: 0, minorFreedBytes: 0, majorFreedBytes: 0 });
    const acc = {
      main: new Map<string, { ms: number; count: number }>(),
      worker: new Map<string, { ms: number; count: number }>(),
      threadPool: new Map<string, { ms: number; count: number }>(),
      other: new Map<string, { ms: number; count: number }>(),
    };
    const gc = { main: zeroGc(), worker: zeroGc(), threadPool: zeroGc(), other: zeroGc() };
    for (const [tid, list] of spans(events, pid)) {
      const group = traceThreadGroup(names.get(`${pid}:${tid}`) ?? '');
      list.sort((a, b) => a.ts - b.ts || (b.dur ?? 0) - (a.dur ?? 0));
      // Self time: an event's duration less its direct children's (the enclosing events on a
      // thread are generic task runners; the names that say what ran are the inner ones).
      const stack: TraceEvent[] = [];
      for (const e of list) {
        const dur = e.tdur ?? e.dur ?? 0;
        const freed = Number(e.args?.usedHeapSizeBefore ?? NaN) - Number(e.args?.usedHeapSizeAfter ?? NaN);
        if (MINOR.has(e.name)) {
          gc[group].minor++;
          if (Number.isFinite(freed)) gc[group].minorFreedBytes += freed;
        } else if (MAJOR.has(e.name)) {
          gc[group].major++;
          if (Number.isFinite(freed)) gc[group].majorFreedBytes += freed;
        }
        while (stack.length > 0 && e.ts >= stack[stack.length - 1]!.ts + (stack[stack.length - 1]!.dur ?? 0))
          stack.pop();
        const parent = stack[stack.length - 1];
        if (parent) acc[group].get(parent.name)!.ms -= dur / 1000;
        const a = acc[group].get(e.name) ?? { ms: 0, count: 0 };
        a.ms += dur / 1000;
        a.count++;
        acc[group].set(e.name, a);
        stack.push(e);
      }
    }
    const summary = (m: Map<string, { ms: number; count: number }>): TraceGroupSummary => {
      const byName = [...m].map(([name, v]) => ({ name, ...v })).sort((a, b) => b.ms - a.ms);
      return { ms: byName.reduce((s, x) => s + x.ms, 0), byName };
    };
    out.push({
      page,
      pid,
      groups: {
        main: summary(acc.main),
        worker: summary(acc.worker),
        threadPool: summary(acc.threadPool),
        other: summary(acc.other),
      },
      gc,
    });
  }
  return out;
}

/** A page's summary as lines, per token (`tokens` generated in the traced answer), top `top` names. */
export function traceLines(s: TracePageSummary, tokens: number, top = 6): string[] {
  const per = (ms: number) => (ms / Math.max(1, tokens)).toFixed(2);
  const lines = [`${s.page} (pid ${s.pid}), ms per token over ${tokens} tokens:`];
  for (const g of ['worker', 'threadPool', 'main', 'other'] as const) {
    const { ms, byName } = s.groups[g];
    const names = byName
      .slice(0, top)
      .map((x) => `${x.name} ${per(x.ms)} (${x.count}×)`)
      .join(', ');
    const c = s.gc[g];
    const gcs =
      c.minor + c.major > 0
        ? `; GC: ${c.minor} minor (${(c.minorFreedBytes / 1e6).toFixed(1)} MB freed), ${c.major} major`
        : '';
    lines.push(`  ${g}: ${per(ms)} = ${names || 'nothing traced'}${gcs}`);
  }
  return lines;
}
