/**
 * Peers' per-session public keys, as registered with the coordinator. Verification always looks a
 * signer up here; a commitment from an unregistered peer is refused, never trusted on its word.
 */
import { RingworkError } from '../errors.js';
import { importPublicKey, type CryptoKeyLike } from './crypto.js';

/** Registered public keys by peer id. */
export interface KeyRegistry {
  /** Registers (or replaces, on a new session key) a peer's raw P-256 public key. */
  register(peerId: string, publicKeyRaw: Uint8Array): Promise<void>;
  /** The peer's key; throws `VALIDATION_UNKNOWN_SIGNER` when it registered none. */
  keyOf(peerId: string): CryptoKeyLike;
  has(peerId: string): boolean;
}

/** An in-memory registry (the coordinator's, or a requester's copy of the ring's keys). */
export function createKeyRegistry(): KeyRegistry {
  const keys = new Map<string, CryptoKeyLike>();
  return {
    async register(peerId, raw) {
      keys.set(peerId, await importPublicKey(raw));
    },
    keyOf(peerId) {
      const k = keys.get(peerId);
      if (!k) {
        throw new RingworkError('VALIDATION_UNKNOWN_SIGNER', `Peer ${peerId} registered no session key.`, {
          details: { peerId },
        });
      }
      return k;
    },
    has: (peerId) => keys.has(peerId),
  };
}
