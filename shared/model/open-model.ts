import { RingworkError, isRingworkError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { createLlama2cTokenizer, parseLlama2cTokenizer } from '../tokenizer/llama2c-tokenizer.js';
import { createHfTokenizer } from '../tokenizer/hf-tokenizer.js';
import { openLlama2cModel } from './llama2c.js';
import { openSafetensorsModel, readJsonFile } from './safetensors.js';
import type { FileOpener, ModelSource } from './types.js';

/** A model reference: a llama2.c `.bin` or a Hugging Face directory, by path or URL. */
export interface ModelLocation {
  /** Path or URL of a `.bin` checkpoint, or of a directory with `config.json`. */
  url: string;
  /** Path or URL of a llama2.c tokenizer; default `tokenizer.bin` or `tok<vocab>.bin` beside the model. */
  tokenizerUrl?: string;
}

/** An opened model: its tensors, plus its tokenizer on demand. */
export interface OpenedModel {
  source: ModelSource;
  loadTokenizer(signal?: AbortSignal): Promise<Tokenizer>;
}

/** Splits `a/b/c.bin` into the root `a/b/` and the file `c.bin` (works for URLs and paths). */
export function splitLocation(url: string): { root: string; file: string } {
  const q = url.search(/[?#]/);
  const path = q < 0 ? url : url.slice(0, q);
  const cut = path.lastIndexOf('/');
  return { root: cut < 0 ? './' : path.slice(0, cut + 1), file: path.slice(cut + 1) };
}

/** True when the reference names a llama2.c checkpoint rather than a Hugging Face directory. */
export function isLlama2cLocation(url: string): boolean {
  return /\.bin([?#].*)?$/i.test(url);
}

/**
 * Opens a model by location through `makeOpener(root)` (HTTP Range reads in browsers, file or
 * HTTP reads in Node). Only headers and the config are read here; tensors are read per shard.
 */
export async function openModelLocation(
  loc: ModelLocation,
  makeOpener: (root: string) => FileOpener,
  signal?: AbortSignal,
): Promise<OpenedModel> {
  if (isLlama2cLocation(loc.url)) {
    const { root, file } = splitLocation(loc.url);
    const opener = makeOpener(root);
    const source = await openLlama2cModel(opener, file, { signal });
    return {
      source,
      async loadTokenizer(sig) {
        const candidates = loc.tokenizerUrl
          ? [splitLocation(loc.tokenizerUrl)]
          : [
              { root, file: 'tokenizer.bin' },
              { root, file: `tok${source.config.vocabSize}.bin` },
            ];
        let lastError: unknown;
        for (const c of candidates) {
          const tokOpener = c.root === root ? opener : makeOpener(c.root);
          try {
            const src = tokOpener.open(c.file);
            const bytes = await src.read(0, await src.size(sig), sig);
            return createLlama2cTokenizer(parseLlama2cTokenizer(bytes, source.config.vocabSize, src.name));
          } catch (e) {
            lastError = e;
            if (!isRingworkError(e) || !['FILE_READ_FAILED', 'FETCH_HTTP_STATUS'].includes(e.code)) throw e;
          }
        }
        throw new RingworkError(
          'TOKENIZER_BAD_FILE',
          `No tokenizer found for ${loc.url}: tried ${candidates.map((c) => c.root + c.file).join(', ')}. Pass the tokenizer path explicitly (--tokenizer).`,
          { details: { model: loc.url }, cause: lastError },
        );
      },
    };
  }
  const root = loc.url.endsWith('/') ? loc.url : `${loc.url}/`;
  const opener = makeOpener(root);
  const source = await openSafetensorsModel(opener, { signal });
  return {
    source,
    async loadTokenizer(sig) {
      const tokenizerJson = await readJsonFile(opener, 'tokenizer.json', sig, 'TOKENIZER_BAD_FILE');
      let tokenizerConfig: unknown;
      try {
        tokenizerConfig = await readJsonFile(opener, 'tokenizer_config.json', sig, 'TOKENIZER_BAD_FILE');
      } catch (e) {
        if (!isRingworkError(e) || !['FILE_READ_FAILED', 'FETCH_HTTP_STATUS'].includes(e.code)) throw e;
      }
      return createHfTokenizer({
        tokenizerJson: tokenizerJson as object,
        tokenizerConfig: tokenizerConfig as object | undefined,
        name: `${root}tokenizer.json`,
      });
    },
  };
}
