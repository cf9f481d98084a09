/**
 * Hugging Face safetensors loader (single file or sharded with `model.safetensors.index.json`).
 * Opening reads only `config.json` and each file's header; tensors are fetched one at a time by
 * exact byte range, so a peer serving layers [a, b) downloads only those layers' weights.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the data
 * region; offsets are relative to its start (byte 8 + N).
 */
import { z } from 'zod';
import { RingworkError, throwIfAborted } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { DTYPE_BYTES, decodeToFloat32, utf8Decode } from './dtype.js';
import { parseHfConfig } from './hf-config.js';
import { expectedTensorShape, requiredTensorNames } from './tensor-names.js';
import type { ByteSource, FileOpener, ModelSource, StoredDType, TensorInfo } from './types.js';

/** The single-file weights name used by transformers' `save_pretrained`. */
export const SAFETENSORS_FILE = 'model.safetensors';
/** The index of a sharded checkpoint. */
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';
/** The safetensors format caps the header at 100 MB; anything larger is not a safetensors file. */
const MAX_HEADER_BYTES = 100_000_000;
/** JSON side files (config, tokenizer) larger than this are refused rather than buffered. */
const MAX_JSON_BYTES = 256 * 1024 * 1024;

/**
 * Reads a whole (small) JSON file through `opener`: `size()` then one `read(0, size)`.
 *
 * @param badCode - error code for unparsable content (`MODEL_BAD_CONFIG` by default; pass
 *   `TOKENIZER_BAD_FILE` for tokenizer files).
 */
export async function readJsonFile(
  opener: FileOpener,
  file: string,
  signal?: AbortSignal,
  badCode: ErrorCode = 'MODEL_BAD_CONFIG',
): Promise<unknown> {
  const src = opener.open(file);
  const size = await src.size(signal);
  if (size > MAX_JSON_BYTES) {
    throw new RingworkError(
      badCode,
      `${src.name} is ${size} bytes, too large for a JSON side file. Check the file.`,
      {
        details: { file: src.name, size },
      },
    );
  }
  const bytes = await src.read(0, size, signal);
  try {
    return JSON.parse(utf8Decode(bytes)) as unknown;
  } catch (e) {
    throw new RingworkError(
      badCode,
      `${src.name} is not valid UTF-8 JSON (${e instanceof Error ? e.message : String(e)}). Re-download the file; if it came over HTTP, check the server did not send an error page.`,
      { details: { file: src.name, size }, cause: e },
    );
  }
}

/** One entry of a safetensors header, before dtype filtering. */
export interface SafetensorsEntry {
  name: string;
  /** As written in the file (F32, F16, BF16, or a type Ringwork cannot use such as I64, U8). */
  dtype: string;
  shape: number[];
  /** Absolute offset of the data in the file. */
  offset: number;
  byteLength: number;
}

/** A parsed safetensors header. */
export interface SafetensorsHeader {
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  /** Absolute offset of the data region (8 + header length). */
  dataStart: number;
}

/** Byte size of dtypes we may meet but not use, to validate their extents too. */
const OTHER_DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  I64: 8,
  U64: 8,
  I32: 4,
  U32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

/**
 * Checks the 8-byte prefix of a safetensors file and returns the header length.
 *
 * @throws `MODEL_TRUNCATED` (file shorter than its prefix says), `MODEL_BAD_MAGIC` (not a
 *   safetensors file at all: a Git LFS pointer, an HTML error page, garbage).
 */
