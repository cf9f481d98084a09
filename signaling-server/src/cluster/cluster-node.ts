/**
 * Cluster mode (`--redis redis://…`): several server instances behind any HTTP/WebSocket balancer,
 * sharing through Redis (redis-store.ts):
 *
 * - **Peer directory**: `rw:dir:<peer>` names the instance holding the peer's session, with a TTL
 *   every instance refreshes for the sessions it holds (a dead instance's entries lapse).
 * - **Sessions**: token hash, roles, capability and subscribed models in `rw:sess:<peer>`; a
 *   `hello` with `resume` on an instance that does not hold the session adopts it from there (token
 *   checked against the hash, then rotated as usual); the previous holder is told to let go.
 * - **Relay**: a `signal` for a peer held elsewhere is published on that instance's channel; the
 *   receiver's instance runs its own relay (the same quotas, which all count where the receiver is)
 *   and sends any typed refusal back to the sender's instance.
 * - **One active coordinator**: the instance holding the lease `rw:lease` (SET NX PX, renewed every
 *   third of the lease) runs the real coordinator; the others forward profiles, ring requests and
 *   status reports to it (`rw:ch:coord`). Its outbound messages are broadcast (`rw:ch:out`): the
 *   holder of each peer delivers, every instance mirrors assignments and rings to answer
 *   `canSignal` (introductions-mirror.ts). When the lease lapses another instance takes it within a
 *   lease, starts a fresh coordinator and every instance re-feeds it the peers it holds.
 *
 * Redis unreachable: each instance keeps serving the peers it holds (local relay, heartbeats);
 * what needs shared state (a session held elsewhere, a peer on another instance, the coordinator of
 * a follower) is refused with `CLUSTER_UNAVAILABLE`; ioredis reconnects and the lease is re-taken.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { RingworkError, type RingworkErrorJSON } from '../../../shared/errors.js';
import {
  signalingErrorMessage,
  type ClientMessageOf,
  type PeerCapability,
  type ServerMessage,
} from '../../../shared/protocol/signaling.js';
import { unrefTimer, type Clock, type TimerHandle } from '../clock.js';
import type { ConnectionIo } from '../connection-io.js';
import type { Coordinator, CoordinatorSnapshot, Liveness } from '../coordinator-types.js';
import { hashSessionToken, type PeerRegistry, type PeerRole } from '../peer-registry.js';
import type { Relay } from '../relay.js';
import { CLOSE_CODES, type Conn } from '../server-context.js';
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
  io: ConnectionIo;
  /** Builds a fresh coordinator when this instance takes the lease. */
  makeCoordinator(send: (peerId: string, msg: ServerMessage) => void, liveness: Liveness): Coordinator;
  clock: Clock;
  log: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** The bench hook `--allow-any-relay` (test mode): followers let any two peers signal, as the leader does. */
  allowAnyRelay?: boolean;
}

/** One instance's membership of the cluster. */
export interface ClusterNode {
  readonly instanceId: string;
  /** The coordinator the protocol talks to: the real one while leading, a forwarder otherwise. */
  readonly coordinator: Coordinator;
  /** The relay for peers held here; {@link ClusterNode.relay} routes the others through their instance. */
  setLocalRelay(local: Relay): void;
  /** Before a `hello` resumes a session this instance does not hold: adopts it from Redis if the token matches. */
  adoptSession(peerId: string, token: string, roles: readonly PeerRole[], client?: string): Promise<void>;
  /** After `welcome`: records the session (new token) and claims the peer in the directory. */
  sessionOpened(peerId: string, token: string, roles: readonly PeerRole[], client?: string): void;
  readonly relay: Relay;
  info(): ClusterInfo;
  /** Connects to Redis (CLUSTER_UNAVAILABLE when it cannot) and joins the election. */
  start(): Promise<void>;
  /** Releases the lease (so another instance takes over at once) and disconnects. Safe twice. */
  stop(): Promise<void>;
}

type InstanceMessage =
  | { kind: 'signal'; from: string; fromInstance: string; msg: ClientMessageOf<'signal'> }
  | { kind: 'error'; peer: string; error: RingworkErrorJSON }
  | { kind: 'release'; peer: string };

