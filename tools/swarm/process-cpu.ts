/**
 * CPU time of every process of a swarm run, read from /proc (Linux only): the Chromium browser
 * process, each renderer (one per page; the shard worker runs inside its page's renderer), the GPU
 * process, the network/storage/other utility processes, the signaling server and this Node process
 * (the bench and Playwright's client). Sampled at two moments (the decode phase's start and end), the
 * difference per generated token says where the machine's CPU went per token — and, summed against
 * the wall time, how many of its cores the run needed.
 *
 * A process's CPU is `utime + stime` of /proc/<pid>/stat (all its threads, ended ones included),
 * in clock ticks of 10 ms: over a short window (48 tokens at 90 tok/s is 0.5 s) a single process's
 * figure moves by a tick, so read them over enough tokens. A renderer's time is also split by
 * thread (main, dedicated workers, the rest) from /proc/<pid>/task/<tid>/schedstat, which counts
 * nanoseconds but only threads still alive at both samples.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** What a process of the run is. */
export type ProcessKind =
  | 'browser'
  | 'renderer'
  | 'gpu'
  | 'network'
  | 'storage'
  | 'utility'
  | 'zygote'
  | 'server'
  | 'harness'
  | 'other';

/** One process of the run, as classified from its command line. */
export interface RunProcess {
  pid: number;
  kind: ProcessKind;
  /** Who it is: `browser`, `gpu`, a page's label for a renderer, the utility's sub-type, … */
  label: string;
}

/** Linux's USER_HZ (/proc's clock ticks per second): 100 on every architecture Chromium ships for. */
const TICKS_PER_S = 100;

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(path: string): string[] | undefined {
  try {
    const stat = readFileSync(path, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Process CPU time (user + system, all threads) in ms, or undefined once it is gone. */
export function processCpuMs(pid: number): number | undefined {
  // After ')': state(0) ppid(1) … utime(11) stime(12).
  const f = statFields(`/proc/${pid}/stat`);
  if (!f) return undefined;
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS_PER_S;
}

/**
 * Which group a renderer's thread belongs to, by {@link threadCpuMs}'s name: its main thread (the
 * page's JS, React, layout — tid = pid: Chromium leaves the main thread's name alone, as renaming
 * it renames the process), its dedicated workers (the shard runner and ONNX Runtime's wasm threads,
 * "DedicatedWorker thread" cut to 15 characters), or the rest (compositor, IO, V8's and Chromium's
 * thread pools).
 */
export function threadGroup(name: string): 'main' | 'worker' | 'other' {
  if (name === 'main') return 'main';
  if (name.startsWith('DedicatedWorker')) return 'worker';
  return 'other';
}

/** A process's thread CPU times (ms, from schedstat) by thread name (`main` for the main thread). */
export function threadCpuMs(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      // Pools number their threads ("ThreadPoolForeg", "V8 DefaultWorke"…): one entry per pool.
      const name = Number(tid) === pid ? 'main' : comm.replace(/[\d/]+$/, '');
      if (Number.isFinite(ns)) out[name] = (out[name] ?? 0) + ns / 1e6;
    } catch {
      // The thread ended while we looked.
    }
  }
  return out;
}

/** Thread times by name, summed into {@link threadGroup}'s groups. */
function grouped(byName: Record<string, number>): Record<'main' | 'worker' | 'other', number> {
  const out = { main: 0, worker: 0, other: 0 };
  for (const [name, ms] of Object.entries(byName)) out[threadGroup(name)] += ms;
  return out;
}

/** Classifies a process from its command line (Chromium's `--type=…` switches). */
export function classify(cmdline: string): { kind: ProcessKind; label: string } {
  // Chromium rewrites its child processes' titles into one space-separated string.
  const args = cmdline.split(/[\0 ]/).filter(Boolean);
  const sw = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const type = sw('type');
  if (type === 'renderer') return { kind: 'renderer', label: 'renderer' };
  if (type === 'gpu-process') return { kind: 'gpu', label: 'gpu' };
  if (type === 'zygote') return { kind: 'zygote', label: 'zygote' };
  if (type === 'utility') {
    const sub = sw('utility-sub-type') ?? 'utility';
    if (sub.startsWith('network.')) return { kind: 'network', label: 'network' };
    if (sub.startsWith('storage.')) return { kind: 'storage', label: 'storage' };
    return { kind: 'utility', label: sub.replace(/\.mojom\./, '.') };
  }
  if (type !== undefined) return { kind: 'other', label: type };
  if (/chrom(e|ium)/i.test(args[0] ?? '') || args.some((a) => a.startsWith('--remote-debugging')))
    return { kind: 'browser', label: 'browser' };
  return { kind: 'other', label: (args[0] ?? '?').split('/').pop() ?? '?' };
}

/** Parent pid of each process of /proc (one read per process). */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const f = statFields(`/proc/${pid}/stat`);
    if (f) out.set(pid, Number(f[1]));
  }
  return out;
}

/**
 * This process and every process it started (indirectly), classified: the browser's processes and
 * the server (`serverPid`). Renderers are labelled from `pages` (renderer pid → page label).
 * Other sessions on the machine may run Chromium too: only our descendants count.
 */
