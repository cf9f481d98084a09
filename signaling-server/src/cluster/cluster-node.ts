/**
 * Cluster mode (`--redis redis://…`): several server instances behind any HTTP/WebSocket balancer,
 * sharing through Redis (redis-store.ts):
 *
 * - **Peer directory**: `rw:dir:<peer>` names the instance holding the peer's session (renewed with
 *   the session record, not every tick); an instance is alive while its `rw:inst:<id>` key is, which
 *   it renews every tick — a dead instance's peers are found by that one key, not by O(peers) TTLs.
 * - **Sessions**: token hash, roles, capability and subscribed models in `rw:sess:<peer>`; a
 *   `hello` with `resume` on an instance that does not hold the session adopts it from there (token
 *   checked against the hash, then rotated as usual); the previous holder is told to let go.
 * - **Relay**: a `signal` for a peer held elsewhere is posted to that instance (cluster-bus.ts: its
 *   own channel, batched per turn); the sender's instance vouches for the introduction from what it
 *   knows of the sender, the receiver's instance runs its own relay (the same quotas, which all
 *   count where the receiver is) and sends any typed refusal back to the sender's instance.
 * - **One active coordinator**: the instance holding the lease `rw:lease` (SET NX PX, renewed every
 *   third of the lease) runs the real coordinator; the others forward profiles, ring requests and
 *   status reports to it (posted to the leader's channel). Its outbound messages go to the instance
 *   holding each peer only (the leader learns holders from the forwarded calls), which delivers them
 *   and mirrors its own peers' assignments and rings to answer `canSignal`
 *   (introductions-mirror.ts). When the lease lapses another instance takes it within a lease,
 *   starts a fresh coordinator and every instance re-feeds it the peers it holds.
 *
 * - **The OpenAI API's links to ring stages** (api/api-link-hub.ts): a stage held by another instance
 *   is reached over the bus — the API's frames go to the stage's holder (looked up in the directory,
 *   one lookup per stage kept while it answers, so frames stay in order), which delivers them to the
 *   stage's socket and posts the stage's frames back. The API requester of a follower is a peer of
 *   the leader's coordinator like any other: its rings come to its instance as `out` messages.
 *
 * - **Signed-in addresses**: a follower's forwarded `addPeer` and `setCapability` carry the address
 *   its own sign-in check bound to the peer (never anything the peer says), so the leader's stake
 *   gate judges peers on every instance ({@link ClusterNode.addressOf}, `onRemotePeer`).
 *
 * - **Probes**: a peer accused by a stall or unreachable report is probed by the instance holding it
 *   (`probe` messages); only that instance evicts it, on its own failed probe.
 *
 * Redis unreachable: each instance keeps serving the peers it holds (local relay, heartbeats);
 * what needs shared state (a session held elsewhere, a peer on another instance, the coordinator of
 * a follower) is refused with `CLUSTER_UNAVAILABLE`; ioredis reconnects and the lease is re-taken.
 */
import type { SharedAuthState } from '../identity/siwe-auth.js';
import { createSharedAuth } from './shared-auth.js';
import { createSharedApiLimits, type SharedApiLimits } from './shared-api-limits.js';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { RingworkError } from '../../../shared/errors.js';
import {
  signalingErrorMessage,
  type PeerCapability,
  type ServerMessage,
} from '../../../shared/protocol/signaling.js';
import { unrefTimer, type Clock, type TimerHandle } from '../clock.js';
import type { ApiLinkHub, ApiLinkRemote } from '../api/api-link-hub.js';
import type { ConnectionIo } from '../connection-io.js';
import type { Coordinator, CoordinatorSnapshot, Liveness } from '../coordinator-types.js';
import { hashSessionToken, type PeerRegistry, type PeerRole } from '../peer-registry.js';
import type { Relay } from '../relay.js';
import type { ValidationRegistry } from '../validation-registry.js';
import { CLOSE_CODES, type Conn } from '../server-context.js';
import { createClusterBus, type BusStats, type InstanceMessage } from './cluster-bus.js';
import { createApiLinkRoute } from './api-link-route.js';
import { createIntroductionsMirror } from './introductions-mirror.js';
import {
  createCoordinatorProxy,
  isForwarded,
  type ForwardedOp,
  type LocalPeer,
} from './coordinator-proxy.js';
import type { ChainableCommander } from 'ioredis';
import {
  clusterUnavailable,
  createRedisStore,
  KEYS,
  type RedisStore,
  type SharedSession,
} from './redis-store.js';

