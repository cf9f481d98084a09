/**
 * One simulated peer of the signaling bench (`npm run bench:signaling`): says hello, sends a profile
 * (every 10th is category B with 1 MB, the rest category C: the planner runs over the whole fleet),
 * heartbeats every 5 s and echoes every relayed candidate back to its sender. Shared by the bench and
 * its fleet children (signaling-fleet-child.ts), which hold peers past one process's open-file limit.
 */
import { WebSocket } from 'ws';

/** A connected bench peer. */
export interface BenchPeer {
  ws: WebSocket;
  id: string;
  /** True once the coordinator answered the profile (assignment, standby or unassigned). */
  planned: boolean;
  heartbeat: ReturnType<typeof setInterval> | null;
  closed: boolean;
  /** Pending round trips by sequence number. */
  waiting: Map<number, (t: number) => void>;
  /** From opening the socket to the server's `welcome`, ms (the 30 s deadline's measure). */
  welcomeMs: number;
}

/**
 * Opens peer `index` on `port` and resolves once it is welcomed (rejects after 30 s, the server's own
 * patience). Peer `index` has the same category wherever it is opened.
 */
export function openPeer(port: number, index: number): Promise<BenchPeer> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: false });
    const peer: BenchPeer = {
      ws,
      id: '',
      planned: false,
      heartbeat: null,
      closed: false,
      waiting: new Map(),
      welcomeMs: NaN,
    };
    const opened = performance.now();
    const t = setTimeout(() => {
      ws.terminate();
      reject(new Error(`peer ${index}: no welcome in 30 s`));
    }, 30_000);
    ws.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as {
        type: string;
        peerId?: string;
        from?: string;
        code?: string;
        message?: string;
        payload?: { kind: string; candidate?: { candidate: string } };
      };
      switch (msg.type) {
        case 'welcome': {
          peer.id = msg.peerId!;
          peer.welcomeMs = performance.now() - opened;
          clearTimeout(t);
          const category =
            index % 10 === 0 ? { tflops: 10, memoryBytes: 1_000_000 } : { tflops: 1, memoryBytes: 500_000 };
          ws.send(
            JSON.stringify({
              type: 'profile',
              v: 1,
              capability: { ...category, bandwidthGBps: 50, backend: 'wasm' },
            }),
          );
          // Spread heartbeats so 2,000 peers do not all beat in the same millisecond.
          setTimeout(() => {
            if (peer.closed) return;
            peer.heartbeat = setInterval(
              () => ws.send(JSON.stringify({ type: 'heartbeat', v: 1, sentAt: Date.now() })),
              5000,
            );
            peer.heartbeat.unref();
          }, index % 5000).unref();
          resolve(peer);
          break;
        }
        // Every answer the planner gives a profile (a standby is a spare for a ring stage).
        case 'assignment':
        case 'standby':
        case 'unassigned':
          peer.planned = true;
          break;
        case 'signal': {
          const cand = msg.payload?.candidate?.candidate ?? '';
          const seq = Number(/ (\d+) typ host/.exec(cand)?.[1]);
          const done = peer.waiting.get(seq);
          if (done) {
            peer.waiting.delete(seq);
            done(performance.now());
          } else {
            // Echo: the B side of a pair sends the same candidate straight back.
            ws.send(JSON.stringify({ type: 'signal', v: 1, to: msg.from, payload: msg.payload }));
          }
          break;
        }
        case 'error':
          process.stderr.write(`peer ${index}: ${msg.code}: ${msg.message}\n`);
          break;
        default:
      }
    });
    ws.on('open', () =>
      ws.send(JSON.stringify({ type: 'hello', v: 1, roles: ['contributor', 'requester'], client: 'bench' })),
    );
  });
}
