import { useEffect, useState } from 'react';
import { useStore } from 'zustand';
import { identityStore } from '../identity';
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
