/**
 * The tab's one identity client (see identity/identity.ts) and its observable state for the pages:
 * the signed-in address and where its key lives, or why sign-in failed (the tab then contributes
 * anonymously, earning nothing).
 */
import { createStore } from 'zustand/vanilla';
import {
  createIdentityClient,
  createIndexedDbKeyStore,
  createMemoryKeyStore,
  type Eip1193Provider,
  type IdentityClient,
  type SignedIdentity,
} from '../identity/identity';

/** What the pages show about the identity. */
export interface IdentityState {
  readonly address: string | undefined;
  readonly source: SignedIdentity['source'] | undefined;
  readonly error: string | undefined;
}

/** The identity state, observed by the Contribute page. */
export const identityStore = createStore<IdentityState>(() => ({
  address: undefined,
  source: undefined,
  error: undefined,
}));

let client: IdentityClient | undefined;

/** The tab's identity client (created on first use). */
export function getIdentity(): IdentityClient {
  client ??= createIdentityClient({
    origin: location.origin,
    keys: typeof indexedDB === 'undefined' ? createMemoryKeyStore() : createIndexedDbKeyStore(),
    ethereum: (globalThis as { ethereum?: Eip1193Provider }).ethereum,
  });
  return client;
}

/** Signs in; on failure records why and resolves undefined (the tab stays anonymous). */
export async function signInQuietly(identity: IdentityClient): Promise<SignedIdentity | undefined> {
  try {
    const r = await identity.signIn();
    identityStore.setState({ address: r.address, source: r.source, error: undefined });
    return r;
  } catch (e) {
    identityStore.setState({ error: e instanceof Error ? e.message : String(e) });
    console.warn('sign-in failed; contributing anonymously:', e);
    return undefined;
  }
}
