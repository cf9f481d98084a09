/**
 * Which instance runs the coordinator, and the calls that reach it (cluster mode). The instance
 * holding the lease runs the real coordinator; every other instance forwards its peers' calls to
 * it over the bus. The leader delivers the coordinator's messages through the instance holding
 * each peer, learns holders from the forwarded calls, holds back "no ring" answers for one lease
 * after a takeover (until other instances have re-fed it their peers) and drops the peers of an
 * instance whose liveness key lapsed. Accused peers are probed by the instance holding them.
 */
import type { Logger } from 'pino';
import { RingworkError } from '../../../shared/errors.js';
import { signalingErrorMessage, type ServerMessage } from '../../../shared/protocol/signaling.js';
import { unrefTimer, type Clock, type TimerHandle } from '../clock.js';
import type { ConnectionIo } from '../connection-io.js';
import type { Coordinator, Liveness } from '../coordinator-types.js';
import type { PeerRegistry } from '../peer-registry.js';
import type { ValidationRegistry } from '../validation-registry.js';
import type { ClusterBus } from './cluster-bus.js';
import type { ClusterNodeOptions } from './cluster-node-types.js';
import type { ForwardedOp, LocalPeer } from './coordinator-proxy.js';
import type { IntroductionsMirror } from './introductions-mirror.js';
import { clusterUnavailable, KEYS, type RedisStore } from './redis-store.js';

/** What the leadership part reads of its instance. */
export interface LeadershipContext {
  opts: Pick<ClusterNodeOptions, 'makeCoordinator' | 'addressOf'>;
  me: string;
  leaseMs: number;
  store: RedisStore;
  bus: ClusterBus;
  mirror: IntroductionsMirror;
  registry: PeerRegistry;
  io: ConnectionIo;
  clock: Clock;
  log: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  locals: Map<string, LocalPeer>;
  sendErrorTo(peer: string, err: RingworkError): void;
  /** The server's probe of a peer held here (null until set). */
  localProbe(): ((peer: string) => void) | null;
}

/** This instance's side of the election and of the coordinator's traffic. */
export interface Leadership {
  /** The real coordinator while this instance leads, else null. */
  readonly real: Coordinator | null;
  /** The lease holder as last seen (null: none right now). */
  knownLeader: string | null;
  /** Coordinator takeovers this instance made. */
  readonly takeovers: number;
  /** Leader: the instance holding each remote peer, as the forwarded calls say. */
  readonly holderOf: Map<string, string>;
  /** Leader: other instances' API requester peers (sessions of no tab: not listed by `/api/network`). */
  readonly internalPeers: Set<string>;
  /** Leader: the sign-in address each remote peer's instance verified. */
  readonly remoteAddress: Map<string, string>;
  /** Asks the instance holding `peer` to probe it (the leader knows holders; others ask the directory). */
  probeRemote(peer: string): void;
  /** The coordinator's outbound messages: mirrored everywhere, delivered by the peer's holder. */
  outbound(peer: string, msg: ServerMessage | null): void;
  /** The leader runs a forwarded call; a refusal goes back to the peer as a typed error. */
  applyRemote(op: ForwardedOp, args: unknown[]): void;
  /** Runs a coordinator call here when leading, else forwards it to the leader. */
  forward(op: ForwardedOp, args: unknown[]): unknown;
  becomeLeader(): void;
  stepDown(why: string): void;
  noticeLeader(leader: string | null): void;
  /** Leader only: the peers of an instance whose key lapsed (seen twice in a row) leave planning. */
  sweepInstances(): Promise<void>;
  /** On stop: the takeover grace's timer is cleared. */
  clearGrace(): void;
  /** On stop: the coordinator stops; true when this instance led. */
  release(): boolean;
}