export function parseSafetensorsPrefix(prefix: Uint8Array, file: string, fileSize: number): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new RingworkError(
      'MODEL_TRUNCATED',
      `${file} is only ${fileSize} bytes, shorter than the 8-byte safetensors prefix. The file is truncated; download or export it again.`,
      { details: { file, size: fileSize } },
    );
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const n = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  if (n < 2 || n > MAX_HEADER_BYTES) {
    const text = String.fromCharCode(...prefix.subarray(0, 8));
    const hint = text.startsWith('version ')
      ? ' It looks like a Git LFS pointer: fetch the real file (git lfs pull, or the /resolve/ URL on Hugging Face).'
      : /^\s*</.test(text)
        ? ' It looks like an HTML page: the URL probably serves an error or login page.'
        : /^\s*[{[]/.test(text)
          ? ' It looks like a JSON file, not weights.'
          : '';
    throw new RingworkError(
      'MODEL_BAD_MAGIC',
      `${file} is not a safetensors file: its first 8 bytes give a header length of ${n}, outside 2..${MAX_HEADER_BYTES}.${hint} Export the model with safetensors (save_pretrained(safe_serialization=True)).`,
      { details: { file, headerLength: n, firstBytes: Array.from(prefix.subarray(0, 8)) } },
    );
  }
  if (8 + n > fileSize) {
    throw new RingworkError(
      'MODEL_TRUNCATED',
      `${file}: the header claims ${n} bytes but the file has only ${fileSize} bytes. The file is truncated; download or export it again.`,
      { details: { file, headerLength: n, size: fileSize } },
    );
  }
  return n;
}

/**
 * Parses and validates a safetensors JSON header (the N bytes after the prefix).
 *
 * @throws `MODEL_BAD_MAGIC` (header not starting with `{`), `MODEL_BAD_HEADER` (bad JSON or
 *   entries), `MODEL_BAD_TENSOR` (extent does not match dtype x shape), `MODEL_TRUNCATED` (data
 *   past the end of the file).
 */
export function parseSafetensorsHeader(
  headerBytes: Uint8Array,
  file: string,
  fileSize: number,
): SafetensorsHeader {
  const n = headerBytes.byteLength;
  const dataStart = 8 + n;
  if (headerBytes[0] !== 0x7b) {
    throw new RingworkError(
      'MODEL_BAD_MAGIC',
      `${file} is not a safetensors file: the header does not start with "{". Export the model with safetensors.`,
      { details: { file, headerLength: n, firstByte: headerBytes[0] } },
    );
  }
  const badHeader = (what: string, details: Record<string, unknown> = {}, cause?: unknown) =>
    new RingworkError(
      'MODEL_BAD_HEADER',
      `${file}: ${what}. The safetensors header is corrupt; download or export the file again.`,
      {
        details: { file, headerLength: n, ...details },
        cause,
      },
    );
  let json: unknown;
  try {
    json = JSON.parse(utf8Decode(headerBytes));
  } catch (e) {
    throw badHeader(`header is not valid JSON (${e instanceof Error ? e.message : String(e)})`, {}, e);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw badHeader('header is not a JSON object');
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw === 'object' && raw !== null) {
        for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') metadata[k] = v;
      }
      continue;
    }
    const parsed = entrySchema.safeParse(raw);
    if (!parsed.success) {
      throw badHeader(`entry "${name}" is malformed: ${z.prettifyError(parsed.error)}`, { tensor: name });
    }
    const {
      dtype,
      shape,
      data_offsets: [begin, end],
    } = parsed.data;
    if (end < begin)
      throw badHeader(`tensor "${name}" has data_offsets [${begin}, ${end}] with end < begin`, {
        tensor: name,
      });
    if (end > dataSize) {
      throw new RingworkError(
        'MODEL_TRUNCATED',
        `${file}: tensor "${name}" ends at data byte ${end} but the file's data region has only ${dataSize} bytes. The file is truncated; download or export it again.`,
        { details: { file, tensor: name, end, dataSize, size: fileSize } },
      );
    }
    const elemBytes = DTYPE_BYTES[dtype as StoredDType] ?? OTHER_DTYPE_BYTES[dtype];
    const count = shape.reduce((a, b) => a * b, 1);
    if (elemBytes !== undefined && count * elemBytes !== end - begin) {
      throw new RingworkError(
        'MODEL_BAD_TENSOR',
        `${file}: tensor "${name}" (${dtype} [${shape.join(', ')}]) should take ${count * elemBytes} bytes but its data_offsets span ${end - begin}. The file is corrupt; export it again.`,
        { details: { file, tensor: name, dtype, shape, begin, end } },
      );
    }
    entries.push({ name, dtype, shape, offset: dataStart + begin, byteLength: end - begin });
  }
  return { entries, metadata, dataStart };
}

/** Reads and parses the header of one safetensors file: 8 bytes, then exactly the header. */
export async function readSafetensorsHeader(
  src: ByteSource,
  signal?: AbortSignal,
): Promise<SafetensorsHeader> {
  const size = await src.size(signal);
  const prefix = size < 8 ? new Uint8Array(0) : await src.read(0, 8, signal);
  const n = parseSafetensorsPrefix(prefix, src.name, size);
  return parseSafetensorsHeader(await src.read(8, n, signal), src.name, size);
}

