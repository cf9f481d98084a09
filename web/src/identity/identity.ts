/**
 * The tab's identity on the network: Sign-In with Ethereum (EIP-4361) against the signaling server.
 * With an injected EIP-1193 wallet (`window.ethereum`) the user's account signs; otherwise a key made
 * here (viem `generatePrivateKey`) and kept in IndexedDB signs, so contributing stays one click and
 * the address survives reloads. The server answers a token the signaling `hello` carries.
 */
import { isAddress, toHex, type Address, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { createSiweMessage } from 'viem/siwe';
import { RingworkError } from '../../../shared/errors';

/** Where the local key lives (IndexedDB in the browser; memory in tests). */
export interface KeyStore {
  get(): Promise<Hex | undefined>;
  put(key: Hex): Promise<void>;
}

/** The part of an EIP-1193 provider sign-in uses. */
export interface Eip1193Provider {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
}

/** A signed-in identity. */
export interface SignedIdentity {
  readonly address: Address;
  readonly token: string;
  readonly expiresAt: number;
  /** Who signed: the user's wallet, or the key this browser keeps. */
  readonly source: 'wallet' | 'local';
}

/** Signs in to one server. */
export interface IdentityClient {
  /** Fetches a nonce, signs, verifies; rejects with the server's typed error. */
  signIn(signal?: AbortSignal): Promise<SignedIdentity>;
  /** The last successful sign-in. */
  readonly current: SignedIdentity | undefined;
  /** The key this browser keeps, as a viem account (undefined: none made yet); it signs its own stake. */
  localAccount(): Promise<PrivateKeyAccount | undefined>;
}

/** What the identity client needs from its page. */
export interface IdentityDeps {
  /** `http(s)://host[:port]` of the server (the page's origin). */
  readonly origin: string;
  readonly keys: KeyStore;
  readonly ethereum?: Eip1193Provider | undefined;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
}

/** Creates the identity client. */
export function createIdentityClient(deps: IdentityDeps): IdentityClient {
  const f = deps.fetch ?? globalThis.fetch.bind(globalThis);
  const now = deps.now ?? Date.now;
  const url = new URL(deps.origin);
  let current: SignedIdentity | undefined;

  const json = async (res: Response): Promise<unknown> => {
    const body = (await res.json().catch(() => ({}))) as { error?: unknown };
    if (!res.ok) {
      throw body.error
        ? RingworkError.fromJSON(body.error)
        : new RingworkError('FETCH_HTTP_STATUS', `Sign-in answered HTTP ${res.status}.`, {
            details: { status: res.status },
          });
    }
    return body;
  };

  /** The signer: the wallet's first account, else the local key (made on first use). */
  const signer = async (): Promise<{
    address: Address;
    sign: (message: string) => Promise<Hex>;
    source: SignedIdentity['source'];
  }> => {
    const eth = deps.ethereum;
    if (eth) {
      const accounts = (await eth.request({ method: 'eth_requestAccounts' })) as unknown[];
      const address = accounts[0];
      if (typeof address === 'string' && isAddress(address)) {
        return {
          address,
          source: 'wallet',
          sign: async (message) =>
            (await eth.request({ method: 'personal_sign', params: [toHex(message), address] })) as Hex,
        };
      }
    }
    let key = await deps.keys.get();
    if (!key) {
      key = generatePrivateKey();
      await deps.keys.put(key);
    }
    const account = privateKeyToAccount(key);
    return { address: account.address, source: 'local', sign: (message) => account.signMessage({ message }) };
  };

  return {
    async signIn(signal) {
      const s = await signer();
      const nonce = (await json(await f(`${url.origin}/api/auth/nonce`, signal ? { signal } : {}))) as {
        nonce: string;
        chainId: number;
      };
      const message = createSiweMessage({
        address: s.address,
        chainId: nonce.chainId,
        domain: url.host,
        nonce: nonce.nonce,
        uri: `${url.origin}/`,
        version: '1',
        issuedAt: new Date(now()),
        statement: 'Sign in to Ringwork to earn credit for the compute you contribute.',
      });
      const signature = await s.sign(message);
      const r = (await json(
        await f(`${url.origin}/api/auth/verify`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ message, signature }),
          ...(signal ? { signal } : {}),
        }),
      )) as { address: Address; token: string; expiresAt: number };
      current = { ...r, source: s.source };
      return current;
    },
    get current() {
      return current;
    },
    async localAccount() {
      const key = await deps.keys.get();
      return key ? privateKeyToAccount(key) : undefined;
    },
  };
}

/** The local key in IndexedDB (database `ringwork-identity`, store `keys`, key `local`). */
export function createIndexedDbKeyStore(idb: IDBFactory = indexedDB): KeyStore {
  const open = (): Promise<IDBDatabase> =>
    new Promise((resolve, reject) => {
      const req = idb.open('ringwork-identity', 1);
      req.onupgradeneeded = () => req.result.createObjectStore('keys');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error ?? new Error('IndexedDB open failed'));
    });
  const run = async <T>(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest): Promise<T> => {
    const db = await open();
    try {
      return await new Promise<T>((resolve, reject) => {
        const tx = db.transaction('keys', mode);
        const req = op(tx.objectStore('keys'));
        tx.oncomplete = () => resolve(req.result as T);
        tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
      });
    } finally {
      db.close();
    }
  };
  return {
    async get() {
      const v = await run<unknown>('readonly', (s) => s.get('local'));
      return typeof v === 'string' && /^0x[0-9a-f]{64}$/i.test(v) ? (v as Hex) : undefined;
    },
    put: (key) => run<void>('readwrite', (s) => s.put(key, 'local')),
  };
}

/** A key store in memory (tests; a browser without IndexedDB, where the key lasts one page). */
export function createMemoryKeyStore(): KeyStore {
  let key: Hex | undefined;
  return {
    get: () => Promise.resolve(key),
    put: (k) => {
      key = k;
      return Promise.resolve();
    },
  };
}
