/**
 * The swarm bench's per-process CPU figures (tools/swarm/process-cpu.ts): which process is which
 * from its command line, and the per-token arithmetic between two samples.
 */
import { describe, expect, it } from 'vitest';
import {
  classify,
  cpuReport,
  processCpuMs,
  threadGroup,
  type CpuSample,
  type RunProcess,
} from '../../tools/swarm/process-cpu.js';

describe('process classification', () => {
  it('tells Chromium processes apart from their (rewritten, space-separated) titles', () => {
    const c = (s: string) => classify(s).kind;
    expect(c('/usr/lib/chromium/chromium --type=renderer --enable-features=X --lang=en-US')).toBe('renderer');
    expect(c('/usr/lib/chromium/chromium --type=gpu-process --ozone-platform=headless')).toBe('gpu');
    expect(
      classify('/usr/lib/chromium/chromium --type=utility --utility-sub-type=network.mojom.NetworkService'),
    ).toEqual({ kind: 'network', label: 'network' });
    expect(
      c('/usr/lib/chromium/chromium --type=utility --utility-sub-type=storage.mojom.StorageService'),
    ).toBe('storage');
    expect(classify('chromium --type=utility --utility-sub-type=audio.mojom.AudioService').label).toBe(
      'audio.AudioService',
    );
    expect(c('/usr/lib/chromium/chromium --type=zygote --no-zygote-sandbox')).toBe('zygote');
    // The browser process keeps its NUL-separated argv.
    expect(c('/usr/lib/chromium/chromium\0--headless\0--remote-debugging-pipe\0')).toBe('browser');
    expect(c('/bin/sh\0-c\0true')).toBe('other');
  });

  it("groups a renderer's threads: main (tid = pid), workers, the rest", () => {
    expect(threadGroup('main')).toBe('main');
    expect(threadGroup('DedicatedWorker')).toBe('worker');
    expect(threadGroup('V8 DefaultWorke')).toBe('other');
    expect(threadGroup('Compositor')).toBe('other');
  });
});

describe('cpuReport', () => {
  const procs: RunProcess[] = [
    { pid: 1, kind: 'renderer', label: 'stage 0' },
    { pid: 2, kind: 'gpu', label: 'gpu' },
    { pid: 3, kind: 'server', label: 'server' },
  ];
  const sample = (at: number, cpu: Array<[number, number, number?]>): CpuSample => ({
    at,
    cpu: new Map(
      cpu.map(([pid, ms, main]) => [
        pid,
        {
          ms,
          ...(main !== undefined ? { threads: { main, DedicatedWorker: 2 * main, Compositor: 0 } } : {}),
        },
      ]),
    ),
  });

  it('divides each process by the tokens, sums them against the wall time, leaves idle ones out', () => {
    const r = cpuReport(
      procs,
      sample(1000, [
        [1, 500, 10],
        [2, 40],
        [3, 7],
      ]),
      sample(1500, [
        [1, 800, 60],
        [2, 140],
        [3, 7],
      ]),
      50,
      2,
    );
    expect(r.wallMs).toBe(500);
    expect(r.wallMsPerToken).toBe(10);
    expect(r.cpuMsPerToken).toBe(8); // (300 + 100) / 50
    expect(r.coresBusy).toBe(0.8);
    expect(r.processes.map((p) => p.label)).toEqual(['stage 0', 'gpu']);
    expect(r.processes[0]!.threadsMsPerToken).toEqual({ main: 1, worker: 2, other: 0 });
    expect(r.processes[0]!.threadNamesMsPerToken).toEqual({ DedicatedWorker: 2, main: 1 });
  });

  it('skips a process that ended between the samples', () => {
    const r = cpuReport(procs, sample(0, [[1, 0]]), sample(100, [[2, 50]]), 10, 2);
    expect(r.processes).toEqual([]);
    expect(r.cpuMsPerToken).toBe(0);
  });
});

describe('processCpuMs', () => {
  it.runIf(process.platform === 'linux')('reads this process, and grows as it computes', () => {
    const a = processCpuMs(process.pid)!;
    const t = performance.now();
    let x = 0;
    // Busy until the reading moves (a 10 ms tick), for 5 s of wall time at most.
    while (processCpuMs(process.pid) === a && performance.now() - t < 5000)
      for (let i = 0; i < 1e5; i++) x += Math.sqrt(x + i);
    expect(x).toBeGreaterThan(0);
    expect(processCpuMs(process.pid)!).toBeGreaterThan(a);
    expect(processCpuMs(2 ** 30)).toBeUndefined();
  });
});
