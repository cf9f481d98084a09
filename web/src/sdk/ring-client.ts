/**
 * The SDK's ring transport in a browser (loaded on demand by ./ringwork.ts): the OpenAI-shaped
 * client of shared/api/ring-transport.ts over a requester of the ring. The Chat page hands in its
 * tab's requester; any other page gets one of its own here, joined to the network with the same
 * signaling client and WebRTC transport the app uses (requester role only: it serves no stage).
 */
import { createRingTransportClient, type RingRequesterPort } from '../../../shared/api/ring-transport.js';
import type { RingworkClient } from '../../../shared/api/ringwork-client.js';
import type { NetworkHandle } from '../../../shared/app/network-port.js';
import { createRequester } from '../../../shared/app/requester.js';
import { RingworkError } from '../../../shared/errors.js';
import { createHttpFileOpener } from '../../../shared/model/http-source.js';
import { openModelLocation } from '../../../shared/model/open-model.js';
import type { ShardRunner } from '../../../shared/runtime/shard-runner.js';
import { createSignalingClient, signalingPort } from '../network/signaling-client.js';
import { createWebRtcTransport } from '../network/webrtc-transport.js';

/** Options of {@link createRingClient}. */
export interface RingClientOptions {
  server: string;
  requester?: RingRequesterPort;
  createRunner?: () => ShardRunner;
  models: RingworkClient['models'];
}

/** The server's signaling endpoint (`/ws` under its base URL). */
export function signalingUrl(server: string): string {
  const u = new URL(server.replace(/\/+$/, '') + '/ws');
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

/**
 * One connection to the network for this page, opened on the first request. A dropped one is
 * opened again by the next request (a new session: the requester subscribes anew).
 */
function pageNetwork(server: string): () => Promise<NetworkHandle> {
  let current: Promise<NetworkHandle> | undefined;
  const connect = async (): Promise<NetworkHandle> => {
    const client = createSignalingClient({ url: signalingUrl(server), roles: ['requester'] });
    const welcome = await client.start();
    const transport = createWebRtcTransport({
      signaling: client,
      iceServers: welcome.iceServers,
      connectTimeoutMs: 10_000,
    });
    const off = client.on('closed', () => {
      off();
      current = undefined;
    });
    return {
      signaling: signalingPort(client),
      transport,
      peerId: welcome.peerId,
      resumed: welcome.resumed,
      close: () => client.stop(),
    };
  };
  return () =>
    (current ??= connect().catch((e: unknown) => {
      current = undefined;
      throw e;
    }));
}

/** A requester of this page: no history kept, no model run alone here (it asks the ring or fails). */
function pageRequester(o: RingClientOptions): RingRequesterPort {
  const base = o.server.replace(/\/+$/, '') + '/';
  return createRequester({
    network: pageNetwork(o.server),
    createRunner:
      o.createRunner ??
      (() => {
        throw new RingworkError(
          'SDK_NO_RUNNER',
          'This answer needs model shards run in this page (security level k >= 2), and the client was given no createRunner.',
        );
      }),
    // Model files are the server's (relative URLs resolve against it).
    openTokenizer: (m) =>
      openModelLocation({ url: m.url, tokenizerUrl: m.tokenizerUrl }, (root) =>
        createHttpFileOpener(new URL(root, base).href),
      ).then((x) => x.loadTokenizer()),
    localMemoryBytes: () => 0,
  });
}

/** The ring transport's client. */
export function createRingClient(o: RingClientOptions): RingworkClient {
  return createRingTransportClient({ requester: o.requester ?? pageRequester(o), models: o.models });
}
