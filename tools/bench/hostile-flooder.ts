/**
 * The attacker of the relay/heartbeat flood benchmark, run as its own process (`node --import tsx
 * tools/bench/hostile-flooder.ts '<json>'`) as an attacker would be: it shares the machine's cores
 * with the server and the honest peers but not their event loops.
 *
 * It opens `sockets` WebSockets from one IPv6 /64 (one host: `2001:db8:66:<class>::<i>`) or, with
 * `addresses: 'distinct'`, from that many IPv4 addresses (`10.66.<class>.<i>`), both forwarded through the
 * server's trusted proxy (127.0.0.1), and floods for `ms`:
 * - `offers`: requesters send 8 KiB and 48 KiB SDP offers with fresh connection ids to `victim`;
 * - `frames`: 60 KiB junk frames, no hello (cut on the first: nothing that large comes before a hello);
 * - `frames-session`: the same after a hello, from sockets that got a session (the others, refused
 *   by the new-session rate of their /64, flood without one and are cut at once);
 * - `rumours`: requesters send `peer-unreachable` about every stage.
 * Each socket keeps its send pipe full (the next batch goes when the last write reached the socket,
 * so a server that stops reading stops the flood without the attacker burning a core on it) and
 * reconnects 20 ms after any close. Prints one JSON line: frames sent, error frames received, close
 * codes seen.
 */
import { pathToFileURL } from 'node:url';
import { WebSocket } from 'ws';

/** The flood classes. */
export const FLOOD_KINDS = ['offers', 'frames', 'frames-session', 'rumours'] as const;
export type FloodKind = (typeof FLOOD_KINDS)[number];

/** What the flooder is told to do (its one argument, as JSON). */
export interface FloodOrder {
  port: number;
  kind: FloodKind;
  ms: number;
  victim: string;
  stages: string[];
  sockets: number;
  addresses: 'one-64' | 'distinct';
  model: string;
}

/** What it reports. */
export interface FloodReport {
  sent: number;
  errors: number;
  /** Close codes the server sent, with counts. */
  closes: Record<string, number>;
  connects: number;
  /** CPU the flooder itself used (user + system), ms. */
  cpuMs: number;
}

function flood(o: FloodOrder): Promise<FloodReport> {
  const end = Date.now() + o.ms;
  const report: FloodReport = { sent: 0, errors: 0, closes: {}, connects: 0, cpuMs: 0 };
  const cpu0 = process.cpuUsage();
  const big = 'a'.repeat(48 * 1024 - 200);
  const mid = 'a'.repeat(8 * 1024);
  const junk = JSON.stringify({ type: 'junk', v: 1, pad: 'x'.repeat(60 * 1024) });
  // Each flood class from its own host: an address still throttled after the previous phase would
  // have its hellos dropped and never flood at all.
  const k = FLOOD_KINDS.indexOf(o.kind) + 1;
  const address = (i: number) =>
    o.addresses === 'one-64' ? `2001:db8:66:${k}::${i.toString(16)}` : `10.66.${k}.${i}`;

  const sock = (i: number): void => {
    if (Date.now() > end) return;
    report.connects++;
    const ws = new WebSocket(`ws://127.0.0.1:${o.port}/ws`, { headers: { 'x-forwarded-for': address(i) } });
    let n = 0;
    let pumping = false;
    ws.on('error', () => undefined);
    ws.on('close', (code) => {
      report.closes[code] = (report.closes[code] ?? 0) + 1;
      setTimeout(() => sock(i), 20);
    });
    const frame = (): string => {
      n++;
      if (o.kind === 'frames' || o.kind === 'frames-session') return junk;
      if (o.kind === 'offers')
        return JSON.stringify({
          type: 'signal',
          v: 1,
          to: o.victim,
          conn: `f${i}-${n}`,
          payload: { kind: 'sdp', sdp: { type: 'offer', sdp: n % 2 ? big : mid } },
        });
      return JSON.stringify({
        type: 'peer-unreachable',
        v: 1,
        peer: o.stages[n % o.stages.length],
        reason: 'trust me',
      });
    };
    const pump = (): void => {
      if (Date.now() > end) {
        ws.terminate();
        return;
      }
      if (ws.readyState !== WebSocket.OPEN) return;
      // A batch, then the next once the batch has been handed to the kernel.
      for (let k = 0; k < 16; k++) {
        report.sent++;
        ws.send(frame(), k === 15 ? () => setImmediate(pump) : undefined);
      }
    };
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as { type: string };
      if (m.type === 'error') report.errors++;
      // Refused a session (the /64's new-session rate): flood anyway.
      if (o.kind === 'frames-session' && m.type === 'error' && !pumping) {
        pumping = true;
        pump();
      }
      if (m.type === 'welcome' && o.kind === 'frames-session' && !pumping) {
        pumping = true;
        pump();
      }
      if (m.type === 'welcome' && o.kind !== 'frames-session')
        ws.send(JSON.stringify({ type: 'ring-request', v: 1, model: o.model }));
      if (m.type === 'ring' && !pumping) {
        pumping = true;
        pump();
      }
    });
    ws.on('open', () => {
      if (o.kind === 'frames') pump();
      else ws.send(JSON.stringify({ type: 'hello', v: 1, roles: ['requester'] }));
    });
  };
  for (let i = 1; i <= o.sockets; i++) sock(i);
  return new Promise((resolve) =>
    setTimeout(() => {
      const c = process.cpuUsage(cpu0);
      resolve({ ...report, cpuMs: Math.round((c.user + c.system) / 1000) });
    }, o.ms + 100),
  );
}

// Run as a script (not when the bench imports the types and kinds from here).
const arg = process.argv[2];
if (arg !== undefined && process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const report = await flood(JSON.parse(arg) as FloodOrder);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
}
