/**
 * Writes Hugging Face safetensors files (single or sharded with an index), as lists of byte
 * chunks so a caller can stream them to disk or a network without ever concatenating a
 * multi-GB model into one buffer. The header can be built from shapes alone, before any data
 * exists, which is how the synthesizer streams a model tensor by tensor.
 */
import { RingworkError } from '../errors.js';
import { DTYPE_BYTES, encodeFromFloat32, utf8Encode } from './dtype.js';
import { SAFETENSORS_FILE } from './safetensors.js';
import type { StoredDType } from './types.js';

/** What the header needs to know about a tensor. */
export interface SafetensorsTensorSpec {
  name: string;
  dtype: StoredDType;
  shape: number[];
}

/** A tensor to write: float32 values, stored as `dtype`. */
export interface SafetensorsTensor extends SafetensorsTensorSpec {
  data: Float32Array;
}

/** The header of one file, and where each tensor's data goes. */
export interface SafetensorsLayout {
  /** The 8-byte length prefix followed by the space-padded JSON header. */
  header: Uint8Array;
  /** Absolute file offset of each tensor's data, in input order. */
  offsets: number[];
  /** Total file size. */
  fileBytes: number;
}

/** Metadata written by default: transformers refuses files whose `format` is not one it knows. */
const DEFAULT_METADATA: Readonly<Record<string, string>> = { format: 'pt' };

/** Number of data bytes of a tensor. */
export function tensorByteLength(spec: SafetensorsTensorSpec): number {
  return spec.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[spec.dtype];
}

function checkSpecs(specs: readonly SafetensorsTensorSpec[]): void {
  const seen = new Set<string>();
  for (const s of specs) {
    if (s.name === '__metadata__' || s.name.length === 0 || seen.has(s.name)) {
      throw new RingworkError(
        'INVALID_ARGUMENT',
        `Cannot write tensor name "${s.name}": empty, reserved or duplicated.`,
        {
          details: { tensor: s.name },
        },
      );
    }
    seen.add(s.name);
    if (DTYPE_BYTES[s.dtype] === undefined || !s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new RingworkError(
        'INVALID_ARGUMENT',
        `Cannot write tensor "${s.name}": dtype ${s.dtype} / shape [${s.shape.join(', ')}] is not valid (F32, F16, BF16; non-negative integer dims).`,
        { details: { tensor: s.name, dtype: s.dtype, shape: s.shape } },
      );
    }
  }
}

/**
 * Builds the header of a safetensors file holding `specs` in order (data packed back to back).
 * The JSON is padded with spaces so the data region starts 8-byte aligned, as the format advises.
 */
export function buildSafetensorsHeader(
  specs: readonly SafetensorsTensorSpec[],
  metadata: Record<string, string> = {},
): SafetensorsLayout {
  checkSpecs(specs);
  const json: Record<string, unknown> = { __metadata__: { ...DEFAULT_METADATA, ...metadata } };
  const rel: number[] = [];
  let pos = 0;
  for (const s of specs) {
    const len = tensorByteLength(s);
    json[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [pos, pos + len] };
    rel.push(pos);
    pos += len;
  }
  const text = utf8Encode(JSON.stringify(json));
  const padded = Math.ceil(text.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + text.byteLength);
  const view = new DataView(header.buffer);
  view.setUint32(0, padded % 2 ** 32, true);
  view.setUint32(4, Math.floor(padded / 2 ** 32), true);
  header.set(text, 8);
  const dataStart = 8 + padded;
  return { header, offsets: rel.map((r) => dataStart + r), fileBytes: dataStart + pos };
}

/** Encodes one tensor's values as stored bytes (little-endian `dtype`). */
export function encodeTensor(tensor: SafetensorsTensor): Uint8Array {
  const count = tensor.shape.reduce((a, b) => a * b, 1);
  if (tensor.data.length !== count) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `Tensor "${tensor.name}" has ${tensor.data.length} values but shape [${tensor.shape.join(', ')}] needs ${count}.`,
      { details: { tensor: tensor.name, shape: tensor.shape, length: tensor.data.length } },
    );
  }
  return encodeFromFloat32(tensor.data, tensor.dtype);
}

/**
 * Serialises tensors into one safetensors file, returned as chunks: the header, then one chunk
 * per tensor. Concatenated (or written in order) they form the file.
 */
export function writeSafetensors(
  tensors: readonly SafetensorsTensor[],
  metadata?: Record<string, string>,
): Uint8Array[] {
  const { header } = buildSafetensorsHeader(tensors, metadata);
  return [header, ...tensors.map(encodeTensor)];
}

/** The `model.safetensors.index.json` document. */
export interface SafetensorsIndex {
  metadata: { total_size: number };
  weight_map: Record<string, string>;
}

/** How tensors are split over files. */
export interface ShardPlan {
  files: { file: string; tensors: SafetensorsTensorSpec[] }[];
  /** The index to write as `model.safetensors.index.json`; null when everything fits one file. */
  index: SafetensorsIndex | null;
}

/** transformers' shard file name: `model-00001-of-00003.safetensors`. */
export function shardFileName(i: number, count: number): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(count)}.safetensors`;
}

/**
 * Splits tensors (in order) over files of at most `maxShardBytes` data bytes each, like
 * transformers' `save_pretrained(max_shard_size=...)`: a tensor larger than the limit gets a file
 * of its own; a single resulting file is plain `model.safetensors` with no index.
 */
export function planSafetensorsShards(
  specs: readonly SafetensorsTensorSpec[],
  maxShardBytes: number,
): ShardPlan {
  if (!(maxShardBytes > 0)) {
    throw new RingworkError('INVALID_ARGUMENT', `maxShardBytes must be positive, got ${maxShardBytes}.`, {
      details: { maxShardBytes },
    });
  }
  checkSpecs(specs);
  const groups: SafetensorsTensorSpec[][] = [];
  let current: SafetensorsTensorSpec[] = [];
  let bytes = 0;
  let total = 0;
  for (const s of specs) {
    const len = tensorByteLength(s);
    total += len;
    if (current.length > 0 && bytes + len > maxShardBytes) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(s);
    bytes += len;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  if (groups.length === 1) return { files: [{ file: SAFETENSORS_FILE, tensors: groups[0]! }], index: null };
  const files = groups.map((tensors, i) => ({ file: shardFileName(i, groups.length), tensors }));
  const weight_map: Record<string, string> = {};
  for (const f of files) for (const t of f.tensors) weight_map[t.name] = f.file;
  return { files, index: { metadata: { total_size: total }, weight_map } };
}

/**
 * Serialises tensors into shards of at most `maxShardBytes` data bytes (see
 * {@link planSafetensorsShards}), each file as chunks, plus the index (null for one file).
 */
export function writeShardedSafetensors(
  tensors: readonly SafetensorsTensor[],
  maxShardBytes: number,
  metadata?: Record<string, string>,
): { files: { file: string; chunks: Uint8Array[] }[]; index: SafetensorsIndex | null } {
  const plan = planSafetensorsShards(tensors, maxShardBytes);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const files = plan.files.map(({ file, tensors: specs }) => ({
    file,
    chunks: writeSafetensors(
      specs.map((s) => byName.get(s.name)!),
      metadata,
    ),
  }));
  return { files, index: plan.index };
}
