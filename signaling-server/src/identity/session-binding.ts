/**
 * Binds signed-in identities to signaling sessions. A token (one sign-in) belongs to the first
 * session whose `hello` presents it: the same session may present it again when it resumes, any
 * other session is refused (`AUTH_TOKEN_OTHER_SESSION`), also after the first one ended, so a token
 * seen on the wire cannot be replayed into a new session. Bindings are forgotten when the token
 * expires, and the table is bounded (the oldest binding goes first).
 */
import type { Address } from 'viem';
import { RingworkError } from '../../../shared/errors.js';
import type { Clock } from '../clock.js';
import type { SiweAuth } from './siwe-auth.js';

/** The identity of one signaling session. */
export interface BoundIdentity {
  readonly address: Address;
  readonly tokenId: string;
}

/** Session ↔ identity bindings. */
export interface SessionBindings {
  /**
   * Checks `token` and binds its address to `peerId`; throws `AUTH_BAD_TOKEN` or
   * `AUTH_TOKEN_OTHER_SESSION`. Nothing changes when it throws.
   */
  bind(token: string, peerId: string): BoundIdentity;
  /** Throws like {@link bind} would, without binding (checks a hello before a session exists). */
  check(token: string, peerId: string | null): BoundIdentity;
  /** The identity bound to a live session, if any. */
  of(peerId: string): BoundIdentity | undefined;
  /** The session ended: it has no identity any more (its token stays spent). */
  release(peerId: string): void;
  readonly size: number;
}

/** Creates the binding table over a sign-in service. */
export function createSessionBindings(auth: SiweAuth, clock: Clock, maxBindings = 200_000): SessionBindings {
  // tokenId -> the session it belongs to; insertion order = bind order.
  const tokens = new Map<string, { peerId: string; expiresAt: number }>();
  const sessions = new Map<string, BoundIdentity>();

  const prune = (): void => {
    const now = clock.now();
    for (const [id, t] of tokens) if (t.expiresAt <= now) tokens.delete(id);
    while (tokens.size > maxBindings) tokens.delete(tokens.keys().next().value!);
  };

  const check = (token: string, peerId: string | null): BoundIdentity => {
    const claims = auth.checkToken(token);
    const owner = tokens.get(claims.tokenId);
    if (owner && owner.peerId !== peerId) {
      throw new RingworkError(
        'AUTH_TOKEN_OTHER_SESSION',
        'This identity token belongs to another signaling session; sign in again for this one.',
        {},
      );
    }
    return { address: claims.address, tokenId: claims.tokenId };
  };

  return {
    check,
    bind(token, peerId) {
      const claims = auth.checkToken(token);
      const id = check(token, peerId);
      if (tokens.size >= maxBindings) prune();
      tokens.set(id.tokenId, { peerId, expiresAt: claims.expiresAt });
      sessions.set(peerId, id);
      return id;
    },
    of: (peerId) => sessions.get(peerId),
    release(peerId) {
      sessions.delete(peerId);
    },
    get size() {
      return sessions.size;
    },
  };
}