/** What `/healthz` and `/api/network` say about the cluster. */
export interface ClusterInfo {
  instance: string;
  /** True on the instance whose coordinator is active. */
  coordinator: boolean;
  /** The lease holder as last seen (null: none right now). */
  leader: string | null;
  redis: 'up' | 'down';
  /** Coordinator takeovers this instance made. */
  takeovers: number;
  /** Messages between instances, this instance's side (cluster-bus.ts). */
  bus?: BusStats;
  /** Connections admitted while the cluster-wide address count was unreachable (fail-open). */
  addressFailOpen?: number;
  /** `/api/network` only: the instances holding peers (as the leader knows them) and the coordinator's. */
  instances?: Array<{ id: string; peers: number; coordinator: boolean }>;
}

/** The cluster-wide view behind a follower's `/api/network`: the leader's snapshot and who holds whom. */
export interface ClusterView {
  snapshot: CoordinatorSnapshot;
  /** peer id -> the instance holding its socket. */
  holders: Record<string, string>;
}

/** Options of {@link createClusterNode}. */
export interface ClusterNodeOptions {
  url: string;
  instanceId?: string;
  leaseMs: number;
  /** Sessions survive this long unattached (the server's resume grace); the shared record outlives it. */
  resumeGraceMs: number;
  registry: PeerRegistry;
  conns: Map<string, Conn>;
  /** Open connections per client address bucket on this instance (the server's own count). */
  ipCounts?: ReadonlyMap<string, number>;
  io: ConnectionIo;
  /** Builds a fresh coordinator when this instance takes the lease. */
  makeCoordinator(send: (peerId: string, msg: ServerMessage) => void, liveness: Liveness): Coordinator;
  clock: Clock;
  log: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** The bench hook `--allow-any-relay` (test mode): followers let any two peers signal, as the leader does. */
  allowAnyRelay?: boolean;
  /**
   * Delivers the coordinator's message to a peer of this instance that has no socket (the server's
   * own API requester); false when `peer` is not one.
   */
  deliverInternal?(peer: string, msg: ServerMessage): boolean;
  /** The address this instance verified for a peer it holds (its sign-in binding), if any. */
  addressOf?(peer: string): string | undefined;
  /**
   * Leader: a peer held by another instance joined (`addPeer`) or its verified address changed —
   * the stake gate reads its stake (as `onSession` does for a local peer).
   */
  onRemotePeer?(peer: string, roles: readonly string[]): void;
}

