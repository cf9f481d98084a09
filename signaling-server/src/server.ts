/**
 * The Ringwork signaling server: one Node process that serves the built web app (with COOP/COEP so
 * wasm threads work) and the catalog's model files, `GET /healthz`, `GET /api/network`, and the
 * WebSocket endpoint `/ws` where peers say hello, send their profile, get assignments and relay WebRTC
 * signaling to the peers they were introduced to. Activations never pass through here.
 *
 * Hardening, in the order a frame meets it:
 * - at upgrade: path must be `/ws`; Origin must be the server's own or a configured one (requests
 *   without Origin are not from a browser page and are accepted: Origin checks exist to stop other
 *   sites' pages, which always send it); per-IP and total connection caps;
 * - ws `maxPayload` = 64 KiB (larger frames close the socket with 1009), UTF-8 validated by ws (1007);
 * - a token bucket per connection (over the limit: one `PROTOCOL_RATE_LIMITED` error, then frames
 *   are dropped; `maxDroppedFrames` drops before the client calms down closes with 1008);
 * - every frame parsed by the zod union of the protocol ({@link parseClientFrame}); anything wrong gets
 *   a typed `error` reply, and a connection that keeps provoking errors is closed (1008);
 * - handlers run inside try/catch: an unexpected exception is logged and answered `SERVER_INTERNAL`,
 *   it never reaches the event loop.
 *
 * Sessions: `hello` creates a server-assigned id and token. A peer whose socket closes leaves
 * planning at once (its ring is re-planned after the debounce) but keeps its session for
 * `resumeGraceMs`. A `hello` with `resume` and the right token takes the session over (and puts the
 * peer back into planning); if the old connection is still open it is told
 * `PROTOCOL_SESSION_REPLACED` and closed (4001), because the token holder is by definition the
 * legitimate owner and a reloaded tab must not wait for its dead socket to time out. The token is
 * rotated on every resume, so a replayed old token fails once the owner has reconnected.
 *
 * Close codes: 1000 leave, 1001 shutdown, 1008 policy (rate limit, error budget), 1009 oversize,
 * 4001 session replaced, 4002 heartbeat timeout, 4003 evicted (confirmed unreachable), 4004 no hello
 * in time, 4005 slow consumer.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { isRingworkError, RingworkError } from '../../shared/errors.js';
import {
  MAX_SIGNALING_FRAME_BYTES,
  parseClientFrame,
  signalingErrorMessage,
  SIGNALING_VERSION,
  type ClientHandlers,
  type ClientMessage,
  type ServerMessage,
} from '../../shared/protocol/signaling.js';
import { loadCatalog, type CatalogModel } from './catalog.js';
import { systemClock, unrefTimer, type Clock, type TimerHandle } from './clock.js';
import { resolveConfig, type SignalingConfig, type SignalingConfigInput } from './config.js';
import { createCoordinator, type Coordinator } from './coordinator.js';
import { createIceFilter, type IceFilter } from './ice-filter.js';
import { buildNetworkSnapshot, type NetworkSnapshot, type ServerCounters } from './network-snapshot.js';
import { createPeerRegistry, type PeerRegistry, type PeerRole } from './peer-registry.js';
import { createTokenBucket, type TokenBucket } from './rate-limit.js';
import { createRelay, type Relay } from './relay.js';
import { ISOLATION_HEADERS, serveStatic } from './static-files.js';

/** WebSocket close codes the server uses. */
export const CLOSE_CODES = {
  leave: 1000,
  shutdown: 1001,
  policy: 1008,
  sessionReplaced: 4001,
  heartbeatTimeout: 4002,
  evicted: 4003,
  helloTimeout: 4004,
  slowConsumer: 4005,
} as const;

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
}

interface Conn {
  readonly seq: number;
  readonly ws: WebSocket;
  readonly ip: string;
  readonly openedAt: number;
  peerId: string | null;
  readonly bucket: TokenBucket;
  readonly errorBudget: TokenBucket;
  dropped: number;
  limitedNotified: boolean;
  closing: boolean;
}

