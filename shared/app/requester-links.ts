/**
 * The requester's links to ring stages: this tab's own stage when the ring includes it, a link its
 * contributor already keeps to that peer (the other side keeps one link per peer), or one dialled
 * here and reused across requests while open.
 */
import { RingworkError } from '../errors.js';
import type { PeerLink } from '../transport/types.js';
import type { NetworkHandle } from './network-port.js';
import type { RequesterOptions } from './requester-types.js';

/** Links to ring stages. */
export interface StageLinks {
  /** A link to `peer`'s stage (see the file's comment). */
  linkTo(net: NetworkHandle, peer: string, signal: AbortSignal): Promise<PeerLink>;
  /** Closes the links dialled here; safe twice. */
  close(): void;
}

/** Creates the requester's {@link StageLinks}. */
export function createStageLinks(o: Pick<RequesterOptions, 'localStageLink' | 'existingLink'>): StageLinks {
  /** Links to ring stages, reused across requests while open. */
  const stageLinks = new Map<string, PeerLink>();
  const linkTo = async (net: NetworkHandle, peer: string, signal: AbortSignal): Promise<PeerLink> => {
    if (peer === net.peerId) {
      const self = o.localStageLink?.();
      if (!self)
        throw new RingworkError(
          'NO_RING',
          'This tab is in the ring but is not serving its stage yet; try again in a moment.',
        );
      return self;
    }
    const shared = o.existingLink?.(peer);
    if (shared?.isOpen) return shared;
    const open = stageLinks.get(peer);
    if (open?.isOpen) return open;
    const link = await net.transport.connect(peer, { timeoutMs: 15_000, signal });
    stageLinks.set(peer, link);
    link.onClose(() => stageLinks.get(peer) === link && stageLinks.delete(peer));
    return link;
  };

  return {
    linkTo,
    close() {
      for (const l of stageLinks.values()) l.close();
      stageLinks.clear();
    },
  };
}
