/**
 * One connection to the network per tab: the signaling client (roles contributor + requester, so a
 * tab can lend compute and chat at once), the WebRTC transport over it, and the links the tab's
 * contributor stage keeps to its neighbours and to requesters.
 */
import type { ServerMessageOf } from '../../../shared/protocol/signaling';
import type { Transport } from '../../../shared/transport/types';
import { createSignalingClient, type SignalingClient } from '../network/signaling-client';
import { createWebRtcTransport } from '../network/webrtc-transport';

export interface TabNetwork {
  client: SignalingClient;
  transport: Transport;
  welcome: ServerMessageOf<'welcome'>;
  peerId: string;
}

let current: Promise<TabNetwork> | undefined;

export function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** Connects once (lazily) and returns the tab's network handle. */
export function getNetwork(): Promise<TabNetwork> {
  current ??= (async () => {
    const client = createSignalingClient({ url: wsUrl(), roles: ['contributor', 'requester'] });
    const welcome = await client.start();
    const transport = createWebRtcTransport({
      signaling: client,
      iceServers: welcome.iceServers as RTCIceServer[],
      connectTimeoutMs: 10_000,
    });
    client.on('closed', () => {
      current = undefined;
    });
    return { client, transport, welcome, peerId: welcome.peerId };
  })().catch((e: unknown) => {
    current = undefined;
    throw e;
  });
  return current;
}