const REJECT_TEXT: Record<number, string> = {
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

function rawToText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

/** Creates the server. Nothing listens until {@link SignalingServer.start}. */
export function createSignalingServer(
  input: SignalingConfigInput = {},
  deps: SignalingServerDeps = {},
): SignalingServer {
  const config = resolveConfig(input);
  const limits = config.limits;
  const clock = deps.clock ?? systemClock;
  const log: Logger = deps.logger ?? pino({ name: 'ringwork', level: config.logLevel });
  const registry: PeerRegistry = createPeerRegistry({
    clock,
    ...(deps.random ? { random: deps.random } : {}),
  });
  const iceFilter: IceFilter | null = config.testMode ? createIceFilter() : null;
  const conns = new Map<string, Conn>();
  const allConns = new Set<Conn>();
  const ipCounts = new Map<string, number>();
  const counters: ServerCounters = {
    connectionsOpen: 0,
    connectionsTotal: 0,
    rejectedUpgrades: {},
    framesIn: 0,
    framesRateLimited: 0,
    errorsSent: 0,
    disconnects: {},
  };
  const bump = (rec: Record<string, number>, key: string): void => {
    rec[key] = (rec[key] ?? 0) + 1;
  };
  let coordinator: Coordinator | null = null;
  let relay: Relay | null = null;
  let catalog: CatalogModel[] = [];
  let http: Server | null = null;
  let startPromise: Promise<{ port: number; host: string; url: string }> | null = null;
  let stopPromise: Promise<void> | null = null;
  let stopping = false;
  let sweepTimer: TimerHandle | null = null;
  let seq = 0;
  const startedAt = clock.now();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_SIGNALING_FRAME_BYTES,
    perMessageDeflate: false,
    clientTracking: false,
  });

  // ------------------------------------------------------------------ sending and closing

  const sendTo = (conn: Conn, msg: ServerMessage): boolean => {
    if (conn.closing || conn.ws.readyState !== WebSocket.OPEN) return false;
    if (conn.ws.bufferedAmount > limits.maxBufferedBytes) {
      // A reader that does not keep up would make us buffer without bound: cut it off.
      bump(counters.disconnects, 'slow-consumer');
      closeConn(conn, CLOSE_CODES.slowConsumer, 'slow consumer', true);
      return false;
    }
    conn.ws.send(JSON.stringify(msg));
    return true;
  };

  const deliver = (peerId: string, msg: ServerMessage): boolean => {
    const conn = conns.get(peerId);
    return conn ? sendTo(conn, msg) : false;
  };

  function closeConn(conn: Conn, code: number, reason: string, hard = false): void {
    if (conn.closing) return;
    conn.closing = true;
    try {
      if (hard) conn.ws.terminate();
      else {
        conn.ws.close(code, reason.slice(0, 120));
        // A half-open peer never answers the close handshake: do not wait ws's 30 s for it.
        unrefTimer(clock.setTimeout(() => conn.ws.terminate(), 2000));
      }
    } catch (e) {
      log.debug({ err: e }, 'close failed');
      conn.ws.terminate();
    }
  }

  const sendError = (conn: Conn, err: RingworkError): void => {
    counters.errorsSent++;
    // toJSON bounds message and details; the code is the contract.
    sendTo(conn, signalingErrorMessage(err));
  };

  const replyError = (conn: Conn, e: unknown): void => {
    let err: RingworkError;
    if (isRingworkError(e)) err = e;
    else {
      log.error({ err: e, peer: conn.peerId }, 'unexpected error in a handler');
      err = new RingworkError('SERVER_INTERNAL', 'Internal error; the request was dropped.', {});
    }
    sendError(conn, err);
    if (!conn.errorBudget.take()) {
      bump(counters.disconnects, 'error-budget');
      closeConn(conn, CLOSE_CODES.policy, 'too many protocol errors');
    }
  };

  /** Forgets a peer everywhere; optionally tells its connection why and closes it. */
  const removePeer = (
    peerId: string,
    reason: string,
    close?: { code: number; error: RingworkError },
  ): void => {
    const conn = conns.get(peerId);
    conns.delete(peerId);
    registry.remove(peerId);
    coordinator?.removePeer(peerId, reason);
    if (conn) {
      conn.peerId = null;
      if (close) {
        sendError(conn, close.error);
        closeConn(conn, close.code, reason);
      }
    }
  };

  // ------------------------------------------------------------------ protocol handlers

  /**
   * Connect-hello-disconnect loops would otherwise fill the table with sessions in resume grace: drop
   * the one that has waited longest, or refuse when every session is live.
   */
  const makeRoomForSession = (): void => {
    let oldest: { id: string; at: number } | null = null;
    for (const s of registry.all()) {
      if (!s.connected && s.disconnectedAt !== null && (!oldest || s.disconnectedAt < oldest.at)) {
        oldest = { id: s.id, at: s.disconnectedAt };
      }
    }
    if (!oldest) {
      throw new RingworkError(
        'PROTOCOL_NOT_ALLOWED',
        'The server has no room for another peer right now; try again later.',
        {
          details: { maxSessions: limits.maxSessions },
        },
      );
    }
    bump(counters.disconnects, 'session-table-full');
    removePeer(oldest.id, 'session table full');
  };

  const requireSession = (conn: Conn): string => {
    if (!conn.peerId) {
      throw new RingworkError(
        'PROTOCOL_NOT_ALLOWED',
        'Say hello first: no other message is accepted before "hello".',
        {},
      );
    }
    return conn.peerId;
  };

  const handlers: ClientHandlers<Conn> = {
    hello(msg, conn) {
      if (conn.peerId) {
        throw new RingworkError(
          'PROTOCOL_NOT_ALLOWED',
          'This connection already said hello; one session per connection.',
          {
            details: { peerId: conn.peerId },
          },
        );
      }
      const roles = [...new Set(msg.roles)] as PeerRole[];
      let peerId: string;
      let token: string;
      let resumed = false;
      if (msg.resume) {
        const r = registry.resume(msg.resume.peerId, msg.resume.token);
        peerId = r.session.id;
        token = r.token;
        resumed = true;
        r.session.roles = new Set(roles);
        r.session.client = msg.client;
        const old = conns.get(peerId);
        if (old && old !== conn) {
          old.peerId = null;
          sendError(
            old,
            new RingworkError(
              'PROTOCOL_SESSION_REPLACED',
              'Another connection resumed this session with its token; this one is closed.',
              {},
            ),
          );
          bump(counters.disconnects, 'session-replaced');
          closeConn(old, CLOSE_CODES.sessionReplaced, 'session replaced');
        }
      } else {
        if (registry.size >= limits.maxSessions) makeRoomForSession();
        const r = registry.create(roles, msg.client);
        peerId = r.session.id;
        token = r.token;
      }
      conn.peerId = peerId;
      conns.set(peerId, conn);
      registry.setConnected(peerId, true);
      coordinator!.addPeer(peerId, roles);
      sendTo(conn, {
        type: 'welcome',
        v: SIGNALING_VERSION,
        peerId,
        token,
        heartbeatMs: limits.heartbeatMs,
        iceServers: config.iceServers,
        resumed,
      });
      if (resumed) coordinator!.resync(peerId);
      log.debug({ peer: peerId, roles, resumed, ip: conn.ip }, 'hello');
    },
    profile(msg, conn) {
      coordinator!.setCapability(requireSession(conn), msg.capability);
    },
    heartbeat(msg, conn) {
      requireSession(conn);
      sendTo(conn, {
        type: 'heartbeat-ack',
        v: SIGNALING_VERSION,
        sentAt: msg.sentAt,
        serverTime: clock.now(),
      });
    },
    signal(msg, conn) {
      relay!.relay(requireSession(conn), msg);
    },
    'ring-request'(msg, conn) {
      coordinator!.requestRing(requireSession(conn), msg.model);
    },
    'assignment-status'(msg, conn) {
      coordinator!.assignmentStatus(requireSession(conn), {
        epoch: msg.epoch,
        state: msg.state,
        ...(msg.message !== undefined ? { message: msg.message } : {}),
      });
    },
    'peer-unreachable'(msg, conn) {
      const reporter = requireSession(conn);
      if (coordinator!.reportUnreachable(reporter, msg.peer, msg.reason) === 'evict') {
        bump(counters.disconnects, 'evicted');
        removePeer(msg.peer, 'confirmed unreachable', {
          code: CLOSE_CODES.evicted,
          error: new RingworkError(
            'PEER_EVICTED',
            'Your ring neighbours cannot reach you and you were removed from the network; reconnect to rejoin.',
            {},
          ),
        });
      }
    },
    leave(_msg, conn) {
      const peerId = requireSession(conn);
      removePeer(peerId, 'left');
      closeConn(conn, CLOSE_CODES.leave, 'bye');
    },
  };

  const dispatch = handlers as unknown as Record<
    ClientMessage['type'],
    (m: ClientMessage, c: Conn) => void | Promise<void>
  >;

  const onFrame = (conn: Conn, data: RawData, isBinary: boolean): void => {
    if (conn.closing) return;
    counters.framesIn++;
    if (!conn.bucket.take()) {
      counters.framesRateLimited++;
      conn.dropped++;
      if (!conn.limitedNotified) {
        conn.limitedNotified = true;
        sendError(
          conn,
          new RingworkError(
            'PROTOCOL_RATE_LIMITED',
            `Too many frames: at most ${limits.ratePerSecond}/s (bursts of ${limits.rateBurst}). Frames are being dropped.`,
            {
              details: { perSecond: limits.ratePerSecond, burst: limits.rateBurst },
            },
          ),
        );
      }
      if (conn.dropped >= limits.maxDroppedFrames) {
        bump(counters.disconnects, 'rate-limit');
        closeConn(conn, CLOSE_CODES.policy, 'rate limit exceeded');
      }
      return;
    }
    // The client slowed down enough for the bucket to refill halfway: forgive earlier drops.
    if (conn.dropped > 0 && conn.bucket.level() >= conn.bucket.capacity / 2) {
      conn.dropped = 0;
      conn.limitedNotified = false;
    }
    let msg: ClientMessage;
    try {
      msg = parseClientFrame(isBinary ? data : rawToText(data));
    } catch (e) {
      replyError(conn, e);
      return;
    }
    if (conn.peerId) registry.touch(conn.peerId);
    try {
      const r = dispatch[msg.type](msg, conn);
      if (r instanceof Promise) r.catch((e: unknown) => replyError(conn, e));
    } catch (e) {
      replyError(conn, e);
    }
  };

  const onConnection = (ws: WebSocket, ip: string): void => {
    const now = clock.now();
    const conn: Conn = {
      seq: ++seq,
      ws,
      ip,
      openedAt: now,
      peerId: null,
      bucket: createTokenBucket({ capacity: limits.rateBurst, refillPerSecond: limits.ratePerSecond, clock }),
      errorBudget: createTokenBucket({ capacity: limits.maxProtocolErrors, refillPerSecond: 1, clock }),
      dropped: 0,
      limitedNotified: false,
      closing: false,
    };
    allConns.add(conn);
    ipCounts.set(ip, (ipCounts.get(ip) ?? 0) + 1);
    counters.connectionsOpen = allConns.size;
    counters.connectionsTotal++;
    ws.on('message', (data, isBinary) => {
      try {
        onFrame(conn, data, isBinary);
      } catch (e) {
        // onFrame already catches; this is the last line so no frame can ever throw into ws.
        log.error({ err: e }, 'frame handling failed');
      }
    });
    ws.on('error', (e) => {
      // ws reports protocol violations (oversize 1009, bad UTF-8 1007...) here, then closes.
      bump(counters.disconnects, `ws-${(e as { code?: string }).code ?? 'error'}`);
      log.debug({ err: e, peer: conn.peerId }, 'websocket error');
    });
    ws.on('close', () => {
      conn.closing = true;
      allConns.delete(conn);
      const n = (ipCounts.get(ip) ?? 1) - 1;
      if (n <= 0) ipCounts.delete(ip);
      else ipCounts.set(ip, n);
      counters.connectionsOpen = allConns.size;
      const peerId = conn.peerId;
      if (peerId && conns.get(peerId) === conn) {
        conns.delete(peerId);
        // The session (id, token) survives for resumeGraceMs so a reconnect keeps its identity, but
        // the peer leaves planning now: a closed tab must not stall its ring for the whole grace.
        registry.setConnected(peerId, false);
        coordinator?.setOnline(peerId, false);
        if (limits.resumeGraceMs === 0) removePeer(peerId, 'disconnected');
      }
    });
  };

  // ------------------------------------------------------------------ HTTP: upgrade and routes

  const originAllowed = (req: IncomingMessage): boolean => {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    if (config.allowedOrigins.includes(origin)) return true;
    try {
      const u = new URL(origin);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.host === req.headers.host;
    } catch {
      return false;
    }
  };

  const reject = (socket: Duplex, status: number, why: string): void => {
    bump(counters.rejectedUpgrades, why);
    const body = `${why}\n`;
    try {
      socket.end(
        `HTTP/1.1 ${status} ${REJECT_TEXT[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
    } catch {
      /* the socket is gone already */
    }
    unrefTimer(clock.setTimeout(() => socket.destroy(), 1000));
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== '/ws') return reject(socket, 404, 'path');
      if (stopping || !coordinator) return reject(socket, 503, 'stopping');
      if (!originAllowed(req)) return reject(socket, 403, 'origin');
      if (allConns.size >= limits.maxConnections) return reject(socket, 503, 'capacity');
      const ip = req.socket.remoteAddress ?? 'unknown';
      if ((ipCounts.get(ip) ?? 0) >= limits.maxConnectionsPerIp) return reject(socket, 429, 'per-ip-cap');
      wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, ip));
    } catch (e) {
      log.warn({ err: e }, 'upgrade failed');
      socket.destroy();
    }
  };

  const sendJson = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res
      .writeHead(status, {
        ...ISOLATION_HEADERS,
        'Content-Type': 'application/json; charset=utf-8',
        'Cache-Control': 'no-store',
        'Content-Length': Buffer.byteLength(text),
      })
      .end(text);
  };

  const snapshot = (): NetworkSnapshot =>
    buildNetworkSnapshot({
      now: clock.now(),
      startedAt,
      testMode: config.testMode,
      sessions: registry.all(),
      coordinator: coordinator?.snapshot() ?? { epoch: 0, plans: 0, models: [], rings: [], peers: [] },
      ice: iceFilter?.counts() ?? { candidates: 0, sdpLines: 0 },
      relay: relay?.stats() ?? { forwarded: 0, filtered: 0, refused: 0 },
      counters,
      memory: process.memoryUsage(),
    });

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      res.writeHead(400).end();
      return;
    }
    const method = req.method ?? 'GET';
    if (url.pathname === '/healthz') {
      sendJson(res, 200, { ok: true, peers: registry.size, connections: allConns.size });
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (url.pathname === '/api/network') {
      // Test/bench hook: a heap figure after a full GC (needs node --expose-gc) for memory per peer.
      if (config.testMode && url.searchParams.get('gc') === '1') (globalThis as { gc?: () => void }).gc?.();
      sendJson(res, 200, snapshot());
      return;
    }
    if (url.pathname === '/ws') {
      res.writeHead(426, { Upgrade: 'websocket', 'Content-Type': 'text/plain' }).end('WebSocket endpoint\n');
      return;
    }
    const mount = catalog.find((m) => m.mount && url.pathname.startsWith(m.mount.prefix))?.mount;
    const served = mount
      ? serveStatic(mount.dir, req, res, '/' + url.pathname.slice(mount.prefix.length))
      : serveStatic(config.root, req, res);
    served
      .then((ok) => {
        if (!ok && !res.headersSent) res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      })
      .catch((e: unknown) => {
        log.error({ err: e, url: req.url }, 'static file error');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
  };

  // ------------------------------------------------------------------ liveness sweep

  const sweep = (): void => {
    const now = clock.now();
    for (const conn of allConns) {
      if (!conn.peerId && !conn.closing && now - conn.openedAt > limits.helloTimeoutMs) {
        sendError(
          conn,
          new RingworkError('PROTOCOL_TIMEOUT', `No hello within ${limits.helloTimeoutMs} ms.`, {}),
        );
        bump(counters.disconnects, 'hello-timeout');
        closeConn(conn, CLOSE_CODES.helloTimeout, 'no hello');
      }
    }
    const dead: Array<{ id: string; timedOut: boolean }> = [];
    for (const s of registry.all()) {
      if (s.connected && now - s.lastSeen > limits.heartbeatTimeoutMs)
        dead.push({ id: s.id, timedOut: true });
      else if (!s.connected && s.disconnectedAt !== null && now - s.disconnectedAt > limits.resumeGraceMs)
        dead.push({ id: s.id, timedOut: false });
    }
    for (const d of dead) {
      if (d.timedOut) {
        bump(counters.disconnects, 'heartbeat-timeout');
        removePeer(d.id, 'heartbeat timeout', {
          code: CLOSE_CODES.heartbeatTimeout,
          error: new RingworkError(
            'PROTOCOL_TIMEOUT',
            `No frame for ${limits.heartbeatTimeoutMs} ms; heartbeat every ${limits.heartbeatMs} ms.`,
            {},
          ),
        });
      } else removePeer(d.id, 'did not resume in time');
    }
  };

  // ------------------------------------------------------------------ lifecycle

  const start = (): Promise<{ port: number; host: string; url: string }> => {
    startPromise ??= (async () => {
      catalog = deps.catalog ?? (await loadCatalog(config.models, { defaultModel: config.defaultModel }));
      coordinator = createCoordinator({
        catalog,
        send: (peerId, msg) => void deliver(peerId, msg),
        objective: config.objective,
        debounceMs: limits.replanDebounceMs,
        maxWaitMs: limits.replanMaxWaitMs,
        liveness: (id) => {
          const s = registry.get(id);
          return s ? { connected: s.connected, lastSeen: s.lastSeen } : undefined;
        },
        staleAfterMs: 2 * limits.heartbeatMs,
        reportWindowMs: 2 * limits.heartbeatTimeoutMs,
        allowAnyRelay: config.allowAnyRelay,
        clock,
        logger: log,
      });
      coordinator.start();
      relay = createRelay({
        canSignal: (a, b) => coordinator!.canSignal(a, b),
        isKnown: (id) => registry.get(id) !== undefined,
        deliver,
        iceFilter,
      });
      const server = createServer(onRequest);
      http = server;
      server.on('upgrade', onUpgrade);
      server.on('clientError', (_e, socket: Socket) => {
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
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
      const timeouts = [limits.heartbeatTimeoutMs, limits.helloTimeoutMs, limits.resumeGraceMs || Infinity];
      const every = Math.max(10, Math.min(1000, Math.min(...timeouts) / 4));
      sweepTimer = unrefTimer(clock.setInterval(sweep, every));
      const port = (server.address() as AddressInfo).port;
      const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
      log.info(
        { url, testMode: config.testMode, models: catalog.map((m) => m.descriptor.id) },
        'Ringwork signaling server listening',
      );
      return { port, host: config.host, url };
    })();
    return startPromise;
  };

  const stop = (): Promise<void> => {
    stopPromise ??= (async () => {
      stopping = true;
      if (startPromise) await startPromise.catch(() => undefined);
      if (sweepTimer !== null) clock.clearInterval(sweepTimer);
      sweepTimer = null;
      coordinator?.stop();
      for (const conn of allConns) closeConn(conn, CLOSE_CODES.shutdown, 'server shutting down');
      // Give well-behaved clients a moment to complete the close handshake, then cut the rest.
      const deadline = Date.now() + 500;
      while (allConns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      for (const conn of allConns) conn.ws.terminate();
      wss.close();
      const server = http;
      if (server) {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      }
      log.info('Ringwork signaling server stopped');
    })();
    return stopPromise;
  };

  return {
    start,
    stop,
    snapshot,
    config,
    get coordinator() {
      return coordinator;
    },
  };
}
