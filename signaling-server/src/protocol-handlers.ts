/**
 * The WebSocket protocol: one exhaustive handler per client message type, the frame pipeline
 * (rate limit → zod parse → dispatch, every failure answered with a typed `error`), connection
 * bookkeeping and the liveness sweep. Runs on a {@link RunningContext}: a coordinator and a relay
 * always exist here.
 */
import type { RawData, WebSocket } from 'ws';
import { isRingworkError, RingworkError } from '../../shared/errors.js';
import {
  parseClientFrame,
  SIGNALING_VERSION,
  type ClientHandlers,
  type ClientMessage,
  type ClientMessageOf,
} from '../../shared/protocol/signaling.js';
import type { ApiLinkHub } from './api/api-link-hub.js';
import type { ConnectionIo } from './connection-io.js';
import type { PeerRole } from './peer-registry.js';
import { answerTokens } from './answer-usage.js';
import { createTokenBucket } from './rate-limit.js';
import { bump, CLOSE_CODES, type Conn, type RunningContext } from './server-context.js';

/**
 * Error replies sent one by one per burst of errors on a connection; later ones in the burst are
 * summarised once and counted (`counters.errorsSuppressed`).
 */
export const ERROR_REPLIES_PER_BURST = 10;

/**
 * The largest frame a connection may send before it has a session. Until then the only frame that
 * can succeed is a `hello` (roles, a resume token, a client name, an identity token: well under
 * 2 KiB), so a bigger one is never honest: the connection is cut at once, unparsed, and its address
 * held back like any flooder's. A flood of large junk frames from fresh sockets (the "frames" class
 * of `bench:hostile`) then costs the server one frame per socket, not its byte budget's worth.
 */
export const MAX_PRESESSION_FRAME_BYTES = 4 * 1024;

/** The protocol side of a running server. */
export interface Protocol {
  /** Adopts an upgraded socket from client `ip` (limits count against `ipBucket`). */
  onConnection(ws: WebSocket, ip: string, ipBucket: string): void;
  /** Closes connections without hello in time and removes silent or unresumed sessions. */
  sweep(): void;
  /** The server's own check of an accused peer (a ping; evicted when it goes unanswered). */
  probe(peerId: string): void;
}

function rawToText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

