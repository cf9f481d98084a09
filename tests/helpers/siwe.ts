/**
 * Sign-In with Ethereum against a real server, as a wallet would: fetch a nonce, sign an EIP-4361
 * message for the server's own host with a real viem account, and exchange it for the identity token
 * a WebSocket `hello` may carry.
 */
import type { PrivateKeyAccount } from 'viem/accounts';
import { createSiweMessage } from 'viem/siwe';
import { expect } from 'vitest';

/** Signs `account` in on the server at `host` (`127.0.0.1:port`); returns the identity token. */
export async function signIn(host: string, account: PrivateKeyAccount): Promise<string> {
  const n = (await (await fetch(`http://${host}/api/auth/nonce`)).json()) as { nonce: string };
  const message = createSiweMessage({
    address: account.address,
    chainId: 1,
    domain: host,
    nonce: n.nonce,
    uri: `http://${host}/`,
    version: '1',
    issuedAt: new Date(),
  });
  const r = await fetch(`http://${host}/api/auth/verify`, {
    method: 'POST',
    body: JSON.stringify({ message, signature: await account.signMessage({ message }) }),
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { token: string }).token;
}
