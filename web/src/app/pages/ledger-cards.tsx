import { useEffect, useState } from 'react';
import { useStore } from 'zustand';
import { getIdentity, identityStore } from '../identity';
import { formatEther, type Address } from 'viem';
import { pollJson } from '../poll-json';
import { stakeFromPage } from '../stake-action';
import { stakeText, type StakeInfo } from '../stake-text';
import type { Eip1193Provider } from '../../identity/identity';

/** FLOPs in engineering units: credit is validated work, in floating-point operations. */
function work(f: number): string {
  const units: Array<[number, string]> = [
    [1e15, 'PFLOP'],
    [1e12, 'TFLOP'],
    [1e9, 'GFLOP'],
    [1e6, 'MFLOP'],
  ];
  for (const [scale, name] of units) if (f >= scale) return `${(f / scale).toFixed(2)} ${name}`;
  return `${Math.round(f)} FLOP`;
}

const shortAddress = (a: string): string => `${a.slice(0, 6)}…${a.slice(-4)}`;

/**
 * Polls a JSON endpoint every `ms` while mounted (undefined until the first answer); stops after an
 * answer that says the feature is off on this server.
 */
function usePolled<T>(url: string | undefined, ms: number): T | undefined {
  const [data, setData] = useState<T>();
  useEffect(() => {
    if (!url) return;
    return pollJson(url, ms, (d) => setData(d as T));
  }, [url, ms]);
  return data;
}

interface Account {
  enabled: boolean;
  flops?: number;
  validatedSteps?: number;
}

/** The Contribute page's identity: short address, where its key lives, credit, validated steps and stake. */
export function IdentityCard() {
  const id = useStore(identityStore);
  const account = usePolled<Account>(id.address ? `/api/ledger/account/${id.address}` : undefined, 10_000);
  // After a stake the page asks the server to read the chain again (`fresh`), not its cache.
  const [staked, setStaked] = useState(0);
  const stake = usePolled<StakeInfo>(
    id.address ? `/api/stake/${id.address}${staked ? `?fresh=1&n=${staked}` : ''}` : undefined,
    10_000,
  );
  return (
    <section className="card" data-testid="identity">
      <h2>Identity and credit</h2>
      <dl className="kv">
        <dt>Address</dt>
        <dd data-testid="identity-address" title={id.address}>
          {id.address
            ? `${shortAddress(id.address)} (${id.source === 'wallet' ? 'your wallet' : 'key kept in this browser'})`
            : id.error
              ? 'anonymous (sign-in failed: earns no credit)'
              : 'signs in when you contribute'}
        </dd>
        <dt>Credit earned</dt>
        <dd data-testid="identity-credit">
          {account?.enabled === false ? 'ledger off on this server' : work(account?.flops ?? 0)}
        </dd>
        <dt>Validated steps</dt>
        <dd data-testid="identity-steps">{account?.validatedSteps ?? 0}</dd>
        <dt>Stake</dt>
        <dd data-testid="identity-stake">{stakeText(stake, id.address !== undefined)}</dd>
      </dl>
      {id.address && stake?.enabled && stake.contract && stake.chainId !== undefined ? (
        <StakeControl info={stake} onStaked={() => setStaked((n) => n + 1)} />
      ) : null}
    </section>
  );
}

/** ETH still missing for the largest minimum (model or level), as the default amount to stake. */
function shortfallEth(s: StakeInfo): string {
  const req = s.requiredWei;
  const all = req ? [req.default, ...Object.values(req.models), ...Object.values(req.levels ?? {})] : ['0'];
  const need = all.reduce((a, b) => (BigInt(b) > a ? BigInt(b) : a), 0n);
  const short = need - BigInt(s.stakeWei ?? '0');
  return short > 0n ? formatEther(short) : '';
}

/**
 * The Stake action: an amount and a button. The wallet (when the tab signed in with one) or the key
 * this browser keeps signs `stake()`; then the card reads the stake again.
 */
