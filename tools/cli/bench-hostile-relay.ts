/**
 * `npm run bench:hostile-relay [-- --phase-s 4 --json]`
 *
 * Honest relay and heartbeat round trips on the real signaling server (a child process, test mode,
 * trusting 127.0.0.1 as a proxy so that attackers come from another client address), alone and
 * during each flood class of the "Hostile tabs" issue. The attacker runs on a worker thread of this
 * process, so it shares the machine's cores with the server and the honest peers, as it would on a
 * small host. Flood classes:
 * - `offers`: 15 requester sockets send 8 KiB and 48 KiB SDP offers with fresh connection ids to the
 *   first stage of the ring;
 * - `frames`: 15 reconnecting sockets send 60 KiB frames as fast as their buffers allow;
 * - `rumours`: 15 requester sockets send `peer-unreachable` about every stage.
 * Printed per phase: relay (requester -> first stage -> requester, one ICE candidate each way) and
 * heartbeat (contributor -> server -> contributor) p50/p99, and whether p99 stays within
 * max(2x alone, alone + 5 ms), the target.
 */
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { WebSocket } from 'ws';
import { RingworkError } from '../../shared/errors.js';
import { spawnServer } from '../testing/spawn-server.js';
import { intFlag, runCli } from './cli-util.js';

interface Peer {
  ws: WebSocket;
  id: string;
  inbox: Array<Record<string, unknown>>;
  wake: Array<() => void>;
}