const indexSchema = z.looseObject({
  metadata: z.looseObject({}).nullish(),
  weight_map: z.record(z.string(), z.string()),
});

function isNotFound(e: unknown): boolean {
  if (!(e instanceof RingworkError)) return false;
  if (e.code === 'FETCH_HTTP_STATUS') return e.details.status === 404 || e.details.status === 410;
  // Openers that do not say why (e.g. the in-memory one) only fail this way for absent files.
  return e.code === 'FILE_READ_FAILED' && e.details.notFound !== false;
}

/** Options of {@link openSafetensorsModel}. */
export interface OpenSafetensorsOptions {
  signal?: AbortSignal;
}

/** A {@link ModelSource} backed by safetensors files, with what the files said about themselves. */
export interface SafetensorsModelSource extends ModelSource {
  readonly format: 'safetensors';
  /** Weight files, relative to the opener root. */
  readonly files: readonly string[];
  /** `__metadata__` of each weight file. */
  readonly metadata: ReadonlyMap<string, Record<string, string>>;
}

/**
 * Opens a Hugging Face safetensors model: parses `config.json` (see {@link parseHfConfig}), finds
 * `model.safetensors.index.json` (sharded) or `model.safetensors`, reads every weight file's
 * header, and checks every tensor the config needs is present with the right dtype and shape.
 * No tensor data is read until {@link ModelSource.readTensor}.
 *
 * @throws `MODEL_MISSING_TENSOR`, `MODEL_BAD_TENSOR`, `MODEL_BAD_HEADER`, `MODEL_BAD_MAGIC`,
 *   `MODEL_TRUNCATED`, `MODEL_BAD_CONFIG`, `MODEL_UNSUPPORTED_ARCHITECTURE`, and the opener's
 *   fetch/file errors.
 */