function StakeControl({ info, onStaked }: { info: StakeInfo; onStaked: () => void }) {
  const id = useStore(identityStore);
  const [amount, setAmount] = useState(() => shortfallEth(info));
  const [state, setState] = useState<{ busy: boolean; text: string }>({ busy: false, text: '' });
  const send = () => {
    setState({ busy: true, text: id.source === 'wallet' ? 'confirm in your wallet…' : 'sending…' });
    stakeFromPage({ contract: info.contract as Address, chainId: info.chainId!, rpc: info.rpc }, amount, {
      identity: getIdentity(),
      ethereum: (globalThis as { ethereum?: Eip1193Provider }).ethereum,
    }).then(
      (hash) => {
        setState({ busy: false, text: `staked ${amount} ETH (transaction ${hash.slice(0, 10)}…)` });
        onStaked();
      },
      (e: unknown) => setState({ busy: false, text: e instanceof Error ? e.message : String(e) }),
    );
  };
  return (
    <form
      className="stake-action"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <label className="field">
        ETH to stake
        <input
          data-testid="stake-amount"
          inputMode="decimal"
          value={amount}
          placeholder="1"
          onChange={(e) => setAmount(e.target.value)}
        />
      </label>
      <button type="submit" data-testid="stake-button" disabled={state.busy || !amount.trim()}>
        Stake
      </button>
      <p data-testid="stake-status" role="status">
        {state.text ||
          (id.source === 'wallet'
            ? 'your wallet signs and pays'
            : info.rpc
              ? `the key kept in this browser signs; its address needs ETH on chain ${info.chainId}`
              : 'stake with a wallet: this server names no chain RPC for keys kept in the browser')}
      </p>
    </form>
  );
}

/** The Network page's leaderboard: top contributors by validated work. */
export function Leaderboard() {
  const board = usePolled<{
    enabled: boolean;
    leaderboard?: Array<{ address: string; flops: number; validatedSteps: number }>;
  }>('/api/ledger/leaderboard?limit=10', 10_000);
  return (
    <section className="card" data-testid="leaderboard">
      <h2>Leaderboard</h2>
      {board?.enabled === false ? (
        <p>The ledger is off on this server.</p>
      ) : !board?.leaderboard?.length ? (
        <p>No validated work yet.</p>
      ) : (
        <ol>
          {board.leaderboard.map((r) => (
            <li key={r.address} title={r.address}>
              {shortAddress(r.address)}: {work(r.flops)}, {r.validatedSteps} steps
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

const count = (n: number | undefined, what: string): string => `${n ?? 0} ${what}${n === 1 ? '' : 's'}`;

interface Usage {
  enabled: boolean;
  requests?: number;
  tokens?: number;
  validatedSteps?: number;
  error?: { code: string; message: string };
}

/**
 * The Chat page's "Your usage": answers, tokens and validated ring steps (a step checked at level
 * k counts once per ring that ran it, as the ledger records it) the ledger recorded for this
 * tab's signed-in address (`GET /api/usage` with its token: the server shows each requester its
 * own only). Re-read every 5 s and whenever `refresh` changes (an answer finished).
 */
export function UsageCard({ refresh }: { refresh?: unknown }) {
  const id = useStore(identityStore);
  const [usage, setUsage] = useState<Usage>();
  useEffect(() => {
    const token = getIdentity().current?.token;
    if (!id.address || !token) return;
    return pollJson('/api/usage', 5_000, (d) => setUsage(d as Usage), {
      headers: { authorization: `Bearer ${token}` },
    });
  }, [id.address, refresh]);
  const text = !id.address
    ? id.error
      ? 'anonymous (sign-in failed): usage is not recorded'
      : 'recorded once you are signed in (with your first question)'
    : usage?.enabled === false
      ? 'the ledger is off on this server'
      : usage?.error
        ? `not readable: ${usage.error.message}`
        : usage
          ? `${count(usage.requests, 'answer')}, ${count(usage.tokens, 'token')}, ${count(usage.validatedSteps, 'validated ring step')}`
          : 'reading…';
  return (
    <div data-testid="usage">
      <h2>Your usage</h2>
      <p data-testid="usage-text" title={id.address}>
        {id.address ? `${shortAddress(id.address)}: ` : ''}
        {text}
      </p>
    </div>
  );
}
