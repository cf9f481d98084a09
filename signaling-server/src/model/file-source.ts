/**
 * A {@link FileOpener} over a local directory for Node (the converter, the synthesizer's
 * checks, tests). Reads byte ranges through `FileHandle.read` so a shard touches only the bytes
 * of its own tensors and a multi-GB model is never read whole.
 */
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { RingworkError, throwIfAborted } from '../../../shared/errors.js';
import type { ByteSource, FileOpener } from '../../../shared/model/types.js';

/** Bytes per `read()` syscall batch: keeps abort checks frequent on multi-hundred-MB tensors. */
const CHUNK_BYTES = 64 * 1024 * 1024;

function fileError(file: string, action: string, e: unknown): RingworkError {
  const code = (e as { code?: string } | null)?.code;
  const notFound = code === 'ENOENT' || code === 'ENOTDIR';
  const hint = notFound
    ? 'The file does not exist: check the model directory and that the download/export finished.'
    : code === 'EACCES' || code === 'EPERM'
      ? 'Permission denied: check the file permissions.'
      : 'Check the path and the disk.';
  return new RingworkError('FILE_READ_FAILED', `Could not ${action} ${file}: ${code ?? String(e)}. ${hint}`, {
    details: { file, code, notFound },
    cause: e,
  });
}

/**
 * Creates a {@link FileOpener} rooted at directory `dir`. File names are relative to it and may
 * not escape it.
 *
 * @throws (from the sources) `FILE_READ_FAILED` naming the path when a file is missing or
 *   unreadable, `MODEL_TRUNCATED` when a range extends past the end of the file, `ABORTED`.
 */
export function createNodeFileOpener(dir: string): FileOpener {
  const root = path.resolve(dir);
  let total = 0;
  return {
    root,
    get bytesRead() {
      return total;
    },
    open(file: string): ByteSource {
      const full = path.resolve(root, file);
      let own = 0;
      let knownSize: number | undefined;
      const escapes =
        path.relative(root, full).startsWith('..') || path.isAbsolute(path.relative(root, full));
      const check = () => {
        if (escapes) {
          throw new RingworkError(
            'FILE_READ_FAILED',
            `Refusing to read ${full}: "${file}" points outside the model directory ${root}.`,
            { details: { file: full, root } },
          );
        }
      };
      return {
        name: full,
        get bytesRead() {
          return own;
        },
        async size(signal?: AbortSignal): Promise<number> {
          check();
          throwIfAborted(signal, `Reading ${full}`);
          if (knownSize !== undefined) return knownSize;
          try {
            knownSize = (await stat(full)).size;
          } catch (e) {
            throw fileError(full, 'stat', e);
          }
          return knownSize;
        },
        async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
          check();
          if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
            throw new RingworkError(
              'INVALID_ARGUMENT',
              `${full}: bad byte range offset=${offset} length=${length}.`,
              {
                details: { file: full, offset, length },
              },
            );
          }
          throwIfAborted(signal, `Reading ${full}`);
          let handle;
          try {
            handle = await open(full, 'r');
          } catch (e) {
            throw fileError(full, 'open', e);
          }
          try {
            const out = new Uint8Array(length);
            let done = 0;
            while (done < length) {
              throwIfAborted(signal, `Reading ${full}`);
              const want = Math.min(CHUNK_BYTES, length - done);
              let n: number;
              try {
                ({ bytesRead: n } = await handle.read(out, done, want, offset + done));
              } catch (e) {
                throw fileError(full, 'read', e);
              }
              if (n === 0) {
                throw new RingworkError(
                  'MODEL_TRUNCATED',
                  `${full}: asked for bytes ${offset}..${offset + length} but the file ends at ${offset + done}. The file is truncated (an interrupted download or export?); download or export it again.`,
                  { details: { file: full, offset, length, got: done, size: offset + done } },
                );
              }
              done += n;
              own += n;
              total += n;
            }
            return out;
          } finally {
            await handle.close();
          }
        },
      };
    },
  };
}
