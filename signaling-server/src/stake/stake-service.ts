/**
 * Stake for one server run: the contract on the configured chain (`--chain-rpc`,
 * `--stake-contract`), the membership gate (`--min-stake`, `--model-min-stake`,
 * `--level-min-stake`) and, with
 * `--slasher-key`, the slasher that takes stake from proven deviants. Opened before the server
 * listens: a contract that cannot be read, or a key that is not the contract's slasher, fails the
 * start with a typed error (exit 1), never a server that silently cannot slash.
 */
import type { Logger } from 'pino';
import { RingworkError } from '../../../shared/errors.js';
import { unrefTimer, type Clock } from '../clock.js';
import type { SignalingConfig } from '../config.js';
import type { SlashRow } from '../ledger/ledger.js';
import { createSlasher, type Slasher } from './slasher.js';
import { createStakeChain, readSlasherKey, type StakeChain } from './stake-chain.js';
import { createStakeGate, type StakeGate } from './stake-gate.js';

/** The parts of stake a running server uses. */
export interface StakeService {
  readonly chain: StakeChain;
  readonly gate: StakeGate;
  /** Absent without `--slasher-key`: deviants are recorded, not slashed. */
  readonly slasher: Slasher | undefined;
  /** What `/api/stake` tells about the configuration. */
  describe(): Record<string, unknown>;
  stop(): void;
}

/** What the service needs from the server. */
export interface StakeServiceDeps {
  readonly addressOf: (peer: string) => string | undefined;
  /** True while the peer's session exists. */
  readonly isLive: (peer: string) => boolean;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Where slashes are recorded (the ledger), when there is one. */
  readonly recordSlash?: (s: SlashRow) => Promise<void>;
  /** A peer's standing changed: re-plan; `refusal` is the typed error to send it (null: allowed again). */
  readonly onChange: (peer: string, refusal: RingworkError | null) => void;
}

/** Opens stake when the configuration names a contract; null otherwise. */
export async function openStake(
  config: SignalingConfig,
  deps: StakeServiceDeps,
): Promise<StakeService | null> {
  if (!config.stakeContract || !config.chainRpc) return null;
  const slasherKey = config.slasherKeyFile ? readSlasherKey(config.slasherKeyFile) : undefined;
  const chain = createStakeChain({ rpc: config.chainRpc, contract: config.stakeContract, slasherKey });
  const { chainId, slasher } = await chain.check();
  if (chain.slasher && chain.slasher.toLowerCase() !== slasher.toLowerCase()) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `The slasher key (${chain.slasher}) is not the contract's slasher (${slasher}): it could not slash.`,
      { details: { key: chain.slasher, slasher } },
    );
  }
  const log = deps.logger.child({ part: 'stake' });
  const policy = {
    defaultWei: BigInt(config.minStakeWei),
    modelWei: new Map(Object.entries(config.modelMinStakeWei).map(([m, w]) => [m, BigInt(w)])),
    levelWei: new Map(Object.entries(config.levelMinStakeWei).map(([k, w]) => [Number(k), BigInt(w)])),
  };
  const gate: StakeGate = createStakeGate({
    policy,
    readStake: (a) => chain.stakeOf(a),
    addressOf: deps.addressOf,
    isLive: deps.isLive,
    clock: deps.clock,
    logger: log,
    cacheMs: config.stakeCacheMs,
    onChange: deps.onChange,
  });
  const slasherPart = chain.slasher
    ? createSlasher({
        chain,
        ...(deps.recordSlash ? { record: deps.recordSlash } : {}),
        clock: deps.clock,
        logger: log,
        ...(config.slashWei !== undefined ? { amountWei: BigInt(config.slashWei) } : {}),
        onSlashed: (address) => gate.invalidate(address),
      })
    : undefined;
  // Stakes change without telling us (a refused peer stakes, an admitted one withdraws): re-read
  // the judged peers' stakes every cache period.
  const sweep = unrefTimer(
    deps.clock.setInterval(() => void gate.refreshAll(), Math.max(1000, config.stakeCacheMs)),
  );
  if (!slasherPart) log.warn('stake: no --slasher-key; proven deviants are recorded but not slashed');
  log.info(
    { contract: chain.contract, chainId, slasher, minStakeWei: config.minStakeWei },
    'stake: contract on chain',
  );
  return {
    chain,
    gate,
    slasher: slasherPart,
    describe: () => ({
      contract: chain.contract,
      chainId,
      slasher,
      slashing: slasherPart !== undefined,
      // Where a page may send its own stake() (dev chains; absent: a wallet brings its own RPC).
      ...(config.chainRpcPublic ? { rpc: config.chainRpcPublic } : {}),
      requiredWei: {
        default: policy.defaultWei.toString(),
        models: Object.fromEntries([...policy.modelWei].map(([m, w]) => [m, w.toString()])),
        levels: Object.fromEntries([...policy.levelWei].map(([k, w]) => [k, w.toString()])),
      },
    }),
    stop: () => {
      deps.clock.clearInterval(sweep);
      slasherPart?.stop();
    },
  };
}
