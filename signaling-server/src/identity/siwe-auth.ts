/**
 * Sign-In with Ethereum (EIP-4361) for the signaling server, with viem. The server hands out
 * single-use nonces (short expiry, a bounded store per client address bucket and in total), checks a
 * signed message against its own host authority, origin, chain id, nonce and validity window, verifies
 * the signature (a recovered EOA key, or EIP-1271/6492 smart accounts through a configured chain
 * client), and answers an identity token: `base64url(payload).base64url(HMAC-SHA256)` under a
 * secret that lives only as long as the server process, so a restart simply asks clients to sign in
 * again. The token is bound to the first signaling session that presents it (session-binding.ts).
 *
 * Every refusal is a typed {@link RingworkError} (`AUTH_*`), decided in a fixed order: malformed,
 * domain, URI, chain, nonce (consumed by any attempt that names it: single use, whatever the
 * outcome), validity window, signature.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { getAddress, isAddress, isHex, recoverMessageAddress, type Address, type Hex } from 'viem';
import { generateSiweNonce, parseSiweMessage, verifySiweMessage, type SiweMessage } from 'viem/siwe';
import type { Client } from 'viem';
import { z } from 'zod';
import { RingworkError } from '../../../shared/errors.js';
import type { Clock } from '../clock.js';

/** Settings of the sign-in service. */
export interface SiweAuthOptions {
  readonly clock: Clock;
  /** Chain id a message must name (EIP-155); default 1. */
  readonly chainId?: number;
  /** How long a nonce stays valid, ms (default 5 min). */
  readonly nonceTtlMs?: number;
  /** Outstanding nonces per client address bucket: the oldest is dropped past this (default 8). */
  readonly maxNoncesPerBucket?: number;
  /** Outstanding nonces in total: the oldest is dropped past this (default 10,000). */
  readonly maxNonces?: number;
  /** A message's `issuedAt` may be at most this old and this far in the future, ms (default 10 min / 1 min). */
  readonly maxMessageAgeMs?: number;
  readonly maxClockSkewMs?: number;
  /** How long an identity token is valid, ms (default 24 h). */
  readonly tokenTtlMs?: number;
  /** HMAC key for tokens (default 32 random bytes per process). */
  readonly secret?: Uint8Array;
  /**
   * A viem client on the configured chain: signatures are then checked with `verifySiweMessage`, which
   * covers EIP-1271 (deployed smart accounts) and ERC-6492 (counterfactual ones). Without it, only
   * externally owned accounts (ECDSA recovery) are accepted.
   */
  readonly chainClient?: Client;
}

/** Cluster mode: the nonces and token key every instance shares (cluster/shared-auth.ts). */
export interface SharedAuthState {
  /** The identity tokens' HMAC key, the same on every instance. */
  readonly secret: Uint8Array;
  /** Records a nonce this instance issued, for whichever instance verifies it. */
  putNonce(nonce: string, ttlMs: number): Promise<void>;
  /** Deletes a nonce issued by any instance; true when it was outstanding. */
  takeNonce(nonce: string): Promise<boolean>;
}

/** A verified sign-in. */
export interface SignIn {
  readonly address: Address;
  readonly token: string;
  readonly expiresAt: number;
}

/** What a valid identity token says. */
export interface TokenClaims {
  readonly address: Address;
  /** Unique per sign-in: the key a token is bound to a session by. */
  readonly tokenId: string;
  readonly expiresAt: number;
}

/** Where the message must have been made for: the server's own authority, as the request named it. */
export interface ExpectedOrigin {
  /** Host authority (`host[:port]`) of this server, from the (allowlisted) Host header. */
  readonly domain: string;
}

/** The sign-in service. */
export interface SiweAuth {
  /** A new single-use nonce for the client in `bucket`. */
  issueNonce(bucket: string): { nonce: string; expiresAt: number };
  /**
   * A new nonce, also recorded for the whole cluster when its state is shared (what the nonce route
   * answers with; without shared state the same as {@link SiweAuth.issueNonce}).
   */
  issueSharedNonce(bucket: string): Promise<{ nonce: string; expiresAt: number }>;
  /** Cluster mode: from now on nonces and the token key are the cluster's (set once, after Redis connected). */
  share(state: SharedAuthState): void;
  /** Verifies a signed EIP-4361 message; resolves the address and a token, or rejects with `AUTH_*`. */
  verify(input: unknown, expected: ExpectedOrigin): Promise<SignIn>;
  /** Checks a token's MAC and expiry; throws `AUTH_BAD_TOKEN`. */
  checkToken(token: string): TokenClaims;
  /** Outstanding nonces (for tests and the network view). */
  readonly pendingNonces: number;
  /** The chain id messages must name. */
  readonly chainId: number;
}

/** The body of `POST /api/auth/verify`. */
export const verifyBodySchema = z
  .object({
    message: z.string().min(1).max(4096),
    signature: z.string().max(4096),
  })
  .strict();

