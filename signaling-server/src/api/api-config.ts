/**
 * Configuration of the OpenAI-compatible API (`/v1`). Anonymous use is off by default: a request
 * needs a key from `--api-keys FILE` unless the operator passes `--api-anonymous`. Every budget is
 * per key (anonymous callers share the bucket of their address), and the server-wide stream cap
 * bounds what any number of keys can hold at once.
 */
import { z } from 'zod';

const int = (min: number, max: number, def: number) => z.number().int().min(min).max(max).default(def);

/** The `api` section of the server configuration. */
export const apiConfigSchema = z
  .object({
    /** A file with one API key per line (`#` comments and blank lines ignored); read at start, kept as hashes. */
    keysFile: z.string().min(1).max(4096).optional(),
    /** Serve requests without a key (each client address then gets the per-key budgets). */
    anonymous: z.boolean().default(false),
    /**
     * Run a model on the server itself (in a worker thread) when no ring serves it. For development
     * and tests; off by default because it spends the operator's CPU on anyone's request.
     */
    localFallback: z.boolean().default(false),
    /** Largest request body, bytes (a chat of long messages fits; a 10 MB upload does not). */
    maxBodyBytes: int(1024, 64 * 1024 * 1024, 1024 * 1024),
    /** Streams (generations in progress or queued) the whole server holds at once. */
    maxConcurrentStreams: int(1, 100_000, 64),
    /** Streams one key (or anonymous address) holds at once. */
    maxStreamsPerKey: int(1, 10_000, 4),
    /** Requests per minute per key (token bucket; the burst is the same number). */
    requestsPerMinute: int(1, 1_000_000, 120),
    /** Generated tokens per hour per key. */
    tokensPerHour: int(1, 1_000_000_000, 200_000),
  })
  .strict();

/** A validated API configuration. */
export type ApiConfig = z.infer<typeof apiConfigSchema>;
