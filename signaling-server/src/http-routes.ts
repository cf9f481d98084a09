/**
 * The HTTP side of the server: routes (`/healthz`, `/api/network`, `/ws`, static files and catalog
 * mounts), the WebSocket upgrade checks, and per-client socket accounting. Requests come from
 * strangers: the Host header must name this server (DNS rebinding), the client address is the
 * socket's unless a configured proxy forwards it, and every per-client quota counts against the
 * client's address bucket (IPv6: its /64).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import { RingworkError } from '../../shared/errors.js';
import type { OpenAiApi } from './api/openai-api.js';
import { unrefTimer } from './clock.js';
import { addressBucket, normalizeAddress } from './client-address.js';
import type { HostAllowlist } from './host-allowlist.js';
import { buildNetworkSnapshot, type NetworkSnapshot } from './network-snapshot.js';
import { bump, type RunningContext } from './server-context.js';
import { ISOLATION_HEADERS, serveStatic } from './static-files.js';
import { sendJsonText } from './json-response.js';

const REJECT_TEXT: Record<number, string> = {
  403: 'Forbidden',
  404: 'Not Found',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/** Longest time one held-back upgrade is kept unanswered (it is then refused with 429). */
const MAX_HOLD_MS = 5_000;

/** The `/api/network` document of a running server (uncached). */
export function networkSnapshot(run: RunningContext): NetworkSnapshot {
  // Cluster mode: every instance's peers, from the leader's snapshot (a follower's copy is at most a
  // tick old once it is being read; the first read after a quiet spell starts the refresh).
  const view = run.cluster?.view();
  const snap = buildNetworkSnapshot({
    now: run.clock.now(),
    startedAt: run.startedAt,
    testMode: run.config.testMode,
    sessions: run.registry.all(),
    coordinator: view?.snapshot ?? run.coordinator.snapshot(),
    ...(view && run.cluster ? { cluster: { me: run.cluster.instanceId, holders: view.holders } } : {}),
    ice: run.iceFilter?.counts() ?? { candidates: 0, sdpLines: 0 },
    relay: run.relay.stats(),
    counters: run.counters,
    memory: process.memoryUsage(),
  });
  if (!run.cluster || !view) return snap;
  // Which instances there are, as the leader knows them, and how many peers each holds.
  const counts = new Map<string, number>();
  for (const p of snap.peers) if (p.instance) counts.set(p.instance, (counts.get(p.instance) ?? 0) + 1);
  const info = run.cluster.info();
  const instances = [...counts].map(([id, peers]) => ({ id, peers, coordinator: id === info.leader }));
  if (info.leader !== null && !counts.has(info.leader))
    instances.push({ id: info.leader, peers: 0, coordinator: true });
  if (!counts.has(info.instance) && info.instance !== info.leader)
    instances.push({ id: info.instance, peers: 0, coordinator: false });
  instances.sort((a, b) => a.id.localeCompare(b.id));
  return { ...snap, cluster: { ...info, instances } };
}

/** What the HTTP layer needs besides the running state. */
export interface HttpDeps {
  readonly wss: WebSocketServer;
  readonly hosts: HostAllowlist;
  /** Hands an accepted upgrade to the protocol. */
  readonly onConnection: (ws: WebSocket, ip: string, ipBucket: string) => void;
  /** The OpenAI-compatible API under `/v1` (api/openai-api.ts). */
  readonly api?: OpenAiApi;
  /** Further route groups (sign-in, ledger), asked in order before the static files. */
  readonly routes?: readonly Routes[];
}

/** A group of routes that answers some paths itself. */
export interface Routes {
  handles(pathname: string): boolean;
  handle(req: IncomingMessage, res: ServerResponse, url: URL, bucket: string): void;
}

/** The request and upgrade listeners for one running server. */
export interface HttpHandlers {
  onRequest(req: IncomingMessage, res: ServerResponse): void;
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Destroys the upgrades still held back (server stop). */
  dropHeld(): void;
}

/** The typed refusal for a Host header that does not name this server. */
function hostError(host: string | undefined): RingworkError {
  return new RingworkError(
    'HTTP_HOST_NOT_ALLOWED',
    'This server does not answer to that Host name; its operator can allow it with --allow-host.',
    { details: { host: (host ?? '').slice(0, 260) } },
  );
}

