/**
 * The Ringwork signaling server: one Node process that serves the built web app (with COOP/COEP so
 * wasm threads work) and the catalog's model files, `GET /healthz`, `GET /api/network`, and the
 * WebSocket endpoint `/ws` where peers say hello, send their profile, get assignments and relay WebRTC
 * signaling to the peers they were introduced to. Activations never pass through here.
 *
 * Hardening, in the order a request or frame meets it:
 * - at the socket: open sockets per client address bucket (IPv4 address, IPv6 /64), all sockets
 *   (`maxConnections` + `maxHttpSockets`), headers within `headersTimeoutMs`;
 * - every request: the Host header must name this server (`--allow-host`; 421 otherwise), which is
 *   what stops DNS-rebinding pages; static paths are dotfile-free and realpath-contained, catalog
 *   mounts serve only their model's files; `/api/network` is cached for `networkCacheMs`;
 * - at upgrade: path must be `/ws`; Origin must be the server's own or a configured one (requests
 *   without Origin are not from a browser page and are accepted: Origin checks exist to stop other
 *   sites' pages, which always send it); per-address and total connection caps and a per-address
 *   connection rate; the address is the socket's, or `X-Forwarded-For` from a `--trust-proxy`;
 * - ws `maxPayload` = 64 KiB (larger frames close the socket with 1009), UTF-8 validated by ws (1007);
 * - before its session exists a connection may send nothing larger than a hello
 *   (`MAX_PRESESSION_FRAME_BYTES`, 4 KiB): a bigger frame cuts it unparsed (1008, held back);
 * - the frame gate (frame-gate.ts): frames and bytes budgeted per connection and per address bucket
 *   on the raw length, before parsing; over a budget: one `PROTOCOL_RATE_LIMITED` error, the frame is
 *   dropped and the sender's socket (or all of its address's) paused until the budget refills;
 *   `maxDroppedFrames` drops or `maxThrottles` pauses before the client calms down close with 1008;
 *   ws emits one message per socket per event-loop turn (`allowSynchronousEvents: false`);
 * - every frame parsed by the zod union of the protocol ({@link parseClientFrame}); anything wrong gets
 *   a typed `error` reply, and a connection that keeps provoking errors is closed (1008);
 * - handlers run inside try/catch: an unexpected exception is logged and answered `SERVER_INTERNAL`,
 *   it never reaches the event loop.
 *
 * Sessions: `hello` creates a server-assigned id and token (at a per-address rate). A peer whose socket closes leaves
 * planning at once (its ring is re-planned after the debounce) but keeps its session for
 * `resumeGraceMs`. A `hello` with `resume` and the right token takes the session over (and puts the
 * peer back into planning); if the old connection is still open it is told
 * `PROTOCOL_SESSION_REPLACED` and closed (4001), because the token holder is by definition the
 * legitimate owner and a reloaded tab must not wait for its dead socket to time out. The token is
 * rotated on every resume, so a replayed old token fails once the owner has reconnected.
 *
 * Layout: server-context.ts (the state), connection-io.ts (send/close), protocol-handlers.ts (the
 * WebSocket protocol), http-routes.ts (HTTP and upgrades); this file builds them and runs the
 * lifecycle.
 *
 * Close codes: 1000 leave, 1001 shutdown, 1008 policy (rate limit, error budget), 1009 oversize,
 * 4001 session replaced, 4002 heartbeat timeout, 4003 evicted (confirmed unreachable), 4004 no hello
 * in time, 4005 slow consumer.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pino, type Logger } from 'pino';
import { WebSocketServer } from 'ws';
import {
  MAX_SIGNALING_FRAME_BYTES,
  signalingErrorMessage,
  type ServerMessage,
} from '../../shared/protocol/signaling.js';
import { DEFAULT_CATEGORY_THRESHOLDS } from '../../shared/planner/index.js';
import { createApiLinkHub, type ApiLinkHub, type ApiLinkRemote } from './api/api-link-hub.js';
import { createOpenAiApi, type OpenAiApi } from './api/openai-api.js';
import { createRingDriver } from './api/ring-driver.js';
import { loadCatalog, type CatalogModel } from './catalog.js';
import { createClientAddressResolver } from './client-address.js';
import { systemClock, unrefTimer, type Clock, type TimerHandle } from './clock.js';
import { resolveConfig, type SignalingConfig, type SignalingConfigInput } from './config.js';
import { createConnectionIo } from './connection-io.js';
import { createClusterNode, type ClusterNode } from './cluster/cluster-node.js';
import { createCoordinator, type Coordinator, type CoordinatorOptions } from './coordinator.js';
import { createEventLoopMonitor } from './event-loop-delay.js';
import { createFrameGate } from './frame-gate.js';
import { createHostAllowlist } from './host-allowlist.js';
import {
  createHttpHandlers,
  limitSocketsPerClient,
  networkSnapshot,
  type HttpHandlers,
} from './http-routes.js';
import { createIceFilter } from './ice-filter.js';
import { buildNetworkSnapshot, type NetworkSnapshot } from './network-snapshot.js';
import { createPeerRegistry } from './peer-registry.js';
import { createProtocol } from './protocol-handlers.js';
import { createKeyedRateLimiter } from './rate-limit.js';
import { createRelay } from './relay.js';
import { createIdentityRoutes } from './identity/identity-routes.js';
import { createSessionBindings } from './identity/session-binding.js';
import { ISOLATION_HEADERS } from './static-files.js';
import { flopsFromProfiles } from './ledger/credit.js';
import { openLedger, type Ledger } from './ledger/ledger.js';
import { createLedgerRoutes } from './ledger/ledger-routes.js';
import { createSdkRoutes } from './api/sdk-routes.js';
import { connectValidationCredit, evidenceHash } from './ledger/validation-credit.js';
import { openStake, type StakeService } from './stake/stake-service.js';
import { createStakeRoutes } from './stake/stake-routes.js';
import { createSiweAuth } from './identity/siwe-auth.js';
import { createPublicClient, http as httpTransport } from 'viem';
import { CLOSE_CODES, perIpBurst, type RunningContext, type ServerContext } from './server-context.js';

export { CLOSE_CODES } from './server-context.js';

/** Injected dependencies (tests pass a silent logger, a fixed random source, a preloaded catalog). */
export interface SignalingServerDeps {
  clock?: Clock;
  logger?: Logger;
  random?: (bytes: number) => Uint8Array;
  /** Skips loading the configured catalog from disk. */
  catalog?: CatalogModel[];
}