/** Creates the protocol handlers over a started server's state. */
export function createProtocol(run: RunningContext, io: ConnectionIo, apiLinks?: ApiLinkHub): Protocol {
  const { limits, counters, registry, coordinator, relay, clock, log, conns, allConns, ipCounts } = run;
  const { sendTo, closeConn, sendError } = io;
  let seq = 0;
  // Budgets per connection and per address bucket, checked on the raw frame length before any
  // parse; an over-budget sender is paused (its socket not read), so a flood costs next to nothing.
  const gate = run.frameGate;
  const frameBytes = (data: RawData): number =>
    Buffer.isBuffer(data)
      ? data.length
      : Array.isArray(data)
        ? data.reduce((n, b) => n + b.length, 0)
        : data.byteLength;

  const replyError = (conn: Conn, e: unknown): void => {
    let err: RingworkError;
    if (isRingworkError(e)) err = e;
    else {
      log.error({ err: e, peer: conn.peerId }, 'unexpected error in a handler');
      err = new RingworkError('SERVER_INTERNAL', 'Internal error; the request was dropped.', {});
    }
    log.debug({ peer: conn.peerId, code: err.code, details: err.details }, 'message refused');
    // Errors provoked in the current burst: the first few are answered one by one (a client needs
    // to know what it did wrong), the rest are counted, after one summary, until the client calms
    // down. A flood of refused frames then costs a parse each, not a parse and a reply each.
    // (Whole errors: the budget refills continuously, a fraction of one must not unmute the replies.)
    const inBurst = Math.ceil(limits.maxProtocolErrors - conn.errorBudget.level() - 1e-6);
    if (inBurst < ERROR_REPLIES_PER_BURST) {
      conn.errorsMuted = false;
      sendError(conn, err);
    } else if (!conn.errorsMuted) {
      conn.errorsMuted = true;
      sendError(
        conn,
        new RingworkError(
          'PROTOCOL_RATE_LIMITED',
          `Too many refused frames: after ${ERROR_REPLIES_PER_BURST} error replies the rest are counted, not answered; at ${limits.maxProtocolErrors} in a burst the connection is closed.`,
          {
            details: {
              replies: ERROR_REPLIES_PER_BURST,
              closeAfter: limits.maxProtocolErrors,
              last: err.code,
            },
          },
        ),
      );
    } else counters.errorsSuppressed = (counters.errorsSuppressed ?? 0) + 1;
    if (!conn.errorBudget.take()) {
      bump(counters.disconnects, 'error-budget');
      io.cutConn(conn, 'too many protocol errors');
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
    apiLinks?.peerGone(peerId);
    registry.remove(peerId);
    run.identity.bindings.release(peerId);
    coordinator.removePeer(peerId, reason);
    if (conn) {
      conn.peerId = null;
      if (close) {
        sendError(conn, close.error);
        closeConn(conn, close.code, reason);
      }
    }
  };

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
        { details: { maxSessions: limits.maxSessions } },
      );
    }
    bump(counters.disconnects, 'session-table-full');
    removePeer(oldest.id, 'session table full');
  };

  const evict = (peerId: string): void => {
    bump(counters.disconnects, 'evicted');
    removePeer(peerId, 'confirmed unreachable', {
      code: CLOSE_CODES.evicted,
      error: new RingworkError(
        'PEER_EVICTED',
        'Your ring neighbours cannot reach you and the server could not either; you were removed from the network. Reconnect to rejoin.',
        {},
      ),
    });
  };

  /**
   * The accused looks alive: the server asks it itself. Only an unanswered ping, with the heartbeat
   * gone stale meanwhile, evicts; an answer keeps it, whatever was reported.
   */
  const probeAccused = (peerId: string): void => {
    const target = conns.get(peerId);
    if (!target) {
      // Cluster mode: held by another instance, which probes it (and evicts it if it fails).
      if (!registry.get(peerId)) run.cluster?.probeRemote(peerId);
      return;
    }
    counters.probes = (counters.probes ?? 0) + 1;
    const since = clock.now();
    void io
      .probe(target, limits.probeTimeoutMs)
      .then((ok) => {
        if (ok || conns.get(peerId) !== target) return;
        // A frame during the probe is an answer too (a ping can be lost behind a busy socket).
        const s = registry.get(peerId);
        if (s && s.connected && s.lastSeen > since) return;
        evict(peerId);
      })
      .finally(() => {
        counters.probesSettled = (counters.probesSettled ?? 0) + 1;
      });
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

  /** The model's current ring (or validator ring) `ringId`, when the reporter was introduced to it. */
  const ringFor = (reporter: string, model: string, ringId: string) => {
    const ring =
      coordinator.getRing(model, ringId) ??
      coordinator.getValidatorRings(model).find((r) => r.ringId === ringId) ??
      null;
    if (
      !ring ||
      ring.ringId !== ringId ||
      !ring.stages.some((s) => coordinator.canSignal(reporter, s.peer))
    ) {
      throw new RingworkError(
        'PROTOCOL_NOT_ALLOWED',
        'Validation reports only name the current ring you were sent.',
        {
          details: { model, ringId },
        },
      );
    }
    return ring;
  };

  const helloNow = (msg: ClientMessageOf<'hello'>, conn: Conn): void => {
    if (conn.peerId) {
      throw new RingworkError(
        'PROTOCOL_NOT_ALLOWED',
        'This connection already said hello; one session per connection.',
        { details: { peerId: conn.peerId } },
      );
    }
    const roles = [...new Set(msg.roles)] as PeerRole[];
    // The identity is checked before any session is made or taken over: a bad token changes nothing.
    if (msg.identity !== undefined) run.identity.bindings.check(msg.identity, msg.resume?.peerId ?? null);
    else if (run.config.requireIdentity && !(msg.resume && run.identity.bindings.of(msg.resume.peerId))) {
      throw new RingworkError(
        'AUTH_IDENTITY_REQUIRED',
        'This server requires a signed-in identity: sign in (POST /api/auth/verify) and send the token in hello.',
        {},
      );
    }
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
      // Sessions cost memory and planning time: a client address (IPv6: its /64) gets a quota of
      // new ones, so reconnect loops cannot churn the table or evict others' resumable sessions.
      if (!run.sessionRate.take(conn.ipBucket)) {
        throw new RingworkError(
          'PROTOCOL_RATE_LIMITED',
          `Too many new sessions from your address: at most ${limits.sessionsPerSecondPerIp}/s. Resume your session instead, or retry later.`,
          { details: { perSecond: limits.sessionsPerSecondPerIp } },
        );
      }
      if (registry.size >= limits.maxSessions) makeRoomForSession();
      const r = registry.create(roles, msg.client);
      peerId = r.session.id;
      token = r.token;
    }
    const identity =
      msg.identity !== undefined
        ? run.identity.bindings.bind(msg.identity, peerId)
        : run.identity.bindings.of(peerId);
    if (msg.identity !== undefined && identity) run.onIdentity?.(peerId, identity.address);
    conn.peerId = peerId;
    conns.set(peerId, conn);
    registry.setConnected(peerId, true);
    coordinator.addPeer(peerId, roles);
    sendTo(conn, {
      type: 'welcome',
      v: SIGNALING_VERSION,
      peerId,
      token,
      heartbeatMs: limits.heartbeatMs,
      iceServers: run.config.iceServers,
      resumed,
      ...(identity ? { address: identity.address } : {}),
    });
    run.cluster?.sessionOpened(peerId, token, roles, msg.client);
    if (resumed) coordinator.resync(peerId);
    run.onSession?.(peerId, roles);
    log.debug({ peer: peerId, roles, resumed, ip: conn.ip }, 'hello');
  };

  const handlers: ClientHandlers<Conn> = {
    hello(msg, conn) {
      const cluster = run.cluster;
      // Cluster mode: a session another instance created is adopted from the shared store first.
      if (cluster && msg.resume && !conn.peerId && !registry.get(msg.resume.peerId)) {
        const roles = [...new Set(msg.roles)] as PeerRole[];
        return cluster.adoptSession(msg.resume.peerId, msg.resume.token, roles, msg.client).then(() => {
          if (!conn.closing) helloNow(msg, conn);
        });
      }
      helloNow(msg, conn);
    },
    profile(msg, conn) {
      coordinator.setCapability(requireSession(conn), msg.capability);
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
      relay.relay(requireSession(conn), msg);
    },
    'ring-request'(msg, conn) {
      coordinator.requestRing(requireSession(conn), msg.model, msg.security);
    },
    'assignment-status'(msg, conn) {
      coordinator.assignmentStatus(requireSession(conn), {
        epoch: msg.epoch,
        state: msg.state,
        ...(msg.message !== undefined ? { message: msg.message } : {}),
      });
    },
    'peer-unreachable'(msg, conn) {
      const reporter = requireSession(conn);
      const verdict = coordinator.reportUnreachable(reporter, msg.peer, msg.reason);
      if (verdict === 'evict') {
        // Cluster mode: a peer held elsewhere is checked by its instance, not removed from here.
        if (!conns.get(msg.peer) && !registry.get(msg.peer) && run.cluster) run.cluster.probeRemote(msg.peer);
        else evict(msg.peer);
        return;
      }
      if (verdict !== 'probe') return;
      probeAccused(msg.peer);
    },
    'ring-stalled'(msg, conn) {
      const reporter = requireSession(conn);
      const { type: _t, v: _v, ...stall } = msg;
      // The requester's session fails over on its own; the server only checks the ring's peers
      // itself and evicts the ones that fail its probe (never on the requester's word).
      for (const peer of coordinator.reportStall(reporter, stall)) probeAccused(peer);
    },
    'ring-lap'(msg, conn) {
      const peerId = requireSession(conn);
      // Checked before anything counts: a count the ring could not have produced changes nothing.
      const tokens = answerTokens(run.catalog, msg);
      const { ringId, msPerToken, tokens: steps } = msg;
      coordinator.reportLap(peerId, {
        ringId,
        ...(msPerToken !== undefined && steps !== undefined ? { msPerToken, tokens: steps } : {}),
      });
      // One report per answer on a ring: the requester's own usage (its word counts for itself only,
      // never for the ring's peers, whose credit comes from validation).
      run.onAnswer?.(peerId, tokens);
    },
    'link-report'(msg, conn) {
      coordinator.reportLinks(requireSession(conn), msg.links);
    },
    withdraw(msg, conn) {
      coordinator.withdraw(requireSession(conn), msg.mode, msg.drainMs);
    },
    withdrawn(_msg, conn) {
      coordinator.withdrawn(requireSession(conn));
    },
    resume(_msg, conn) {
      coordinator.resume(requireSession(conn));
    },
    async 'validation-key'(msg, conn) {
      await coordinator.validation.setKey(requireSession(conn), msg.key);
    },
    async 'validation-evidence'(msg, conn) {
      const reporter = requireSession(conn);
      const ring = ringFor(reporter, msg.evidence.model, msg.ringId);
      const m = msg.majority;
      const verdict = await coordinator.validation.submitEvidence(
        reporter,
        msg.evidence,
        ring.stages.map((s) => s.peer),
        m && {
          // Only rings this requester was given: a majority of rings it made up counts for nothing.
          rings: m.ringIds.map((id) => {
            const r = ringFor(reporter, msg.evidence.model, id);
            return { ringId: r.ringId, peers: r.stages.map((s) => s.peer) };
          }),
          ring: m.ringIds.indexOf(msg.ringId),
          step: m.step,
        },
      );
      log.info(
        { reporter, peer: msg.evidence.peerId, reason: msg.evidence.reason, verdict },
        'validation evidence',
      );
    },
    async 'validated-work'(msg, conn) {
      const reporter = requireSession(conn);
      // Credited only on a proof the server checks itself: the requester's word credits nobody.
      if (!msg.proof || !msg.proofRings || msg.proofRings[0] !== msg.ringId) {
        throw new RingworkError(
          'VALIDATION_UNPROVEN_WORK',
          "Validated work is credited only with its proof: every ring's signed commitments per step (proof, proofRings starting with ringId).",
          {},
        );
      }
      const rings = msg.proofRings.map((id) => ringFor(reporter, msg.model, id));
      const credit = await coordinator.validation.creditWork(
        rings.map((r) => ({
          ringId: r.ringId,
          stages: r.stages.map((s) => ({ peer: s.peer, units: s.range[1] - s.range[0], range: s.range })),
        })),
        msg.proof,
        // Who validated goes with the work: the ledger never credits a requester's own identities.
        { requester: reporter, model: msg.model },
      );
      log.debug({ reporter, model: msg.model, ...credit }, 'validated work credited');
    },
    'api-link'(msg, conn) {
      const peerId = requireSession(conn);
      if (!apiLinks) throw new RingworkError('PROTOCOL_NOT_ALLOWED', 'This server opens no API links.', {});
      apiLinks.receive(peerId, msg);
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
    const bytes = frameBytes(data);
    if (conn.peerId === null && bytes > MAX_PRESESSION_FRAME_BYTES) {
      counters.framesRateLimited++;
      bump(counters.disconnects, 'presession-frame');
      sendError(
        conn,
        new RingworkError(
          'PROTOCOL_FRAME_TOO_LARGE',
          `Say hello first: a frame before the session exists may be at most ${MAX_PRESESSION_FRAME_BYTES} bytes; this connection is closed.`,
          { details: { size: bytes, limit: MAX_PRESESSION_FRAME_BYTES } },
        ),
      );
      io.cutConn(conn, 'frame too large before hello');
      return;
    }
    // The API's own links to this stage have their own budget (api-link-hub.ts), not the gate's.
    const apiFrame = conn.peerId !== null && apiLinks?.admitFrame(conn.peerId, data) === true;
    const verdict = apiFrame ? 'ok' : gate.admit(conn, bytes);
    // Frames refused by a budget go down one path (one error, then drops; too many drops close the
    // connection), and are never parsed.
    if (verdict !== 'ok') {
      if (verdict === 'conn-bytes' || verdict === 'ip-bytes')
        counters.framesOverByteBudget = (counters.framesOverByteBudget ?? 0) + 1;
      counters.framesRateLimited++;
      conn.dropped++;
      if (verdict !== 'paused') conn.throttles++;
      if (!conn.limitedNotified) {
        conn.limitedNotified = true;
        sendError(
          conn,
          new RingworkError(
            'PROTOCOL_RATE_LIMITED',
            `Too many frames: at most ${limits.ratePerSecond}/s (bursts of ${limits.rateBurst}) and ${limits.bytesPerSecond} bytes/s (bursts of ${limits.bytesBurst}) per connection, ${limits.framesPerSecondPerIp}/s and ${limits.bytesPerSecondPerIp} bytes/s per address. Frames are being dropped and reading is paused.`,
            {
              details: {
                perSecond: limits.ratePerSecond,
                burst: limits.rateBurst,
                bytesPerSecond: limits.bytesPerSecond,
                bytesBurst: limits.bytesBurst,
                budget: verdict,
              },
            },
          ),
        );
      }
      if (conn.dropped >= limits.maxDroppedFrames || conn.throttles >= limits.maxThrottles) {
        bump(counters.disconnects, 'rate-limit');
        io.cutConn(conn, 'rate limit exceeded');
      }
      return;
    }
    // The client slowed down enough for its budgets to refill halfway: forgive earlier drops.
    if ((conn.dropped > 0 || conn.throttles > 0) && gate.level(conn) >= 0.5) {
      conn.dropped = 0;
      conn.throttles = 0;
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

  const onConnection = (ws: WebSocket, ip: string, ipBucket: string): void => {
    const now = clock.now();
    const conn: Conn = {
      seq: ++seq,
      ws,
      ip,
      ipBucket,
      openedAt: now,
      peerId: null,
      errorBudget: createTokenBucket({ capacity: limits.maxProtocolErrors, refillPerSecond: 1, clock }),
      dropped: 0,
      throttles: 0,
      limitedNotified: false,
      errorsMuted: false,
      closing: false,
    };
    gate.attach(conn);
    allConns.add(conn);
    ipCounts.set(ipBucket, (ipCounts.get(ipBucket) ?? 0) + 1);
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
      gate.detach(conn);
      allConns.delete(conn);
      const n = (ipCounts.get(ipBucket) ?? 1) - 1;
      if (n <= 0) ipCounts.delete(ipBucket);
      else ipCounts.set(ipBucket, n);
      run.cluster?.connectionClosed(ipBucket);
      counters.connectionsOpen = allConns.size;
      const peerId = conn.peerId;
      if (peerId && conns.get(peerId) === conn) {
        conns.delete(peerId);
        apiLinks?.peerGone(peerId);
        // The session (id, token) survives for resumeGraceMs so a reconnect keeps its identity, but
        // the peer leaves planning now: a closed tab must not stall its ring for the whole grace.
        registry.setConnected(peerId, false);
        coordinator.setOnline(peerId, false);
        if (limits.resumeGraceMs === 0) removePeer(peerId, 'disconnected');
      }
    });
  };

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
    // Per-address rate buckets that refilled are no different from new ones: keep memory bounded.
    run.connectRate.prune();
    run.sessionRate.prune();
    gate.prune();
  };

  return { onConnection, sweep, probe: probeAccused };
}
