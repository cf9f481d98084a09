/**
 * Keeps a contributor's links to its ring neighbours in step with its assignment: dials `next`,
 * accepts `prev`, reuses one link when both are the same peer (a two-peer ring — only the smaller
 * id dials, so the two sides never race each other), closes links no assignment needs any more,
 * and reports a neighbour whose link dies. Transport-agnostic (WebRTC in browsers, in-memory in tests).
 */
import { createListeners } from '../transport/emitter.js';
import type { PeerLink, Transport } from '../transport/types.js';

export interface NeighbourLinks {
  /** Applies a new assignment's neighbours (null = none). */
  update(prev: string | null, next: string | null): void;
  prev(): PeerLink | undefined;
  next(): PeerLink | undefined;
  /**
   * The link to the next stage once it is open: at once when it is, else when the link being
   * dialled (or accepted) opens; undefined after `timeoutMs`, or when there is no next stage.
   */
  whenNext(timeoutMs: number): Promise<PeerLink | undefined>;
  /** Any open link by peer id (requesters connect too; the head answers them). */
  get(peerId: string): PeerLink | undefined;
  /** Every open link (neighbours and requesters). */
  all(): PeerLink[];
  /** Every link that becomes usable (neighbours and requesters); attach handlers here. */
  onLink(h: (link: PeerLink) => void): () => void;
  /** A needed neighbour's link closed or could not be opened. */
  onLost(h: (peerId: string, why: string) => void): () => void;
  close(): void;
}

export interface NeighbourLinksOptions {
  transport: Transport;
  selfId: string;
  /** Accept links from peers other than neighbours (requesters). Default: accept. */
  accept?: (peerId: string) => boolean;
  connectTimeoutMs?: number;
}

export function createNeighbourLinks(o: NeighbourLinksOptions): NeighbourLinks {
  const links = new Map<string, PeerLink>();
  const linkListeners = createListeners<PeerLink>();
  const lost = createListeners<[string, string]>();
  let want: { prev: string | null; next: string | null } = { prev: null, next: null };
  const dialing = new Set<string>();
  let closed = false;

  const needed = (id: string) => id === want.prev || id === want.next;
  const adopt = (link: PeerLink) => {
    const old = links.get(link.remoteId);
    if (old && old !== link && old.isOpen) old.close();
    links.set(link.remoteId, link);
    link.onClose(() => {
      if (links.get(link.remoteId) !== link) return;
      links.delete(link.remoteId);
      if (!closed && needed(link.remoteId)) lost.emit([link.remoteId, 'link closed']);
    });
    linkListeners.emit(link);
  };
  const offIncoming = o.transport.onIncoming((link) => {
    if (closed || (!needed(link.remoteId) && !(o.accept ?? (() => true))(link.remoteId))) {
      link.close();
      return;
    }
    adopt(link);
  });

  const dial = (id: string) => {
    if (dialing.has(id) || links.get(id)?.isOpen) return;
    dialing.add(id);
    o.transport
      .connect(id, { timeoutMs: o.connectTimeoutMs })
      .then((link) => {
        if (closed || !needed(id)) link.close();
        else adopt(link);
      })
      .catch((e: unknown) => {
        if (!closed && needed(id))
          lost.emit([id, `could not connect: ${e instanceof Error ? e.message : String(e)}`]);
      })
      .finally(() => dialing.delete(id));
  };

  return {
    update(prev, next) {
      const old = want;
      want = { prev: prev === o.selfId ? null : prev, next: next === o.selfId ? null : next };
      // Drop links to former neighbours (requester links stay: they end with their sessions).
      for (const id of [old.prev, old.next]) if (id && !needed(id)) links.get(id)?.close();
      const n = want.next;
      if (n && (n !== want.prev || o.selfId < n)) dial(n);
    },
    prev: () => (want.prev ? links.get(want.prev) : undefined),
    next: () => (want.next ? links.get(want.next) : undefined),
    whenNext(timeoutMs) {
      const id = want.next;
      const open = id ? links.get(id) : undefined;
      if (open?.isOpen) return Promise.resolve(open);
      // Nothing to wait for unless the link is being dialled, or the neighbour dials it (a 2-ring).
      const coming = !!id && (dialing.has(id) || (id === want.prev && o.selfId > id));
      if (!id || closed || !coming) return Promise.resolve(undefined);
      return new Promise((resolve) => {
        const done = (l: PeerLink | undefined) => {
          clearTimeout(timer);
          offLink();
          offLost();
          resolve(l);
        };
        const timer = setTimeout(() => done(undefined), timeoutMs);
        const offLink = linkListeners.add((l) => l.remoteId === id && done(l));
        const offLost = lost.add(([peer]) => peer === id && done(undefined));
      });
    },
    get: (id) => links.get(id),
    all: () => [...links.values()].filter((l) => l.isOpen),
    onLink: (h) => linkListeners.add(h),
    onLost: (h) => lost.add(([id, why]) => h(id, why)),
    close() {
      if (closed) return;
      closed = true;
      offIncoming();
      for (const l of links.values()) l.close();
      links.clear();
    },
  };
}
