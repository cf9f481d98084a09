/**
 * Who may use the API, and how much: API keys (kept only as SHA-256 hashes), per-key request rate,
 * generated-token budget and concurrent streams, and the server-wide stream cap. Anonymous callers
 * (only with `--api-anonymous`) are budgeted by client address bucket (IPv6: /64), so one address
 * cannot take what a key could not.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { RingworkError } from '../../../shared/errors.js';
import { systemClock, type Clock } from '../clock.js';
import { createKeyedRateLimiter } from '../rate-limit.js';
import type { ApiConfig } from './api-config.js';

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
  /** Checks the key only (for `GET /v1/models`). */
  authenticate(authorization: string | undefined, addressBucket: string): string;
  /** Streams held now, server-wide. */
  readonly streams: number;
}

/** Creates the access policy from the API configuration (keys given directly win over `keysFile`). */
export function createApiAccess(
  config: ApiConfig,
  opts: { keys?: readonly string[]; clock?: Pick<Clock, 'now'> } = {},
): ApiAccess {
  const clock = opts.clock ?? systemClock;
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

  return {
    authenticate,
    admit(authorization, bucket) {
      const principal = authenticate(authorization, bucket);
      const limited = (message: string, retryAfterS: number): never => {
        throw new RingworkError('API_RATE_LIMITED', message, { details: { retryAfterS, principal } });
      };
      if (streams >= config.maxConcurrentStreams)
        limited(`The server holds its maximum of ${config.maxConcurrentStreams} streams; retry shortly.`, 1);
      const mine = streamsOf.get(principal) ?? 0;
      if (mine >= config.maxStreamsPerKey)
        limited(`This key already holds ${mine} streams (the limit); wait for one to finish.`, 1);
      if (budget(principal).level <= 0)
        limited(`This key has used its ${config.tokensPerHour} generated tokens for the hour.`, 60);
      if (!requests.take(principal))
        limited(
          `This key is over ${config.requestsPerMinute} requests per minute.`,
          Math.ceil(60 / config.requestsPerMinute),
        );
      streams++;
      streamsOf.set(principal, mine + 1);
      let released = false;
      return {
        principal,
        spend(tokens) {
          budget(principal).level -= tokens;
        },
        release() {
          if (released) return;
          released = true;
          streams--;
          const left = (streamsOf.get(principal) ?? 1) - 1;
          if (left <= 0) streamsOf.delete(principal);
          else streamsOf.set(principal, left);
        },
      };
    },
    get streams() {
      return streams;
    },
  };
}