const EMPTY_SNAPSHOT: CoordinatorSnapshot = { epoch: 0, plans: 0, models: [], rings: [], peers: [] };

/** Creates this instance's cluster membership (nothing connects until start). */
export function createClusterNode(opts: ClusterNodeOptions): ClusterNode {
  const { registry, conns, io, clock, log } = opts;
  const me = opts.instanceId ?? `i-${randomBytes(4).toString('hex')}`;
  const leaseMs = opts.leaseMs;
  const tickMs = Math.max(100, Math.floor(leaseMs / 3));
  const dirTtlMs = 3 * leaseMs;
  const sessionTtlMs = opts.resumeGraceMs + dirTtlMs + 60_000;
  const store: RedisStore = createRedisStore(opts.url, (e) =>
    log.debug({ err: e }, 'redis connection error'),
  );
  const mirror = createIntroductionsMirror();
  const locals = new Map<string, LocalPeer>();
  let real: Coordinator | null = null;
  let knownLeader: string | null = null;
  let leaseRenewedAt = 0;
  let takeovers = 0;
  let cachedSnapshot: CoordinatorSnapshot = EMPTY_SNAPSHOT;
  let missingOnce = new Set<string>();
  let timer: TimerHandle | null = null;
  let stopped = false;
  let localRelay: Relay | null = null;

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
    mirror.observe(peer, msg);
    if (msg) io.deliver(peer, msg);
    store.publish(KEYS.chOut, { from: me, peer, msg }).catch((e: unknown) => {
      log.debug({ err: e }, 'coordinator broadcast failed (redis down)');
    });
  };
  const liveness: Liveness = (id) => {
    const s = registry.get(id);
    if (s) return { connected: s.connected, lastSeen: s.lastSeen };
    // Held elsewhere: its instance answers for it (and tells the coordinator when it goes).
    return { connected: true, lastSeen: clock.now() };
  };

  const apply = (c: Coordinator, op: ForwardedOp, args: unknown[]): unknown =>
    (c[op] as (...a: unknown[]) => unknown)(...args);

  /** The leader runs a forwarded call; a refusal goes back to the peer as a typed error. */
  const applyRemote = (op: ForwardedOp, args: unknown[]): void => {
    if (!real) return;
    try {
      apply(real, op, args);
      if (op === 'removePeer') outbound(String(args[0]), null);
    } catch (e) {
      const peer = String(args[0]);
      const err =
        e instanceof RingworkError ? e : new RingworkError('SERVER_INTERNAL', 'Internal error.', {});
      outbound(peer, signalingErrorMessage(err));
    }
  };

  /** Runs a coordinator call here when leading, else forwards it to the leader. */
  const forward = (op: ForwardedOp, args: unknown[]): unknown => {
    if (real) {
      const r = apply(real, op, args);
      if (op === 'removePeer') outbound(String(args[0]), null);
      return r;
    }
    store.publish(KEYS.chCoord, { from: me, op, args }).catch((e: unknown) => {
      // Status reports can be lost; a peer waiting on a profile or ring request is told why.
      if (op === 'setCapability' || op === 'requestRing' || op === 'withdraw')
        sendErrorTo(String(args[0]), clusterUnavailable('the coordinator', e));
    });
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
      if (!s) continue;
      forward('addPeer', [id, l.roles]);
      if (l.capability) forward('setCapability', [id, l.capability]);
      if (!s.connected) forward('setOnline', [id, false]);
      for (const m of l.models) forward('requestRing', [id, m]);
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
    cachedSnapshot: () => cachedSnapshot,
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
    missingOnce = new Set();
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
    if (knownLeader === me) knownLeader = null;
    log.warn({ instance: me, why }, 'this instance is no longer the coordinator');
  };
  const noticeLeader = (leader: string | null): void => {
    if (leader === knownLeader) return;
    knownLeader = leader;
    if (leader !== null && leader !== me) replay();
  };

  /** Leader only: peers whose holder is gone (directory entry lapsed twice in a row) leave planning. */
  const sweepDirectory = async (): Promise<void> => {
    if (!real) return;
    const ids = real
      .snapshot()
      .peers.map((p) => p.id)
      .filter((id) => !registry.get(id));
    const owners = await store.ownersOf(ids);
    const missing = new Set<string>();
    ids.forEach((id, i) => {
      if (owners[i] === null) missing.add(id);
    });
    for (const id of missing) {
      if (missingOnce.has(id) && real) {
        real.removePeer(id, 'its instance is gone');
        outbound(id, null);
      }
    }
    missingOnce = missing;
  };

  // Held sessions are written whole on the first tick and after every (re)connection to Redis (a
  // restarted Redis gets them all back); otherwise their TTLs are renewed once per lease: rewriting
  // every record (roles, capability, models as JSON) every tick costs more than the relaying.
  let fullWriteDue = true;
  let ticks = 0;
  const refreshHeld = async (): Promise<void> => {
    const full = fullWriteDue;
    const renew = full || ticks++ % Math.max(1, Math.round(leaseMs / tickMs)) === 0;
    const m = store.cmd.multi();
    m.set(KEYS.instance(me), String(clock.now()), 'PX', dirTtlMs);
    for (const s of registry.all()) {
      const l = locals.get(s.id);
      if (!l?.tokenHash) continue;
      // The directory every tick (the coordinator's sweep drops peers whose entries lapse).
      m.set(KEYS.dir(s.id), me, 'PX', dirTtlMs);
      if (full) writeSession(m, s.id, l);
      else if (renew) m.pexpire(KEYS.session(s.id), sessionTtlMs);
    }
    await m.exec();
    if (full) fullWriteDue = false;
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
        await store.cmd.set(KEYS.snapshot, JSON.stringify(real.snapshot()), 'PX', dirTtlMs);
        await sweepDirectory();
      } else {
        const text = await store.cmd.get(KEYS.snapshot);
        cachedSnapshot = text ? (JSON.parse(text) as CoordinatorSnapshot) : EMPTY_SNAPSHOT;
      }
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
        try {
          localRelay.relay(m.from, m.msg);
        } catch (e) {
          const err =
            e instanceof RingworkError ? e : new RingworkError('SERVER_INTERNAL', 'Internal error.', {});
          store
            .publish(KEYS.chInstance(m.fromInstance), { kind: 'error', peer: m.from, error: err.toJSON() })
            .catch(() => undefined);
        }
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
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    try {
      if (channel === KEYS.chInstance(me)) onInstanceMessage(m as unknown as InstanceMessage);
      else if (channel === KEYS.chOut) {
        if (m.from === me || typeof m.peer !== 'string') return;
        const msg = (m.msg ?? null) as ServerMessage | null;
        mirror.observe(m.peer, msg);
        if (msg) io.deliver(m.peer, msg);
      } else if (channel === KEYS.chCoord) {
        if (real && isForwarded(m.op) && Array.isArray(m.args)) applyRemote(m.op, m.args);
      } else if (channel === KEYS.chLeader) {
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
    setLocalRelay(local) {
      localRelay = local;
    },
    relay: {
      relay(from, msg) {
        if (!localRelay) throw new RingworkError('SERVER_INTERNAL', 'Relay not ready.', {});
        if (msg.to === from || registry.get(msg.to)) return localRelay.relay(from, msg);
        const to = msg.to;
        store
          .ownerOf(to)
          .then(async (owner) => {
            if (!owner || owner === me) {
              throw new RingworkError(
                'PROTOCOL_UNKNOWN_PEER',
                `No peer ${to}; nothing is queued for unknown ids.`,
                {
                  details: { to },
                },
              );
            }
            await store.publish(KEYS.chInstance(owner), { kind: 'signal', from, fromInstance: me, msg });
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
        .claimPeer(peerId, me, dirTtlMs)
        .then(async (prev) => {
          if (prev && prev !== me)
            await store.publish(KEYS.chInstance(prev), { kind: 'release', peer: peerId });
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
    }),
    start() {
      startPromise ??= (async () => {
        await store.connect(Math.max(2000, leaseMs));
        store.cmd.on('ready', () => {
          fullWriteDue = true;
        });
        store.sub.on('message', onMessage);
        await store.sub.subscribe(KEYS.chInstance(me), KEYS.chOut, KEYS.chCoord, KEYS.chLeader);
        await tick();
        timer = unrefTimer(clock.setInterval(() => void tick(), tickMs));
        log.info({ instance: me, coordinator: real !== null }, 'joined the cluster');
      })();
      return startPromise;
    },
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
