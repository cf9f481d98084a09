/**
 * The coordinator's report handlers: `peer-unreachable`, `ring-lap`, `ring-stalled` and `link-report`.
 * Each is something one party says about another, so each is checked before it counts (who may say
 * it, how often, and whether the server can confirm it) — never acted on by one party's word alone.
 */
import { modelOfRingId } from './answer-usage.js';
import { refusal } from './refusal.js';
import type { Clock } from './clock.js';
import type { Coordinator, CoordinatorOptions } from './coordinator-types.js';
import type { ModelState, PeerState } from './coordinator-state.js';
import { servingRings } from './lightweight-replicas.js';
import type { LinkMatrix } from './link-matrix.js';
import { ringIdsOfKey } from './assignment-diff.js';
import { median } from './peer-trust.js';

/** The coordinator state and helpers the report handlers read and call. */
export interface ReportContext {
  opts: CoordinatorOptions;
  clock: Clock;
  log: { info(o: object, m: string): void; debug(o: object, m: string): void };
  peers: Map<string, PeerState>;
  byModel: Map<string, ModelState>;
  matrix: LinkMatrix;
  reportBurst: number;
  reportRefillMs: number;
  staleAfterMs: number;
  peerOrThrow(id: string): PeerState;
  introducedByRing(requester: PeerState, stage: string): boolean;
  canSignal(a: string, b: string): boolean;
  refreshEffective(): boolean;
  schedule(why: string): void;
}

/** The report entry points of a {@link Coordinator}. */
export type ReportHandlers = Pick<
  Coordinator,
  'reportUnreachable' | 'reportLap' | 'reportStall' | 'reportLinks'
>;

