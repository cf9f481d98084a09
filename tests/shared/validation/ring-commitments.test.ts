/**
 * Commitments on the real ring protocol (real ring stages, real ORT runners on stories260K, real
 * peer-link framing over in-memory channels): every stage signs each step with its registered
 * session key, the commitments reach the requester through the head, and the requester's checks
 * pass an honest ring with the golden text and pin a stage that sends something other than what
 * it committed to on that stage.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { RingworkError } from '../../../shared/errors';
import { isRingworkError } from '../../../shared/errors';
import { createRemotePipeline } from '../../../shared/ring/remote-pipeline';
import type { StageValidationOptions } from '../../../shared/ring/stage-commitments';
import { generate } from '../../../shared/runtime/generate';
import { createSampler } from '../../../shared/runtime/sampler';
import { createMemoryTransportHub } from '../../../shared/transport/memory-transport';
import { createSessionKey, type SessionKey } from '../../../shared/validation/crypto';
import { createKeyRegistry, type KeyRegistry } from '../../../shared/validation/key-registry';
import { createRingVerifier, type VerifiedStep } from '../../../shared/validation/ring-validator';
import type { TamperFn } from '../../../shared/validation/stage';
import {
  GREEDY,
  buildMemoryRing,
  connectRequester,
  stopMemoryRing,
  type MemoryStage,
} from '../../../tools/bench/memory-ring';
import { stories260KRunner, stories260KTokenizer } from '../../helpers/engine';
import { loadGolden } from '../../helpers/golden';

const golden = loadGolden();
const tokenizer = stories260KTokenizer();
const SPLITS = [2, 4];
const RANGES: [number, number][] = [
  [0, 2],
  [2, 4],
  [4, 7],
];

let rings: MemoryStage[][] = [];
afterEach(async () => {
  for (const r of rings) await stopMemoryRing(r);
  rings = [];
});

interface RingSetup {
  stages: MemoryStage[];
  registry: KeyRegistry;
  keys: SessionKey[];
}

/** A 3-stage ring whose stages commit; `opts(i)` may add a test-only tamper or drop the key. */
async function ring(
  hub: ReturnType<typeof createMemoryTransportHub>,
  prefix: string,
  opts: (i: number, key: SessionKey) => StageValidationOptions | undefined = (_i, key) => ({ key }),
): Promise<RingSetup> {
  const keys = await Promise.all(RANGES.map(() => createSessionKey()));
  const stages = await buildMemoryRing({
    hub,
    makeRunner: stories260KRunner,
    model: { url: 'stories260K.bin' },
    numLayers: 5,
    splits: SPLITS,
    contextLength: 256,
    prefix,
    validation: (i) => opts(i, keys[i]!),
  });
  rings.push(stages);
  // What the coordinator hands the requester: each peer's registered public key.
  const registry = createKeyRegistry();
  for (let i = 0; i < stages.length; i++) await registry.register(stages[i]!.id, keys[i]!.publicKeyRaw);
  return { stages, registry, keys };
}

async function ask(
  hub: ReturnType<typeof createMemoryTransportHub>,
  r: RingSetup,
  requester: string,
  steps = 64,
) {
  const { transport, first, head } = await connectRequester(hub, r.stages, requester);
  const verifier = createRingVerifier({
    peers: r.stages.map((s) => s.id),
    ranges: RANGES,
    registry: r.registry,
    model: 'stories260K',
  });
  const verified: VerifiedStep[] = [];
  try {
    const result = await generate({
      pipeline: createRemotePipeline({
        requesterId: requester,
        epoch: 1,
        first,
        head,
        sampler: GREEDY,
        validation: { ring: 0, verify: async (e) => void verified.push(await verifier.verify(e)) },
      }),
      tokenizer,
      prompt: 'Once upon a time',
      steps,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
    });
    return { result, verified };
  } finally {
    await transport.close();
  }
}

