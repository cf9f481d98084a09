/**
 * The Contribute page's stake line, from `GET /api/stake/<address>` (signaling-server/src/stake/):
 * pure, so it is tested without a page.
 */

/** What `GET /api/stake/<address>` answers (decimal wei strings). */
export interface StakeInfo {
  enabled: boolean;
  contract?: string;
  chainId?: number;
  requiredWei?: { default: string; models: Record<string, string>; levels?: Record<string, string> };
  stakeWei?: string | null;
  /** A chain RPC URL the page may send a browser key's stake through (`--chain-rpc-public`). */
  rpc?: string;
}

/** Wei (decimal string) as ETH, to 4 decimals. */
function eth(wei: string): string {
  const w = BigInt(wei);
  const whole = w / 10n ** 18n;
  const frac = ((w % 10n ** 18n) / 10n ** 14n).toString().padStart(4, '0').replace(/0+$/, '');
  return `${whole}${frac ? `.${frac}` : ''} ETH`;
}

/**
 * The stake line: off on this server; or the address's active stake against the minimum for ring
 * membership, and what happens when it is short (the server refuses ring membership).
 */
export function stakeText(s: StakeInfo | undefined, signedIn: boolean): string {
  if (!s) return signedIn ? 'checking…' : 'signs in when you contribute';
  if (!s.enabled) return 'stake off on this server';
  const req = s.requiredWei;
  const need = req
    ? [req.default, ...Object.values(req.models)].reduce((a, b) => (BigInt(b) > BigInt(a) ? b : a))
    : '0';
  const perModel = req && Object.keys(req.models).length > 0 ? ' for some models' : '';
  if (BigInt(need) === 0n) return `${eth(s.stakeWei ?? '0')} staked (no stake required here)`;
  if (s.stakeWei === null || s.stakeWei === undefined)
    return `stake unknown (the chain is not answering); minimum ${eth(need)}`;
  return BigInt(s.stakeWei) >= BigInt(need)
    ? `${eth(s.stakeWei)} staked (minimum ${eth(need)}${perModel}): may join rings`
    : `${eth(s.stakeWei)} staked, below the minimum ${eth(need)}${perModel}: refused ring membership until you stake at ${s.contract ?? 'the stake contract'}`;
}
