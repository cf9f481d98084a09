/**
 * Who may use the API, and how much: API keys (kept only as SHA-256 hashes), per-key request rate,
 * generated-token budget and concurrent streams, and the server-wide stream cap. Anonymous callers
 * (only with `--api-anonymous`) are budgeted by client address bucket (IPv6: /64), so one address
 * cannot take what a key could not.
 *
 * In a cluster ({@link ApiAccess.share}) a key's limits are counted over every instance through
 * Redis (cluster/shared-api-limits.ts). When Redis cannot answer in time the decision falls back to
 * this instance's own counts — fail open, so N instances may then allow up to N× a key's limits —
 * logged once per outage; this instance's counts are kept up to date in both modes so the fallback
 * starts from what it served.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { RingworkError } from '../../../shared/errors.js';
import { systemClock, type Clock } from '../clock.js';
import { createKeyedRateLimiter } from '../rate-limit.js';
import type { SharedApiLimits } from '../cluster/shared-api-limits.js';
import type { ApiConfig } from './api-config.js';

/** How long a shared decision may take before this instance decides alone. */
export const SHARED_LIMITS_TIMEOUT_MS = 1000;

/** Generated tokens debited from the shared budget at once (a Redis call per token would be a flood). */
const SPEND_BATCH = 16;

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Reads a keys file: one key per line, `#` comments and blank lines ignored. Throws `INVALID_ARGUMENT`. */
export function readApiKeysFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new RingworkError('INVALID_ARGUMENT', `Cannot read the API keys file ${file} (--api-keys).`, {
      details: { file },
      cause: e,
    });
  }
  const keys = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
  for (const k of keys)
    if (k.length < 16 || /\s/.test(k))
      throw new RingworkError(
        'INVALID_ARGUMENT',
        `The API keys file ${file} holds a key that is shorter than 16 characters or contains spaces; use long random keys (e.g. openssl rand -hex 24).`,
        { details: { file } },
      );
  return keys;
}

/** A granted request: who it counts against; `release` ends its stream (safe twice). */
export interface ApiGrant {
  /** `key:<first 8 hex of the hash>` or `anon:<address bucket>` — for logs and usage, never the key. */
  readonly principal: string;
  /** Debits generated tokens from the principal's hourly budget. */
  spend(tokens: number): void;
  release(): void;
}

/** The access policy of one server. */
export interface ApiAccess {
  /**
   * Checks the `Authorization` header and takes a request and a stream slot. Throws
   * `API_UNAUTHORIZED` or `API_RATE_LIMITED` (with `details.retryAfterS` where waiting helps).
   */
  admit(authorization: string | undefined, addressBucket: string): ApiGrant;
  /**
   * {@link ApiAccess.admit}, with the key's limits counted over the cluster when shared (the
   * server-wide cap stays this instance's); this instance's counts alone when Redis fails.
   */
  acquire(authorization: string | undefined, addressBucket: string): Promise<ApiGrant>;
  /** Checks the key only (for `GET /v1/models`). */
  authenticate(authorization: string | undefined, addressBucket: string): string;
  /** Cluster mode: from now on a key's limits are the cluster's (set once, after Redis connected). */
  share(limits: SharedApiLimits): void;
  /** Where the per-key limits are counted now: alone, over the cluster, or alone while Redis fails. */
  readonly counting: 'instance' | 'cluster' | 'instance-fallback';
  /** Streams held now, server-wide. */
  readonly streams: number;
}

