/**
 * A fleet child of the signaling bench: holds bench peers in its own process, so a run can go past
 * the one bench process's open-file limit (every peer is a socket). The parent asks over IPC for
 * batches of peers (global indices, so peer i is on instance i mod n and has the same category as
 * in the parent) and is told when each batch is welcomed; the peers stay open (heartbeating,
 * echoing relays) until the parent disconnects or sends `close`.
 */
import { openPeer, type BenchPeer } from './signaling-peer.js';

/** What the parent asks. */
export type FleetRequest = { type: 'open'; ports: number[]; from: number; count: number } | { type: 'close' };

/** The answer to one `open`. */
export interface FleetReply {
  type: 'opened';
  from: number;
  /** Peers welcomed (the first `opened` of the batch). */
  opened: number;
  /** Time to welcome of each welcomed peer, ms. */
  welcomeMs: number[];
  /** The first failure (a peer not welcomed in 30 s, a refused socket), if any. */
  failed?: string;
}

const peers: BenchPeer[] = [];

const closeAll = (): void => {
  for (const p of peers) {
    p.closed = true;
    if (p.heartbeat) clearInterval(p.heartbeat);
    p.ws.terminate();
  }
  peers.length = 0;
};

process.on('message', (raw: FleetRequest) => {
  if (raw.type === 'close') {
    closeAll();
    process.disconnect();
    return;
  }
  const { ports, from, count } = raw;
  void Promise.allSettled(
    Array.from({ length: count }, (_, i) => openPeer(ports[(from + i) % ports.length]!, from + i)),
  ).then((opened) => {
    const ok = opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    peers.push(...ok);
    const failed = opened.find((r) => r.status === 'rejected');
    const reply: FleetReply = {
      type: 'opened',
      from,
      opened: ok.length,
      welcomeMs: ok.map((p) => p.welcomeMs),
      ...(failed ? { failed: String(failed.reason) } : {}),
    };
    process.send?.(reply);
  });
});
// The parent went away (finished or crashed): nothing here outlives it.
process.on('disconnect', () => {
  closeAll();
  process.exit(0);
});
