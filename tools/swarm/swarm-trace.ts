/**
 * Where a swarm's time goes while its pages load (tools/swarm/swarm-run.ts `trace`): the
 * coordinator's view of every peer, logged at each change with the time since the swarm started
 * (assignment or standby message, `loading`, `ready`), and each page's own shard-load breakdown
 * (shared/app/contributor.ts records it as `load.*` perf-trace samples on `perf=1` pages).
 */
import type { Page } from '@playwright/test';
import { RingworkError } from '../../shared/errors.js';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot.js';

/** GET /api/network. */
export async function snapshot(url: string): Promise<NetworkSnapshot> {
  const r = await fetch(`${url}/api/network`);
  if (!r.ok) throw new RingworkError('SERVER_INTERNAL', `GET /api/network answered ${r.status}.`);
  return (await r.json()) as NetworkSnapshot;
}

/** One peer as the coordinator sees it, in one short line (what changes when it loads). */
export function peerLine(p: NetworkSnapshot['peers'][number]): string {
  const a = p.assignment;
  const what = !a
    ? 'no assignment'
    : a.kind === 'unassigned'
      ? `unassigned (${a.reason})`
      : `${a.kind} [${a.range[0]}, ${a.range[1]}) e${a.epoch}`;
  const st = p.status ? `${p.status.state}@e${p.status.epoch}` : '-';
  return `${what}, ${st}`;
}

/** A running watch (see {@link watchPeers}). */
export interface PeerWatch {
  /** Stops polling (safe twice); resolves once the last poll ended. */
  stop(): Promise<void>;
}

/**
 * Polls the server every `everyMs` and logs each contributor whose assignment or load state
 * changed, with the seconds since `t0`: how long a page took from its assignment (or standby) to
 * `loading` and to `ready`. Requester-only peers are left out.
 */
export function watchPeers(url: string, log: (m: string) => void, t0: number, everyMs = 250): PeerWatch {
  const last = new Map<string, string>();
  let on = true;
  const loop = (async () => {
    while (on) {
      const snap = await snapshot(url).catch(() => undefined);
      for (const p of snap?.peers ?? []) {
        if (!p.roles.includes('contributor')) continue;
        const line = peerLine(p);
        if (last.get(p.id) !== line) {
          log(`+${((Date.now() - t0) / 1000).toFixed(1)} s ${p.id.slice(0, 8)}: ${line}`);
          last.set(p.id, line);
        }
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    stop: async () => {
      on = false;
      await loop;
    },
  };
}

/** The `load.*` samples a `perf=1` page kept so far, one record per shard load (ms by part). */
export async function readLoadTimes(page: Page): Promise<Array<Record<string, number>>> {
  const samples = await page.evaluate(
    () =>
      (
        (globalThis as Record<string, unknown>).__ringworkPerf as
          { samples: Record<string, number[]> } | undefined
      )?.samples ?? {},
  );
  const total = samples['load.total'] ?? [];
  return total.map((_, i) => {
    const out: Record<string, number> = {};
    for (const [name, list] of Object.entries(samples)) {
      if (name.startsWith('load.') && list[i] !== undefined) out[name.slice(5)] = Math.round(list[i]);
    }
    return out;
  });
}

/** One shard load's breakdown in one line: "total 4321 ms = stop 0 + worker 812 + open 35 + …". */
export function loadLine(ms: Record<string, number>): string {
  const parts = ['stop', 'worker', 'open', 'compile', 'probe', 'session'].filter((k) => k in ms);
  return `total ${ms.total ?? '?'} ms = ${parts.map((k) => `${k} ${ms[k]}`).join(' + ')}`;
}
