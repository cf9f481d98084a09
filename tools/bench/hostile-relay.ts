/**
 * The flood section of `npm run bench:hostile`: honest relay and heartbeat round trips on the real
 * signaling server (a child process in test mode, trusting 127.0.0.1 as its proxy so that the
 * attacker comes from another client address), alone and during each flood class. The attacker is
 * a third process ({@link FLOOD_KINDS}, see hostile-flooder.ts) on the same cores. Besides the
 * round trips the honest client measures (wall clock), the server's own event-loop delay p99 is
 * read from `/api/network` for each phase, which tells server stalls apart from client-side or
 * scheduling delay.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { RingworkError } from '../../shared/errors.js';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot.js';
import { spawnServer } from '../testing/spawn-server.js';
import { FLOOD_KINDS, type FloodKind, type FloodOrder, type FloodReport } from './hostile-flooder.js';
import type { HostileBenchOptions, HostileRow, HostileSectionResult } from './hostile-bench.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MODEL = 'stories260K';

interface Peer {
  ws: WebSocket;
  id: string;
  inbox: Array<Record<string, unknown>>;
  wake: Array<() => void>;
}

/**
 * Opens an honest peer. `address`: the client address it comes from (the server trusts 127.0.0.1
 * as its proxy), so that each measuring peer has its own per-address frame budget.
 */
async function open(port: number, roles: string[], address?: string): Promise<Peer> {
  const ws = new WebSocket(
    `ws://127.0.0.1:${port}/ws`,
    address ? { headers: { 'x-forwarded-for': address } } : {},
  );
  const peer: Peer = { ws, id: '', inbox: [], wake: [] };
  ws.on('message', (d: Buffer) => {
    peer.inbox.push(JSON.parse(d.toString()) as Record<string, unknown>);
    for (const w of peer.wake.splice(0)) w();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'hello', v: 1, roles }));
  peer.id = String((await next(peer, (m) => m.type === 'welcome')).peerId);
  return peer;
}

/** The next message matching `pred` (consumed), waiting up to 10 s. */
async function next(
  p: Peer,
  pred: (m: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const i = p.inbox.findIndex(pred);
    if (i >= 0) return p.inbox.splice(i, 1)[0]!;
    if (Date.now() > deadline)
      throw new RingworkError(
        'TRANSPORT_CONNECT_TIMEOUT',
        `no reply within 10 s; inbox: ${p.inbox.map((m) => JSON.stringify(m).slice(0, 200)).join(' | ')}`,
        {},
      );
    await new Promise<void>((resolve) => {
      p.wake.push(resolve);
      setTimeout(resolve, 100);
    });
  }
}

/** CPU time (user + system) a process has used, ms, from /proc (NaN where there is none). */
function cpuMsOf(pid: number | undefined): number {
  try {
    // Fields after the command name: utime and stime are the 12th and 13th, in clock ticks (100/s).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

const pct = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
};

/** Runs the flooder process for one phase; resolves with its report. */
function runFlooder(order: FloodOrder): { started: Promise<void>; done: Promise<FloodReport> } {
  const child = spawn(
    process.execPath,
    [
      ...(process.env.RINGWORK_FLOODER_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
      '--import',
      'tsx',
      'tools/bench/hostile-flooder.ts',
      JSON.stringify(order),
    ],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<FloodReport>((resolve, reject) => {
    child.once('exit', (code) => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as FloodReport);
      } catch (e) {
        reject(new RingworkError('SERVER_INTERNAL', `flooder exited ${code} without a report`, { cause: e }));
      }
    });
  });
  // tsx needs a moment to start: the phase starts measuring once the process is up.
  const started = new Promise<void>((resolve) => child.once('spawn', () => resolve()));
  return { started, done };
}

/**
 * The honest probes, sized for a sound p99 (about 2,000 heartbeats and 300 relay round trips in an
 * 8 s phase on an idle machine; a p99 of ~40 samples was their maximum, decided by one hiccup):
 * `OBSERVERS` extra honest peers each heartbeat as fast as the per-connection frame rate (50/s)
 * comfortably allows, and `REQUESTERS` requesters each signal both stages they are introduced to
 * (first stage and head, which echo), each pair below the relay's pair quota (10/s). Every observer
 * and requester comes from its own address.
 */
const OBSERVERS = 6;
const REQUESTERS = 3;
/** Pause between one peer's heartbeats (after the ack), ms: ≤ 40/s per connection. */
const BEAT_GAP_MS = 25;
/** Pause between one pair's relay round trips, ms: ≤ 8/s per pair. */
const RELAY_GAP_MS = 120;

/** What one phase measured. */
export interface FloodPhase {
  phase: 'alone' | FloodKind;
  relay: { p50: number; p99: number; n: number };
  heartbeat: { p50: number; p99: number; n: number };
  /** The server's event-loop delay over the phase: median of window p50s, max of window p99s. */
  serverLoop: { p50: number; p99: number; max: number };
  attacker: FloodReport | null;
  /** CPU the server process used during the phase, ms (Linux; NaN elsewhere). */
  serverCpuMs: number;
  /** Server counters over the phase. */
  framesIn: number;
  framesDropped: number;
  pauses: number;
  honestAlive: boolean;
}

