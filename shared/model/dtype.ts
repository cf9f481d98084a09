/**
 * Element-type conversions between the on-disk tensor formats (F32, F16, BF16) and the float32
 * the graph runs in, plus the UTF-8 helpers the file formats need for their JSON headers.
 * Everything here is pure and allocation-conscious: a 1B-parameter model goes through it.
 */
import { RingworkError } from '../errors.js';
import type { StoredDType } from './types.js';

/** Bytes per element of each stored dtype. */
export const DTYPE_BYTES: Readonly<Record<StoredDType, number>> = { F32: 4, F16: 2, BF16: 2 };

/** Bytes per element of `dtype`. */
export function dtypeByteSize(dtype: StoredDType): number {
  return DTYPE_BYTES[dtype];
}

// Scratch views that reinterpret one float32 as its bit pattern without allocating.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

// Typed-array views use host byte order while the file formats are little-endian. Every realistic
// host is little-endian; the flag keeps big-endian hosts correct via the slower DataView path.
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Converts one IEEE 754 half-precision bit pattern to a number (subnormals, ±inf, NaN exact). */
export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero or subnormal: frac * 2^-14 * 2^-10
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Converts one bfloat16 bit pattern to a number (it is the top half of a float32). */
export function bf16BitsToF32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0]!;
}

/**
 * Rounds a number to the nearest half-precision value (round-half-to-even, like numpy/torch) and
 * returns its bit pattern. Overflow gives ±inf, NaN stays NaN, tiny values become subnormals.
 */
export function f32ToF16Bits(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // inf, or a quiet NaN
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large: inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa (with its implicit 1) into place, rounding.
    if (e < -10) return sign; // below half the smallest subnormal: signed zero
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) !== 0)) half += 1;
    return sign | half; // a carry into the exponent bits is the correct smallest normal
  }
  let out = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (out & 1) !== 0)) out += 1; // may carry into inf: correct
  return sign | out;
}

/** Rounds a number to the nearest bfloat16 (round-half-to-even) and returns its bit pattern. */
export function f32ToBf16Bits(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff; // keep NaN a NaN
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

let f16Table: Float32Array | undefined;
/** All 65536 half values, built once on first use: a lookup beats bit twiddling per element. */
function halfTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16BitsToF32(i);
  }
  return f16Table;
}

/**
 * Decodes little-endian tensor bytes of `dtype` into a new Float32Array. The input may start at
 * any byte offset (HTTP bodies and file reads give no alignment guarantee).
 */
export function decodeToFloat32(bytes: Uint8Array, dtype: StoredDType, what = 'tensor'): Float32Array {
  const size = DTYPE_BYTES[dtype];
  if (size === undefined) {
    throw new RingworkError(
      'MODEL_BAD_TENSOR',
      `${what}: dtype ${String(dtype)} is not supported (F32, F16, BF16 only).`,
      {
        details: { what, dtype },
      },
    );
  }
  if (bytes.byteLength % size !== 0) {
    throw new RingworkError(
      'MODEL_BAD_TENSOR',
      `${what}: ${bytes.byteLength} bytes is not a whole number of ${dtype} elements. The file is corrupt; re-export it.`,
      { details: { what, dtype, byteLength: bytes.byteLength } },
    );
  }
  const n = bytes.byteLength / size;
  const out = new Float32Array(n);
  const aligned = bytes.byteOffset % size === 0;
  if (dtype === 'F32') {
    if (HOST_LITTLE_ENDIAN) {
      // A byte copy handles any alignment and detaches the result from the source buffer.
      new Uint8Array(out.buffer).set(bytes);
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
    }
    return out;
  }
  const u16 =
    HOST_LITTLE_ENDIAN && aligned ? new Uint16Array(bytes.buffer, bytes.byteOffset, n) : readU16LE(bytes, n);
  if (dtype === 'F16') {
    const table = halfTable();
    for (let i = 0; i < n; i++) out[i] = table[u16[i]!]!;
  } else {
    // bf16 is the top half of a float32; a Uint32 view of `out` shares its (host) byte order.
    const outBits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) outBits[i] = u16[i]! << 16;
  }
  return out;
}

function readU16LE(bytes: Uint8Array, n: number): Uint16Array {
  const u16 = new Uint16Array(n);
  for (let i = 0; i < n; i++) u16[i] = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
  return u16;
}

/** Encodes float32 values as little-endian bytes of `dtype` (rounding half to even). */
export function encodeFromFloat32(data: Float32Array, dtype: StoredDType): Uint8Array {
  const n = data.length;
  if (dtype === 'F32') {
    if (HOST_LITTLE_ENDIAN)
      return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + n * 4));
    const out = new Uint8Array(n * 4);
    const view = new DataView(out.buffer);
    for (let i = 0; i < n; i++) view.setFloat32(i * 4, data[i]!, true);
    return out;
  }
  const out = new Uint8Array(n * 2);
  const convert = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
  if (HOST_LITTLE_ENDIAN) {
    const u16 = new Uint16Array(out.buffer);
    for (let i = 0; i < n; i++) u16[i] = convert(data[i]!);
  } else {
    for (let i = 0; i < n; i++) {
      const b = convert(data[i]!);
      out[2 * i] = b & 0xff;
      out[2 * i + 1] = b >>> 8;
    }
  }
  return out;
}

/** Rounds values in place to what `dtype` can store (what a reader of that file will see). */
export function roundToDType(data: Float32Array, dtype: StoredDType): Float32Array {
  if (dtype === 'F16') for (let i = 0; i < data.length; i++) data[i] = f16BitsToF32(f32ToF16Bits(data[i]!));
  else if (dtype === 'BF16')
    for (let i = 0; i < data.length; i++) data[i] = bf16BitsToF32(f32ToBf16Bits(data[i]!));
  return data;
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** Strict UTF-8 decode: throws on malformed bytes (a garbage header must not parse). */
export function utf8Decode(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

/** UTF-8 encode. */
export function utf8Encode(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}
