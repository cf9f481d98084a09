/**
 * A memory-bandwidth probe: how fast this machine moves bytes that do not fit in cache. Decoding
 * one token reads every weight once, so `copy GB/s / bytes per token` bounds tokens/s for any CPU
 * engine.
 */

/** Result of {@link measureCopyBandwidth}. */
export interface CopyBandwidth {
  /** Best observed rate, in 1e9 bytes copied per second (each byte is read once and written once). */
  gbps: number;
  /** Which copy reached it. */
  method: 'Float32Array.set' | 'Buffer.copy';
  /** Bytes per copy. */
  bytes: number;
  /** Every sample, GB/s, in the order taken. */
  samples: { method: CopyBandwidth['method']; gbps: number }[];
}

/**
 * Copies a `bytes`-sized buffer `repeats` times with each of two methods (typed-array `set`, a
 * memmove in V8; `Buffer.copy`, a memcpy in Node) and keeps the best: on a shared machine the best
 * sample is the one least disturbed by neighbours. The buffers are touched first so page faults
 * are not timed. Use well over the last-level cache (the default 256 MiB).
 */
export function measureCopyBandwidth(opts: { bytes?: number; repeats?: number } = {}): CopyBandwidth {
  const bytes = Math.max(4096, Math.floor((opts.bytes ?? 256 * 1024 * 1024) / 4) * 4);
  const repeats = Math.max(1, opts.repeats ?? 5);
  const src = new Float32Array(bytes / 4);
  const dst = new Float32Array(bytes / 4);
  for (let i = 0; i < src.length; i += 1024) src[i] = i;
  dst.fill(1);
  const srcBuf = Buffer.from(src.buffer, src.byteOffset, src.byteLength);
  const dstBuf = Buffer.from(dst.buffer, dst.byteOffset, dst.byteLength);
  const samples: CopyBandwidth['samples'] = [];
  const time = (method: CopyBandwidth['method'], copy: () => void) => {
    const t0 = performance.now();
    copy();
    const s = (performance.now() - t0) / 1000;
    samples.push({ method, gbps: s > 0 ? bytes / s / 1e9 : 0 });
  };
  for (let r = 0; r < repeats; r++) {
    time('Float32Array.set', () => dst.set(src));
    time('Buffer.copy', () => srcBuf.copy(dstBuf));
  }
  // Keeps the copies observable so no engine could elide them.
  if (dst[1024] !== src[1024]) throw new Error('memory copy check failed');
  const best = samples.reduce((a, b) => (b.gbps > a.gbps ? b : a));
  return { gbps: best.gbps, method: best.method, bytes, samples };
}
