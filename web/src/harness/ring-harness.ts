/**
 * Browser test harness for the network: joins the real signaling server as a contributor, follows
 * its assignments (connects to `next`, accepts `prev`), forwards every tensor it receives to its
 * successor, and can start a tensor round trip around the ring. Used by tests/e2e/ring.spec.ts and
 * the transport benchmark.
 */
import { createRingMembership } from '../../../shared/app/ring-membership';
import type { PeerCapability, ServerMessageOf } from '../../../shared/protocol/signaling';
import type { NeighbourLinks } from '../../../shared/ring/neighbour-links';
import type { TensorMessage } from '../../../shared/transport/tensor-frame';
import { createSignalingClient, signalingPort, type SignalingClient } from '../network/signaling-client';
import { createWebRtcTransport } from '../network/webrtc-transport';

interface RingState {
  client: SignalingClient;
  links: NeighbourLinks;
  assignment?: ServerMessageOf<'assignment'>;
  rounds: Map<string, (m: TensorMessage) => void>;
  log: string[];
  assignments: number;
  /**
   * DataChannel connect times, one per assignment that named a `next` with no open link yet: from
   * receiving the assignment to the link to that `next` being usable. Kept so the transport bench can
   * read how long forming a ring's links takes in a real browser (signaling relay + ICE + DTLS + SCTP).
   */
  connects: ConnectSample[];
  /** The assignment whose `next` link is still opening, with when it arrived. */
  pendingConnect?: { next: string; epoch: number; t0: number };
}

/** One measured connect: the `next` peer, the assignment's epoch, and the milliseconds it took. */
export interface ConnectSample {
  next: string;
  epoch: number;
  ms: number;
}

let state: RingState | undefined;

function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

async function join(capability: PeerCapability): Promise<{ peerId: string }> {
  const client = createSignalingClient({ url: wsUrl(), roles: ['contributor'] });
  const welcome = await client.start();
  const transport = createWebRtcTransport({
    signaling: client,
    iceServers: welcome.iceServers,
    connectTimeoutMs: 8000,
  });
  const s: RingState = {
    client,
    links: undefined as unknown as NeighbourLinks,
    rounds: new Map(),
    log: [],
    assignments: 0,
    connects: [],
  };
  state = s;
  // Listen before any assignment can arrive, so the first link's open is never missed.
  const membership = createRingMembership({
    network: { signaling: signalingPort(client), transport, peerId: welcome.peerId },
    accept: () => false,
    onLinkLost: (peer, why) => s.log.push(`lost ${peer}: ${why}`),
    onLink: (link) => {
      const p = s.pendingConnect;
      if (p && link.remoteId === p.next) {
        s.connects.push({ next: p.next, epoch: p.epoch, ms: performance.now() - p.t0 });
        s.pendingConnect = undefined;
      }
      // Every tensor that arrives from the previous peer goes on to the next, unless it is one of
      // ours coming home.
      link.onTensor((m) => {
        const waiter = s.rounds.get(m.session);
        if (waiter) return waiter(m);
        const next = s.links.next();
        if (!next?.isOpen) return void s.log.push(`drop ${m.session}: no next link`);
        next.sendTensor(m).catch((e: unknown) => s.log.push(`forward failed: ${String(e)}`));
      });
    },
    onAssignment: (a) => {
      s.assignment = a;
      s.assignments++;
      s.log.push(`assignment epoch ${a.epoch} range ${a.range} prev ${a.prev} next ${a.next}`);
      // Only a link that has to be opened counts: an unchanged, already-open `next` costs nothing.
      const needsLink = a.next && a.next !== welcome.peerId && !s.links.get(a.next)?.isOpen;
      s.pendingConnect = needsLink ? { next: a.next!, epoch: a.epoch, t0: performance.now() } : undefined;
      s.links.update(a.prev, a.next);
    },
    onUnassigned: () => s.links.update(null, null),
  });
  s.links = membership.links;
  client.send({ type: 'profile', capability });
  return { peerId: welcome.peerId };
}

