/**
 * Caches the byte ranges a shard reads in the browser's Cache API, so reloading a contributor tab
 * (or re-joining with the same assignment) does not download its weights again. `bytesRead` counts
 * network bytes only; `cachedBytes` counts bytes served from the cache.
 */
import type { ByteSource, FileOpener } from '../../../shared/model/types';

export const SHARD_CACHE = 'ringwork-shards-v1';

export interface CachedFileOpener extends FileOpener {
  readonly cachedBytes: number;
}

export function createCachedFileOpener(inner: FileOpener, cacheName = SHARD_CACHE): CachedFileOpener {
  let cached = 0;
  const cachePromise: Promise<Cache | undefined> =
    typeof caches === 'undefined'
      ? Promise.resolve(undefined)
      : caches.open(cacheName).catch(() => undefined);
  return {
    root: inner.root,
    get bytesRead() {
      return inner.bytesRead;
    },
    get cachedBytes() {
      return cached;
    },
    open(file: string): ByteSource {
      const src = inner.open(file);
      const keyFor = (offset: number, length: number) =>
        `${src.name}${src.name.includes('?') ? '&' : '?'}ringwork-range=${offset}-${length}`;
      return {
        name: src.name,
        get bytesRead() {
          return src.bytesRead;
        },
        size: (signal) => src.size(signal),
        async read(offset, length, signal) {
          const cache = await cachePromise;
          const key = keyFor(offset, length);
          const hit = await cache?.match(key).catch(() => undefined);
          if (hit) {
            const bytes = new Uint8Array(await hit.arrayBuffer());
            if (bytes.byteLength === length) {
              cached += length;
              return bytes;
            }
          }
          const bytes = await src.read(offset, length, signal);
          // Small reads (headers, configs) are cheap and may change with the model: cache weights only.
          if (cache && length >= 4096) {
            await cache
              .put(
                key,
                new Response(bytes.slice().buffer, {
                  headers: { 'content-type': 'application/octet-stream' },
                }),
              )
              .catch(() => undefined);
          }
          return bytes;
        },
      };
    },
  };
}
