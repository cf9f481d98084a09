/**
 * Ring membership by stake: a model whose minimum stake is above 0 takes into its rings (primary
 * and validator) only peers whose signed-in address holds at least that much active stake on the
 * RingworkStake contract. Anonymous peers, and peers whose stake is unknown or below the minimum,
 * are left out of those models (the coordinator asks {@link StakeGate.refusal} when it plans);
 * models without a minimum take everyone, as before.
 *
 * Stakes are read with viem and cached for `cacheMs`: planning is synchronous and must not wait on
 * the chain, so a read happens when a contributor says hello (and again once the cached value is
 * stale, in the background); when a peer's standing changes, `onChange` re-plans and the peer is
 * told why with a `STAKE_INSUFFICIENT` error. A chain that cannot be read keeps the last value read
 * (an unknown stake counts as none) and is logged.
 */
import type { Logger } from 'pino';
import { RingworkError } from '../../../shared/errors.js';
import type { Clock } from '../clock.js';

/** Minimum active stake for ring membership, in wei. */
export interface StakePolicy {
  /** For every model without its own entry (0: no stake needed). */
  readonly defaultWei: bigint;
  readonly modelWei: ReadonlyMap<string, bigint>;
  /**
   * Per security level (`--level-min-stake 2=WEI`): peers serving in any ring of a level-k request
   * (primary or validator) need the largest minimum of the levels up to k, on top of the model's.
   * Absent: levels add nothing.
   */
  readonly levelWei?: ReadonlyMap<number, bigint>;
}

/** One peer's standing, as `/api/stake` shows it. */
export interface StakeStanding {
  readonly address: string | undefined;
  /** Active stake read from the chain (undefined: not read yet or unreadable). */
  readonly stakeWei: bigint | undefined;
  readonly readAt: number | undefined;
}

/** The gate. */
export interface StakeGate {
  readonly policy: StakePolicy;
  /** The minimum stake for `model` at security `level` (default 1; 0n: none). */
  required(model: string, level?: number): bigint;
  /** Why `peer` may not serve `model` at security `level` (default 1; null: it may). Synchronous, from the cache. */
  refusal(peer: string, model: string, level?: number): string | null;
  /** Reads `peer`'s stake now (a contributor said hello, or a resume); resolves when cached. */
  refresh(peer: string): Promise<void>;
  /** The cached stake of an address (reads it when older than `maxAgeMs`, default the cache period). */
  stakeOf(address: string, maxAgeMs?: number): Promise<bigint | undefined>;
  standing(peer: string): StakeStanding;
  /**
   * Reads the stake of every peer the gate has judged again (a refused peer may have staked, an
   * admitted one may have requested withdrawal) and reports changes; peers no longer live are forgotten.
   */
  refreshAll(): Promise<void>;
  /** Drops the cached stake of an address (it was just slashed): the next check reads the chain. */
  invalidate(address: string): void;
  /** A peer left: its cache entry may go. */
  forget(peer: string): void;
}

/** What the gate is built from. */
export interface StakeGateDeps {
  readonly policy: StakePolicy;
  readonly readStake: (address: string) => Promise<bigint>;
  readonly addressOf: (peer: string) => string | undefined;
  /** True while the peer's session exists (absent: always). */
  readonly isLive?: (peer: string) => boolean;
  readonly clock: Clock;
  readonly logger: Pick<Logger, 'warn' | 'error' | 'info'>;
  readonly cacheMs?: number;
  /** A peer's standing changed (stake read, became enough or too little): re-plan, tell the peer. */
  readonly onChange?: (peer: string, insufficient: RingworkError | null) => void;
}

interface Cached {
  wei: bigint | undefined;
  readAt: number;
  reading?: Promise<bigint | undefined>;
}

