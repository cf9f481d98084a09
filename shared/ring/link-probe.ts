/**
 * Measuring the links a peer holds: round-trip time and throughput to a neighbour over the same
 * DataChannel the ring uses (small JSON control frames beside the tensor frames; ring stages ignore
 * control types they do not know). The coordinator plans with what peers report (see
 * signaling-server/src/link-matrix.ts), so the probes are cheap and bounded on both sides:
 *
 * - a probe is a few pings plus one burst of filler of at most {@link MAX_PROBE_FILL_BYTES};
 * - the answering side acknowledges at most {@link RESPONDER_BURST} probes, then one per
 *   {@link RESPONDER_REFILL_MS}, and counts filler only up to the cap (a stranger cannot make it
 *   work or hold memory for free);
 * - {@link createLinkProber} refreshes each link slowly (default every 30 s) and one link at a time.
 */
import { z } from 'zod';
import { RingworkError } from '../errors.js';
import type { PeerLink } from '../transport/types.js';

export const PROBE_VERSION = 1;
/** Largest filler burst a probe sends (and a responder counts), bytes. */
export const MAX_PROBE_FILL_BYTES = 256 * 1024;
/** Filler per control frame (below the peer link's 16 K-character control limit). */
const FILL_CHUNK_CHARS = 12 * 1024;
/** Probes a responder answers at once, then one per {@link RESPONDER_REFILL_MS}. */
export const RESPONDER_BURST = 16;
export const RESPONDER_REFILL_MS = 1000;

const v = z.literal(PROBE_VERSION);
const probeId = z
  .number()
  .int()
  .nonnegative()
  .max(2 ** 31);
/** The probe control messages (validated on receipt like every ring control message). */
export const probeControlSchema = z.discriminatedUnion('type', [
  /** A ping; `fill` announces how many filler bytes preceded it in this probe (0 for plain pings). */
  z.object({ type: z.literal('probe-ping'), v, id: probeId, fill: z.number().int().nonnegative() }).strict(),
  z.object({ type: z.literal('probe-fill'), v, id: probeId, pad: z.string().max(FILL_CHUNK_CHARS) }).strict(),
  /** The answer: `got` filler bytes of this probe arrived before the ping. */
  z.object({ type: z.literal('probe-ack'), v, id: probeId, got: z.number().int().nonnegative() }).strict(),
]);
export type ProbeControl = z.infer<typeof probeControlSchema>;

/** What one probe of a link measured. */
export interface LinkMeasurement {
  /** Median round trip of the plain pings, ms. */
  rttMs: number;
  /** Filler throughput (bytes over the burst's time less one round trip), Mbit/s. */
  mbps: number;
}

/** Clock of the prober and responder (injectable for fake-timer tests). */
export interface ProbeClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): () => void;
}

const defaultClock: ProbeClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/**
 * Answers probes arriving on `link` (every link a contributor holds gets one). Returns a detach
 * function. Bounded: a token bucket of {@link RESPONDER_BURST} acks, filler counted up to
 * {@link MAX_PROBE_FILL_BYTES} per probe id, one probe id tracked at a time.
 */
export function answerProbes(link: PeerLink, clock: ProbeClock = defaultClock): () => void {
  let tokens = RESPONDER_BURST;
  let refilledAt = clock.now();
  let fillId = -1;
  let fillBytes = 0;
  return link.onControl((raw) => {
    if (typeof raw.type !== 'string' || !raw.type.startsWith('probe-')) return;
    const r = probeControlSchema.safeParse(raw);
    if (!r.success) return;
    const m = r.data;
    if (m.type === 'probe-fill') {
      if (m.id !== fillId) {
        fillId = m.id;
        fillBytes = 0;
      }
      fillBytes = Math.min(MAX_PROBE_FILL_BYTES, fillBytes + m.pad.length);
      return;
    }
    if (m.type !== 'probe-ping') return;
    const now = clock.now();
    tokens = Math.min(RESPONDER_BURST, tokens + (now - refilledAt) / RESPONDER_REFILL_MS);
    refilledAt = now;
    if (tokens < 1) return; // over budget: the prober times out and tries again later
    tokens -= 1;
    const got = m.id === fillId ? fillBytes : 0;
    try {
      link.sendControl({ type: 'probe-ack', v: PROBE_VERSION, id: m.id, got });
    } catch {
      /* link closed meanwhile */
    }
  });
}

/** Options of {@link probeLink}. */
export interface ProbeOptions {
  /** Plain pings for the RTT (median taken; default 3). */
  pings?: number;
  /** Filler burst for the throughput, bytes (default 64 KiB, at most {@link MAX_PROBE_FILL_BYTES}). */
  fillBytes?: number;
  /** Per-answer timeout, ms (default 5 s): PROBE_TIMEOUT after it. */
  timeoutMs?: number;
  signal?: AbortSignal;
  clock?: ProbeClock;
}

let nextProbeId = 1;

/**
 * Measures `link` (whose other end runs {@link answerProbes}): RTT from plain pings, then a filler
 * burst followed by a ping whose answer says how much filler arrived first. Throws PROBE_TIMEOUT,
 * TRANSPORT_CLOSED or ABORTED.
 */
