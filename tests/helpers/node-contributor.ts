/**
 * A Node contributor as the server tests use it: signaling over a real WebSocket to a real server
 * (`wsUrl`), ring links in memory (`hub`), a real ORT runner on stories260K, no rejoin and no link
 * probes (a test decides when peers come and go).
 */
import { WebSocket } from 'ws';
import { createContributor, type Contributor } from '../../shared/app/contributor';
import type { NetworkHandle } from '../../shared/app/network-port';
import type { MemoryTransportHub } from '../../shared/transport/memory-transport';
import {
  createSignalingClient,
  signalingPort,
  type SignalingClient,
} from '../../web/src/network/signaling-client';
import { stories260KRunner } from './engine';

/** The contributor, its signaling client, and its network once it said hello. */
export interface NodeContributor {
  contributor: Contributor;
  signaling: SignalingClient;
  net(): NetworkHandle | undefined;
}

/** Creates (does not start) a Node contributor signaling to `wsUrl` with ring links on `hub`. */
export function nodeContributor(wsUrl: string, hub: MemoryTransportHub): NodeContributor {
  const signaling = createSignalingClient({ url: wsUrl, roles: ['contributor'], WebSocket });
  let net: NetworkHandle | undefined;
  const contributor = createContributor({
    network: async () => {
      if (net) return net;
      const welcome = await signaling.start();
      net = {
        signaling: signalingPort(signaling),
        transport: hub.transport(welcome.peerId),
        peerId: welcome.peerId,
      };
      return net;
    },
    createRunner: stories260KRunner,
    connectTimeoutMs: 5000,
    probeIntervalMs: 0,
    rejoin: false,
  });
  return { contributor, signaling, net: () => net };
}
