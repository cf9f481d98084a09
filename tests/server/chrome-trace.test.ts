/**
 * The swarm tooling's Chromium trace summary (tools/swarm/chrome-trace.ts): threads grouped by
 * their trace names, self time per event name (nested events not counted twice), garbage
 * collections counted with the bytes they freed, other processes left out.
 */
import { describe, expect, it } from 'vitest';
import {
  summariseTrace,
  traceLines,
  traceThreadGroup,
  type TraceEvent,
} from '../../tools/swarm/chrome-trace.js';

const PID = 100;
const name = (tid: number, n: string, pid = PID): TraceEvent => ({
  ph: 'M',
  name: 'thread_name',
  pid,
  tid,
  ts: 0,
  args: { name: n },
});
const x = (
  tid: number,
  n: string,
  ts: number,
  dur: number,
  args?: Record<string, unknown>,
  pid = PID,
  tdur?: number,
) => ({
  ph: 'X',
  name: n,
  pid,
  tid,
  ts,
  dur,
  ...(tdur !== undefined ? { tdur } : {}),
  ...(args ? { args } : {}),
});

describe('Chromium trace summary', () => {
  it('groups threads by their trace names', () => {
    expect(traceThreadGroup('CrRendererMain')).toBe('main');
    expect(traceThreadGroup('DedicatedWorker thread')).toBe('worker');
    expect(traceThreadGroup('ThreadPoolForegroundWorker')).toBe('threadPool');
    expect(traceThreadGroup('Compositor')).toBe('other');
  });

  it('counts self CPU time (else wall time) per name, GCs with their freed bytes, and only the pages asked for', () => {
    const events: TraceEvent[] = [
      name(1, 'CrRendererMain'),
      name(2, 'DedicatedWorker thread'),
      name(3, 'ThreadPoolForegroundWorker'),
      name(4, 'ThreadPoolForegroundWorker'),
      // Pool thread 3: a task runner (10 ms) around a 7 ms wasm compile, itself around 2 ms of flush.
      x(3, 'ThreadPool_RunTask', 1000, 10_000),
      x(3, 'wasm.TopTierCompilation', 2000, 7000),
      x(3, 'FlushInstructionCache', 3000, 2000),
      // Pool thread 4: another compile (3 ms of wall time, 1 ms on the CPU), after its end a GC helper.
      x(4, 'wasm.TopTierCompilation', 0, 3000, undefined, PID, 1000),
      x(4, 'V8.GC_MC_BACKGROUND_MARKING', 5000, 1000),
      // Worker: a minor GC (4 MB freed) inside a 5 ms task, B/E-paired major GC.
      x(2, 'RunTask', 0, 5000),
      x(2, 'MinorGC', 1000, 500, { usedHeapSizeBefore: 9e6, usedHeapSizeAfter: 5e6 }),
      { ph: 'B', name: 'MajorGC', pid: PID, tid: 2, ts: 10_000, args: { usedHeapSizeBefore: 8e6 } },
      { ph: 'E', name: 'MajorGC', pid: PID, tid: 2, ts: 12_000, args: { usedHeapSizeAfter: 2e6 } },
      // Another process: ignored.
      name(3, 'ThreadPoolForegroundWorker', 999),
      x(3, 'wasm.TopTierCompilation', 0, 50_000, undefined, 999),
    ];
    const [s, ...rest] = summariseTrace(events, new Map([[PID, 'stage 0']]));
    expect(rest).toEqual([]);
    expect(s!.page).toBe('stage 0');
    const pool = Object.fromEntries(s!.groups.threadPool.byName.map((b) => [b.name, b]));
    // 7 - 2 ms nested on thread 3, and thread 4's 1 ms of CPU (not its 3 ms of wall time).
    expect(pool['wasm.TopTierCompilation']).toEqual({ name: 'wasm.TopTierCompilation', ms: 6, count: 2 });
    expect(pool['ThreadPool_RunTask']!.ms).toBeCloseTo(3);
    expect(pool['FlushInstructionCache']!.ms).toBeCloseTo(2);
    expect(s!.groups.threadPool.ms).toBeCloseTo(12); // 10 + 1 + 1: nothing counted twice
    expect(s!.groups.threadPool.byName[0]!.name).toBe('wasm.TopTierCompilation');
    expect(s!.gc.worker).toEqual({ minor: 1, major: 1, minorFreedBytes: 4e6, majorFreedBytes: 6e6 });
    expect(s!.groups.worker.ms).toBeCloseTo(7);
    expect(s!.groups.main.ms).toBe(0);

    const lines = traceLines(s!, 2);
    expect(lines[0]).toContain('stage 0');
    expect(lines.find((l) => l.includes('threadPool'))).toContain('wasm.TopTierCompilation 3.00 (2×)');
  });
});
