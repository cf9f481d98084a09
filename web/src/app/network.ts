/**
 * One connection to the network per tab: the signaling client (roles contributor + requester, so a
 * tab can lend compute and chat at once) and the WebRTC transport over it, as the
 * {@link NetworkHandle} the contributor and requester objects take.
 */
import type { NetworkHandle } from '../../../shared/app/network-port';
import { createSignalingClient, signalingPort } from '../network/signaling-client';
import { createWebRtcTransport } from '../network/webrtc-transport';

let current: Promise<NetworkHandle> | undefined;

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
  const client = createSignalingClient({ url: wsUrl(), roles: ['contributor', 'requester'] });
  const welcome = await client.start();
  const transport = createWebRtcTransport({
    signaling: client,
    iceServers: welcome.iceServers,
    connectTimeoutMs: 10_000,
  });
  client.on('closed', () => {
    current = undefined;
  });
  return { signaling: signalingPort(client), transport, peerId: welcome.peerId, close: () => client.stop() };
}
