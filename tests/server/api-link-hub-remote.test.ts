/**
 * Cluster mode's API links (signaling-server/src/api/api-link-hub.ts `remote`): the hub of the
 * instance whose API opens a link reaches a stage held by another instance through that instance's
 * hub — the cluster bus is stood in for by microtasks here (tests/server/cluster-api.slow.test.ts
 * runs the real one). The stage is a contributor's real acceptor behind the real signaling schemas.
 */
import { describe, expect, it } from 'vitest';
import { acceptApiLinks } from '../../shared/app/api-links';
import type { SignalingPort } from '../../shared/app/network-port';
import { isRingworkError } from '../../shared/errors';
import {
  parseClientFrame,
  parseServerFrame,
  SIGNALING_VERSION,
  type ServerMessageOf,
} from '../../shared/protocol/signaling';
import { createListeners, type Listeners } from '../../shared/transport/emitter';
import type { PeerLink } from '../../shared/transport/types';
import { createApiLinkHub, type ApiLinkHub } from '../../signaling-server/src/api/api-link-hub';

const STAGE = 'p_stage00000000000';
const REQUESTER = 'api-req0000000001';

interface Pair {
  /** The instance whose API opens links (holds no stage). */
  origin: ApiLinkHub;
  /** The instance holding the stage's socket. */
  holder: ApiLinkHub;
  accepted: PeerLink[];
  /** Frames the holder delivered to the stage. */
  delivered: number;
  /** Ids of the links opened at the stage. */
  links: string[];
  /** The holder no longer holds the stage (deliveries fail). */
  cut(): void;
  /** The directory finds no holder for the stage (the origin's sends are undelivered). */
  lose(): void;
}

function pair(o: { maxLinks?: number } = {}): Pair {
  const listeners = new Map<string, Listeners<unknown>>();
  let up = true;
  let found = true;
  let delivered = 0;
  const links: string[] = [];
  const port: SignalingPort = {
    send(m) {
      const parsed = parseClientFrame(JSON.stringify({ ...m, v: SIGNALING_VERSION }));
      if (parsed.type === 'api-link') queueMicrotask(() => holder.receive(STAGE, parsed));
    },
    on(type, h) {
      let l = listeners.get(type);
      if (!l) listeners.set(type, (l = createListeners()));
      return l.add(h as (m: unknown) => void);
    },
  };
  const origin: ApiLinkHub = createApiLinkHub({
    deliver: () => false,
    connectTimeoutMs: 2000,
    remote: {
      send(peer, msg, undelivered) {
        // Serialised as on the bus.
        const copy = JSON.parse(JSON.stringify(msg)) as ServerMessageOf<'api-link'>;
        queueMicrotask(() => (found ? holder.fromInstance('origin', peer, copy) : undelivered(null)));
      },
      reply: () => {
        throw new Error('the origin holds no stage');
      },
    },
  });
  const holder: ApiLinkHub = createApiLinkHub({
    deliver(peer, msg) {
      if (!up || peer !== STAGE) return false;
      delivered++;
      if (msg.type === 'api-link' && msg.frame.kind === 'open') links.push(msg.link);
      const parsed = parseServerFrame(JSON.stringify(msg));
      queueMicrotask(() => listeners.get(parsed.type)?.emit(parsed));
      return true;
    },
    ...(o.maxLinks ? { maxLinksPerPeer: o.maxLinks } : {}),
    remote: {
      send: () => {
        throw new Error('the holder opens no links here');
      },
      reply(instance, peer, msg) {
        expect(instance).toBe('origin');
        queueMicrotask(() => origin.receive(peer, JSON.parse(JSON.stringify(msg)) as typeof msg));
      },
    },
  });
  const accepted: PeerLink[] = [];
  acceptApiLinks({ signaling: port, onLink: (l) => accepted.push(l) });
  return {
    origin,
    holder,
    accepted,
    links,
    get delivered() {
      return delivered;
    },
    cut: () => (up = false),
    lose: () => (found = false),
  };
}

const code = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return isRingworkError(e) ? e.code : String(e);
  }
};

describe('API links to a stage held by another instance', () => {
  it('open through the holder and carry control messages both ways', async () => {
    const p = pair();
    const link = await p.origin.connect(STAGE, REQUESTER);
    expect(p.accepted).toHaveLength(1);
    expect(p.accepted[0]!.remoteId).toBe(REQUESTER);
    const atStage: unknown[] = [];
    const atServer: unknown[] = [];
    p.accepted[0]!.onControl((m) => atStage.push(m));
    link.onControl((m) => atServer.push(m));
    link.sendControl({ type: 'open', v: 1, session: 's1' });
    p.accepted[0]!.sendControl({ type: 'opened', v: 1, session: 's1' });
    await new Promise((r) => setTimeout(r, 0));
    expect(atStage).toEqual([{ type: 'open', v: 1, session: 's1' }]);
    expect(atServer).toEqual([{ type: 'opened', v: 1, session: 's1' }]);
    // Closing on the API's side frees the holder's bookkeeping and the stage's link.
    const closed: string[] = [];
    p.accepted[0]!.onClose((c) => closed.push(c.reason));
    link.close();
    await new Promise((r) => setTimeout(r, 0));
    expect(closed).toHaveLength(1);
    expect(await code(p.holder.connect(STAGE, REQUESTER))).toBe('resolved');
  });

  it('one bound per stage over every instance’s links: the holder refuses past it', async () => {
    const p = pair({ maxLinks: 2 });
    await p.origin.connect(STAGE, REQUESTER);
    await p.holder.connect(STAGE, REQUESTER);
    expect(await code(p.origin.connect(STAGE, REQUESTER))).toBe('TRANSPORT_PEER_UNREACHABLE');
    expect(await code(p.holder.connect(STAGE, REQUESTER))).toBe('STAGE_SESSION_LIMIT');
    expect(p.accepted).toHaveLength(2);
  });

  it('a stage that left its holder closes the other instance’s links; one nobody holds is refused at once', async () => {
    const p = pair();
    const link = await p.origin.connect(STAGE, REQUESTER);
    const closed: string[] = [];
    link.onClose((c) => closed.push(c.reason));
    p.cut();
    p.holder.peerGone(STAGE);
    await new Promise((r) => setTimeout(r, 0));
    expect(closed).toHaveLength(1);
    // The holder no longer has its socket: a new link is refused, not left to time out.
    expect(await code(p.origin.connect(STAGE, REQUESTER))).toBe('TRANSPORT_PEER_UNREACHABLE');
    p.lose();
    expect(await code(p.origin.connect(STAGE, REQUESTER))).toBe('TRANSPORT_PEER_UNREACHABLE');
  });

  it('another instance cannot write into a link it did not open', async () => {
    const p = pair();
    await p.origin.connect(STAGE, REQUESTER);
    const before = p.delivered;
    expect(p.links).toHaveLength(1);
    const seen: unknown[] = [];
    p.accepted[0]!.onControl((m) => seen.push(m));
    // Another instance sends on origin's link id (and on an unknown one): neither reaches the stage.
    for (const link of [p.links[0]!, 'x'.repeat(16)])
      p.holder.fromInstance('mallory', STAGE, {
        type: 'api-link',
        v: SIGNALING_VERSION,
        link,
        frame: { kind: 'text', text: JSON.stringify({ type: 'open', v: 1, session: 's9' }) },
      });
    await new Promise((r) => setTimeout(r, 0));
    expect(p.delivered).toBe(before);
    expect(seen).toEqual([]);
  });
});