async function failure(p: Promise<unknown>): Promise<RingworkError> {
  try {
    await p;
  } catch (e) {
    if (isRingworkError(e)) return e;
    throw e;
  }
  throw new Error('expected the generation to fail');
}

/** Adds relative noise 1e-3 to everything sent (a deterministic pattern). */
const nudge: TamperFn = (ctx) => ctx.data.map((x, i) => x * (1 + (i % 2 ? 1e-3 : -1e-3)));

describe('commitments on the real ring protocol', () => {
  it('an honest ring: golden text, every step verified, a few hundred bytes of commitments per decode step', async () => {
    const hub = createMemoryTransportHub();
    const r = await ring(hub, 'h');
    const { result, verified } = await ask(hub, r, 'req');
    expect(result.tokens).toEqual(golden.sequenceTokens);
    // One verified step per forward: the prompt's prefill, then every decode step.
    expect(verified).toHaveLength(64 - result.promptTokens + 1);
    expect(verified.every((v) => v.commitments.length === 3)).toBe(true);
    const decode = verified[1]!;
    // 3 stages x (164 bytes of fields + 8 of sketch header + one 68-byte sketch row + a 64-byte signature).
    expect(decode.bytes).toBe(3 * (164 + 8 + 68 + 64));
    expect(decode.wireBytes).toBeLessThan(2 * decode.bytes);
    console.log(
      `ring commitments: ${decode.bytes} B per decode step (${decode.wireBytes} B on the wire), prefill ${verified[0]!.bytes} B`,
    );
  }, 60_000);

  for (const stage of [0, 1, 2]) {
    it(`stage ${stage} commits honestly but sends something else: located as the sender (equivocation)`, async () => {
      const hub = createMemoryTransportHub();
      const r = await ring(hub, `t${stage}`, (i, key) =>
        i === stage ? { key, tamper: stage === 2 ? swapTop : nudge, honestCommit: true } : { key },
      );
      const e = await failure(ask(hub, r, 'req'));
      expect(e.code).toBe('VALIDATION_DEVIANT');
      expect(e.details).toMatchObject({ stage, peer: r.stages[stage]!.id, reason: 'equivocation' });
      const ev = (e.details as { evidence: { step: number; commitments: string[]; range: number[] } })
        .evidence;
      expect(ev.step).toBe(0);
      expect(ev.range).toEqual(RANGES[stage]);
      expect(ev.commitments.length).toBeGreaterThanOrEqual(1);
    }, 60_000);
  }

  it('a commitment signed with a key other than the registered one is pinned on its signer', async () => {
    const hub = createMemoryTransportHub();
    const other = await createSessionKey();
    const r = await ring(hub, 'f', (i, key) => ({ key: i === 1 ? other : key }));
    const e = await failure(ask(hub, r, 'req'));
    expect(e.code).toBe('VALIDATION_DEVIANT');
    expect(e.details).toMatchObject({ stage: 1, peer: r.stages[1]!.id, reason: 'bad-signature' });
  }, 60_000);

  it('a stage that does not commit fails the validated step with a typed error and blames nobody', async () => {
    const hub = createMemoryTransportHub();
    const r = await ring(hub, 'n', (i, key) => (i === 1 ? undefined : { key }));
    const e = await failure(ask(hub, r, 'req'));
    expect(e.code).toBe('VALIDATION_MISSING_COMMITMENT');
    expect(e.details).toMatchObject({ stage: 1 });
  }, 60_000);
});

/** Head: swaps the two largest logits, so it sends the runner-up token. */
const swapTop: TamperFn = (ctx) => {
  const out = ctx.data.slice();
  let a = 0;
  for (let i = 1; i < out.length; i++) if (out[i]! > out[a]!) a = i;
  let b = a === 0 ? 1 : 0;
  for (let i = 0; i < out.length; i++) if (i !== a && out[i]! > out[b]!) b = i;
  [out[a], out[b]] = [out[b]!, out[a]!];
  return out;
};