/** Creates the access policy from the API configuration (keys given directly win over `keysFile`). */
export function createApiAccess(
  config: ApiConfig,
  opts: {
    keys?: readonly string[];
    clock?: Pick<Clock, 'now'>;
    logger?: { warn(o: object, m: string): void; info(o: object, m: string): void };
  } = {},
): ApiAccess {
  const clock = opts.clock ?? systemClock;
  const log = opts.logger;
  let shared: SharedApiLimits | null = null;
  let fallback = false;
  const hashes = (opts.keys ?? (config.keysFile ? readApiKeysFile(config.keysFile) : [])).map(sha256);
  const requests = createKeyedRateLimiter({
    capacity: config.requestsPerMinute,
    refillPerSecond: config.requestsPerMinute / 60,
    clock,
  });
  // The token budget may go below zero (a stream's tokens are debited as they come); requests are
  // refused while it is not positive, and it refills at tokensPerHour / 3600 per second.
  const budgets = new Map<string, { level: number; at: number }>();
  const streamsOf = new Map<string, number>();
  /** Shared admits in flight per principal: counted as held in what this instance writes meanwhile. */
  const pendingOf = new Map<string, number>();
  const heldHere = (p: string): number => (streamsOf.get(p) ?? 0) + (pendingOf.get(p) ?? 0);
  let streams = 0;

  const budget = (p: string): { level: number; at: number } => {
    const now = clock.now();
    const b = budgets.get(p) ?? { level: config.tokensPerHour, at: now };
    if (now > b.at)
      b.level = Math.min(config.tokensPerHour, b.level + ((now - b.at) / 3_600_000) * config.tokensPerHour);
    b.at = now;
    budgets.set(p, b);
    return b;
  };

  const authenticate = (authorization: string | undefined, bucket: string): string => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) {
      if (config.anonymous) return `anon:${bucket}`;
      throw new RingworkError(
        'API_UNAUTHORIZED',
        'An API key is required: send "Authorization: Bearer <key>" (the operator issues keys with --api-keys).',
      );
    }
    const h = sha256(m[1]!);
    // Compare against every hash (constant time each) so timing does not tell which keys exist.
    let found = -1;
    hashes.forEach((k, i) => {
      if (timingSafeEqual(k, h)) found = i;
    });
    if (found < 0) throw new RingworkError('API_UNAUTHORIZED', 'The API key is not valid on this server.');
    return `key:${h.toString('hex').slice(0, 8)}`;
  };

  const limited = (principal: string, message: string, retryAfterS: number): never => {
    throw new RingworkError('API_RATE_LIMITED', message, { details: { retryAfterS, principal } });
  };
  const serverCap = (principal: string): void => {
    if (streams >= config.maxConcurrentStreams)
      limited(
        principal,
        `The server holds its maximum of ${config.maxConcurrentStreams} streams; retry shortly.`,
        1,
      );
  };
  const refuse = (principal: string, why: 'streams' | 'budget' | 'rate', held: number): never =>
    why === 'streams'
      ? limited(principal, `This key already holds ${held} streams (the limit); wait for one to finish.`, 1)
      : why === 'budget'
        ? limited(
            principal,
            `This key has used its ${config.tokensPerHour} generated tokens for the hour.`,
            60,
          )
        : limited(
            principal,
            `This key is over ${config.requestsPerMinute} requests per minute.`,
            Math.ceil(60 / config.requestsPerMinute),
          );

  /** This instance's own decision (alone, or while the cluster's counts are unreachable). */
  const admitLocal = (principal: string): void => {
    serverCap(principal);
    const mine = streamsOf.get(principal) ?? 0;
    if (mine >= config.maxStreamsPerKey) refuse(principal, 'streams', mine);
    if (budget(principal).level <= 0) refuse(principal, 'budget', mine);
    if (!requests.take(principal)) refuse(principal, 'rate', mine);
  };

  /** A shared call that answers in time, or rejects (then this instance decides alone). */
  const timely = <T>(p: Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error('shared API limits: no answer in time')),
        SHARED_LIMITS_TIMEOUT_MS,
      );
      (t as { unref?: () => void }).unref?.();
      p.then(resolve, reject).finally(() => clearTimeout(t));
    });
  const degraded = (e: unknown): void => {
    if (fallback) return;
    fallback = true;
    log?.warn({ err: e }, 'API key limits: Redis unreachable, counting on this instance alone (fail open)');
  };
  const recovered = (): void => {
    if (!fallback) return;
    fallback = false;
    log?.info({}, 'API key limits: counting over the cluster again');
  };

  /** Records a granted stream on this instance and returns its grant. */
  const grant = (principal: string, viaCluster: boolean): ApiGrant => {
    streams++;
    streamsOf.set(principal, (streamsOf.get(principal) ?? 0) + 1);
    let released = false;
    let unspent = 0;
    const flush = (): void => {
      const s = shared;
      if (!viaCluster || !s || unspent === 0) return;
      const n = unspent;
      unspent = 0;
      void timely(s.spend(principal, n, config, clock.now())).then(recovered, degraded);
    };
    return {
      principal,
      spend(tokens) {
        // This instance's budget too: the fallback starts from what it served.
        budget(principal).level -= tokens;
        unspent += tokens;
        if (unspent >= SPEND_BATCH) flush();
      },
      release() {
        if (released) return;
        released = true;
        flush();
        streams--;
        const left = (streamsOf.get(principal) ?? 1) - 1;
        if (left <= 0) streamsOf.delete(principal);
        else streamsOf.set(principal, left);
        // Idempotent (this instance's count, not a decrement): a write lost now heals at the next one.
        const s = shared;
        if (s) void timely(s.setMine(principal, heldHere(principal))).then(recovered, degraded);
      },
    };
  };

  return {
    authenticate,
    admit(authorization, bucket) {
      const principal = authenticate(authorization, bucket);
      admitLocal(principal);
      return grant(principal, false);
    },
    async acquire(authorization, bucket) {
      const principal = authenticate(authorization, bucket);
      const s = shared;
      if (!s) {
        admitLocal(principal);
        return grant(principal, false);
      }
      serverCap(principal);
      let verdict;
      try {
        // Concurrent admits of one principal here: each writes what this instance holds, the others'
        // pending slots included, so none overwrites another's count with a stale one.
        const mine = heldHere(principal);
        pendingOf.set(principal, (pendingOf.get(principal) ?? 0) + 1);
        try {
          verdict = await timely(s.admit(principal, mine, config, clock.now()));
        } finally {
          const n = (pendingOf.get(principal) ?? 1) - 1;
          if (n <= 0) pendingOf.delete(principal);
          else pendingOf.set(principal, n);
        }
      } catch (e) {
        degraded(e);
        admitLocal(principal);
        return grant(principal, false);
      }
      recovered();
      if (!verdict.ok) refuse(principal, verdict.reason, verdict.held);
      // The server-wide cap again: other requests may have been granted while Redis answered (the
      // slot the cluster counted is given back by writing what this instance holds).
      try {
        serverCap(principal);
      } catch (e) {
        void timely(s.setMine(principal, heldHere(principal))).then(recovered, degraded);
        throw e;
      }
      // This instance's buckets follow what it granted (the fallback's starting point).
      budget(principal);
      requests.take(principal);
      return grant(principal, true);
    },
    share(limits) {
      shared = limits;
    },
    get counting() {
      return shared ? (fallback ? 'instance-fallback' : 'cluster') : 'instance';
    },
    get streams() {
      return streams;
    },
  };
}