async function open(port: number, roles: string[]): Promise<Peer> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  const peer: Peer = { ws, id: '', inbox: [], wake: [] };
  ws.on('message', (d) => {
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

const pct = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
};

const ATTACKER = `
const { WebSocket } = require('ws');
const { parentPort, workerData } = require('node:worker_threads');
const { port, kind, ms, victim, stages } = workerData;
const end = Date.now() + ms;
let sent = 0, errors = 0;
const big = 'a'.repeat(48 * 1024 - 200), mid = 'a'.repeat(8 * 1024);
const junk = JSON.stringify({ type: 'junk', v: 1, pad: 'x'.repeat(60 * 1024) });
function sock(i) {
  if (Date.now() > end) return;
  const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws', { headers: { 'x-forwarded-for': '10.66.' + (i >> 8) + '.' + (i & 255) } });
  ws.on('error', () => {});
  ws.on('close', () => setTimeout(() => sock(i), 20));
  let n = 0;
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    if (m.type === 'error') errors++;
    if (m.type === 'welcome') ws.send(JSON.stringify({ type: 'ring-request', v: 1, model: 'stories260K' }));
    if (m.type === 'ring') pump();
  });
  ws.on('open', () => {
    if (kind === 'frames') pump();
    else ws.send(JSON.stringify({ type: 'hello', v: 1, roles: ['requester'] }));
  });
  function pump() {
    if (Date.now() > end) { ws.terminate(); return; }
    for (let k = 0; k < 8 && ws.readyState === 1 && ws.bufferedAmount < (1 << 20); k++) {
      n++; sent++;
      if (kind === 'frames') ws.send(junk);
      else if (kind === 'offers') ws.send(JSON.stringify({ type: 'signal', v: 1, to: victim, conn: 'f' + i + '-' + n,
        payload: { kind: 'sdp', sdp: { type: 'offer', sdp: n % 2 ? big : mid } } }));
      else ws.send(JSON.stringify({ type: 'peer-unreachable', v: 1, peer: stages[n % stages.length], reason: 'trust me' }));
    }
    setImmediate(pump);
  }
}
for (let i = 0; i < 15; i++) sock(i + 1);
setTimeout(() => parentPort.postMessage({ sent, errors }), ms + 100);
`;

interface PhaseResult {
  phase: string;
  relayP50: number;
  relayP99: number;
  heartbeatP50: number;
  heartbeatP99: number;
  relaySamples: number;
  attackerFrames: number;
  attackerErrors: number;
  honestAlive: boolean;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { 'phase-s': { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  const phaseMs = intFlag('--phase-s', values['phase-s'], 4, 1) * 1000;
  const server = await spawnServer(['--trust-proxy', '127.0.0.1', '--max-connections-per-ip', '64']);
  const port = Number(new URL(server.url).port);
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
    const keepAlive = setInterval(() => {
      for (const m of members) m.ws.send(JSON.stringify({ type: 'heartbeat', v: 1, sentAt: -1 }));
    }, 2000);
    const req = await open(port, ['requester']);
    req.ws.send(JSON.stringify({ type: 'ring-request', v: 1, model: 'stories260K' }));
    const ring = (await next(req, (x) => x.type === 'ring')) as { stages: Array<{ peer: string }> };
    const firstId = ring.stages[0]!.peer;
    const first = members.find((m) => m.id === firstId)!;
    const cand = (p: number) => ({
      kind: 'candidate',
      candidate: {
        candidate: `candidate:1 1 udp 2122260223 127.0.0.1 ${p} typ host generation 0`,
        sdpMid: '0',
      },
    });
    // The first stage echoes every candidate back: one relay round trip per sample.
    first.ws.on('message', (d) => {
      const m = JSON.parse(d.toString()) as { type: string; from?: string };
      if (m.type === 'signal' && m.from === req.id)
        first.ws.send(JSON.stringify({ type: 'signal', v: 1, to: req.id, payload: cand(6001) }));
    });

    const phase = async (name: string): Promise<PhaseResult> => {
      let attacker: Promise<{ sent: number; errors: number }> = Promise.resolve({ sent: 0, errors: 0 });
      let worker: Worker | null = null;
      if (name !== 'alone') {
        worker = new Worker(ATTACKER, {
          eval: true,
          workerData: {
            port,
            kind: name,
            ms: phaseMs,
            victim: firstId,
            stages: ring.stages.map((s) => s.peer),
          },
        });
        const w = worker;
        attacker = new Promise((resolve) => w.once('message', resolve));
        await new Promise((r) => setTimeout(r, 300));
      }
      const relay: number[] = [];
      const beats: number[] = [];
      const end = Date.now() + phaseMs - 400;
      const hb = members[1]!;
      const beatLoop = (async () => {
        while (Date.now() < end) {
          const t = performance.now();
          hb.ws.send(JSON.stringify({ type: 'heartbeat', v: 1, sentAt: t }));
          await next(hb, (x) => x.type === 'heartbeat-ack' && x.sentAt === t);
          beats.push(performance.now() - t);
          await new Promise((r) => setTimeout(r, 40));
        }
      })();
      // The pair quota is 10 signals/s: sample below it.
      while (Date.now() < end) {
        const t = performance.now();
        req.ws.send(JSON.stringify({ type: 'signal', v: 1, to: firstId, payload: cand(5000) }));
        await next(req, (x) => x.type === 'signal' && x.from === firstId);
        relay.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 200));
      }
      await beatLoop;
      const a = await attacker;
      if (worker) await worker.terminate();
      return {
        phase: name,
        relayP50: pct(relay, 0.5),
        relayP99: pct(relay, 0.99),
        heartbeatP50: pct(beats, 0.5),
        heartbeatP99: pct(beats, 0.99),
        relaySamples: relay.length,
        attackerFrames: a.sent,
        attackerErrors: a.errors,
        honestAlive: [...members, req].every((p) => p.ws.readyState === WebSocket.OPEN),
      };
    };

    const results: PhaseResult[] = [];
    for (const name of ['alone', 'offers', 'frames', 'rumours']) {
      process.stderr.write(`phase ${name}...\n`);
      results.push(await phase(name));
    }
    const alone = results[0]!;
    const within = (p99: number, base: number) => p99 <= Math.max(2 * base, base + 5);
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
      return;
    }
    const f = (x: number) => x.toFixed(2).padStart(8);
    process.stdout.write(
      'phase     relay p50  relay p99   hb p50    hb p99  target  alive  attacker frames\n',
    );
    for (const r of results) {
      const ok = within(r.relayP99, alone.relayP99) && within(r.heartbeatP99, alone.heartbeatP99);
      process.stdout.write(
        `${r.phase.padEnd(8)} ${f(r.relayP50)}  ${f(r.relayP99)} ${f(r.heartbeatP50)} ${f(r.heartbeatP99)}  ${r.phase === 'alone' ? '   -  ' : ok ? '  ok  ' : ' MISS '} ${r.honestAlive ? ' yes ' : ' NO  '} ${r.attackerFrames} (${r.attackerErrors} errors)\n`,
      );
    }
    clearInterval(keepAlive);
  } finally {
    await server.stop();
  }
}

runCli(main);