/** Creates the HTTP listeners. */
export function createHttpHandlers(run: RunningContext, deps: HttpDeps): HttpHandlers {
  const { config, limits, counters, log, clock } = run;
  let cached: { at: number; text: string } | null = null;

  const originAllowed = (req: IncomingMessage): boolean => {
    const origin = req.headers.origin;
    // No Origin: not a browser page (Origin checks exist to stop other sites' pages, which send it).
    if (origin === undefined) return true;
    if (config.allowedOrigins.includes(origin)) return true;
    try {
      const u = new URL(origin);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.host === req.headers.host;
    } catch {
      return false;
    }
  };

  const reject = (socket: Duplex, status: number, why: string, retryAfterS?: number): void => {
    bump(counters.rejectedUpgrades, why);
    const body = `${why}\n`;
    const retry = retryAfterS === undefined ? '' : `Retry-After: ${retryAfterS}\r\n`;
    try {
      socket.end(
        `HTTP/1.1 ${status} ${REJECT_TEXT[status] ?? 'Error'}\r\nConnection: close\r\n${retry}Content-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
    } catch {
      /* the socket is gone already */
    }
    unrefTimer(clock.setTimeout(() => socket.destroy(), 1000));
  };

  /** Upgrades held back per address bucket (and in all), each waiting for its 429. */
  const held = new Map<string, number>();
  const heldSockets = new Set<Duplex>();
  let heldTotal = 0;
  /**
   * An address bucket cut for flooding a moment ago may not connect yet (frame-gate.ts). Its upgrade
   * is refused before the WebSocket handshake, and *held* unanswered until the hold-back ends (at
   * most {@link MAX_HOLD_MS}) rather than refused at once: a flooder that reconnects on every close
   * then waits instead of making the server parse hundreds of upgrades a second. Held sockets are
   * bounded per bucket (`maxConnectionsPerIp`) and in all (half of `maxHttpSockets`); beyond that
   * they are destroyed unanswered.
   */
  const holdBack = (socket: Duplex, bucket: string, waitMs: number): void => {
    const n = held.get(bucket) ?? 0;
    if (n >= limits.maxConnectionsPerIp || heldTotal >= limits.maxHttpSockets / 2) {
      bump(counters.rejectedUpgrades, 'held-back-dropped');
      socket.destroy();
      return;
    }
    held.set(bucket, n + 1);
    heldSockets.add(socket);
    heldTotal++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      heldSockets.delete(socket);
      heldTotal--;
      const left = (held.get(bucket) ?? 1) - 1;
      if (left > 0) held.set(bucket, left);
      else held.delete(bucket);
    };
    const ms = Math.min(waitMs, MAX_HOLD_MS);
    const timer = unrefTimer(
      clock.setTimeout(() => {
        release();
        reject(socket, 429, 'held-back', Math.ceil(run.frameGate.heldBackMs(bucket) / 1000));
      }, ms),
    );
    socket.once('close', () => {
      clock.clearTimeout(timer);
      release();
    });
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== '/ws') return reject(socket, 404, 'path');
      if (run.stopping) return reject(socket, 503, 'stopping');
      if (!deps.hosts.allows(req.headers.host)) return reject(socket, 421, 'host');
      if (!originAllowed(req)) return reject(socket, 403, 'origin');
      if (run.allConns.size >= limits.maxConnections) return reject(socket, 503, 'capacity');
      const ip = run.addresses.of(req);
      const bucket = addressBucket(ip);
      const heldBackMs = run.frameGate.heldBackMs(bucket);
      if (heldBackMs > 0) return holdBack(socket, bucket, heldBackMs);
      if ((run.ipCounts.get(bucket) ?? 0) >= limits.maxConnectionsPerIp)
        return reject(socket, 429, 'per-ip-cap');
      if (!run.connectRate.take(bucket)) return reject(socket, 429, 'connect-rate');
      const cluster = run.cluster;
      if (!cluster) {
        deps.wss.handleUpgrade(req, socket, head, (ws) => deps.onConnection(ws, ip, bucket));
        return;
      }
      // Cluster mode: the same cap counted over every instance (Redis), the same refusal.
      cluster
        .admitConnection(bucket, limits.maxConnectionsPerIp)
        .then((admitted) => {
          if (!admitted) return reject(socket, 429, 'per-ip-cap');
          if (socket.destroyed || run.stopping) {
            cluster.connectionClosed(bucket);
            socket.destroy();
            return;
          }
          deps.wss.handleUpgrade(req, socket, head, (ws) => deps.onConnection(ws, ip, bucket));
        })
        .catch((e: unknown) => {
          log.warn({ err: e }, 'upgrade failed');
          socket.destroy();
        });
    } catch (e) {
      log.warn({ err: e }, 'upgrade failed');
      socket.destroy();
    }
  };

  const sendText = (res: ServerResponse, status: number, text: string): void =>
    sendJsonText(res, status, text, ISOLATION_HEADERS);
  const sendJson = (res: ServerResponse, status: number, body: unknown): void =>
    sendText(res, status, JSON.stringify(body));

  /** The network document, rebuilt at most every networkCacheMs: a GET flood then costs copies. */
  const networkText = (fresh: boolean): string => {
    const now = clock.now();
    if (fresh || !cached || limits.networkCacheMs === 0 || now - cached.at >= limits.networkCacheMs)
      cached = { at: now, text: JSON.stringify(networkSnapshot(run)) };
    return cached.text;
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (!deps.hosts.allows(req.headers.host)) {
      bump(counters.rejectedRequests, 'host');
      const err = hostError(req.headers.host);
      sendJson(res, 421, { error: err.toJSON() });
      return;
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      res.writeHead(400).end();
      return;
    }
    const method = req.method ?? 'GET';
    if (deps.api?.handles(url.pathname)) {
      deps.api.handle(req, res, url, addressBucket(run.addresses.of(req)));
      return;
    }
    const routes = deps.routes?.find((r) => r.handles(url.pathname));
    if (routes) {
      routes.handle(req, res, url, addressBucket(run.addresses.of(req)));
      return;
    }
    if (url.pathname === '/healthz') {
      // Test/bench hook, as on /api/network: a heap figure after a full GC. Here it costs O(1), where
      // a follower's /api/network makes the leader serialise every peer.
      if (config.testMode && url.searchParams.get('gc') === '1') (globalThis as { gc?: () => void }).gc?.();
      const mem = process.memoryUsage();
      sendJson(res, 200, {
        ok: true,
        peers: run.registry.size,
        connections: run.allConns.size,
        apiStreams: deps.api?.streams ?? 0,
        ...(deps.api ? { apiLimits: deps.api.limitsCounting } : {}),
        memory: { heapUsedBytes: mem.heapUsed, rssBytes: mem.rss },
        ...(run.cluster ? { cluster: run.cluster.info() } : {}),
      });
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (url.pathname === '/api/network') {
      // Test/bench hook: a heap figure after a full GC (needs node --expose-gc) for memory per peer.
      const gc = config.testMode && url.searchParams.get('gc') === '1';
      if (gc) (globalThis as { gc?: () => void }).gc?.();
      const cluster = run.cluster;
      if (!cluster) sendText(res, 200, networkText(gc));
      else
        void cluster.refreshView().then(() => {
          if (!res.writableEnded) sendText(res, 200, networkText(gc));
        });
      return;
    }
    if (url.pathname === '/ws') {
      res.writeHead(426, { Upgrade: 'websocket', 'Content-Type': 'text/plain' }).end('WebSocket endpoint\n');
      return;
    }
    // A catalog mount serves exactly its model's files; any other path falls through to the web
    // root, which serves only what is inside it.
    const mount = run.catalog.find((m) => m.mount && url.pathname.startsWith(m.mount.prefix))?.mount;
    const serve = async (): Promise<boolean> =>
      (mount !== undefined &&
        (await serveStatic(mount.dir, req, res, '/' + url.pathname.slice(mount.prefix.length), {
          allow: mount.files,
        }))) ||
      serveStatic(config.root, req, res);
    serve()
      .then((ok) => {
        if (!ok && !res.headersSent) res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      })
      .catch((e: unknown) => {
        log.error({ err: e, url: req.url }, 'static file error');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
  };

  return {
    onRequest,
    onUpgrade,
    dropHeld() {
      for (const s of [...heldSockets]) s.destroy();
    },
  };
}

/**
 * Bounds the sockets one client address bucket may hold open (slow-header floors, idle keep-alives).
 * Trusted proxies are exempt: their clients are limited by forwarded address at the request.
 */
export function limitSocketsPerClient(server: Server, run: RunningContext): void {
  const max = run.limits.maxSocketsPerIp ?? run.limits.maxConnectionsPerIp + 64;
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const addr = normalizeAddress(socket.remoteAddress ?? 'unknown');
    if (run.addresses.isTrusted(addr)) return;
    const key = addressBucket(addr);
    const n = open.get(key) ?? 0;
    if (n >= max) {
      bump(run.counters.rejectedRequests, 'per-ip-sockets');
      socket.destroy();
      return;
    }
    open.set(key, n + 1);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    });
  });
}