/** Builds the report handlers over the coordinator's state. */
export function createReportHandlers(ctx: ReportContext): ReportHandlers {
  const { opts, clock, log, peers, byModel, matrix, reportBurst, reportRefillMs, staleAfterMs } = ctx;
  const linkReplanMinIntervalMs = opts.linkReplanMinIntervalMs ?? 120_000;
  let lastLinkReplanAt: number | null = null;
  let linkChangeOwed = false;
  const { peerOrThrow, introducedByRing, canSignal, refreshEffective, schedule } = ctx;
  return {
    reportUnreachable(reporter, target, reason) {
      const r = peerOrThrow(reporter);
      const t = peers.get(target);
      if (!t) {
        throw refusal('PROTOCOL_UNKNOWN_PEER', `Unknown peer ${target}.`, {
          details: { peer: target },
        });
      }
      // Only parties with a direct connection to the target know anything: its ring neighbours and a
      // requester it serves (first stage or head of a ring it was sent).
      const ta = t.assignment;
      const ra = r.assignment;
      const neighbour =
        (ta?.kind === 'assigned' && (ta.prev === reporter || ta.next === reporter)) ||
        (ra?.kind === 'assigned' && (ra.prev === target || ra.next === target));
      if (reporter === target || !(neighbour || introducedByRing(r, target) || opts.allowAnyRelay)) {
        throw refusal(
          'PROTOCOL_NOT_ALLOWED',
          `You have no connection to ${target}; only its ring neighbours and the requesters it serves may report it.`,
          { details: { peer: target } },
        );
      }
      if (!r.reportBucket.take()) {
        throw refusal(
          'PROTOCOL_RATE_LIMITED',
          `Too many unreachable reports: ${reportBurst} at once, then one per ${reportRefillMs} ms.`,
          { details: { burst: reportBurst, refillMs: reportRefillMs } },
        );
      }
      const now = clock.now();
      const live = opts.liveness?.(target);
      const gone = !live || !live.connected;
      const stale = gone || now - live.lastSeen > staleAfterMs;
      log.info({ reporter, target, reason, stale }, 'peer-unreachable');
      // Never act on one party's word against another's: a peer without a socket is gone, but one
      // with a socket is checked by the server itself (a probe) before anything happens, and a
      // fresh heartbeat or an answered probe outweighs any number of reports.
      return gone ? 'evict' : 'probe';
    },
    reportLap(reporter, lap) {
      const r = peerOrThrow(reporter);
      const modelId = modelOfRingId(lap.ringId);
      const ms = byModel.get(modelId);
      const ring = ms && servingRings(ms).find((x) => x.ringId === lap.ringId);
      if (!ms || !ring || ringIdsOfKey(r.subscriptions.get(modelId))[0] !== lap.ringId) {
        throw refusal('PROTOCOL_NOT_ALLOWED', `You were not sent ring ${lap.ringId}; no lap to report.`, {
          details: { ringId: lap.ringId },
        });
      }
      if (!r.lapBucket.take()) {
        throw refusal('PROTOCOL_RATE_LIMITED', 'Too many lap reports: one per 5 s.', {});
      }
      // The plan predicts the planned ring only: a replica's laps are not compared with it.
      const predictedMs = ring === ms.ring ? (ms.plan?.predicted.latencyS ?? 0) * 1000 : 0;
      // No timing (a drafted or failed-over answer), or a few tokens, dominated by the first step's
      // warm-up: nothing about speed.
      if (lap.msPerToken === undefined || lap.tokens === undefined || lap.tokens < 8) return;
      // Shown as what one request gets (display only: planning takes laps as evidence below).
      ms.laps = [
        ...ms.laps.filter((l) => l.ringId === lap.ringId),
        { ringId: lap.ringId, msPerToken: lap.msPerToken },
      ].slice(-5);
      if (predictedMs <= 0) return;
      const speedup = predictedMs / lap.msPerToken;
      let changed = false;
      for (const st of ring.stages) {
        const p = peers.get(st.peer);
        if (!p?.capability || st.peer === reporter) continue;
        p.laps.set(reporter, p.capability.tflops * speedup);
        // One requester's word is not evidence: it counts from two distinct requesters on.
        if (p.laps.size >= 2) {
          p.evidence.observedTflops = median([...p.laps.values()]);
          changed = true;
        }
      }
      if (changed && refreshEffective()) schedule(`laps of ${lap.ringId}`);
    },
    reportStall(reporter, stall) {
      const r = peerOrThrow(reporter);
      const modelId = stall.ringId.slice(0, stall.ringId.lastIndexOf(':'));
      const ms = byModel.get(modelId);
      // Already re-planned (the loss was seen here first, e.g. the peer's socket closed): nothing to check.
      const ring = ms && servingRings(ms).find((x) => x.ringId === stall.ringId);
      if (!ring) return [];
      if (ringIdsOfKey(r.subscriptions.get(modelId))[0] !== stall.ringId) {
        throw refusal('PROTOCOL_NOT_ALLOWED', `You were not sent ring ${stall.ringId}.`, {
          details: { ringId: stall.ringId },
        });
      }
      if (!r.reportBucket.take()) {
        throw refusal(
          'PROTOCOL_RATE_LIMITED',
          `Too many stall reports: ${reportBurst} at once, then one per ${reportRefillMs} ms.`,
          { details: { burst: reportBurst, refillMs: reportRefillMs } },
        );
      }
      log.info({ reporter, ...stall }, 'ring-stalled');
      const stages = ring.stages.map((s) => s.peer).filter((p) => p !== reporter);
      return stall.peer && stages.includes(stall.peer) ? [stall.peer] : stages;
    },
    reportLinks(reporter, entries) {
      const r = peerOrThrow(reporter);
      if (!r.linkBucket.take()) {
        throw refusal('PROTOCOL_RATE_LIMITED', 'Too many link reports: one per 5 s.', {});
      }
      // Only a link the reporter is part of, to a peer it was introduced to, counts.
      const { accepted, changed } = matrix.report(reporter, entries, (peer) => canSignal(reporter, peer));
      log.debug({ reporter, accepted, of: entries.length, changed }, 'link-report');
      // Link-driven re-plans at most once per interval: probes jitter (a loaded machine passes the
      // matrix's material-change bar every few probes), and each ring change reloads shards, so
      // re-planning on every report kept a ring from ever becoming ready. A change within the
      // interval is owed: the matrix keeps it, and the next report after the interval re-plans.
      if (changed) linkChangeOwed = true;
      const now = clock.now();
      if (
        linkChangeOwed &&
        (lastLinkReplanAt === null || now - lastLinkReplanAt >= linkReplanMinIntervalMs)
      ) {
        linkChangeOwed = false;
        lastLinkReplanAt = now;
        schedule(`links measured by ${reporter}`);
      }
    },
  };
}