/** One instance's membership of the cluster. */
export interface ClusterNode {
  readonly instanceId: string;
  /** The coordinator the protocol talks to: the real one while leading, a forwarder otherwise. */
  readonly coordinator: Coordinator;
  /**
   * Before a WebSocket upgrade: counts the connection against the cluster-wide cap of its address
   * bucket (IPv4 address, IPv6 /64); false when the bucket is at `cap` over all instances. Redis
   * unreachable: true (fail-open to the per-instance cap the server checks first, so an outage
   * allows at most instances × cap).
   */
  admitConnection(bucket: string, cap: number): Promise<boolean>;
  /** After a connection from `bucket` closed (or an admitted upgrade failed): writes this instance's count. */
  connectionClosed(bucket: string): void;
  /** The relay for peers held here; {@link ClusterNode.relay} routes the others through their instance. */
  setLocalRelay(local: Relay): void;
  /** The server's probe of a peer held here (a ping; an unanswered one evicts it). */
  setProbe(probe: (peer: string) => void): void;
  /**
   * A peer another instance holds is accused (a stall, an unreachable report the coordinator wants
   * checked): its holder probes it. Never an eviction on the word of another instance's peer.
   */
  probeRemote(peer: string): void;
  /** The server's API link hub: frames other instances send to stages held here, and back. */
  setApiLinkHub(hub: Pick<ApiLinkHub, 'receive' | 'fromInstance'>): void;
  /** The API link hub's route to stages held by other instances. */
  readonly apiLinks: ApiLinkRemote;
  /** Leader: the address the holding instance verified for a peer held elsewhere (undefined: none). */
  addressOf(peer: string): string | undefined;
  /** Leader: true while another instance holds `peer` (as the forwarded calls say). */
  holdsRemote(peer: string): boolean;
  /** Sends a server message to a peer wherever it is held (here, or through its instance). */
  deliver(peer: string, msg: ServerMessage): void;
  /** Before a `hello` resumes a session this instance does not hold: adopts it from Redis if the token matches. */
  adoptSession(peerId: string, token: string, roles: readonly PeerRole[], client?: string): Promise<void>;
  /** After `welcome`: records the session (new token) and claims the peer in the directory. */
  sessionOpened(peerId: string, token: string, roles: readonly PeerRole[], client?: string): void;
  readonly relay: Relay;
  info(): ClusterInfo;
  /** The leader's view of every peer and which instance holds each (a follower's copy may be a tick old). */
  view(): ClusterView;
  /**
   * Follower: when its copy of the leader's view is older than two ticks (nobody read it lately),
   * asks for a fresh one and waits for it (bounded by ~2 ticks); the leader and a fresh copy return at once.
   */
  refreshView(): Promise<void>;
  /** Connects to Redis (CLUSTER_UNAVAILABLE when it cannot) and joins the election. */
  start(): Promise<void>;
  /** After `start()`: the sign-in state every instance shares (nonces, token key). */
  sharedAuth(): Promise<SharedAuthState>;
  /** The API keys' limits counted over every instance (rate, token budget, streams per key). */
  sharedApiLimits(): SharedApiLimits;
  /** Releases the lease (so another instance takes over at once) and disconnects. Safe twice. */
  stop(): Promise<void>;
}

/** An EVM address as a sign-in binds it. */
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

const EMPTY_SNAPSHOT: CoordinatorSnapshot = { epoch: 0, plans: 0, models: [], rings: [], peers: [] };