/** Sends a tensor of `bytes` bytes to `next` and waits for it to come back from `prev`. */
async function roundTrip(
  bytes: number,
  timeoutMs = 15_000,
): Promise<{ ok: boolean; ms: number; hops: number }> {
  const s = state;
  const next = s?.links.next();
  if (!s || !next?.isOpen) throw new Error('no open link to the next peer yet');
  const n = bytes / 4;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = ((i * 2654435761) % 1000003) / 1000003;
  const session = `${s.client.peerId}:${crypto.randomUUID().slice(0, 8)}`;
  const t0 = performance.now();
  const back = new Promise<TensorMessage>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`tensor of ${bytes} B did not come back within ${timeoutMs} ms`)),
      timeoutMs,
    );
    s.rounds.set(session, (m) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
  await next.sendTensor({ session, step: 0, position: 0, kind: 'raw', dtype: 'float32', shape: [n], data });
  const m = await back;
  s.rounds.delete(session);
  const got = new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  const want = new Uint8Array(data.buffer);
  let ok = got.length === want.length;
  for (let i = 0; ok && i < want.length; i++) ok = got[i] === want[i];
  return { ok, ms: performance.now() - t0, hops: 0 };
}

/**
 * Runs `n` sequential round trips of a `bytes`-byte tensor (one payload, reused, so filling it is not
 * timed) and returns every timing. Sequential on purpose: each sample is one tensor's latency around
 * the ring with nothing else in flight. Stops at the first failure and reports it.
 */
async function roundTrips(
  bytes: number,
  n: number,
  timeoutMs = 15_000,
): Promise<{ ok: boolean; ms: number[]; error?: string }> {
  const s = state;
  if (!s) throw new Error('not joined');
  const count = bytes / 4;
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = ((i * 2654435761) % 1000003) / 1000003;
  const want = new Uint8Array(data.buffer);
  const ms: number[] = [];
  for (let k = 0; k < n; k++) {
    const next = s.links.next();
    if (!next?.isOpen) return { ok: false, ms, error: 'no open link to the next peer' };
    const session = `${s.client.peerId}:${crypto.randomUUID().slice(0, 8)}`;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const back = new Promise<TensorMessage>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`round trip ${k} of ${bytes} B timed out`)), timeoutMs);
      s.rounds.set(session, resolve);
    });
    const t0 = performance.now();
    try {
      await next.sendTensor({
        session,
        step: k,
        position: 0,
        kind: 'raw',
        dtype: 'float32',
        shape: [count],
        data,
      });
      const m = await back;
      ms.push(performance.now() - t0);
      const got = new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      let ok = got.length === want.length;
      for (let i = 0; ok && i < want.length; i++) ok = got[i] === want[i];
      if (!ok) return { ok: false, ms, error: `round trip ${k}: bytes differ` };
    } catch (e) {
      return { ok: false, ms, error: e instanceof Error ? e.message : String(e) };
    } finally {
      clearTimeout(timer);
      s.rounds.delete(session);
    }
  }
  return { ok: true, ms };
}

function ringState() {
  const s = state;
  return {
    peerId: s?.client.peerId,
    assignment: s?.assignment
      ? {
          epoch: s.assignment.epoch,
          range: s.assignment.range,
          prev: s.assignment.prev,
          next: s.assignment.next,
        }
      : undefined,
    nextOpen: !!s?.links.next()?.isOpen,
    prevOpen: !!s?.links.prev()?.isOpen,
    assignments: s?.assignments ?? 0,
    connects: s?.connects ?? [],
    log: s?.log ?? [],
  };
}

declare global {
  interface Window {
    ringworkRing: {
      join: typeof join;
      roundTrip: typeof roundTrip;
      roundTrips: typeof roundTrips;
      state: typeof ringState;
    };
  }
}
window.ringworkRing = { join, roundTrip, roundTrips, state: ringState };
