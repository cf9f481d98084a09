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
 *
 * Around one concept each: the node's contract (cluster-node-types.ts), the election and the
 * coordinator's traffic (cluster-leadership.ts), messages from other instances
 * (cluster-instance-messages.ts); this file holds sessions, the tick, the view and the relay.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { ChainableCommander } from 'ioredis';
import { RingworkError } from '../../../shared/errors.js';
import type { PeerCapability } from '../../../shared/protocol/signaling.js';
import type { ApiLinkHub } from '../api/api-link-hub.js';
import { unrefTimer, type TimerHandle } from '../clock.js';
import type { CoordinatorSnapshot } from '../coordinator-types.js';
import { hashSessionToken } from '../peer-registry.js';
import type { Relay } from '../relay.js';
import { createApiLinkRoute } from './api-link-route.js';
import { createClusterBus } from './cluster-bus.js';
import { createInstanceMessageHandler } from './cluster-instance-messages.js';
import { createLeadership } from './cluster-leadership.js';
import type { ClusterNode, ClusterNodeOptions, ClusterView } from './cluster-node-types.js';
import { createCoordinatorProxy, type LocalPeer } from './coordinator-proxy.js';
import { createIntroductionsMirror } from './introductions-mirror.js';
import {
  clusterUnavailable,
  createRedisStore,
  KEYS,
  type RedisStore,
  type SharedSession,
} from './redis-store.js';
import { createSharedApiLimits } from './shared-api-limits.js';
import { createSharedAuth } from './shared-auth.js';

export type { ClusterInfo, ClusterNode, ClusterNodeOptions, ClusterView } from './cluster-node-types.js';

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
  /** Follower: until when `/api/network` readers want the leader's snapshot refreshed. */
  let viewWantedUntil = 0;
  let cachedHolders: Record<string, string> = {};
  /** Connections admitted without the cluster-wide address count (Redis unreachable). */
  let addressFailOpen = 0;
  let leaseRenewedAt = 0;
  let cachedSnapshot: CoordinatorSnapshot = EMPTY_SNAPSHOT;
  let timer: TimerHandle | null = null;
  let stopped = false;
  let localRelay: Relay | null = null;
  let apiHub: Pick<ApiLinkHub, 'receive' | 'fromInstance'> | null = null;
  let localProbe: ((peer: string) => void) | null = null;
  const apiRoute = createApiLinkRoute({ me, store, bus, log });

  const sendErrorTo = (peer: string, err: RingworkError): void => {
    const conn = conns.get(peer);
    if (conn) io.sendError(conn, err);
  };
  const asRingworkError = (e: unknown, what: string): RingworkError =>
    e instanceof RingworkError ? e : clusterUnavailable(what, e);
  const lead = createLeadership({
    opts,
    me,
    leaseMs,
    store,
    bus,
    mirror,
    registry,
    io,
    clock,
    log,
    locals,
    sendErrorTo,
    localProbe: () => localProbe,
  });

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

  const proxy = createCoordinatorProxy({
    me,
    locals,
    store,
    mirror,
    log,
    forward: lead.forward,
    saveLocal,
    real: () => lead.real,
    cachedSnapshot: () => {
      viewWantedUntil = clock.now() + 5000;
      return cachedSnapshot;
    },
    vouched: (a, b) => onInstanceMessage.vouched(a, b),
    allowAnyRelay: opts.allowAnyRelay === true,
  });

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
    const real = lead.real;
    const snapshot = real ? real.snapshot() : cachedSnapshot;
    const holders: Record<string, string> = {};
    for (const p of snapshot.peers) {
      if (lead.internalPeers.has(p.id)) continue;
      const h = registry.get(p.id) ? me : lead.holderOf.get(p.id);
      if (h !== undefined) holders[p.id] = h;
    }
    return { snapshot, holders };
  };

  const tick = async (): Promise<void> => {
    if (stopped) return;
    try {
      if (lead.real) {
        if (await store.renewLease(me, leaseMs)) leaseRenewedAt = clock.now();
        else lead.stepDown('lease taken');
      } else if (await store.tryAcquireLease(me, leaseMs)) {
        leaseRenewedAt = clock.now();
        lead.becomeLeader();
      } else lead.noticeLeader(await store.leaseHolder());
      await refreshHeld();
      if (lead.real) {
        // The whole snapshot is O(peers) to build and parse: only while someone reads it elsewhere.
        if ((await store.cmd.get(KEYS.snapshotWanted)) !== null)
          await store.cmd.set(
            KEYS.snapshot,
            JSON.stringify({ at: clock.now(), ...leaderView() }),
            'PX',
            dirTtlMs,
          );
        await lead.sweepInstances();
      } else if (clock.now() < viewWantedUntil) await fetchView();
    } catch (e) {
      log.debug({ err: e }, 'cluster tick failed');
      // Without Redis the lease cannot be renewed: step down before another instance may take it.
      if (lead.real && clock.now() - leaseRenewedAt > leaseMs * 0.8) lead.stepDown('redis unreachable');
      if (!lead.real) lead.knownLeader = null;
    }
  };

  // ---- pub/sub
  const onInstanceMessage = createInstanceMessageHandler({
    opts,
    me,
    bus,
    mirror,
    registry,
    conns,
    locals,
    io,
    lead,
    apiRoute,
    sendErrorTo,
    localRelay: () => localRelay,
    apiHub: () => apiHub,
    localProbe: () => localProbe,
  });

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
          if (lead.real) lead.stepDown(`lease holder announced: ${m.leader}`);
          lead.noticeLeader(m.leader);
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
    addressOf: (peer) => lead.remoteAddress.get(peer),
    holdsRemote: (peer) => lead.real !== null && lead.holderOf.has(peer),
    deliver: (peer, msg) => lead.outbound(peer, msg),
    setProbe(probe) {
      localProbe = probe;
    },
    probeRemote: lead.probeRemote,
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
        if (l.capability) lead.forward('setCapability', [peerId, l.capability]);
        for (const m of l.models) lead.forward('requestRing', [peerId, m]);
      }
    },
    info: () => ({
      instance: me,
      coordinator: lead.real !== null,
      leader: lead.knownLeader,
      redis: store.ready ? 'up' : 'down',
      takeovers: lead.takeovers,
      bus: bus.stats(),
      addressFailOpen,
    }),
    view() {
      if (lead.real) return leaderView();
      viewWantedUntil = clock.now() + 5000;
      return { snapshot: cachedSnapshot, holders: cachedHolders };
    },
    async refreshView() {
      viewWantedUntil = clock.now() + 5000;
      const stale = () => !lead.real && store.ready && clock.now() - viewAt > 2 * tickMs;
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
        log.info({ instance: me, coordinator: lead.real !== null }, 'joined the cluster');
      })();
      return startPromise;
    },
    sharedAuth: () => createSharedAuth(store.cmd),
    sharedApiLimits: () => createSharedApiLimits(store.cmd, me),
    stop() {
      stopPromise ??= (async () => {
        stopped = true;
        if (timer !== null) clock.clearInterval(timer);
        lead.clearGrace();
        if (startPromise) await startPromise.catch(() => undefined);
        if (lead.release()) await store.releaseLease(me).catch(() => undefined);
        await store.close();
      })();
      return stopPromise;
    },
  };
}