/** A running (or startable) signaling server. */
export interface SignalingServer {
  /** Loads the catalog and listens; safe to call twice (returns the same address). */
  start(): Promise<{ port: number; host: string; url: string }>;
  /** Closes every connection and the listener; safe to call twice. */
  stop(): Promise<void>;
  /** The `/api/network` document. */
  snapshot(): NetworkSnapshot;
  readonly config: SignalingConfig;
  /** The coordinator (null before start). */
  readonly coordinator: Coordinator | null;
  /**
   * The ledger of validated work (null without `dataDir`/`database`, or before start): the hook
   * through which the validation verdicts of real rings are recorded.
   */
  readonly ledger: Ledger | null;
}

/** Where a started server listens. */
interface Listening {
  port: number;
  host: string;
  url: string;
}

/** What start() built: stop() tears exactly this down. */
interface Started {
  run: RunningContext;
  http: Server;
  routes: HttpHandlers;
  sweepTimer: TimerHandle;
  api: OpenAiApi;
  address: Listening;
  ledger: Ledger | null;
}

/** Builds the state every part shares, once. */
function createServerContext(config: SignalingConfig, deps: SignalingServerDeps): ServerContext {
  const limits = config.limits;
  const clock = deps.clock ?? systemClock;
  const frameGate = createFrameGate(limits, clock);
  const eventLoop = createEventLoopMonitor({ clock });
  const auth = createSiweAuth({
    clock,
    chainId: config.chainId,
    ...(config.chainRpc
      ? { chainClient: createPublicClient({ transport: httpTransport(config.chainRpc) }) }
      : {}),
  });
  return {
    identity: { auth, bindings: createSessionBindings(auth, clock) },
    config,
    limits,
    clock,
    log: deps.logger ?? pino({ name: 'ringwork', level: config.logLevel }),
    registry: createPeerRegistry({ clock, ...(deps.random ? { random: deps.random } : {}) }),
    iceFilter: config.testMode ? createIceFilter() : null,
    counters: {
      connectionsOpen: 0,
      connectionsTotal: 0,
      rejectedUpgrades: {},
      rejectedRequests: {},
      framesIn: 0,
      framesRateLimited: 0,
      errorsSent: 0,
      disconnects: {},
      // Getters: the snapshot serialises the live figures.
      get frameGate() {
        return frameGate.stats();
      },
      get eventLoop() {
        return eventLoop.windows();
      },
    },
    addresses: createClientAddressResolver(config.trustProxy),
    conns: new Map(),
    allConns: new Set(),
    ipCounts: new Map(),
    connectRate: createKeyedRateLimiter({
      capacity: perIpBurst(limits, limits.connectBurstPerIp),
      refillPerSecond: limits.connectsPerSecondPerIp,
      clock,
    }),
    sessionRate: createKeyedRateLimiter({
      capacity: perIpBurst(limits, limits.sessionBurstPerIp),
      refillPerSecond: limits.sessionsPerSecondPerIp,
      clock,
    }),
    frameGate,
    eventLoop,
    startedAt: clock.now(),
    stopping: false,
  };
}

