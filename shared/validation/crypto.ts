/**
 * The WebCrypto subset result validation uses (SHA-256, ECDSA P-256), reached through
 * `globalThis.crypto.subtle` so the same code runs in browsers, workers and Node ≥ 20 without a
 * `node:` import. ECDSA P-256 rather than Ed25519: every browser Ringwork targets has it
 * (Ed25519 arrived in Chromium only in 2025).
 */
import { RingworkError } from '../errors.js';

/** The opaque key handle WebCrypto returns. */
export type CryptoKeyLike = object;

interface SubtleLike {
  digest(algorithm: string, data: Uint8Array): Promise<ArrayBuffer>;
  generateKey(
    algorithm: { name: string; namedCurve: string },
    extractable: boolean,
    usages: string[],
  ): Promise<{ publicKey: CryptoKeyLike; privateKey: CryptoKeyLike }>;
  sign(algorithm: { name: string; hash: string }, key: CryptoKeyLike, data: Uint8Array): Promise<ArrayBuffer>;
  verify(
    algorithm: { name: string; hash: string },
    key: CryptoKeyLike,
    signature: Uint8Array,
    data: Uint8Array,
  ): Promise<boolean>;
  exportKey(format: 'raw', key: CryptoKeyLike): Promise<ArrayBuffer>;
  importKey(
    format: 'raw',
    keyData: Uint8Array,
    algorithm: { name: string; namedCurve: string },
    extractable: boolean,
    usages: string[],
  ): Promise<CryptoKeyLike>;
}

function subtle(): SubtleLike {
  const s = (globalThis as unknown as { crypto?: { subtle?: SubtleLike } }).crypto?.subtle;
  if (!s) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      'WebCrypto (crypto.subtle) is unavailable: result validation needs a secure context or Node >= 20.',
    );
  }
  return s;
}

const CURVE = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** Length of a SHA-256 digest in bytes. */
export const HASH_BYTES = 32;
/** Length of a raw (IEEE P1363) ECDSA P-256 signature in bytes. */
export const SIGNATURE_BYTES = 64;
/** Length of an uncompressed raw P-256 public key in bytes. */
export const PUBLIC_KEY_BYTES = 65;

/** SHA-256 of exactly these bytes. */
export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest('SHA-256', bytes));
}

/** A per-session signing key pair; the raw public key is what a peer registers with the coordinator. */
export interface SessionKey {
  privateKey: CryptoKeyLike;
  publicKey: CryptoKeyLike;
  publicKeyRaw: Uint8Array;
}

/** Generates a fresh, non-extractable ECDSA P-256 session key. */
export async function createSessionKey(): Promise<SessionKey> {
  const pair = await subtle().generateKey(CURVE, false, ['sign', 'verify']);
  const publicKeyRaw = new Uint8Array(await subtle().exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, publicKeyRaw };
}

/** Signs `data` (ECDSA P-256 over SHA-256, 64-byte raw signature). */
export async function signBytes(key: SessionKey, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().sign(SIGN, key.privateKey, data));
}

/** Imports a registered raw public key for verification. */
export async function importPublicKey(raw: Uint8Array): Promise<CryptoKeyLike> {
  if (raw.length !== PUBLIC_KEY_BYTES || raw[0] !== 4) {
    throw new RingworkError(
      'VALIDATION_BAD_COMMITMENT',
      'A public key must be a raw uncompressed P-256 point.',
      {
        details: { length: raw.length },
      },
    );
  }
  return subtle().importKey('raw', raw, CURVE, true, ['verify']);
}

/** True when `signature` is `key`'s signature of `data`. */
export async function verifyBytes(
  key: CryptoKeyLike,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  if (signature.length !== SIGNATURE_BYTES) return false;
  return subtle().verify(SIGN, key, signature, data);
}

/** Byte-wise equality. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Lower-case hex (for evidence records and logs). */
export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** The exact little-endian bytes of a typed array (a view, no copy). */
export function bytesOf(a: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