/** Wei as ETH for people (exact to 6 decimals). */
export function formatWei(wei: bigint): string {
  const whole = wei / 10n ** 18n;
  const frac = ((wei % 10n ** 18n) / 10n ** 12n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${whole}${frac ? `.${frac}` : ''} ETH`;
}

/** Creates the gate. */
export function createStakeGate(deps: StakeGateDeps): StakeGate {
  const { policy, clock, logger } = deps;
  const cacheMs = deps.cacheMs ?? 15_000;
  const cache = new Map<string, Cached>();
  /** Each peer's last verdict, so a change is reported once. */
  const verdicts = new Map<string, string>();

  const required = (model: string, level = 1): bigint => {
    let m = policy.modelWei.get(model) ?? policy.defaultWei;
    // A higher level never asks less than a lower one: the largest minimum at or below `level`.
    for (const [l, w] of policy.levelWei ?? []) if (l <= level && w > m) m = w;
    return m;
  };
  const maxRequired = (): bigint => {
    let m = policy.defaultWei;
    for (const w of policy.modelWei.values()) if (w > m) m = w;
    for (const w of policy.levelWei?.values() ?? []) if (w > m) m = w;
    return m;
  };

  const read = (address: string): Promise<bigint | undefined> => {
    const key = address.toLowerCase();
    const c = cache.get(key);
    if (c?.reading) return c.reading;
    const reading = deps.readStake(address).then(
      (wei) => {
        cache.set(key, { wei, readAt: clock.now() });
        return wei;
      },
      (e: unknown) => {
        // Keep what was read before: a flaky RPC must not drop every staked peer from its rings.
        const prev = cache.get(key);
        cache.set(key, { wei: prev?.wei, readAt: prev?.readAt ?? 0 });
        logger.warn({ err: e, address }, 'stake: reading the chain failed; last value kept');
        return prev?.wei;
      },
    );
    cache.set(key, { wei: c?.wei, readAt: c?.readAt ?? 0, reading });
    return reading;
  };

  const refusalFor = (peer: string, need: bigint): string | null => {
    if (need === 0n) return null;
    const address = deps.addressOf(peer);
    if (!address)
      return `anonymous peers may not join rings that need stake (minimum ${formatWei(need)}): sign in and stake`;
    const c = cache.get(address.toLowerCase());
    if (c && c.wei !== undefined && clock.now() - c.readAt > cacheMs && !c.reading)
      void read(address).then(() => verdict(peer));
    if (!c || c.wei === undefined) return `stake of ${address} not read yet (minimum ${formatWei(need)})`;
    if (c.wei < need)
      return `stake ${formatWei(c.wei)} below the minimum ${formatWei(need)} for ring membership`;
    return null;
  };

  /** The strictest minimum of any model at level 1: what ring membership as such needs. */
  const maxModelRequired = (): bigint => {
    let m = policy.defaultWei;
    for (const w of policy.modelWei.values()) if (w > m) m = w;
    return m;
  };
  /** Every minimum some model × level can ask: a stake crossing one of them changes what the peer may serve. */
  const thresholds = (): bigint[] =>
    [...new Set([policy.defaultWei, ...policy.modelWei.values(), ...(policy.levelWei?.values() ?? [])])]
      .filter((w) => w > 0n)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

  /**
   * Re-evaluates `peer` against the strictest model minimum (a refusal is sent to it) and the
   * level minimums (a change only re-plans: a peer short of a level's minimum still serves rings
   * below that level) and reports a change.
   */
  const verdict = (peer: string): void => {
    const need = maxModelRequired();
    const why = refusalFor(peer, need);
    const key = `${why ?? 'ok'}|${thresholds()
      .map((t) => (refusalFor(peer, t) === null ? '1' : '0'))
      .join('')}`;
    if (verdicts.get(peer) === key) return;
    verdicts.set(peer, key);
    const address = deps.addressOf(peer);
    const stake = address ? cache.get(address.toLowerCase())?.wei : undefined;
    deps.onChange?.(
      peer,
      why === null
        ? null
        : new RingworkError('STAKE_INSUFFICIENT', `Refused ring membership: ${why}.`, {
            details: {
              address: address ?? null,
              stakeWei: stake?.toString() ?? null,
              requiredWei: need.toString(),
              models: Object.fromEntries([...policy.modelWei].map(([m, w]) => [m, w.toString()])),
              levels: Object.fromEntries([...(policy.levelWei ?? [])].map(([l, w]) => [l, w.toString()])),
            },
          }),
    );
  };

  return {
    policy,
    required,
    refusal: (peer, model, level) => refusalFor(peer, required(model, level)),
    async refresh(peer) {
      if (maxRequired() === 0n) return;
      const address = deps.addressOf(peer);
      if (address) await read(address);
      verdict(peer);
    },
    async stakeOf(address, maxAgeMs = cacheMs) {
      const c = cache.get(address.toLowerCase());
      if (c && c.wei !== undefined && clock.now() - c.readAt <= maxAgeMs) return c.wei;
      const wei = await read(address);
      // A fresh read may change what this address's sessions may serve: judge them now, not at
      // the next sweep.
      for (const p of [...verdicts.keys()])
        if (deps.addressOf(p)?.toLowerCase() === address.toLowerCase()) verdict(p);
      return wei;
    },
    standing(peer) {
      const address = deps.addressOf(peer);
      const c = address ? cache.get(address.toLowerCase()) : undefined;
      return { address, stakeWei: c?.wei, readAt: c?.readAt };
    },
    async refreshAll() {
      const peers = [...verdicts.keys()];
      const addresses = new Set<string>();
      for (const p of peers) {
        if (deps.isLive && !deps.isLive(p)) verdicts.delete(p);
        else {
          const a = deps.addressOf(p);
          if (a) addresses.add(a.toLowerCase());
        }
      }
      await Promise.all([...addresses].map((a) => read(a)));
      for (const p of verdicts.keys()) verdict(p);
    },
    invalidate(address) {
      cache.delete(address.toLowerCase());
    },
    forget(peer) {
      verdicts.delete(peer);
    },
  };
}
