/**
 * Ring membership by stake (stake-gate.ts) and the stake flags: a model with a minimum refuses
 * anonymous peers, unread stakes and stakes below it (per model, with the default for the rest);
 * a change of standing is reported once with a typed `STAKE_INSUFFICIENT`; a stale stake is read
 * again; refreshAll re-reads judged peers and forgets departed ones. The chain read is a function
 * here (the real chain is in stake-chain.slow.test.ts and stake-process.slow.test.ts).
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { isRingworkError, type RingworkError } from '../../shared/errors';
import type { Clock } from '../../signaling-server/src/clock';
import { parseCliConfig } from '../../signaling-server/src/config';
import { createStakeGate, formatWei } from '../../signaling-server/src/stake/stake-gate';

const ETH = 10n ** 18n;
const A = '0x00000000000000000000000000000000000000aa';
const B = '0x00000000000000000000000000000000000000bb';

function setup() {
  let now = 1_000;
  const clock = { now: () => now } as unknown as Clock;
  const stakes = new Map<string, bigint>([
    [A, 2n * ETH],
    [B, ETH / 2n],
  ]);
  const reads: string[] = [];
  const changes: Array<[string, RingworkError | null]> = [];
  const addresses = new Map<string, string>([
    ['p_a', A],
    ['p_b', B],
  ]);
  const live = new Set(['p_a', 'p_b', 'p_anon']);
  const gate = createStakeGate({
    policy: {
      defaultWei: ETH,
      modelWei: new Map([
        ['free', 0n],
        ['big', 3n * ETH],
      ]),
    },
    readStake: async (a) => {
      reads.push(a);
      return stakes.get(a.toLowerCase()) ?? 0n;
    },
    addressOf: (p) => addresses.get(p),
    isLive: (p) => live.has(p),
    clock,
    logger: pino({ level: 'silent' }),
    cacheMs: 10_000,
    onChange: (p, e) => changes.push([p, e]),
  });
  return { gate, stakes, reads, changes, live, advance: (ms: number) => (now += ms) };
}

describe('stake gate', () => {
  it('refuses anonymous, unread and short stakes where a model needs stake, and reports changes once', async () => {
    const { gate, stakes, reads, changes, live } = setup();
    expect(gate.refusal('p_a', 'm')).toMatch(/not read yet/);
    expect(gate.refusal('p_anon', 'm')).toMatch(/anonymous/);
    expect(gate.refusal('p_anon', 'free')).toBeNull();
    await gate.refresh('p_a');
    await gate.refresh('p_b');
    await gate.refresh('p_anon');
    expect(gate.refusal('p_a', 'm')).toBeNull();
    // 2 ETH is short of the 3 ETH "big" needs; the verdict reported is against the strictest minimum.
    expect(gate.refusal('p_a', 'big')).toMatch(/below the minimum 3 ETH/);
    expect(gate.refusal('p_b', 'm')).toBe('stake 0.5 ETH below the minimum 1 ETH for ring membership');
    expect(gate.refusal('p_b', 'free')).toBeNull();
    expect(changes.map(([p, e]) => [p, e?.code ?? null])).toEqual([
      ['p_a', 'STAKE_INSUFFICIENT'],
      ['p_b', 'STAKE_INSUFFICIENT'],
      ['p_anon', 'STAKE_INSUFFICIENT'],
    ]);
    expect(changes[1]![1]!.details).toMatchObject({
      address: B,
      stakeWei: (ETH / 2n).toString(),
      requiredWei: (3n * ETH).toString(),
    });
    // Nothing changed: nothing reported again.
    await gate.refresh('p_b');
    expect(changes).toHaveLength(3);
    // B stakes more; the sweep reads it and reports the change; a departed peer is forgotten.
    stakes.set(B, 5n * ETH);
    live.delete('p_a');
    reads.length = 0;
    await gate.refreshAll();
    expect(reads).toEqual([B]);
    expect(changes.at(-1)).toEqual(['p_b', null]);
    expect(gate.refusal('p_b', 'big')).toBeNull();
    expect(gate.standing('p_b')).toMatchObject({ address: B, stakeWei: 5n * ETH });
  });

  it('reads a stale stake again, keeps the last value when the chain fails, and drops it when invalidated', async () => {
    const { gate, reads, advance, stakes } = setup();
    expect(await gate.stakeOf(A)).toBe(2n * ETH);
    expect(await gate.stakeOf(A)).toBe(2n * ETH);
    expect(reads).toEqual([A]);
    advance(10_001);
    stakes.set(A, 0n);
    expect(await gate.stakeOf(A)).toBe(0n);
    expect(reads).toEqual([A, A]);
    gate.invalidate(A);
    expect(gate.refusal('p_a', 'm')).toMatch(/not read yet/);
    expect(formatWei(1234567890000000000n)).toBe('1.234567 ETH');
  });
});

describe('stake gate per security level', () => {
  it('a level asks the largest minimum at or below it on top of the model minimum; crossing one re-plans', async () => {
    const stakes = new Map<string, bigint>([[A, ETH / 2n]]);
    const changes: Array<[string, RingworkError | null]> = [];
    const gate = createStakeGate({
      policy: {
        defaultWei: 0n,
        modelWei: new Map([['big', ETH]]),
        levelWei: new Map([
          [2, ETH / 4n],
          [3, 2n * ETH],
        ]),
      },
      readStake: async (a) => stakes.get(a.toLowerCase()) ?? 0n,
      addressOf: (p) => (p === 'p_a' ? A : undefined),
      clock: { now: () => 0 } as unknown as Clock,
      logger: pino({ level: 'silent' }),
      cacheMs: 10_000,
      onChange: (p, e) => changes.push([p, e]),
    });
    expect([1, 2, 3].map((k) => gate.required('m', k))).toEqual([0n, ETH / 4n, 2n * ETH]);
    // The model's own minimum stands where it is higher than the level's.
    expect([1, 2, 3].map((k) => gate.required('big', k))).toEqual([ETH, ETH, 2n * ETH]);
    expect(gate.required('m')).toBe(0n);
    // Level minimums alone make the gate read stakes.
    await gate.refresh('p_a');
    expect(gate.refusal('p_a', 'm')).toBeNull();
    expect(gate.refusal('p_a', 'm', 2)).toBeNull();
    expect(gate.refusal('p_a', 'm', 3)).toBe('stake 0.5 ETH below the minimum 2 ETH for ring membership');
    expect(gate.refusal('p_anon', 'm', 1)).toBeNull();
    expect(gate.refusal('p_anon', 'm', 2)).toMatch(/anonymous/);
    // Membership as such is refused only against the model minimums ("big" here); a stake that
    // crosses a level's minimum is reported (a re-plan) without an error when membership stands.
    expect(changes.map(([p, e]) => [p, e?.code ?? null])).toEqual([['p_a', 'STAKE_INSUFFICIENT']]);
    stakes.set(A, 3n * ETH);
    await gate.refreshAll();
    expect(changes.at(-1)).toEqual(['p_a', null]);
    expect(gate.refusal('p_a', 'big', 3)).toBeNull();
    const n = changes.length;
    await gate.refreshAll();
    expect(changes).toHaveLength(n);
  });
});

describe('stake flags', () => {
  const err = (f: () => unknown): RingworkError => {
    try {
      f();
    } catch (e) {
      if (isRingworkError(e)) return e;
      throw e;
    }
    throw new Error('no error');
  };
  it('--coordinator-key-file is another name for --slasher-key', () => {
    const c = parseCliConfig(
      [
        '--chain-rpc',
        'http://127.0.0.1:8545',
        '--stake-contract',
        `0x${'cd'.repeat(20)}`,
        '--coordinator-key-file',
        'coordinator.key',
        '--no-ledger',
      ],
      {},
    );
    expect(c.slasherKeyFile).toBe('coordinator.key');
  });
  it('reads the stake flags and refuses inconsistent ones', () => {
    const c = parseCliConfig(
      [
        '--chain-rpc',
        'http://127.0.0.1:8545',
        '--stake-contract',
        `0x${'ab'.repeat(20)}`,
        '--slasher-key',
        'key.txt',
        '--min-stake',
        '1000000000000000000',
        '--model-min-stake',
        'a=5,b=0',
        '--no-ledger',
      ],
      {},
    );
    expect(c).toMatchObject({
      stakeContract: `0x${'ab'.repeat(20)}`,
      slasherKeyFile: 'key.txt',
      minStakeWei: '1000000000000000000',
      modelMinStakeWei: { a: '5', b: '0' },
      stakeCacheMs: 15_000,
    });
    expect(err(() => parseCliConfig(['--stake-contract', `0x${'ab'.repeat(20)}`], {})).message).toMatch(
      /--chain-rpc/,
    );
    expect(err(() => parseCliConfig(['--min-stake', '5'], {})).message).toMatch(/--stake-contract/);
    const base = ['--chain-rpc', 'http://127.0.0.1:1', '--stake-contract', `0x${'ab'.repeat(20)}`];
    expect(err(() => parseCliConfig([...base, '--min-stake', '1.5'], {})).message).toMatch(/minStakeWei/);
    expect(err(() => parseCliConfig([...base, '--model-min-stake', 'a'], {})).message).toMatch(
      /modelMinStakeWei/,
    );
    expect(
      parseCliConfig([...base, '--level-min-stake', '2=500,3=1000', '--no-ledger'], {}).levelMinStakeWei,
    ).toEqual({ '2': '500', '3': '1000' });
    for (const bad of ['4=5', '2=0.5', '2', 'x=1'])
      expect(err(() => parseCliConfig([...base, '--level-min-stake', bad], {})).message).toMatch(
        /levelMinStakeWei/,
      );
    expect(err(() => parseCliConfig(['--level-min-stake', '2=5'], {})).message).toMatch(/--stake-contract/);
    expect(
      err(() => parseCliConfig(['--chain-rpc', 'http://x', '--stake-contract', '0x12'], {})).message,
    ).toMatch(/stakeContract/);
  });
});