/** Within the issue's target: p99 ≤ max(2 × alone, alone + 5 ms). */
export const floodTarget = (alone: number): number => Math.max(2 * alone, alone + 5);

/** Runs the honest ring and the phases; returns the raw figures. */
export async function measureFloods(o: HostileBenchOptions): Promise<FloodPhase[]> {
  const server = await spawnServer([
    '--trust-proxy',
    '127.0.0.1',
    '--max-connections-per-ip',
    '64',
    '--network-cache-ms',
    '0',
  ]);
  const port = Number(new URL(server.url).port);
  const snapshot = async (): Promise<NetworkSnapshot> =>
    (await (await fetch(`${server.url}/api/network`)).json()) as NetworkSnapshot;
  let keepAlive: ReturnType<typeof setInterval> | null = null;
  const peers: Peer[] = [];
  try {
    const members: Peer[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await open(port, ['contributor']);
      m.ws.send(
        JSON.stringify({
          type: 'profile',
          v: 1,
          capability: { tflops: 10, bandwidthGBps: 100, memoryBytes: 1_000_000, backend: 'wasm' },
        }),
      );
      members.push(m);
    }
    for (const m of members) await next(m, (x) => x.type === 'assignment');
    // Every honest peer heartbeats, as the app does (members[1]'s measured beats come on top).
    keepAlive = setInterval(() => {
      for (const m of members) m.ws.send(JSON.stringify({ type: 'heartbeat', v: 1, sentAt: -1 }));
    }, 2000);
    const reqs: Peer[] = [];
    let ring: { stages: Array<{ peer: string }> } | undefined;
    for (let i = 0; i < REQUESTERS; i++) {
      const req = await open(port, ['requester'], `10.77.0.${i + 1}`);
      req.ws.send(JSON.stringify({ type: 'ring-request', v: 1, model: MODEL }));
      ring = (await next(req, (x) => x.type === 'ring')) as { stages: Array<{ peer: string }> };
      reqs.push(req);
    }
    const observers: Peer[] = [];
    for (let i = 0; i < OBSERVERS; i++) observers.push(await open(port, ['requester'], `10.78.0.${i + 1}`));
    peers.push(...members, ...reqs, ...observers);
    const firstId = ring!.stages[0]!.peer;
    const headId = ring!.stages[ring!.stages.length - 1]!.peer;
    const cand = (p: number) => ({
      kind: 'candidate',
      candidate: {
        candidate: `candidate:1 1 udp 2122260223 127.0.0.1 ${p} typ host generation 0`,
        sdpMid: '0',
      },
    });
    // The first stage and the head echo every candidate from a requester: one relay round trip per sample.
    const reqIds = new Set(reqs.map((r) => r.id));
    for (const stage of new Set([firstId, headId])) {
      const m = members.find((x) => x.id === stage)!;
      m.ws.on('message', (d: Buffer) => {
        const msg = JSON.parse(d.toString()) as { type: string; from?: string };
        if (msg.type === 'signal' && msg.from && reqIds.has(msg.from))
          m.ws.send(JSON.stringify({ type: 'signal', v: 1, to: msg.from, payload: cand(6001) }));
      });
    }

    const phase = async (name: FloodPhase['phase']): Promise<FloodPhase> => {
      let flooder: ReturnType<typeof runFlooder> | null = null;
      if (name !== 'alone') {
        flooder = runFlooder({
          port,
          kind: name,
          ms: o.floodPhaseMs + 1500,
          victim: firstId,
          stages: ring!.stages.map((s) => s.peer),
          sockets: o.floodSockets,
          addresses: o.floodAddresses,
          model: MODEL,
        });
        await flooder.started;
        // Let the flood reach full strength (the flooder's own start-up included) before measuring.
        await new Promise((r) => setTimeout(r, 1500));
      }
      const before = await snapshot();
      const cpu0 = cpuMsOf(server.pid);
      const t0 = Date.now();
      const relay: number[] = [];
      const beats: number[] = [];
      const end = Date.now() + o.floodPhaseMs;
      const beatLoop = async (hb: Peer) => {
        while (Date.now() < end) {
          const t = performance.now();
          hb.ws.send(JSON.stringify({ type: 'heartbeat', v: 1, sentAt: t }));
          await next(hb, (x) => x.type === 'heartbeat-ack' && x.sentAt === t);
          beats.push(performance.now() - t);
          await new Promise((r) => setTimeout(r, BEAT_GAP_MS));
        }
      };
      // The pair quota is 10 signals/s: each pair samples below it.
      const relayLoop = async (req: Peer, to: string) => {
        while (Date.now() < end) {
          const t = performance.now();
          req.ws.send(JSON.stringify({ type: 'signal', v: 1, to, payload: cand(5000) }));
          await next(req, (x) => x.type === 'signal' && x.from === to);
          relay.push(performance.now() - t);
          await new Promise((r) => setTimeout(r, RELAY_GAP_MS));
        }
      };
      await Promise.all([
        ...observers.map(beatLoop),
        ...reqs.flatMap((r) => [...new Set([firstId, headId])].map((to) => relayLoop(r, to))),
      ]);
      const serverCpuMs = cpuMsOf(server.pid) - cpu0;
      const after = await snapshot();
      const attacker = flooder ? await flooder.done : null;
      // Windows that closed within the phase (the first one started before it).
      const windows = (after.counters.eventLoop ?? []).filter((w) => w.endedAt > t0 + 1000);
      const gate = (s: NetworkSnapshot) =>
        (s.counters.frameGate?.connPauses ?? 0) + (s.counters.frameGate?.bucketPauses ?? 0);
      return {
        phase: name,
        relay: { p50: pct(relay, 0.5), p99: pct(relay, 0.99), n: relay.length },
        heartbeat: { p50: pct(beats, 0.5), p99: pct(beats, 0.99), n: beats.length },
        serverLoop: {
          p50: pct(
            windows.map((w) => w.p50Ms),
            0.5,
          ),
          p99: windows.length ? Math.max(...windows.map((w) => w.p99Ms)) : NaN,
          max: windows.length ? Math.max(...windows.map((w) => w.maxMs)) : NaN,
        },
        attacker,
        serverCpuMs,
        framesIn: after.counters.framesIn - before.counters.framesIn,
        framesDropped: after.counters.framesRateLimited - before.counters.framesRateLimited,
        pauses: gate(after) - gate(before),
        honestAlive: peers.every((p) => p.ws.readyState === WebSocket.OPEN),
      };
    };

    const results: FloodPhase[] = [];
    for (const name of ['alone', ...FLOOD_KINDS] as const) {
      if (o.floodKinds && name !== 'alone' && !o.floodKinds.includes(name)) continue;
      o.log(`  flood phase ${name}...`);
      const r = await phase(name);
      o.log(
        `    relay p50/p99 ${r.relay.p50.toFixed(1)}/${r.relay.p99.toFixed(1)} ms (n ${r.relay.n}), heartbeat ${r.heartbeat.p50.toFixed(1)}/${r.heartbeat.p99.toFixed(1)} ms (n ${r.heartbeat.n}), server loop p99/max ${r.serverLoop.p99.toFixed(1)}/${r.serverLoop.max.toFixed(1)} ms, server CPU ${r.serverCpuMs} ms; frames in ${r.framesIn}, dropped ${r.framesDropped}, pauses ${r.pauses}${r.attacker ? `; attacker sent ${r.attacker.sent} using ${r.attacker.cpuMs} ms CPU, closes ${JSON.stringify(r.attacker.closes)}` : ''}`,
      );
      results.push(r);
    }
    return results;
  } finally {
    if (keepAlive) clearInterval(keepAlive);
    for (const p of peers) p.ws.terminate();
    await server.stop();
  }
}

