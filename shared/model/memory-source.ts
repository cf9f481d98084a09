import { RingworkError } from '../errors.js';
import type { ByteSource, FileOpener } from './types.js';

/**
 * A {@link FileOpener} over in-memory files. Used by tests, by the converter and wherever a model
 * has already been fetched whole (e.g. an uploaded file).
 */
export function createMemoryFileOpener(files: Record<string, Uint8Array>, root = 'memory:'): FileOpener {
  let total = 0;
  const opener: FileOpener = {
    root,
    get bytesRead() {
      return total;
    },
    open(file: string): ByteSource {
      const name = `${root}${file}`;
      let own = 0;
      return {
        name,
        get bytesRead() {
          return own;
        },
        async size() {
          return need(file, name).byteLength;
        },
        async read(offset: number, length: number) {
          const bytes = need(file, name);
          if (offset < 0 || length < 0 || offset + length > bytes.byteLength) {
            throw new RingworkError(
              'MODEL_TRUNCATED',
              `${name}: asked for bytes ${offset}..${offset + length} but the file has ${bytes.byteLength}. The file is truncated or the header is wrong; re-download or re-export it.`,
              { details: { file: name, offset, length, size: bytes.byteLength } },
            );
          }
          own += length;
          total += length;
          return bytes.subarray(offset, offset + length);
        },
      };
    },
  };
  function need(file: string, name: string): Uint8Array {
    const bytes = files[file];
    if (!bytes) {
      throw new RingworkError('FILE_READ_FAILED', `${name} does not exist. Check the model path.`, {
        details: { file: name },
      });
    }
    return bytes;
  }
  return opener;
}
