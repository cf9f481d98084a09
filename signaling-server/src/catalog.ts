/**
 * The model catalog: which models the network can serve, their planner profiles, and where peers
 * fetch them. Local model files are mounted into the HTTP server so the URL in an assignment always
 * resolves, whether or not `dist/` was built.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RingworkError } from '../../shared/errors.js';
import type { WeightFormat } from '../../shared/graph/compile-shard.js';
import { profileModel, type ModelProfile } from '../../shared/model/profile.js';
import type { ModelConfig } from '../../shared/model/types.js';
import type { ModelDescriptor, ModelServing } from '../../shared/protocol/signaling.js';
import { catalogEntrySchema, type CatalogEntryConfig } from './config.js';
import { isUrl, openNodeModel } from './model/open-node-model.js';

/** The repository's `public/` directory (served by Vite; its files land in `dist/`). */
export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url));

/** The embedded model every server offers unless `--no-default-model`. */
export const DEFAULT_CATALOG_ENTRY: CatalogEntryConfig = catalogEntrySchema.parse({
  id: 'stories260K',
  path: resolve(PUBLIC_DIR, 'models/stories260K/stories260K.bin'),
  url: '/models/stories260K/stories260K.bin',
  tokenizerUrl: '/models/stories260K/tok512.bin',
  // 1.8 MB with its KV cache: any phone holds it whole, so it is served by whole-model replicas.
  serving: 'lightweight',
});

/** Context reserved when an entry does not say: short enough for small peers, as long as the model allows. */
export const DEFAULT_CATALOG_CONTEXT = 512;

/** A served model: what peers are told, and what the planner plans with. */
export interface CatalogModel {
  descriptor: ModelDescriptor;
  profile: ModelProfile;
  /** Weights plus KV cache at `descriptor.contextLength`: what one peer needs to run it whole. */
  totalBytes: number;
  /**
   * A local directory served under `prefix` (absent for models fetched from elsewhere). Only `files`
   * (names relative to `dir`) are served: the model's own files, never the rest of the directory.
   */
  mount?: { prefix: string; dir: string; files: ReadonlySet<string> };
  /** Where the server itself reads the model (its API's local engine): a file path or an http(s) URL. */
  location?: { url: string; tokenizerUrl?: string };
}

/** Weights + KV at `contextTokens`, the planner's memory model for a whole model. */
export function totalModelBytes(profile: ModelProfile, contextTokens: number): number {
  return profile.layers.reduce((a, l) => a + l.weightBytes + l.kvBytesPerToken * contextTokens, 0);
}

/** Builds a catalog model from a config already in hand (tests, and {@link loadCatalog}). */
export function catalogModelFromConfig(
  id: string,
  config: ModelConfig,
  opts: {
    url: string;
    tokenizerUrl?: string;
    weightFormat?: WeightFormat;
    contextLength?: number;
    /** Default `sharded`; `lightweight` models are served whole by single peers (replicas). */
    serving?: ModelServing;
  },
): CatalogModel {
  const contextLength = opts.contextLength ?? Math.min(config.maxPositions, DEFAULT_CATALOG_CONTEXT);
  const weightFormat = opts.weightFormat ?? 'f32';
  const profile = profileModel(id, config, { format: weightFormat, contextTokens: contextLength });
  return {
    descriptor: {
      id,
      url: opts.url,
      ...(opts.tokenizerUrl ? { tokenizerUrl: opts.tokenizerUrl } : {}),
      weightFormat,
      contextLength,
      units: profile.layers.length,
      serving: opts.serving ?? 'sharded',
    },
    profile,
    totalBytes: totalModelBytes(profile, contextLength),
  };
}

const toPosix = (p: string): string => p.split(sep).join('/');

/** A regular file whose real location is inside `dir` (a symlink out of it would 404 when served). */
async function existsWithin(dir: string, file: string): Promise<boolean> {
  try {
    const [realDir, real] = await Promise.all([realpath(dir), realpath(file)]);
    return real.startsWith(realDir + sep) && (await stat(real)).isFile();
  } catch {
    return false;
  }
}

/** A plain file name in the model directory (no separators, no dotfiles), else null. */
function plainName(name: unknown): string | null {
  return typeof name === 'string' && /^[^/\\.][^/\\]{0,254}$/.test(name) ? name : null;
}

/**
 * The files a model needs and nothing else: the weights (the shards an index names, or the single
 * file), index, config and tokenizer files. The catalog serves this allowlist, so mounting a model
 * that sits in a home directory does not publish its neighbours (`.ssh/`, `.env`).
 */