/** Creates the leadership part of an instance (leading nothing until {@link Leadership.becomeLeader}). */
export function createLeadership(ctx: LeadershipContext): Leadership {
  const { opts, me, leaseMs, store, bus, mirror, registry, io, clock, log, locals, sendErrorTo } = ctx;
  const holderOf = new Map<string, string>();
  const internalPeers = new Set<string>();
  const remoteAddress = new Map<string, string>();
  let real: Coordinator | null = null;
  let knownLeader: string | null = null;
  let takeovers = 0;
  let deadOnce = new Set<string>();
  const probeRemote = (peer: string): void => {
    if (registry.get(peer)) {
      ctx.localProbe()?.(peer);
      return;
    }
    const post = (owner: string | null | undefined): void => {
      if (owner && owner !== me) bus.post(owner, { kind: 'probe', peer });
    };
    const holder = holderOf.get(peer);
    if (holder !== undefined) post(holder);
    else
      store
        .ownerOf(peer)
        .then(post)
        .catch((e: unknown) => log.debug({ err: e, peer }, 'probe not routed (redis down)'));
  };

  // ---- takeover grace: a fresh coordinator hears of the contributors on other instances only when
  // those instances notice it and re-feed it (within a tick or two). Until then a requester re-fed
  // first would be told "no ring" for a moment; those answers are held back for one lease and the
  // requests asked again when it ends (by then a ring is planned, or "no ring" is the truth).
  let graceUntil = 0;
  let graceTimer: TimerHandle | null = null;
  const heldNoRing = new Map<string, Set<string>>();
  const endGrace = (): void => {
    graceTimer = null;
    const held = [...heldNoRing];
    heldNoRing.clear();
    for (const [peer, models] of held) {
      for (const model of models) {
        try {
          real?.requestRing(peer, model);
        } catch (e) {
          log.debug({ err: e, peer }, 'held ring request not re-asked (peer gone)');
        }
      }
    }
  };

  // ---- the coordinator's outbound messages: mirrored everywhere, delivered by the peer's holder
  const outbound = (peer: string, msg: ServerMessage | null): void => {
    if (msg?.type === 'no-ring' && clock.now() < graceUntil) {
      const models = heldNoRing.get(peer) ?? new Set<string>();
      models.add(msg.model);
      heldNoRing.set(peer, models);
      return;
    }
    if (registry.get(peer)) {
      mirror.observe(peer, msg);
      if (msg) io.deliver(peer, msg);
      return;
    }
    const undelivered = (e: unknown): void =>
      log.debug({ err: e, peer }, 'coordinator message not delivered (holder gone or redis down)');
    const holder = holderOf.get(peer);
    if (holder !== undefined) {
      bus.post(holder, { kind: 'out', peer, msg }, undelivered);
      return;
    }
    // Not heard of through a forwarded call yet (e.g. just after a takeover): ask the directory.
    store
      .ownerOf(peer)
      .then((owner) => {
        if (owner !== null && owner !== me) bus.post(owner, { kind: 'out', peer, msg }, undelivered);
      })
      .catch(undelivered);
  };
  const liveness: Liveness = (id) => {
    const s = registry.get(id);
    if (s) return { connected: s.connected, lastSeen: s.lastSeen };
    // Held elsewhere: its instance answers for it (and tells the coordinator when it goes).
    return { connected: true, lastSeen: clock.now() };
  };

  /** Runs one forwarded call on `c` (validation calls on its registry); may return a promise. */
  const apply = (c: Coordinator, op: ForwardedOp, args: unknown[]): unknown => {
    const v = c.validation;
    switch (op) {
      case 'validationKey':
        return v.setKey(String(args[0]), String(args[1]));
      case 'validationEvidence':
        return v.submitEvidence(...(args as Parameters<ValidationRegistry['submitEvidence']>));
      case 'validatedWork':
        // args[0] is the requester (whom a refusal goes to); the rest are creditWork's.
        return v.creditWork(...(args.slice(1) as Parameters<ValidationRegistry['creditWork']>));
      default:
        return (c[op] as (...a: unknown[]) => unknown)(...args);
    }
  };

  /** The leader runs a forwarded call; a refusal goes back to the peer as a typed error. */
  const applyRemote = (op: ForwardedOp, args: unknown[]): void => {
    if (!real) return;
    const peer = String(args[0]);
    const refuse = (e: unknown): void => {
      const err =
        e instanceof RingworkError ? e : new RingworkError('SERVER_INTERNAL', 'Internal error.', {});
      if (peer) outbound(peer, signalingErrorMessage(err));
    };
    try {
      const r = apply(real, op, args);
      // The accused of a follower's report are probed by the instances holding them.
      if (op === 'reportStall' && Array.isArray(r)) for (const p of r) probeRemote(String(p));
      if (op === 'reportUnreachable' && (r === 'probe' || r === 'evict')) probeRemote(String(args[1]));
      // Validation calls are async: a refusal (a bad proof, signature or key) reaches the peer too.
      if (r instanceof Promise) r.catch(refuse);
      if (op === 'removePeer') outbound(String(args[0]), null);
    } catch (e) {
      refuse(e);
    }
  };

  /** Runs a coordinator call here when leading, else forwards it to the leader. */
  const forward = (op: ForwardedOp, args: unknown[]): unknown => {
    if (real) {
      const r = apply(real, op, args);
      if (op === 'removePeer') outbound(String(args[0]), null);
      return r;
    }
    // No leader known right now: dropped; whoever takes the lease is re-fed every peer (replay).
    if (knownLeader === null || knownLeader === me) return undefined;
    const internal = op === 'addPeer' && !registry.get(String(args[0]));
    // The address this instance verified (its own binding), for the leader's stake gate.
    const address =
      !internal && (op === 'addPeer' || op === 'setCapability')
        ? { address: opts.addressOf?.(String(args[0])) ?? null }
        : {};
    bus.post(
      knownLeader,
      { kind: 'coord', from: me, op, args, ...(internal ? { internal } : {}), ...address },
      (e: unknown) => {
        // Status reports can be lost; a peer waiting on a profile or ring request is told why.
        if (op === 'setCapability' || op === 'requestRing' || op === 'withdraw')
          sendErrorTo(String(args[0]), clusterUnavailable('the coordinator', e));
      },
    );
    return undefined;
  };

  /** Feeds the (new) coordinator every peer this instance holds. */
  const replay = (): void => {
    for (const [id, l] of locals) {
      const s = registry.get(id);
      if (!s) {
        // The server's own API requester (no session, no token): a peer of whichever coordinator leads.
        if (l.tokenHash === undefined && !l.adopted) {
          forward('addPeer', [id, l.roles]);
          for (const m of l.models) forward('requestRing', [id, m]);
        }
        continue;
      }
      forward('addPeer', [id, l.roles]);
      if (l.capability) forward('setCapability', [id, l.capability]);
      if (l.validationKey) forward('validationKey', [id, l.validationKey]);
      if (!s.connected) forward('setOnline', [id, false]);
      for (const m of l.models) {
        const security = l.security?.get(m);
        forward('requestRing', security ? [id, m, security] : [id, m]);
      }
    }
  };

  // ---- leadership
  const becomeLeader = (): void => {
    graceUntil = clock.now() + leaseMs;
    heldNoRing.clear();
    if (graceTimer !== null) clock.clearTimeout(graceTimer);
    graceTimer = unrefTimer(clock.setTimeout(endGrace, leaseMs));
    real = opts.makeCoordinator(outbound, liveness);
    real.start();
    knownLeader = me;
    takeovers++;
    holderOf.clear();
    internalPeers.clear();
    remoteAddress.clear();
    deadOnce = new Set();
    log.info({ instance: me }, 'this instance is now the coordinator');
    store.publish(KEYS.chLeader, { leader: me }).catch(() => undefined);
    replay();
  };
  const stepDown = (why: string): void => {
    if (!real) return;
    graceUntil = 0;
    heldNoRing.clear();
    real.stop();
    real = null;
    holderOf.clear();
    remoteAddress.clear();
    if (knownLeader === me) knownLeader = null;
    log.warn({ instance: me, why }, 'this instance is no longer the coordinator');
  };
  const noticeLeader = (leader: string | null): void => {
    if (leader === knownLeader) return;
    knownLeader = leader;
    if (leader !== null && leader !== me) replay();
  };

  /**
   * Leader only: the peers of an instance whose key lapsed (seen twice in a row) leave planning,
   * unless the directory says they moved on. One MGET of the few instance keys per tick; the
   * per-peer work happens only when an instance is gone.
   */
  const sweepInstances = async (): Promise<void> => {
    if (!real) return;
    const instances = [...new Set(holderOf.values())];
    if (instances.length === 0) return;
    const alive = await store.cmd.mget(...instances.map((i) => KEYS.instance(i)));
    const dead = new Set(instances.filter((_, k) => alive[k] === null));
    const gone = [...dead].filter((i) => deadOnce.has(i));
    deadOnce = dead;
    if (gone.length === 0) return;
    const ids = [...holderOf].filter(([, h]) => gone.includes(h)).map(([id]) => id);
    const owners = await store.ownersOf(ids);
    ids.forEach((id, k) => {
      const owner = owners[k] ?? null;
      if (owner !== null && !gone.includes(owner)) {
        holderOf.set(id, owner);
        return;
      }
      holderOf.delete(id);
      remoteAddress.delete(id);
      if (real && !registry.get(id)) {
        real.removePeer(id, 'its instance is gone');
        outbound(id, null);
      }
    });
  };

  return {
    get real() {
      return real;
    },
    get knownLeader() {
      return knownLeader;
    },
    set knownLeader(v) {
      knownLeader = v;
    },
    get takeovers() {
      return takeovers;
    },
    holderOf,
    internalPeers,
    remoteAddress,
    probeRemote,
    outbound,
    applyRemote,
    forward,
    becomeLeader,
    stepDown,
    noticeLeader,
    sweepInstances,
    clearGrace() {
      if (graceTimer !== null) clock.clearTimeout(graceTimer);
    },
    release() {
      if (!real) return false;
      real.stop();
      real = null;
      return true;
    },
  };
}