/** The flood section: each class side by side with the honest figures alone, against the target. */
export async function relayFloodSection(o: HostileBenchOptions): Promise<HostileSectionResult> {
  const phases = await measureFloods(o);
  const alone = phases[0]!;
  const f = (x: number) => x.toFixed(1);
  const rows: HostileRow[] = [
    {
      metric: 'alone: relay p50/p99 (n) | heartbeat p50/p99 (n) | server loop p99',
      value: `${f(alone.relay.p50)}/${f(alone.relay.p99)} ms (${alone.relay.n}) | ${f(alone.heartbeat.p50)}/${f(alone.heartbeat.p99)} ms (${alone.heartbeat.n}) | ${f(alone.serverLoop.p99)} ms`,
    },
  ];
  for (const p of phases.slice(1)) {
    const who = `${p.phase} flood`;
    for (const [name, got, base] of [
      ['relay', p.relay, alone.relay],
      ['heartbeat', p.heartbeat, alone.heartbeat],
    ] as const) {
      const target = floodTarget(base.p99);
      rows.push({
        metric: `${who}: ${name} p50/p99 (p99 vs alone; samples)`,
        value: `${f(got.p50)}/${f(got.p99)} ms (${(got.p99 / base.p99).toFixed(2)}×; n ${got.n})`,
        target: `p99 ≤ ${f(target)} ms`,
        pass: got.p99 <= target,
      });
    }
    rows.push({
      metric: `${who}: server loop p99 | frames read, dropped | pauses | attacker closes`,
      value: `${f(p.serverLoop.p99)} ms | ${p.framesIn}, ${p.framesDropped} | ${p.pauses} | ${JSON.stringify(p.attacker?.closes ?? {})}`,
    });
    rows.push({
      metric: `${who}: honest peers still connected`,
      value: p.honestAlive ? 'yes' : 'no',
      target: 'yes',
      pass: p.honestAlive,
    });
  }
  return {
    title: `Relay and heartbeat floods (real server process; attacker: ${o.floodSockets} sockets from ${o.floodAddresses === 'one-64' ? 'one IPv6 /64' : 'as many IPv4 addresses'}, its own process; ${o.floodPhaseMs / 1000} s per phase)`,
    rows,
  };
}
