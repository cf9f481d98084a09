/**
 * Peer sessions: server-assigned ids and session tokens. A client never chooses its id; a
 * reconnecting client proves it owns a session with the token it was given, and the token is
 * rotated on every successful resume so a token seen once (a log, a replay) stops working as soon as
 * the legitimate owner reconnects.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { RingworkError } from '../../shared/errors.js';
import { systemClock, type Clock } from './clock.js';

/** Roles a peer may take. */
export type PeerRole = 'contributor' | 'requester';

/** One peer session (it outlives a WebSocket connection by the resume grace). */
export interface PeerSession {
  readonly id: string;
  roles: ReadonlySet<PeerRole>;
  /** Free-form client label from `hello`. */
  client: string | undefined;
  /** True while a WebSocket is attached. */
  connected: boolean;
  /** Last accepted frame, ms. */
  lastSeen: number;
  /** When the socket closed (null while connected), ms. */
  disconnectedAt: number | null;
  readonly createdAt: number;
  /** How many times the session was resumed. */
  resumes: number;
}

/** The session store. */
export interface PeerRegistry {
  /** Creates a session with a fresh id and token. */
  create(roles: readonly PeerRole[], client?: string): { session: PeerSession; token: string };
  /**
   * Returns the session `peerId` if `token` is its current token, and rotates the token. Unknown ids
   * and wrong tokens fail alike (PROTOCOL_BAD_TOKEN) so the reply does not reveal which ids exist.
   */
  resume(peerId: string, token: string): { session: PeerSession; token: string };
  get(peerId: string): PeerSession | undefined;
  /**
   * Cluster mode: takes over a session another instance created (its token checked against the
   * shared store's hash by the caller). The session starts disconnected; `resume` then rotates it.
   */
  adopt(peerId: string, tokenHashHex: string, roles: readonly PeerRole[], client?: string): PeerSession;
  /** Records activity (any accepted frame). */
  touch(peerId: string): void;
  setConnected(peerId: string, connected: boolean): void;
  remove(peerId: string): boolean;
  all(): IterableIterator<PeerSession>;
  readonly size: number;
}

/** Options of {@link createPeerRegistry}. */
export interface PeerRegistryOptions {
  clock?: Pick<Clock, 'now'>;
  /** Source of random bytes (crypto by default; tests inject a seeded one). */
  random?: (bytes: number) => Uint8Array;
}

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const hash = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** The SHA-256 of a session token, hex: what the cluster's shared store keeps instead of the token. */
export function hashSessionToken(token: string): string {
  return hash(token).toString('hex');
}

/** Creates an empty session store. */
export function createPeerRegistry(opts: PeerRegistryOptions = {}): PeerRegistry {
  const clock = opts.clock ?? systemClock;
  const random = opts.random ?? ((n: number) => randomBytes(n));
  const sessions = new Map<string, PeerSession>();
  // Only hashes are kept: a heap dump or a snapshot bug cannot leak a usable token.
  const tokenHashes = new Map<string, Buffer>();

  const newToken = (): string => b64url(random(32));
  const newId = (): string => {
    for (let i = 0; i < 16; i++) {
      const id = `p_${b64url(random(12))}`;
      if (!sessions.has(id)) return id;
    }
    throw new RingworkError('INVALID_ARGUMENT', 'The random source keeps producing taken peer ids.', {});
  };
  const badToken = (): RingworkError =>
    new RingworkError(
      'PROTOCOL_BAD_TOKEN',
      'Cannot resume: unknown peer id or wrong session token. Send hello without "resume" to start a new session.',
      {},
    );

  return {
    create(roles, client) {
      const now = clock.now();
      const session: PeerSession = {
        id: newId(),
        roles: new Set(roles),
        client,
        connected: true,
        lastSeen: now,
        disconnectedAt: null,
        createdAt: now,
        resumes: 0,
      };
      const token = newToken();
      sessions.set(session.id, session);
      tokenHashes.set(session.id, hash(token));
      return { session, token };
    },
    resume(peerId, token) {
      const session = sessions.get(peerId);
      const expected = tokenHashes.get(peerId);
      // Compare digests in constant time even for unknown ids, so timing does not reveal them.
      const ok = timingSafeEqual(hash(token), expected ?? hash(`\u0000${token}`)) && session !== undefined;
      if (!ok || !session) throw badToken();
      const fresh = newToken();
      tokenHashes.set(peerId, hash(fresh));
      session.resumes++;
      session.lastSeen = clock.now();
      return { session, token: fresh };
    },
    get: (peerId) => sessions.get(peerId),
    adopt(peerId, tokenHashHex, roles, client) {
      const now = clock.now();
      const session: PeerSession = {
        id: peerId,
        roles: new Set(roles),
        client,
        connected: false,
        lastSeen: now,
        disconnectedAt: now,
        createdAt: now,
        resumes: 0,
      };
      sessions.set(peerId, session);
      tokenHashes.set(peerId, Buffer.from(tokenHashHex, 'hex'));
      return session;
    },
    touch(peerId) {
      const s = sessions.get(peerId);
      if (s) s.lastSeen = clock.now();
    },
    setConnected(peerId, connected) {
      const s = sessions.get(peerId);
      if (!s) return;
      s.connected = connected;
      s.disconnectedAt = connected ? null : clock.now();
      if (connected) s.lastSeen = clock.now();
    },
    remove(peerId) {
      tokenHashes.delete(peerId);
      return sessions.delete(peerId);
    },
    all: () => sessions.values(),
    get size() {
      return sessions.size;
    },
  };
}
