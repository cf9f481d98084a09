/**
 * One connection to the network per tab: the signaling client (roles contributor + requester, so a
 * tab can lend compute and chat at once) and the WebRTC transport over it, as the
 * {@link NetworkHandle} the contributor and requester objects take.
 *
 * The tab keeps one signaling client for its whole life: when the socket ends, the next
 * {@link getNetwork} (the contributor's rejoin loop, or the next chat request) starts it again, which
 * resumes the session with its token — or, when the server no longer has it, starts a new one. The
 * client's subscriptions (the transport's, the logic objects') carry over; the handle says whether
 * the session was resumed and tells when it ends.
 */
import type { NetworkClosed, NetworkHandle, SignalingPort } from '../../../shared/app/network-port';
import type { Transport } from '../../../shared/transport/types';
import { createListeners } from '../../../shared/transport/emitter';
import { createSignalingClient, signalingPort, type SignalingClient } from '../network/signaling-client';
import { createWebRtcTransport } from '../network/webrtc-transport';
import { getIdentity, signInQuietly } from './identity';

let current: Promise<NetworkHandle> | undefined;
let shared: { client: SignalingClient; port: SignalingPort; transport?: Transport } | undefined;

export function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** Connects once (lazily) and returns the tab's network handle; a closed connection is re-opened. */
export function getNetwork(): Promise<NetworkHandle> {
  const handle = (current ??= connect().catch((e: unknown) => {
    current = undefined;
    throw e;
  }));
  return handle;
}

async function connect(): Promise<NetworkHandle> {
  if (!shared) {
    const identity = getIdentity();
    // Sign in before the first hello (a local key: no prompt); anonymous if the sign-in fails.
    await signInQuietly(identity);
    const client = createSignalingClient({
      url: wsUrl(),
      roles: ['contributor', 'requester'],
      identity: {
        token: () => identity.current?.token,
        refresh: async () => (await signInQuietly(identity))?.token,
      },
    });
    shared = { client, port: signalingPort(client) };
  }
  const s = shared;
  const welcome = await s.client.start();
  s.transport ??= createWebRtcTransport({
    signaling: s.client,
    iceServers: welcome.iceServers,
    connectTimeoutMs: 10_000,
  });
  const closed = createListeners<NetworkClosed>();
  const off = s.client.on('closed', (m) => {
    off();
    current = undefined;
    closed.emit(m);
  });
  return {
    signaling: s.port,
    transport: s.transport,
    peerId: welcome.peerId,
    resumed: welcome.resumed,
    onClosed: (h) => closed.add(h),
    close: () => s.client.stop(),
  };
}
