/**
 * What one instance does with the messages other instances post to its channel (cluster-bus.ts):
 * signals vouched for by the sender's instance run through the local relay (a refusal goes back),
 * the coordinator's messages for peers held here, the API's link frames, probes, calls forwarded to
 * the leader (which learns each peer's holder and verified address from them), errors for a peer
 * held here, and the release of a session that resumed on another instance.
 */
import { RingworkError } from '../../../shared/errors.js';
import type { ApiLinkHub } from '../api/api-link-hub.js';
import type { ConnectionIo } from '../connection-io.js';
import type { PeerRegistry } from '../peer-registry.js';
import type { Relay } from '../relay.js';
import { CLOSE_CODES, type Conn } from '../server-context.js';
import type { ApiLinkRoute } from './api-link-route.js';
import type { ClusterBus, InstanceMessage } from './cluster-bus.js';
import type { Leadership } from './cluster-leadership.js';
import type { ClusterNodeOptions } from './cluster-node-types.js';
import { isForwarded, type LocalPeer } from './coordinator-proxy.js';
import type { IntroductionsMirror } from './introductions-mirror.js';

/** An EVM address as a sign-in binds it. */
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** What the handler reads of its instance. */
export interface InstanceMessageContext {
  opts: Pick<ClusterNodeOptions, 'deliverInternal' | 'onRemotePeer'>;
  me: string;
  bus: ClusterBus;
  mirror: IntroductionsMirror;
  registry: PeerRegistry;
  conns: Map<string, Conn>;
  locals: Map<string, LocalPeer>;
  io: ConnectionIo;
  lead: Leadership;
  apiRoute: ApiLinkRoute;
  sendErrorTo(peer: string, err: RingworkError): void;
  localRelay(): Relay | null;
  apiHub(): Pick<ApiLinkHub, 'receive' | 'fromInstance'> | null;
  localProbe(): ((peer: string) => void) | null;
}

/** The instance-channel handler, and whether a signal now relayed was vouched for by its sender's instance. */
export interface InstanceMessageHandler {
  (m: InstanceMessage): void;
  /** True while a vouched signal from `from` to `to` (another instance's peer) runs through the local relay. */
  vouched(from: string, to: string): boolean;
}

/** Creates the handler of messages posted to this instance's channel. */
export function createInstanceMessageHandler(ctx: InstanceMessageContext): InstanceMessageHandler {
  const { opts, me, bus, mirror, registry, conns, locals, io, lead, apiRoute, sendErrorTo } = ctx;
  /** Set while a vouched signal from another instance runs through the local relay. */
  let vouched: { from: string; to: string } | null = null;
  const onInstanceMessage = (m: InstanceMessage): void => {
    switch (m.kind) {
      case 'signal': {
        const localRelay = ctx.localRelay();
        if (!localRelay) return;
        vouched = m.vouched ? { from: m.from, to: m.msg.to } : null;
        try {
          localRelay.relay(m.from, m.msg);
        } catch (e) {
          const err =
            e instanceof RingworkError ? e : new RingworkError('SERVER_INTERNAL', 'Internal error.', {});
          bus.post(m.fromInstance, { kind: 'error', peer: m.from, error: err.toJSON() });
        } finally {
          vouched = null;
        }
        return;
      }
      case 'out':
        mirror.observe(m.peer, m.msg);
        if (m.msg && !opts.deliverInternal?.(m.peer, m.msg)) io.deliver(m.peer, m.msg);
        return;
      case 'api-link':
        ctx.apiHub()?.fromInstance(m.from, m.peer, m.msg);
        return;
      case 'probe':
        if (registry.get(m.peer)) ctx.localProbe()?.(m.peer);
        return;
      case 'api-link-back':
        // A link closing (or refused) may mean the stage moved: look its holder up again next time.
        apiRoute.returned(m.peer, m.msg);
        ctx.apiHub()?.receive(m.peer, m.msg);
        return;
      case 'coord': {
        if (!lead.real || !isForwarded(m.op) || !Array.isArray(m.args)) return;
        const peer = String(m.args[0]);
        let joined: readonly string[] | null = null;
        if (m.op === 'removePeer') {
          lead.holderOf.delete(peer);
          lead.remoteAddress.delete(peer);
        } else if (m.internal === true || lead.internalPeers.has(peer)) {
          // Another instance's API requester: its rings go to that instance (not listed as a peer).
          lead.internalPeers.add(peer);
          lead.holderOf.set(peer, m.from);
        } else {
          lead.holderOf.set(peer, m.from);
          // Only the holder forwards for a peer: one that resumed there from here is let go now (its
          // "release" may still be on the way), so what the coordinator answers goes to its holder.
          if (m.from !== me && registry.get(peer)) onInstanceMessage({ kind: 'release', peer });
          if (m.op === 'addPeer' || m.op === 'setCapability') {
            // Only what the holding instance verified counts (and only a well-formed address).
            const addr = typeof m.address === 'string' && ADDRESS.test(m.address) ? m.address : undefined;
            const before = lead.remoteAddress.get(peer);
            if (addr) lead.remoteAddress.set(peer, addr);
            else lead.remoteAddress.delete(peer);
            if (m.op === 'addPeer') joined = Array.isArray(m.args[1]) ? m.args[1].map(String) : [];
            else if (before !== addr) joined = ['contributor'];
          }
        }
        lead.applyRemote(m.op, m.args);
        if (joined) opts.onRemotePeer?.(peer, joined);
        return;
      }
      case 'error':
        sendErrorTo(m.peer, RingworkError.fromJSON(m.error));
        return;
      case 'release': {
        // The peer resumed on another instance: drop the session here without telling the coordinator.
        const conn = conns.get(m.peer);
        conns.delete(m.peer);
        registry.remove(m.peer);
        locals.delete(m.peer);
        if (conn) {
          conn.peerId = null;
          io.sendError(
            conn,
            new RingworkError(
              'PROTOCOL_SESSION_REPLACED',
              'Another connection resumed this session with its token; this one is closed.',
              {},
            ),
          );
          io.closeConn(conn, CLOSE_CODES.sessionReplaced, 'session replaced');
        }
        return;
      }
    }
  };
  return Object.assign(onInstanceMessage, {
    vouched: (a: string, b: string) => vouched !== null && vouched.from === a && vouched.to === b,
  });
}