export async function openSafetensorsModel(
  opener: FileOpener,
  opts: OpenSafetensorsOptions = {},
): Promise<SafetensorsModelSource> {
  const { signal } = opts;
  const configSrc = opener.open('config.json');
  const config = parseHfConfig(await readJsonFile(opener, 'config.json', signal), configSrc.name);

  // Where the weights are: the index (sharded) or one file. The index is probed first because a
  // repo may keep a stale model.safetensors next to the shards; its absence costs one small 404.
  let weightMap: Map<string, string> | undefined;
  let files: string[];
  let indexName = SAFETENSORS_INDEX_FILE;
  try {
    indexName = opener.open(SAFETENSORS_INDEX_FILE).name;
    const parsed = indexSchema.safeParse(
      await readJsonFile(opener, SAFETENSORS_INDEX_FILE, signal, 'MODEL_BAD_HEADER'),
    );
    if (!parsed.success) {
      throw new RingworkError(
        'MODEL_BAD_HEADER',
        `${indexName} is not a valid safetensors index (${z.prettifyError(parsed.error)}). Re-export the model.`,
        { details: { file: indexName } },
      );
    }
    weightMap = new Map(Object.entries(parsed.data.weight_map));
    files = [...new Set(weightMap.values())];
    if (files.length === 0) {
      throw new RingworkError(
        'MODEL_BAD_HEADER',
        `${indexName} has an empty weight_map. Re-export the model.`,
        {
          details: { file: indexName },
        },
      );
    }
  } catch (e) {
    if (!isNotFound(e)) throw e;
    files = [SAFETENSORS_FILE];
  }

  const sources = new Map<string, ByteSource>(files.map((f) => [f, opener.open(f)]));
  let headers: SafetensorsHeader[];
  try {
    headers = await Promise.all(files.map((f) => readSafetensorsHeader(sources.get(f)!, signal)));
  } catch (e) {
    if (weightMap || !isNotFound(e)) throw e;
    const err = e as RingworkError;
    throw new RingworkError(
      err.code,
      `${opener.root}: found neither ${SAFETENSORS_FILE} nor ${SAFETENSORS_INDEX_FILE} (${err.message}) Point at a directory or URL holding a Hugging Face safetensors export (pytorch_model.bin checkpoints must be converted first).`,
      {
        details: { ...err.details, root: opener.root, tried: [SAFETENSORS_INDEX_FILE, SAFETENSORS_FILE] },
        cause: e,
      },
    );
  }

  const required = requiredTensorNames(config);
  const requiredSet = new Set(required);
  const tensors = new Map<string, TensorInfo>();
  const metadata = new Map<string, Record<string, string>>();
  headers.forEach((header, i) => {
    const file = files[i]!;
    metadata.set(file, header.metadata);
    for (const entry of header.entries) {
      // A tensor listed in several files: the index decides.
      if (weightMap && weightMap.get(entry.name) !== undefined && weightMap.get(entry.name) !== file)
        continue;
      if (!(entry.dtype in DTYPE_BYTES)) {
        if (requiredSet.has(entry.name)) {
          throw new RingworkError(
            'MODEL_BAD_TENSOR',
            `${sources.get(file)!.name}: tensor "${entry.name}" is stored as ${entry.dtype}; Ringwork reads F32, F16 and BF16 only. Use an unquantised export (torch_dtype float32/float16/bfloat16).`,
            { details: { file: sources.get(file)!.name, tensor: entry.name, dtype: entry.dtype } },
          );
        }
        continue; // a buffer we never read (e.g. an int64 position_ids)
      }
      tensors.set(entry.name, {
        name: entry.name,
        dtype: entry.dtype as StoredDType,
        shape: entry.shape,
        file,
        offset: entry.offset,
        byteLength: entry.byteLength,
      });
    }
  });

  // The index names a file for each tensor; that file's header must agree.
  if (weightMap) {
    for (const [name, file] of weightMap) {
      if (!tensors.has(name) && requiredSet.has(name)) {
        throw new RingworkError(
          'MODEL_MISSING_TENSOR',
          `${sources.get(file)!.name}: ${indexName} says tensor "${name}" is in this file but its header does not list it. The shard and the index disagree; download or export the model again.`,
          { details: { file: sources.get(file)!.name, index: indexName, tensor: name } },
        );
      }
    }
  }
  const missing = required.filter((name) => !tensors.has(name));
  if (missing.length > 0) {
    const where = weightMap ? indexName : sources.get(SAFETENSORS_FILE)!.name;
    const hint = missing.includes('lm_head.weight')
      ? ' config.json says tie_word_embeddings=false, yet there is no lm_head.weight: if the model shares its embedding matrix, set tie_word_embeddings to true.'
      : ' The checkpoint does not match config.json (wrong num_hidden_layers? a non-Llama naming scheme?).';
    throw new RingworkError(
      'MODEL_MISSING_TENSOR',
      `${where}: missing tensor${missing.length > 1 ? 's' : ''} ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}.${hint}`,
      { details: { file: where, missing } },
    );
  }
  for (const name of required) {
    const info = tensors.get(name)!;
    const want = expectedTensorShape(config, name);
    if (want && (want.length !== info.shape.length || want.some((d, i) => d !== info.shape[i]))) {
      const file = sources.get(info.file)!.name;
      throw new RingworkError(
        'MODEL_BAD_TENSOR',
        `${file}: tensor "${name}" has shape [${info.shape.join(', ')}] but config.json implies [${want.join(', ')}]. The weights do not belong to this config.json.`,
        { details: { file, tensor: name, shape: info.shape, expected: want } },
      );
    }
  }

  return {
    format: 'safetensors',
    config,
    tensors,
    files,
    metadata,
    get bytesRead() {
      return opener.bytesRead;
    },
    async readTensor(name: string, readSignal?: AbortSignal): Promise<Float32Array> {
      const info = tensors.get(name);
      if (!info) {
        throw new RingworkError(
          'MODEL_MISSING_TENSOR',
          `${opener.root}: the model has no tensor "${name}". Use a canonical Hugging Face Llama tensor name (see requiredTensorNames).`,
          { details: { root: opener.root, tensor: name } },
        );
      }
      throwIfAborted(readSignal, `Reading tensor ${name}`);
      const src = sources.get(info.file)!;
      const bytes = await src.read(info.offset, info.byteLength, readSignal);
      return decodeToFloat32(bytes, info.dtype, `${src.name}: tensor "${name}"`);
    },
  };
}