/** Creates this instance's cluster membership (nothing connects until start). */
export function createClusterNode(opts: ClusterNodeOptions): ClusterNode {
  const { registry, conns, io, clock, log } = opts;
  const me = opts.instanceId ?? `i-${randomBytes(4).toString('hex')}`;
  const leaseMs = opts.leaseMs;
  const tickMs = Math.max(100, Math.floor(leaseMs / 3));
  /** An instance key's TTL: renewed every tick, so a dead instance is seen within 3 leases. */
  const dirTtlMs = 3 * leaseMs;
  const sessionTtlMs = opts.resumeGraceMs + dirTtlMs + 60_000;
  /** Session records and directory entries are renewed this often (their TTL is 4 times longer). */
  const renewEveryTicks = Math.max(1, Math.floor(sessionTtlMs / 4 / tickMs));
  const store: RedisStore = createRedisStore(opts.url, (e) =>
    log.debug({ err: e }, 'redis connection error'),
  );
  const bus = createClusterBus(store);
  const mirror = createIntroductionsMirror();
  const locals = new Map<string, LocalPeer>();
  /** Leader: the instance holding each remote peer, as the forwarded calls say. */
  const holderOf = new Map<string, string>();
  /** Leader: other instances' API requester peers (sessions of no tab: not listed by `/api/network`). */
  const internalPeers = new Set<string>();
  /** Leader: the sign-in address each remote peer's instance verified. */
  const remoteAddress = new Map<string, string>();
  /** Set while a vouched signal from another instance runs through the local relay. */
  let vouched: { from: string; to: string } | null = null;
  /** Follower: until when `/api/network` readers want the leader's snapshot refreshed. */
  let viewWantedUntil = 0;
  let cachedHolders: Record<string, string> = {};
  /** Connections admitted without the cluster-wide address count (Redis unreachable). */
  let addressFailOpen = 0;
  let real: Coordinator | null = null;
  let knownLeader: string | null = null;
  let leaseRenewedAt = 0;
  let takeovers = 0;
  let cachedSnapshot: CoordinatorSnapshot = EMPTY_SNAPSHOT;
  let deadOnce = new Set<string>();
  let timer: TimerHandle | null = null;
  let stopped = false;
  let localRelay: Relay | null = null;
  let apiHub: Pick<ApiLinkHub, 'receive' | 'fromInstance'> | null = null;
  let localProbe: ((peer: string) => void) | null = null;
  /** Asks the instance holding `peer` to probe it (the leader knows holders; others ask the directory). */
  const probeRemote = (peer: string): void => {
    if (registry.get(peer)) {
      localProbe?.(peer);
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
  const apiRoute = createApiLinkRoute({ me, store, bus, log });

  const sendErrorTo = (peer: string, err: RingworkError): void => {
    const conn = conns.get(peer);
    if (conn) io.sendError(conn, err);
  };
  const asRingworkError = (e: unknown, what: string): RingworkError =>
    e instanceof RingworkError ? e : clusterUnavailable(what, e);

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

  const sharedOf = (l: LocalPeer & { tokenHash: string }): SharedSession => ({
    tokenHash: l.tokenHash,
    roles: l.roles,
    ...(l.client ? { client: l.client } : {}),
    ...(l.capability ? { capability: l.capability } : {}),
    models: [...l.models],
  });
  const writeSession = (m: ChainableCommander, peer: string, l: LocalPeer): void => {
    if (!l.tokenHash) return;
    store.writeSession(m, peer, sharedOf({ ...l, tokenHash: l.tokenHash }), sessionTtlMs);
  };
  const saveLocal = (peer: string): void => {
    const l = locals.get(peer);
    if (!l?.tokenHash) return;
    const m = store.cmd.multi();
    writeSession(m, peer, l);
    m.exec().catch((e: unknown) => log.debug({ err: e, peer }, 'session not saved (redis down)'));
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

  const proxy = createCoordinatorProxy({
    me,
    locals,
    store,
    mirror,
    log,
    forward,
    saveLocal,
    real: () => real,
    cachedSnapshot: () => {
      viewWantedUntil = clock.now() + 5000;
      return cachedSnapshot;
    },
    vouched: (a, b) => vouched !== null && vouched.from === a && vouched.to === b,
    allowAnyRelay: opts.allowAnyRelay === true,
  });

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

  // Held sessions and directory entries are written whole on the first tick and after every
  // (re)connection to Redis (a restarted Redis gets them all back); otherwise their TTLs are renewed
  // every quarter TTL. Only this instance's own key is renewed every tick: O(1), not O(peers).
  let fullWriteDue = true;
  let ticks = 0;
  const refreshHeld = async (): Promise<void> => {
    const full = fullWriteDue;
    const renew = full || ticks++ % renewEveryTicks === 0;
    if (!renew) {
      await store.cmd.set(KEYS.instance(me), String(clock.now()), 'PX', dirTtlMs);
      return;
    }
    const m = store.cmd.pipeline();
    m.set(KEYS.instance(me), String(clock.now()), 'PX', dirTtlMs);
    // This instance's connections per address bucket: the truth overwrites any drift (an admitted
    // upgrade that failed, a close while Redis was down).
    for (const [bucket, n] of opts.ipCounts ?? []) store.setAddressCount(m, bucket, me, n, sessionTtlMs);
    for (const s of registry.all()) {
      const l = locals.get(s.id);
      if (!l?.tokenHash) continue;
      m.set(KEYS.dir(s.id), me, 'PX', sessionTtlMs);
      if (full) writeSession(m, s.id, l);
      else m.pexpire(KEYS.session(s.id), sessionTtlMs);
    }
    const results = (await m.exec()) ?? [];
    const failed = results.find(([e]) => e !== null);
    if (failed) throw failed[0] as Error;
    if (full) fullWriteDue = false;
  };

  /** Follower: asks the leader to keep publishing its snapshot, and reads the last one. */
  let viewAt = 0;
  const fetchView = async (): Promise<void> => {
    const [, text] = await Promise.all([
      store.cmd.set(KEYS.snapshotWanted, me, 'PX', 5000),
      store.cmd.get(KEYS.snapshot),
    ]);
    const v = text ? (JSON.parse(text) as Partial<ClusterView> & { at?: number }) : null;
    cachedSnapshot = v?.snapshot ?? EMPTY_SNAPSHOT;
    cachedHolders = v?.holders ?? {};
    viewAt = v?.at ?? 0;
  };

  /** The leader's snapshot with each peer's holder (written only while a follower's reader wants it). */
  const leaderView = (): ClusterView => {
    const snapshot = real ? real.snapshot() : cachedSnapshot;
    const holders: Record<string, string> = {};
    for (const p of snapshot.peers) {
      if (internalPeers.has(p.id)) continue;
      const h = registry.get(p.id) ? me : holderOf.get(p.id);
      if (h !== undefined) holders[p.id] = h;
    }
    return { snapshot, holders };
  };

  const tick = async (): Promise<void> => {
    if (stopped) return;
    try {
      if (real) {
        if (await store.renewLease(me, leaseMs)) leaseRenewedAt = clock.now();
        else stepDown('lease taken');
      } else if (await store.tryAcquireLease(me, leaseMs)) {
        leaseRenewedAt = clock.now();
        becomeLeader();
      } else noticeLeader(await store.leaseHolder());
      await refreshHeld();
      if (real) {
        // The whole snapshot is O(peers) to build and parse: only while someone reads it elsewhere.
        if ((await store.cmd.get(KEYS.snapshotWanted)) !== null)
          await store.cmd.set(
            KEYS.snapshot,
            JSON.stringify({ at: clock.now(), ...leaderView() }),
            'PX',
            dirTtlMs,
          );
        await sweepInstances();
      } else if (clock.now() < viewWantedUntil) await fetchView();
    } catch (e) {
      log.debug({ err: e }, 'cluster tick failed');
      // Without Redis the lease cannot be renewed: step down before another instance may take it.
      if (real && clock.now() - leaseRenewedAt > leaseMs * 0.8) stepDown('redis unreachable');
      if (!real) knownLeader = null;
    }
  };

  // ---- pub/sub
  const onInstanceMessage = (m: InstanceMessage): void => {
    switch (m.kind) {
      case 'signal': {
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
        apiHub?.fromInstance(m.from, m.peer, m.msg);
        return;
      case 'probe':
        if (registry.get(m.peer)) localProbe?.(m.peer);
        return;
      case 'api-link-back':
        // A link closing (or refused) may mean the stage moved: look its holder up again next time.
        apiRoute.returned(m.peer, m.msg);
        apiHub?.receive(m.peer, m.msg);
        return;
      case 'coord': {
        if (!real || !isForwarded(m.op) || !Array.isArray(m.args)) return;
        const peer = String(m.args[0]);
        let joined: readonly string[] | null = null;
        if (m.op === 'removePeer') {
          holderOf.delete(peer);
          remoteAddress.delete(peer);
        } else if (m.internal === true || internalPeers.has(peer)) {
          // Another instance's API requester: its rings go to that instance (not listed as a peer).
          internalPeers.add(peer);
          holderOf.set(peer, m.from);
        } else {
          holderOf.set(peer, m.from);
          // Only the holder forwards for a peer: one that resumed there from here is let go now (its
          // "release" may still be on the way), so what the coordinator answers goes to its holder.
          if (m.from !== me && registry.get(peer)) onInstanceMessage({ kind: 'release', peer });
          if (m.op === 'addPeer' || m.op === 'setCapability') {
            // Only what the holding instance verified counts (and only a well-formed address).
            const addr = typeof m.address === 'string' && ADDRESS.test(m.address) ? m.address : undefined;
            const before = remoteAddress.get(peer);
            if (addr) remoteAddress.set(peer, addr);
            else remoteAddress.delete(peer);
            if (m.op === 'addPeer') joined = Array.isArray(m.args[1]) ? m.args[1].map(String) : [];
            else if (before !== addr) joined = ['contributor'];
          }
        }
        applyRemote(m.op, m.args);
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

  const onMessage = (channel: string, text: string): void => {
    if (channel === KEYS.chInstance(me)) {
      for (const m of bus.parse(text)) {
        try {
          onInstanceMessage(m);
        } catch (e) {
          log.error({ err: e, kind: m.kind }, 'cluster message failed');
        }
      }
      return;
    }
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    try {
      if (channel === KEYS.chLeader) {
        if (typeof m.leader === 'string' && m.leader !== me) {
          if (real) stepDown(`lease holder announced: ${m.leader}`);
          noticeLeader(m.leader);
        }
      }
    } catch (e) {
      log.error({ err: e, channel }, 'cluster message failed');
    }
  };

  let startPromise: Promise<void> | null = null;
  let stopPromise: Promise<void> | null = null;

  return {
    instanceId: me,
    coordinator: proxy,
    async admitConnection(bucket, cap) {
      try {
        const r = await store.admitAddress(bucket, me, cap, sessionTtlMs);
        return r.admitted;
      } catch (e) {
        addressFailOpen++;
        log.debug({ err: e, bucket }, 'address cap not counted across instances (redis down)');
        return true;
      }
    },
    connectionClosed(bucket) {
      const m = store.cmd.pipeline();
      store.setAddressCount(m, bucket, me, opts.ipCounts?.get(bucket) ?? 0, sessionTtlMs);
      m.exec().catch((e: unknown) => log.debug({ err: e }, 'address count not written (redis down)'));
    },
    setLocalRelay(local) {
      localRelay = local;
    },
    addressOf: (peer) => remoteAddress.get(peer),
    holdsRemote: (peer) => real !== null && holderOf.has(peer),
    deliver: (peer, msg) => outbound(peer, msg),
    setProbe(probe) {
      localProbe = probe;
    },
    probeRemote,
    setApiLinkHub(hub) {
      apiHub = hub;
    },
    apiLinks: apiRoute.remote,
    relay: {
      relay(from, msg) {
        if (!localRelay) throw new RingworkError('SERVER_INTERNAL', 'Relay not ready.', {});
        if (msg.to === from || registry.get(msg.to)) return localRelay.relay(from, msg);
        const to = msg.to;
        const unknown = (): RingworkError =>
          new RingworkError('PROTOCOL_UNKNOWN_PEER', `No peer ${to}; nothing is queued for unknown ids.`, {
            details: { to },
          });
        // What this instance knows of the sender (its assignment, its rings) vouches for the pair;
        // the receiver's instance adds what it knows of the receiver.
        const vouch = proxy.canSignal(from, to);
        store
          .ownerOf(to)
          .then((owner) => {
            if (!owner || owner === me) throw unknown();
            bus.post(owner, { kind: 'signal', from, fromInstance: me, vouched: vouch, msg }, (e) =>
              sendErrorTo(
                from,
                e instanceof Error && /not listening/.test(e.message)
                  ? unknown()
                  : asRingworkError(e, 'a signal to a peer on another instance'),
              ),
            );
          })
          .catch((e: unknown) =>
            sendErrorTo(from, asRingworkError(e, 'a signal to a peer on another instance')),
          );
        return 'forwarded';
      },
      stats: () => localRelay?.stats() ?? { forwarded: 0, filtered: 0, refused: 0 },
    },
    async adoptSession(peerId, token, roles, client) {
      let s;
      try {
        s = await store.loadSession(peerId);
      } catch (e) {
        throw clusterUnavailable('resuming a session held by another instance', e);
      }
      // Unknown or wrong: fall through to the registry, which refuses both alike (PROTOCOL_BAD_TOKEN).
      if (!s || registry.get(peerId)) return;
      const given = Buffer.from(hashSessionToken(token), 'hex');
      const stored = Buffer.from(s.tokenHash, 'hex');
      if (given.length !== stored.length || !timingSafeEqual(given, stored)) return;
      registry.adopt(peerId, s.tokenHash, roles, client);
      locals.set(peerId, {
        roles: [...roles],
        ...(client ? { client } : {}),
        ...(s.capability ? { capability: s.capability as PeerCapability } : {}),
        models: new Set(s.models),
        adopted: true,
      });
    },
    sessionOpened(peerId, token, roles, client) {
      const l = locals.get(peerId) ?? { roles: [...roles], models: new Set<string>() };
      l.roles = [...roles];
      if (client) l.client = client;
      l.tokenHash = hashSessionToken(token);
      locals.set(peerId, l);
      saveLocal(peerId);
      store
        .claimPeer(peerId, me, sessionTtlMs)
        .then((prev) => {
          if (prev && prev !== me) bus.post(prev, { kind: 'release', peer: peerId });
        })
        .catch((e: unknown) => log.debug({ err: e, peer: peerId }, 'directory not updated (redis down)'));
      // A session adopted from another instance: make sure the coordinator knows what it offered.
      if (l.adopted) {
        l.adopted = false;
        if (l.capability) forward('setCapability', [peerId, l.capability]);
        for (const m of l.models) forward('requestRing', [peerId, m]);
      }
    },
    info: () => ({
      instance: me,
      coordinator: real !== null,
      leader: knownLeader,
      redis: store.ready ? 'up' : 'down',
      takeovers,
      bus: bus.stats(),
      addressFailOpen,
    }),
    view() {
      if (real) return leaderView();
      viewWantedUntil = clock.now() + 5000;
      return { snapshot: cachedSnapshot, holders: cachedHolders };
    },
    async refreshView() {
      viewWantedUntil = clock.now() + 5000;
      const stale = () => !real && store.ready && clock.now() - viewAt > 2 * tickMs;
      try {
        if (!stale()) return;
        await fetchView();
        // The leader writes on its next tick once it sees the request.
        for (let i = 0; i < 6 && stale(); i++) {
          await new Promise<void>((r) => unrefTimer(clock.setTimeout(() => r(), Math.ceil(tickMs / 2))));
          await fetchView();
        }
      } catch (e) {
        log.debug({ err: e }, 'cluster view not refreshed (redis down)');
      }
    },
    start() {
      startPromise ??= (async () => {
        await store.connect(Math.max(2000, leaseMs));
        store.cmd.on('ready', () => {
          fullWriteDue = true;
        });
        store.sub.on('message', onMessage);
        await store.sub.subscribe(KEYS.chInstance(me), KEYS.chLeader);
        await tick();
        timer = unrefTimer(clock.setInterval(() => void tick(), tickMs));
        log.info({ instance: me, coordinator: real !== null }, 'joined the cluster');
      })();
      return startPromise;
    },
    sharedAuth: () => createSharedAuth(store.cmd),
    sharedApiLimits: () => createSharedApiLimits(store.cmd, me),
    stop() {
      stopPromise ??= (async () => {
        stopped = true;
        if (timer !== null) clock.clearInterval(timer);
        if (graceTimer !== null) clock.clearTimeout(graceTimer);
        if (startPromise) await startPromise.catch(() => undefined);
        if (real) {
          real.stop();
          real = null;
          await store.releaseLease(me).catch(() => undefined);
        }
        await store.close();
      })();
      return stopPromise;
    },
  };
}