const tokenPayloadSchema = z
  .object({ a: z.string(), i: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/), e: z.number().int() })
  .strict();

const b64 = (b: Uint8Array | string): string => Buffer.from(b).toString('base64url');

function authError(
  code:
    | 'AUTH_BAD_MESSAGE'
    | 'AUTH_NONCE_INVALID'
    | 'AUTH_MESSAGE_EXPIRED'
    | 'AUTH_WRONG_DOMAIN'
    | 'AUTH_WRONG_URI'
    | 'AUTH_WRONG_CHAIN'
    | 'AUTH_BAD_SIGNATURE'
    | 'AUTH_BAD_TOKEN',
  message: string,
  details: Record<string, unknown> = {},
  cause?: unknown,
): RingworkError {
  return new RingworkError(code, message, { details, ...(cause !== undefined ? { cause } : {}) });
}

/** Creates the sign-in service. */
export function createSiweAuth(options: SiweAuthOptions): SiweAuth {
  const { clock } = options;
  const chainId = options.chainId ?? 1;
  const nonceTtlMs = options.nonceTtlMs ?? 5 * 60_000;
  const perBucket = options.maxNoncesPerBucket ?? 8;
  const maxNonces = options.maxNonces ?? 10_000;
  const maxAgeMs = options.maxMessageAgeMs ?? 10 * 60_000;
  const skewMs = options.maxClockSkewMs ?? 60_000;
  const tokenTtlMs = options.tokenTtlMs ?? 24 * 3_600_000;
  let secret: Uint8Array = options.secret ?? randomBytes(32);
  let shared: SharedAuthState | undefined;
  // Insertion order is issue order: the first entry is always the oldest.
  const nonces = new Map<string, { bucket: string; expiresAt: number }>();
  const byBucket = new Map<string, string[]>();

  const forget = (nonce: string): void => {
    const n = nonces.get(nonce);
    if (!n) return;
    nonces.delete(nonce);
    const list = byBucket.get(n.bucket);
    if (!list) return;
    const i = list.indexOf(nonce);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) byBucket.delete(n.bucket);
  };

  const prune = (now: number): void => {
    for (const [nonce, n] of nonces) {
      if (n.expiresAt > now) break;
      forget(nonce);
    }
  };

  const mac = (payload: string): Buffer => createHmac('sha256', secret).update(payload).digest();

  const issueNonce = (bucket: string): { nonce: string; expiresAt: number } => {
    const now = clock.now();
    prune(now);
    const list = byBucket.get(bucket) ?? [];
    while (list.length >= perBucket) forget(list[0]!);
    while (nonces.size >= maxNonces) forget(nonces.keys().next().value!);
    const nonce = generateSiweNonce();
    const expiresAt = now + nonceTtlMs;
    nonces.set(nonce, { bucket, expiresAt });
    list.push(nonce);
    byBucket.set(bucket, list);
    return { nonce, expiresAt };
  };

  const parse = (input: unknown): { msg: Partial<SiweMessage>; text: string; signature: Hex } => {
    const body = verifyBodySchema.safeParse(input);
    if (!body.success)
      throw authError('AUTH_BAD_MESSAGE', 'The sign-in body must be {message, signature} strings.');
    const { message, signature } = body.data;
    if (!isHex(signature) || (signature.length !== 132 && signature.length < 134))
      throw authError(
        'AUTH_BAD_MESSAGE',
        'The signature must be a 0x-prefixed hex string of 65 bytes or more.',
      );
    let msg: Partial<SiweMessage>;
    try {
      msg = parseSiweMessage(message);
    } catch (e) {
      throw authError('AUTH_BAD_MESSAGE', 'The message is not an EIP-4361 sign-in message.', {}, e);
    }
    if (
      !msg.address ||
      !isAddress(msg.address, { strict: false }) ||
      !msg.domain ||
      !msg.uri ||
      !msg.nonce ||
      msg.chainId === undefined ||
      msg.version !== '1' ||
      !msg.issuedAt ||
      Number.isNaN(msg.issuedAt.getTime())
    ) {
      throw authError(
        'AUTH_BAD_MESSAGE',
        'The message lacks a field sign-in needs (address, domain, uri, version 1, chain id, nonce, issued-at).',
      );
    }
    return { msg, text: message, signature };
  };

  const verify = async (input: unknown, expected: ExpectedOrigin): Promise<SignIn> => {
    const { msg, text, signature } = parse(input);
    const now = clock.now();
    const domain = expected.domain.toLowerCase();
    if (msg.domain!.toLowerCase() !== domain)
      throw authError(
        'AUTH_WRONG_DOMAIN',
        `The message is for "${msg.domain}", not this server (${domain}).`,
        {
          domain: msg.domain,
          expected: domain,
        },
      );
    let uriHost: string;
    try {
      const u = new URL(msg.uri!);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      uriHost = u.host.toLowerCase();
    } catch (e) {
      throw authError(
        'AUTH_WRONG_URI',
        'The message URI must be an http(s) URL on this server.',
        { uri: msg.uri },
        e,
      );
    }
    if (uriHost !== domain)
      throw authError('AUTH_WRONG_URI', `The message URI is on ${uriHost}, not on this server (${domain}).`, {
        uri: msg.uri,
        expected: domain,
      });
    if (msg.chainId !== chainId)
      throw authError(
        'AUTH_WRONG_CHAIN',
        `The message names chain ${msg.chainId}; this server uses ${chainId}.`,
        {
          chainId: msg.chainId,
          expected: chainId,
        },
      );
    prune(now);
    const n = nonces.get(msg.nonce!);
    // Single use whatever the outcome: a nonce that was named once cannot be tried again — on any
    // instance (a nonce issued here is taken from the shared store too).
    forget(msg.nonce!);
    // Cluster mode: the shared record decides (another instance may have used a nonce this one
    // issued). Redis unreachable: a nonce issued here still verifies from memory.
    const localOk = n !== undefined && n.expiresAt > now;
    const nonceOk = shared
      ? await shared.takeNonce(msg.nonce!).catch((e: unknown) => {
          if (n) return localOk;
          throw e;
        })
      : localOk;
    if (!nonceOk)
      throw authError(
        'AUTH_NONCE_INVALID',
        'The nonce is unknown, already used or expired; fetch a new one.',
      );
    const issuedAt = msg.issuedAt!.getTime();
    if (issuedAt > now + skewMs || issuedAt < now - maxAgeMs)
      throw authError('AUTH_MESSAGE_EXPIRED', 'The message was issued too long ago or in the future.', {
        issuedAt: msg.issuedAt!.toISOString(),
      });
    if (msg.expirationTime && msg.expirationTime.getTime() <= now)
      throw authError('AUTH_MESSAGE_EXPIRED', 'The message has expired.', {
        expirationTime: msg.expirationTime.toISOString(),
      });
    if (msg.notBefore && msg.notBefore.getTime() > now)
      throw authError('AUTH_MESSAGE_EXPIRED', 'The message is not valid yet.', {
        notBefore: msg.notBefore.toISOString(),
      });
    const address = getAddress(msg.address!);
    let ok: boolean;
    try {
      if (options.chainClient) {
        // The fields were checked above; viem checks the signature (EOA, EIP-1271, ERC-6492).
        ok = await verifySiweMessage(options.chainClient, {
          message: text,
          signature,
          address,
          time: new Date(now),
        });
      } else {
        ok = getAddress(await recoverMessageAddress({ message: text, signature })) === address;
      }
    } catch (e) {
      throw authError('AUTH_BAD_SIGNATURE', 'The signature cannot be verified.', {}, e);
    }
    if (!ok)
      throw authError('AUTH_BAD_SIGNATURE', 'The signature is not by the message address.', { address });
    const tokenId = b64(randomBytes(18));
    const expiresAt = Math.min(
      now + tokenTtlMs,
      msg.expirationTime ? msg.expirationTime.getTime() : Number.POSITIVE_INFINITY,
    );
    const payload = b64(JSON.stringify({ a: address, i: tokenId, e: expiresAt }));
    return { address, token: `${payload}.${b64(mac(payload))}`, expiresAt };
  };

  const checkToken = (token: string): TokenClaims => {
    const bad = (why: string): RingworkError =>
      authError('AUTH_BAD_TOKEN', `The identity token is ${why}; sign in again.`);
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length > 1024) throw bad('malformed');
    const payload = token.slice(0, dot);
    const sig = Buffer.from(token.slice(dot + 1), 'base64url');
    const want = mac(payload);
    if (sig.length !== want.length || !timingSafeEqual(sig, want)) throw bad('not from this server');
    let claims: z.infer<typeof tokenPayloadSchema>;
    try {
      claims = tokenPayloadSchema.parse(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
    } catch (e) {
      throw authError('AUTH_BAD_TOKEN', 'The identity token is malformed; sign in again.', {}, e);
    }
    if (!isAddress(claims.a)) throw bad('malformed');
    if (claims.e <= clock.now()) throw bad('expired');
    return { address: claims.a, tokenId: claims.i, expiresAt: claims.e };
  };

  return {
    issueNonce,
    async issueSharedNonce(bucket) {
      const n = issueNonce(bucket);
      // Redis unreachable: the nonce still verifies on this instance (fail-open to one process).
      if (shared) await shared.putNonce(n.nonce, n.expiresAt - clock.now()).catch(() => undefined);
      return n;
    },
    share(state) {
      shared = state;
      secret = state.secret;
    },
    verify,
    checkToken,
    get pendingNonces() {
      return nonces.size;
    },
    chainId,
  };
}