export async function probeLink(link: PeerLink, o: ProbeOptions = {}): Promise<LinkMeasurement> {
  const clock = o.clock ?? defaultClock;
  const pings = Math.max(1, Math.min(8, Math.floor(o.pings ?? 3)));
  const fill = Math.max(
    FILL_CHUNK_CHARS,
    Math.min(MAX_PROBE_FILL_BYTES, Math.floor(o.fillBytes ?? 64 * 1024)),
  );
  const timeoutMs = o.timeoutMs ?? 5000;
  const waiters = new Map<number, (got: number) => void>();
  const off = link.onControl((raw) => {
    if (raw.type !== 'probe-ack') return;
    const r = probeControlSchema.safeParse(raw);
    if (r.success && r.data.type === 'probe-ack') waiters.get(r.data.id)?.(r.data.got);
  });
  const ask = (id: number, fillAnnounced: number): Promise<number> =>
    new Promise<number>((resolve, reject) => {
      const done = () => {
        waiters.delete(id);
        cancel();
        o.signal?.removeEventListener('abort', onAbort);
        offClose();
      };
      const cancel = clock.setTimeout(() => {
        done();
        reject(
          new RingworkError(
            'PROBE_TIMEOUT',
            `No probe answer from ${link.remoteId} within ${timeoutMs} ms.`,
            {
              details: { peer: link.remoteId, timeoutMs },
            },
          ),
        );
      }, timeoutMs);
      const onAbort = () => {
        done();
        reject(new RingworkError('ABORTED', 'The link probe was aborted.', { cause: o.signal?.reason }));
      };
      const offClose = link.onClose(() => {
        done();
        reject(
          new RingworkError('TRANSPORT_CLOSED', `The link to ${link.remoteId} closed during a probe.`, {
            details: { remoteId: link.remoteId },
          }),
        );
      });
      if (o.signal?.aborted) return onAbort();
      o.signal?.addEventListener('abort', onAbort, { once: true });
      waiters.set(id, (got) => {
        done();
        resolve(got);
      });
      try {
        link.sendControl({ type: 'probe-ping', v: PROBE_VERSION, id, fill: fillAnnounced });
      } catch (e) {
        done();
        reject(e);
      }
    });
  try {
    const rtts: number[] = [];
    for (let i = 0; i < pings; i++) {
      const t0 = clock.now();
      await ask(nextProbeId++, 0);
      rtts.push(clock.now() - t0);
    }
    rtts.sort((a, b) => a - b);
    const rttMs = rtts[Math.floor(rtts.length / 2)]!;
    const id = nextProbeId++;
    const pad = 'x'.repeat(FILL_CHUNK_CHARS);
    const t0 = clock.now();
    for (let sent = 0; sent < fill; sent += FILL_CHUNK_CHARS)
      link.sendControl({ type: 'probe-fill', v: PROBE_VERSION, id, pad });
    const got = await ask(id, fill);
    // The burst's last byte arrived about half a round trip before the answer left; the answer
    // itself took the other half: what remains is the time the bytes took to get through.
    const transferMs = Math.max(0.05, clock.now() - t0 - rttMs);
    const mbps = (got * 8) / (transferMs * 1000);
    return { rttMs, mbps: Math.max(0.001, mbps) };
  } finally {
    off();
  }
}

/** One report line: this peer's measurement of its link to `peer`. */
export interface LinkReport extends LinkMeasurement {
  peer: string;
}

/** Options of {@link createLinkProber}. */
export interface LinkProberOptions {
  /** The links to measure now (a contributor: its ring neighbours). */
  links: () => readonly PeerLink[];
  /** Called after each round with what was measured (the contributor sends `link-report`). */
  report: (reports: LinkReport[]) => void;
  /** Between rounds, ms (default 30 s: links change slowly, probes are not free). */
  intervalMs?: number;
  /** At most this many links per round (default 8; the protocol's report bound). */
  maxLinks?: number;
  probe?: Omit<ProbeOptions, 'signal' | 'clock'>;
  clock?: ProbeClock;
}

/** A slow, periodic prober of a peer's links. */
export interface LinkProber {
  /** Starts the rounds (the first one at once); safe twice. */
  start(): void;
  /** Runs one round now and resolves with its reports (tests, and right after a new assignment). */
  round(): Promise<LinkReport[]>;
  /** Stops the rounds and aborts a probe in flight; safe twice. */
  stop(): void;
}

/** Creates a prober that measures `links()` one at a time, every `intervalMs`, and reports. */
export function createLinkProber(o: LinkProberOptions): LinkProber {
  const clock = o.clock ?? defaultClock;
  const intervalMs = o.intervalMs ?? 30_000;
  const maxLinks = o.maxLinks ?? 8;
  let cancelTimer: (() => void) | undefined;
  let abort: AbortController | undefined;
  let running: Promise<LinkReport[]> | undefined;
  let started = false;

  const round = (): Promise<LinkReport[]> => {
    running ??= (async () => {
      abort = new AbortController();
      const out: LinkReport[] = [];
      const seen = new Set<string>();
      for (const link of o.links()) {
        if (out.length >= maxLinks || abort.signal.aborted) break;
        if (!link.isOpen || seen.has(link.remoteId)) continue;
        seen.add(link.remoteId);
        try {
          const m = await probeLink(link, { ...o.probe, signal: abort.signal, clock });
          out.push({ peer: link.remoteId, ...m });
        } catch {
          /* a link that does not answer is reported by the membership's own checks, not here */
        }
      }
      if (out.length > 0 && !abort.signal.aborted) o.report(out);
      return out;
    })().finally(() => {
      running = undefined;
    });
    return running;
  };

  const tick = () => {
    cancelTimer = undefined;
    void round().finally(() => {
      if (started) cancelTimer = clock.setTimeout(tick, intervalMs);
    });
  };

  return {
    start() {
      if (started) return;
      started = true;
      tick();
    },
    round,
    stop() {
      started = false;
      cancelTimer?.();
      cancelTimer = undefined;
      abort?.abort();
    },
  };
}
