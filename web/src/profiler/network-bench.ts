/**
 * Link to the signaling server: round-trip time of small requests and the throughput of one
 * ranged download. Peer-to-peer links are measured later, over the data channels themselves.
 */
import { RingworkError, throwIfAborted } from '../../../shared/errors';
import { median } from '../../../shared/device/stats';
import type { NetworkProfile } from '../../../shared/device/profile';

/** Options of {@link measureNetwork}. */
export interface NetworkOptions {
  /** Timed `/healthz` requests after one warm-up (default 5). */
  rttSamples?: number;
  /** Static file to time, relative to the base URL (default the embedded stories260K model). */
  throughputPath?: string;
  /** Bytes to ask for with a Range request (default 1 MiB; the whole file if it is smaller). */
  throughputBytes?: number;
  /** Give up after this long, ms (a slow link must not blow the profiler's time budget). */
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}

/** Default file for the throughput test: the server always serves it, with Range support. */
export const DEFAULT_THROUGHPUT_PATH = 'models/stories260K/stories260K.bin';

async function timedGet(url: URL, init: RequestInit): Promise<{ ms: number; bytes: number }> {
  const start = performance.now();
  const res = await fetch(url, { cache: 'no-store', ...init });
  if (!res.ok) {
    await res.body?.cancel();
    throw new RingworkError('INVALID_ARGUMENT', `GET ${url.href} answered HTTP ${res.status}.`, {
      details: { url: url.href, status: res.status },
    });
  }
  const body = await res.arrayBuffer();
  return { ms: performance.now() - start, bytes: body.byteLength };
}

/**
 * RTT = median of `rttSamples` GETs of `healthz` (after a warm-up that pays for the connection);
 * throughput = bits of a ranged GET / its elapsed time, best of up to three fetches that fit the
 * timeout. Paths resolve against `baseUrl`, so a server mounted under a prefix works too.
 */
export async function measureNetwork(baseUrl: string, o: NetworkOptions = {}): Promise<NetworkProfile> {
  const base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
  const timeout = AbortSignal.timeout(o.timeoutMs ?? 2000);
  const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
  const start = performance.now();
  try {
    const health = new URL('healthz', base);
    await timedGet(health, { signal });
    const rtts: number[] = [];
    for (let i = 0; i < (o.rttSamples ?? 5); i++) rtts.push((await timedGet(health, { signal })).ms);
    const file = new URL(o.throughputPath ?? DEFAULT_THROUGHPUT_PATH, base);
    const want = o.throughputBytes ?? 1 << 20;
    let best = { ms: Infinity, bytes: 0 };
    for (let i = 0; i < 3; i++) {
      const r = await timedGet(file, { signal, headers: { Range: `bytes=0-${want - 1}` } });
      if (r.bytes / r.ms > best.bytes / best.ms || best.bytes === 0) best = r;
      // One more only if it would still leave most of the timeout unused.
      if (performance.now() - start + r.ms > (o.timeoutMs ?? 2000) / 2) break;
    }
    if (best.bytes === 0) {
      throw new RingworkError('INVALID_ARGUMENT', `${file.href} is empty; it cannot time a download.`);
    }
    return {
      rttMs: Math.max(median(rtts), 1e-3),
      rttSamples: rtts.length,
      throughputMbps: (best.bytes * 8) / (Math.max(best.ms, 1e-3) / 1000) / 1e6,
      throughputBytes: best.bytes,
    };
  } catch (e) {
    throwIfAborted(o.signal, 'network measurement');
    if (timeout.aborted) {
      throw new RingworkError('INVALID_ARGUMENT', `Network measurement against ${base.href} timed out.`, {
        cause: e,
      });
    }
    throw e;
  }
}