/** Creates the server. Nothing listens until {@link SignalingServer.start}. */
export function createSignalingServer(
  input: SignalingConfigInput = {},
  deps: SignalingServerDeps = {},
): SignalingServer {
  const config = resolveConfig(input);
  const ctx = createServerContext(config, deps);
  const { limits, clock, log, registry } = ctx;
  const io = createConnectionIo(ctx);
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_SIGNALING_FRAME_BYTES,
    perMessageDeflate: false,
    clientTracking: false,
    // One message per event-loop turn per socket: a burst of small frames read in one chunk cannot
    // hold the loop (and every honest peer's heartbeat) for the whole chunk, and a socket whose
    // messages wait is paused by ws's own back-pressure.
    allowSynchronousEvents: false,
  });
  let started: Started | null = null;
  // The API's links to ring stages ride on the stages' sockets; its requester is a coordinator peer.
  // Cluster mode: stages held by other instances are reached through them (set once the node exists).
  let apiRemote: ApiLinkRemote | null = null;
  const apiLinks: ApiLinkHub = createApiLinkHub({
    deliver: (peerId, msg) => io.deliver(peerId, msg),
    ...(config.redis
      ? {
          remote: {
            send: (peerId, msg, undelivered) =>
              apiRemote ? apiRemote.send(peerId, msg, undelivered) : undelivered(null),
            reply: (instance, peerId, msg) => apiRemote?.reply(instance, peerId, msg),
          } satisfies ApiLinkRemote,
        }
      : {}),
    maxLinksPerPeer: config.api.maxConcurrentStreams,
    clock,
    logger: log,
  });
  let deliverToApi: ((msg: ServerMessage) => void) | null = null;
  let apiPeerId: string | null = null;
  let startPromise: Promise<Listening> | null = null;
  let stopPromise: Promise<void> | null = null;
  /** Unsubscribes the ledger from the validation hooks (set when a ledger opened). */
  let disconnectCredit: (() => void) | null = null;
  /** Stake (stake/): set at start when `--stake-contract` names a contract. */
  let stake: StakeService | null = null;

  const listen = async (run: RunningContext, ledger: Ledger | null): Promise<Started> => {
    const protocol = createProtocol(run, io, apiLinks);
    run.cluster?.setProbe(protocol.probe);
    const ring = createRingDriver({
      coordinator: run.coordinator,
      hub: apiLinks,
      catalog: run.catalog,
      probe: protocol.probe,
      ...(apiPeerId ? { peerId: apiPeerId } : {}),
      logger: log,
    });
    deliverToApi = ring.deliver;
    // Before listening: a missing or bad --api-keys file fails the start, not a request.
    const api = createOpenAiApi({
      config: config.api,
      catalog: run.catalog,
      coordinator: run.coordinator,
      allowedOrigins: config.allowedOrigins,
      logger: log,
      ring,
      ...(run.cluster ? { sharedLimits: run.cluster.sharedApiLimits() } : {}),
      ...(ledger ? { usage: ledger } : {}),
    });
    const server = createServer({
      // Slow-header sockets are held only briefly; Node checks these timeouts every interval.
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, limits.headersTimeoutMs / 4)),
    });
    server.maxConnections = limits.maxConnections + limits.maxHttpSockets;
    limitSocketsPerClient(server, run);
    server.on('clientError', (e: NodeJS.ErrnoException, socket: Socket) => {
      // Headers or request not complete in time: say so (408), anything else is malformed (400).
      const status = e.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => log.error({ err: e }, 'http server error'));
    const port = (server.address() as AddressInfo).port;
    // Routes attach once the port is known (the Host allowlist names it); 'listening' precedes any
    // connection, so no request can arrive before them.
    const http = createHttpHandlers(run, {
      wss,
      hosts: createHostAllowlist(config.host, port, config.allowedHosts),
      onConnection: protocol.onConnection,
      api,
      routes: [
        createSdkRoutes({ root: config.root, onError: (e) => log.error({ err: e }, 'sdk read failed') }),
        createIdentityRoutes({
          auth: run.identity.auth,
          rate: createKeyedRateLimiter({ capacity: 30, refillPerSecond: 2, clock }),
          headers: ISOLATION_HEADERS,
          onError: (e) => log.error({ err: e }, 'sign-in failed unexpectedly'),
        }),
        createLedgerRoutes({
          ledger,
          rate: createKeyedRateLimiter({ capacity: 60, refillPerSecond: 10, clock }),
          headers: ISOLATION_HEADERS,
          onError: (e) => log.error({ err: e }, 'ledger read failed'),
          auth: run.identity.auth,
        }),
        createStakeRoutes({
          stake,
          rate: createKeyedRateLimiter({ capacity: 60, refillPerSecond: 10, clock }),
          headers: ISOLATION_HEADERS,
          onError: (e) => log.error({ err: e }, 'stake read failed'),
        }),
      ],
    });
    server.on('request', http.onRequest);
    server.on('upgrade', http.onUpgrade);
    const timeouts = [limits.heartbeatTimeoutMs, limits.helloTimeoutMs, limits.resumeGraceMs || Infinity];
    const every = Math.max(10, Math.min(1000, Math.min(...timeouts) / 4));
    const sweepTimer = unrefTimer(clock.setInterval(protocol.sweep, every));
    run.eventLoop.start();
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    return {
      run,
      http: server,
      routes: http,
      sweepTimer,
      api,
      ledger,
      address: { port, host: config.host, url },
    };
  };

  const start = (): Promise<Listening> => {
    startPromise ??= (async () => {
      const catalog =
        deps.catalog ?? (await loadCatalog(config.models, { defaultModel: config.defaultModel }));
      // Stake opens first (a contract that cannot be read fails the start); the coordinator and the
      // ledger it reports to are made below, hence the late-bound references.
      let coordinatorRef: Coordinator | null = null;
      let ledgerRef: Ledger | null = null;
      let clusterRef: ClusterNode | null = null;
      stake = await openStake(config, {
        // Cluster mode: the leader also judges peers held by other instances, by the address the
        // holding instance verified (carried with its forwarded profile).
        addressOf: (peer) => ctx.identity.bindings.of(peer)?.address ?? clusterRef?.addressOf(peer),
        isLive: (peer) => registry.get(peer) !== undefined || clusterRef?.holdsRemote(peer) === true,
        clock,
        logger: log,
        recordSlash: (row) => ledgerRef?.recordSlash(row) ?? Promise.resolve(),
        onChange: (peer, refusal) => {
          coordinatorRef?.membershipChanged(`stake standing of ${peer}`);
          if (!refusal) return;
          // In a cluster the leader's gate tells the peer (wherever it is held); a follower's own
          // gate only keeps its standing for /api/stake, so the peer is told once.
          if (!clusterRef) io.deliver(peer, signalingErrorMessage(refusal));
          else if (clusterRef.info().coordinator) clusterRef.deliver(peer, signalingErrorMessage(refusal));
        },
      });
      const gate = stake?.gate;
      if (gate) {
        ctx.onSession = (peer, roles) => {
          if (roles.includes('contributor')) void gate.refresh(peer);
        };
      }
      const coordinatorOptions = (
        send: CoordinatorOptions['send'],
        liveness: CoordinatorOptions['liveness'],
      ): CoordinatorOptions => ({
        catalog,
        // The API's requester is a peer of this server's coordinator; its messages stay in-process.
        send: (peerId, msg) => {
          if (peerId === apiPeerId) deliverToApi?.(msg);
          else send(peerId, msg);
        },
        objective: config.objective,
        plannerOptions: {
          stageOverheadMs: config.stageOverheadMs,
          categoryThresholds: {
            aAboveTflops: DEFAULT_CATEGORY_THRESHOLDS.aAboveTflops,
            cBelowTflops: config.categoryCBelowTflops,
          },
        },
        ...(config.minLinkMbps > 0 ? { minLinkMbps: config.minLinkMbps } : {}),
        debounceMs: limits.replanDebounceMs,
        maxWaitMs: limits.replanMaxWaitMs,
        ...(liveness ? { liveness } : {}),
        staleAfterMs: 2 * limits.heartbeatMs,
        reportBurst: limits.reportBurst,
        reportRefillMs: limits.reportRefillMs,
        profileMinIntervalMs: limits.profileMinIntervalMs,
        verifyAfterMs: limits.verifyAfterMs,
        maxUnverifiedShare: limits.maxUnverifiedShare,
        trustPolicy: { initialMemoryBytes: limits.initialTrustedMemoryBytes },
        allowAnyRelay: config.allowAnyRelay,
        security: {
          defaultLevel: config.securityLevel,
          modelMinimum: config.modelSecurity,
          // Validator rings on other networks than the primary's: by the address bucket a peer
          // connects from (a /64 for IPv6). Off in test mode, where every tab is 127.0.0.1.
          ...((config.validatorNetworks ?? (config.testMode ? 'any' : 'distinct')) === 'distinct'
            ? { networkOf: (id: string) => ctx.conns.get(id)?.ipBucket }
            : {}),
        },
        clock,
        logger: log,
        ...(gate
          ? { membership: (peer: string, model: string, level?: number) => gate.refusal(peer, model, level) }
          : {}),
      });
      // Cluster mode: the coordinator is the elected instance's (cluster/cluster-node.ts).
      const cluster = config.redis
        ? createClusterNode({
            url: config.redis,
            ...(config.instanceId ? { instanceId: config.instanceId } : {}),
            leaseMs: config.clusterLeaseMs,
            resumeGraceMs: limits.resumeGraceMs,
            registry,
            conns: ctx.conns,
            ipCounts: ctx.ipCounts,
            io,
            makeCoordinator: (send, liveness) => createCoordinator(coordinatorOptions(send, liveness)),
            clock,
            log,
            allowAnyRelay: config.allowAnyRelay,
            addressOf: (peer) => ctx.identity.bindings.of(peer)?.address,
            onRemotePeer: (peer, roles) => {
              if (roles.includes('contributor')) void gate?.refresh(peer);
            },
            // The coordinator's messages to this instance's API requester (it has no socket).
            deliverInternal: (peer, msg) => {
              if (peer !== apiPeerId) return false;
              deliverToApi?.(msg);
              return true;
            },
          })
        : null;
      const coordinator =
        cluster?.coordinator ??
        createCoordinator(
          coordinatorOptions(
            (peerId, msg) => void io.deliver(peerId, msg),
            (id) => {
              const s = registry.get(id);
              return s ? { connected: s.connected, lastSeen: s.lastSeen } : undefined;
            },
          ),
        );
      coordinatorRef = coordinator;
      coordinator.start();
      apiPeerId = `p_${randomBytes(12).toString('base64url')}`;
      const localRelay = createRelay({
        canSignal: (a, b) => coordinator.canSignal(a, b),
        isKnown: (id) => registry.get(id) !== undefined,
        deliver: io.deliver,
        iceFilter: ctx.iceFilter,
        busy: (id) => io.busy(id, limits.relayBusyBytes),
        limits,
        clock,
      });
      cluster?.setLocalRelay(localRelay);
      cluster?.setApiLinkHub(apiLinks);
      clusterRef = cluster;
      if (cluster) apiRemote = cluster.apiLinks;
      if (cluster) {
        await cluster.start();
        // A tab's nonce, verify and hello may reach three different instances (sticky-less balancer).
        ctx.identity.auth.share(await cluster.sharedAuth());
      }
      const relay = cluster?.relay ?? localRelay;
      const run: RunningContext = Object.assign(ctx, { catalog, coordinator, relay, cluster });
      // The ledger opens before listening: a database that cannot be opened fails the start (exit 1).
      const store = config.database
        ? ({ kind: 'postgres', url: config.database } as const)
        : config.dataDir
          ? ({ kind: 'dir', dataDir: config.dataDir } as const)
          : null;
      let ledger: Ledger | null = null;
      if (store) {
        try {
          ledger = await openLedger(store, {
            clock,
            logger: log.child({ part: 'ledger' }),
            flopsOf: flopsFromProfiles(new Map(catalog.map((m) => [m.descriptor.id, m.profile]))),
          });
        } catch (e) {
          coordinator.stop();
          await cluster?.stop();
          throw e;
        }
        ledgerRef = ledger;
        const l = ledger;
        ctx.onIdentity = (peerId, address) => {
          l.recordSession(peerId, address).catch((e: unknown) =>
            log.error({ err: e }, 'ledger: session not recorded'),
          );
        };
        // A signed-in requester's answers and tokens (anonymous sessions have no one to show them to).
        ctx.onAnswer = (peerId, tokens) => {
          const address = ctx.identity.bindings.of(peerId)?.address;
          if (!address) return;
          l.recordRequest({ requester: address, tokens }).catch((e: unknown) =>
            log.error({ err: e }, 'ledger: request not recorded'),
          );
        };
        // Credit follows the server's validation verdicts (never a client's word).
        disconnectCredit = connectValidationCredit({
          ledger: l,
          validation: coordinator.validation,
          assignmentOf: (peer) => coordinator.getAssignment(peer),
          addressOf: (peer) => ctx.identity.bindings.of(peer)?.address,
          logger: log.child({ part: 'ledger' }),
          // A proven deviant's recorded evidence goes on chain: slash(peer, amount, evidenceHash).
          ...(stake?.slasher ? { onDeviant: stake.slasher.slash } : {}),
        });
      } else if (stake?.slasher) {
        const slasher = stake.slasher;
        disconnectCredit = coordinator.validation.onDeviant((e) =>
          slasher.slash({
            peerId: e.peer,
            address: ctx.identity.bindings.of(e.peer)?.address,
            evidenceHash: evidenceHash(e.evidence),
            evidence: e.evidence,
          }),
        );
      }
      started = await listen(run, ledger);
      log.info(
        { url: started.address.url, testMode: config.testMode, models: catalog.map((m) => m.descriptor.id) },
        'Ringwork signaling server listening',
      );
      return started.address;
    })();
    return startPromise;
  };

  const stop = (): Promise<void> => {
    stopPromise ??= (async () => {
      ctx.stopping = true;
      if (startPromise) await startPromise.catch(() => undefined);
      const s = started;
      if (s) {
        clock.clearInterval(s.sweepTimer);
        s.run.eventLoop.stop();
        s.routes.dropHeld();
        s.run.coordinator.stop();
        await s.api.stop();
        apiLinks.close();
        await s.run.cluster?.stop();
        disconnectCredit?.();
        stake?.stop();
        await s.ledger?.stop();
      }
      for (const conn of ctx.allConns) io.closeConn(conn, CLOSE_CODES.shutdown, 'server shutting down');
      // Give well-behaved clients a moment to complete the close handshake, then cut the rest.
      const deadline = Date.now() + 500;
      while (ctx.allConns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      for (const conn of ctx.allConns) conn.ws.terminate();
      wss.close();
      if (s) {
        await new Promise<void>((resolve) => {
          s.http.close(() => resolve());
          s.http.closeAllConnections();
        });
      }
      log.info('Ringwork signaling server stopped');
    })();
    return stopPromise;
  };

  return {
    start,
    stop,
    snapshot: () =>
      started
        ? networkSnapshot(started.run)
        : buildNetworkSnapshot({
            now: clock.now(),
            startedAt: ctx.startedAt,
            testMode: config.testMode,
            sessions: registry.all(),
            coordinator: { epoch: 0, plans: 0, models: [], rings: [], peers: [] },
            ice: ctx.iceFilter?.counts() ?? { candidates: 0, sdpLines: 0 },
            relay: { forwarded: 0, filtered: 0, refused: 0 },
            counters: ctx.counters,
            memory: process.memoryUsage(),
          }),
    config,
    get coordinator() {
      return started?.run.coordinator ?? null;
    },
    get ledger() {
      return started?.ledger ?? null;
    },
  };
}