export function runProcesses(o: { serverPid?: number; pages?: ReadonlyMap<number, string> }): RunProcess[] {
  if (process.platform !== 'linux') return [];
  const parent = parents();
  const descends = (pid: number): boolean => {
    for (let p: number | undefined = pid, i = 0; p !== undefined && p > 1 && i < 64; i++) {
      if (p === process.pid) return true;
      p = parent.get(p);
    }
    return false;
  };
  const out: RunProcess[] = [{ pid: process.pid, kind: 'harness', label: 'harness (bench + Playwright)' }];
  for (const pid of parent.keys()) {
    if (pid === process.pid || !descends(pid)) continue;
    if (pid === o.serverPid) {
      out.push({ pid, kind: 'server', label: 'server' });
      continue;
    }
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const c = classify(cmd);
    const page = c.kind === 'renderer' ? o.pages?.get(pid) : undefined;
    out.push({ pid, kind: c.kind, label: page ?? (c.kind === 'renderer' ? `renderer ${pid}` : c.label) });
  }
  return out;
}

/** CPU times of a set of processes at one moment. */
export interface CpuSample {
  /** `performance.now()` of the sample, ms. */
  at: number;
  /** Per pid: process CPU ms, and a renderer's thread split (ms). */
  cpu: Map<number, { ms: number; threads?: Record<string, number> }>;
}

/** Reads every process's CPU time now (renderers also by thread). */
export function sampleCpu(procs: readonly RunProcess[]): CpuSample {
  const cpu: CpuSample['cpu'] = new Map();
  for (const p of procs) {
    const ms = processCpuMs(p.pid);
    if (ms === undefined) continue;
    cpu.set(p.pid, { ms, ...(p.kind === 'renderer' ? { threads: threadCpuMs(p.pid) } : {}) });
  }
  return { at: performance.now(), cpu };
}

/** One process's CPU over the window. */
export interface ProcessCpu {
  pid: number;
  kind: ProcessKind;
  label: string;
  cpuMs: number;
  cpuMsPerToken: number;
  /** Renderers: the same by thread group (schedstat; threads alive at both samples). */
  threadsMsPerToken?: Record<'main' | 'worker' | 'other', number>;
  /** Renderers: by thread name (pools summed), busiest first; the names above 0.05 ms per token. */
  threadNamesMsPerToken?: Record<string, number>;
}

/** Where the CPU went over one window of generated tokens. */
export interface CpuReport {
  tokens: number;
  wallMs: number;
  wallMsPerToken: number;
  /** All processes together. */
  cpuMsPerToken: number;
  /** CPU ms per wall ms: how many cores the run kept busy (of the machine's `cores`). */
  coresBusy: number;
  cores: number;
  /** Per process, busiest first (those that used no CPU in the window are left out). */
  processes: ProcessCpu[];
}

/** The CPU each process used between two samples, per generated token. */
export function cpuReport(
  procs: readonly RunProcess[],
  a: CpuSample,
  b: CpuSample,
  tokens: number,
  cores: number,
): CpuReport {
  const wallMs = b.at - a.at;
  const n = Math.max(1, tokens);
  const processes: ProcessCpu[] = [];
  for (const p of procs) {
    const x = a.cpu.get(p.pid);
    const y = b.cpu.get(p.pid);
    if (!x || !y) continue;
    const cpuMs = y.ms - x.ms;
    let names: Record<string, number> | undefined;
    if (x.threads && y.threads) {
      const t0 = x.threads;
      names = Object.fromEntries(
        Object.entries(y.threads)
          .map(([k, v]): [string, number] => [k, (v - (t0[k] ?? 0)) / n])
          .filter(([, v]) => v >= 0.05)
          .sort((u, v) => v[1] - u[1]),
      );
    }
    // Under a tick of CPU per token in all: an idle process (about:blank renderers, the zygote).
    if (cpuMs / n < 0.01) continue;
    processes.push({
      ...p,
      cpuMs,
      cpuMsPerToken: cpuMs / n,
      ...(names ? { threadsMsPerToken: grouped(names), threadNamesMsPerToken: names } : {}),
    });
  }
  processes.sort((p, q) => q.cpuMs - p.cpuMs);
  const total = processes.reduce((s, p) => s + p.cpuMs, 0);
  return {
    tokens,
    wallMs,
    wallMsPerToken: wallMs / n,
    cpuMsPerToken: total / n,
    coresBusy: wallMs > 0 ? total / wallMs : NaN,
    cores,
    processes,
  };
}

/**
 * A report as text: one line of totals ("the run needs X of the N cores") and a table of processes
 * by CPU ms per token, renderers split by thread group.
 */
export function cpuLines(
  what: string,
  r: CpuReport,
  table: (h: string[], rows: string[][]) => string,
): string[] {
  const f = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(2));
  return [
    `CPU per generated token, ${what}: ${r.tokens} tokens in ${r.wallMs.toFixed(0)} ms of decode ` +
      `(${f(r.wallMsPerToken)} ms wall per token); all processes ${f(r.cpuMsPerToken)} ms CPU per token = ` +
      `${r.coresBusy.toFixed(2)} of the ${r.cores} cores busy`,
    table(
      ['process', 'kind', 'pid', 'CPU ms/tok', 'main thread', 'workers', 'other threads', 'busiest threads'],
      r.processes.map((p) => [
        p.label,
        p.kind,
        `${p.pid}`,
        f(p.cpuMsPerToken),
        f(p.threadsMsPerToken?.main),
        f(p.threadsMsPerToken?.worker),
        f(p.threadsMsPerToken?.other),
        Object.entries(p.threadNamesMsPerToken ?? {})
          .slice(0, 3)
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(', '),
      ]),
    ),
    '',
  ];
}
