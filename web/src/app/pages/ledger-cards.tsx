import { useEffect, useState } from 'react';
import { useStore } from 'zustand';
import { getIdentity, identityStore } from '../identity';
import { stakeText, type StakeInfo } from '../stake-text';

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

/** Polls a JSON endpoint every `ms` while mounted (undefined until the first answer). */
function usePolled<T>(url: string | undefined, ms: number): T | undefined {
  const [data, setData] = useState<T>();
  useEffect(() => {
    if (!url) return;
    let live = true;
    const load = () =>
      void fetch(url)
        .then((r) => r.json() as Promise<T>)
        .then((d) => live && setData(d))
        .catch(() => undefined);
    load();
    const t = setInterval(load, ms);
    return () => {
      live = false;
      clearInterval(t);
    };
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
  const stake = usePolled<StakeInfo>(id.address ? `/api/stake/${id.address}` : undefined, 10_000);
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
    </section>
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
 * The Chat page's "Your usage": answers, tokens and validated steps the ledger recorded for this
 * tab's signed-in address (`GET /api/usage` with its token: the server shows each requester its
 * own only). Re-read every 5 s and whenever `refresh` changes (an answer finished).
 */
export function UsageCard({ refresh }: { refresh?: unknown }) {
  const id = useStore(identityStore);
  const [usage, setUsage] = useState<Usage>();
  useEffect(() => {
    const token = getIdentity().current?.token;
    if (!id.address || !token) return;
    let live = true;
    const load = () =>
      void fetch('/api/usage', { headers: { authorization: `Bearer ${token}` } })
        .then((r) => r.json() as Promise<Usage>)
        .then((d) => live && setUsage(d))
        .catch(() => undefined);
    load();
    const t = setInterval(load, 5_000);
    return () => {
      live = false;
      clearInterval(t);
    };
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
          ? `${count(usage.requests, 'answer')}, ${count(usage.tokens, 'token')}, ${count(usage.validatedSteps, 'validated step')}`
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
