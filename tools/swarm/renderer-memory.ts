/**
 * Resident memory of Chromium renderer processes, read from /proc (Linux only).
 *
 * A contributor's shard lives in a dedicated worker's wasm memory, which neither the page's JS heap
 * (CDP `Performance.getMetrics`) nor `performance.memory` counts; the renderer process's RSS does,
 * since dedicated workers run inside their page's renderer. CDP does not say which renderer pid
 * hosts a page, so the swarm opens pages one at a time and attributes the renderer that appeared
 * with each (the browser is launched without a spare renderer, see {@link NO_SPARE_RENDERER}).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Chromium flag: no pre-started spare renderer, so a new page's renderer appears with that page. */
export const NO_SPARE_RENDERER = '--disable-features=SpareRendererForSitePerProcess';

function parentOf(pid: number): number | undefined {
  try {
    // The command name (field 2) may hold spaces and parentheses: read fields after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[1]);
  } catch {
    return undefined;
  }
}

function descendsFrom(pid: number, ancestor: number): boolean {
  for (let p: number | undefined = pid, i = 0; p !== undefined && p > 1 && i < 64; i++) {
    if (p === ancestor) return true;
    p = parentOf(p);
  }
  return false;
}

/**
 * Pids of Chromium renderer processes started (indirectly) by this Node process. Other sessions on
 * the machine may run Chromium too: only our descendants count.
 */
export function ourRendererPids(): Set<number> {
  const out = new Set<number>();
  if (process.platform !== 'linux') return out;
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes('--type=renderer') && descendsFrom(pid, process.pid)) out.add(pid);
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** Resident set size of a process in bytes (VmRSS), or undefined once it is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Proportional set size in bytes (Pss from smaps_rollup): shared pages (Chromium's code, fonts)
 * divided among the processes sharing them, so pages are not each charged the whole binary.
 */
export function pssBytes(pid: number): number | undefined {
  try {
    const m = /^Pss:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