export async function modelFileAllowlist(
  dir: string,
  file: string,
  vocabSize: number,
  tokenizerName?: string,
): Promise<Set<string>> {
  const files = new Set<string>();
  if (file) {
    // llama2.c: the checkpoint and the tokenizer names the loader tries beside it.
    for (const n of [file, 'tokenizer.bin', `tok${vocabSize}.bin`]) files.add(n);
  } else {
    for (const n of [
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'model.safetensors.index.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'special_tokens_map.json',
    ])
      files.add(n);
    const index = await readFile(resolve(dir, 'model.safetensors.index.json'), 'utf8').catch(() => null);
    if (index !== null) {
      try {
        const map = (JSON.parse(index) as { weight_map?: Record<string, unknown> }).weight_map ?? {};
        for (const shard of Object.values(map)) {
          const n = plainName(shard);
          if (n) files.add(n);
        }
      } catch {
        // A broken index fails the model load itself; here it only adds no shards.
      }
    }
  }
  const tok = plainName(tokenizerName);
  if (tok) files.add(tok);
  return files;
}

/** Loads one entry: reads the model's config (headers only) and works out URLs and the mount. */
export async function loadCatalogEntry(
  entry: CatalogEntryConfig,
  publicDir = PUBLIC_DIR,
): Promise<CatalogModel> {
  if (isUrl(entry.path)) {
    const { source } = await openNodeModel({
      url: entry.path,
      ...(entry.tokenizerUrl ? { tokenizerUrl: entry.tokenizerUrl } : {}),
    });
    const remote = catalogModelFromConfig(entry.id, source.config, {
      url: entry.url ?? entry.path,
      ...(entry.tokenizerUrl ? { tokenizerUrl: entry.tokenizerUrl } : {}),
      weightFormat: entry.weightFormat,
      ...(entry.contextLength ? { contextLength: entry.contextLength } : {}),
      ...(entry.serving ? { serving: entry.serving } : {}),
    });
    remote.location = {
      url: entry.path,
      ...(entry.tokenizerUrl ? { tokenizerUrl: entry.tokenizerUrl } : {}),
    };
    return remote;
  }
  const abs = resolve(entry.path);
  const st = await stat(abs).catch((e: unknown) => {
    throw new RingworkError('FILE_READ_FAILED', `Catalog model "${entry.id}": cannot read ${abs}.`, {
      details: { model: entry.id, path: abs },
      cause: e,
    });
  });
  const isDir = st.isDirectory();
  const dir = isDir ? abs : dirname(abs);
  const file = isDir ? '' : basename(abs);
  const { source } = await openNodeModel({ url: abs });
  let url: string;
  let prefix: string | undefined;
  const inPublic = abs.startsWith(resolve(publicDir) + sep);
  if (entry.url) {
    url = entry.url;
    if (url.startsWith('/'))
      prefix = isDir ? url.replace(/\/?$/, '/') : url.slice(0, url.lastIndexOf('/') + 1);
  } else if (inPublic) {
    const rel = toPosix(relative(publicDir, dir));
    prefix = `/${rel}${rel ? '/' : ''}`;
    url = prefix + file;
  } else {
    prefix = `/catalog/${entry.id}/`;
    url = prefix + file;
  }
  let tokenizerUrl = entry.tokenizerUrl;
  if (!tokenizerUrl && !isDir && prefix) {
    for (const name of ['tokenizer.bin', `tok${source.config.vocabSize}.bin`]) {
      if (await existsWithin(dir, resolve(dir, name))) {
        tokenizerUrl = prefix + name;
        break;
      }
    }
  }
  const model = catalogModelFromConfig(entry.id, source.config, {
    url,
    ...(tokenizerUrl ? { tokenizerUrl } : {}),
    weightFormat: entry.weightFormat,
    ...(entry.contextLength ? { contextLength: entry.contextLength } : {}),
    ...(entry.serving ? { serving: entry.serving } : {}),
  });
  if (prefix) {
    const tokName = tokenizerUrl?.startsWith(prefix) === true ? tokenizerUrl.slice(prefix.length) : undefined;
    const files = await modelFileAllowlist(dir, file, source.config.vocabSize, tokName);
    model.mount = { prefix, dir, files };
  }
  // The tokenizer is found beside the file (tokenizer.bin, tok<vocab>.bin) or in the directory.
  model.location = { url: abs };
  return model;
}

/** Loads the catalog: the default model (unless disabled; an entry with its id replaces it), then the entries. */
export async function loadCatalog(
  entries: readonly CatalogEntryConfig[],
  opts: { defaultModel?: boolean; publicDir?: string } = {},
): Promise<CatalogModel[]> {
  const all = [...entries];
  if (opts.defaultModel !== false && !all.some((e) => e.id === DEFAULT_CATALOG_ENTRY.id))
    all.unshift(DEFAULT_CATALOG_ENTRY);
  const out: CatalogModel[] = [];
  for (const e of all) out.push(await loadCatalogEntry(e, opts.publicDir));
  return out;
}
