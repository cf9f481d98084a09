import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { ChatSettings } from '../../../shared/app/requester';
import type { Contributor } from '../../../shared/app/contributor';
import { createPipeline } from '../../../shared/runtime/pipeline';
import { generate } from '../../../shared/runtime/generate';
import { createSampler } from '../../../shared/runtime/sampler';
import { stories260KRunner, stories260KTokenizer } from '../../helpers/engine';
import { scaled } from '../../helpers/timeouts';
import { loadGolden } from '../../helpers/golden';
import { createFakeSignalingHub } from '../../helpers/memory-signaling';
import {
  CAPABILITY,
  GOLDEN_SETTINGS,
  STORIES,
  assign,
  contributorOn,
  pid,
  requesterOn,
  ringOf,
  warmUpOrt,
} from './app-fixture';

const golden = loadGolden();
/** The golden answer's generated tokens (as many as its text has): what its usage report carries. */
const GENERATED = { v: 1, tokens: golden.sequenceTokens.length - golden.promptTokens.length };
const history = [{ role: 'user' as const, text: 'Once upon a time' }];
type Range = [number, number];

/** The undisturbed text of one local sampler over the whole model (the reference). */
async function reference(settings: ChatSettings & { seed: number }): Promise<string> {
  const runner = stories260KRunner();
  await runner.load({
    model: { url: STORIES.url },
    range: [0, 7],
    weightFormat: 'f32',
    contextLength: 512,
    logits: 'last',
    backend: 'wasm',
  });
  const r = await generate({
    pipeline: createPipeline([runner]),
    tokenizer: stories260KTokenizer(),
    prompt: 'Once upon a time',
    steps: 64,
    sampler: createSampler({ temperature: settings.temperature, topP: settings.topP, seed: settings.seed }),
    stopTokens: [],
  });
  await runner.dispose();
  return r.text;
}

/**
 * A 3-stage ring of real contributors (in-memory links, in-process runners). After `killAfter`
 * generated tokens the stage at `kill` leaves (its links close); the fake coordinator re-plans
 * the two survivors into a new ring (epoch 2) as the real one does when a socket closes.
 */
async function churn(
  kill: number | undefined,
  killAfter: number,
  settings: ChatSettings,
  ringExtra: { totalBytes?: number } = {},
) {
  const hub = createFakeSignalingHub();
  const ids = [pid('a'), pid('b'), pid('c')];
  const cs: Contributor[] = ids.map((id) => contributorOn(hub, id));
  await Promise.all(cs.map((c) => c.start({ capability: CAPABILITY })));
  const ring1 = [
    { peer: ids[0]!, range: [0, 2] as Range },
    { peer: ids[1]!, range: [2, 4] as Range },
    { peer: ids[2]!, range: [4, 7] as Range },
  ];
  assign(hub, ring1, 1);
  for (const c of cs)
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
  const survivors = ids.filter((_, i) => i !== (kill ?? 2));
  const ring2 = [
    { peer: survivors[0]!, range: [0, 3] as Range },
    { peer: survivors[1]!, range: [3, 7] as Range },
  ];
  const req = pid('req');
  let current = ringOf(ring1, 1, ringExtra);
  hub.onSend((from, m) => {
    if (m.type === 'ring-request') hub.push(from, current);
  });
  const r = requesterOn(hub, req, { stallGraceMs: scaled(10_000) });
  let killed = false;
  const result = await r
    .ask({
      settings,
      history,
      signal: new AbortController().signal,
      onText: (_t, generated) => {
        // A drafted answer streams several tokens per lap: kill at the first count past `killAfter`.
        if (kill === undefined || generated < killAfter || killed) return;
        killed = true;
        void cs[kill]!.stop().then(() => {
          assign(hub, ring2, 2);
          current = ringOf(ring2, 2, ringExtra);
          hub.push(req, current);
        });
      },
    })
    .finally(async () => {
      await r.stop();
      for (const c of cs) await c.stop();
    });
  const stalled = hub.sent(req, 'ring-stalled');
  const laps = hub.sent(req, 'ring-lap');
  return { result, stalled, laps, killedPeer: kill !== undefined ? ids[kill]! : undefined };
}

describe('requester failover (real contributors and runners, in-memory links)', () => {
  beforeAll(warmUpOrt);

  it.each([0, 1, 2])(
    'stage %i leaving mid-answer: the answer completes with the golden text and records one failover',
    async (kill) => {
      const { result, stalled, laps, killedPeer } = await churn(kill, 12, GOLDEN_SETTINGS);
      expect(result.text + '\n').toBe(golden.text);
      expect(result.stats.failovers).toHaveLength(1);
      // Its usage is reported on the ring that finished it, untimed (two rings and a recovery).
      expect(laps).toEqual([{ type: 'ring-lap', ringId: 'r2', generated: GENERATED }]);
      const f = result.stats.failovers[0]!;
      expect(f.recoveryMs).toBeGreaterThanOrEqual(0);
      expect(f.replayed).toBe(f.position);
      // The coordinator was told (with where it stalled), but nobody was evicted on the requester's word here.
      // A re-plan the coordinator made itself is not reported back to it.
      expect(stalled).toHaveLength(f.cause === 'replanned' ? 0 : 1);
      if (stalled.length) expect(stalled[0]).toMatchObject({ ringId: 'r1', epoch: 1, position: f.position });
      // A middle stage's loss is reported back along the ring by the stage before it, naming it.
      // (or the pushed re-planned ring, whichever comes first).
      if (kill === 1 && f.cause !== 'replanned')
        expect(f).toMatchObject({ cause: 'link-close', lostPeer: killedPeer });
      expect(result.stats.peers).toHaveLength(2);
    },
    scaled(120_000),
  );

  it(
    'seeded sampling (temperature 0.8, seed 42) gives exactly the undisturbed text through a failover',
    async () => {
      const settings = { ...GOLDEN_SETTINGS, temperature: 0.8, topP: 0.9, seed: 42 };
      const want = await reference(settings);
      expect(want).not.toBe(golden.text); // it does sample
      const { result } = await churn(2, 20, settings);
      expect(result.stats.failovers).toHaveLength(1);
      expect(result.text + '\n').toBe(want);
    },
    scaled(120_000),
  );

  // Speculative decoding (a q4 draft in the requester, verify laps through the ring): the text is
  // the greedy golden text undisturbed and through a failover that replays only the kept tokens.
  const DRAFTED = { ...GOLDEN_SETTINGS, draft: { format: 'q4' as const, k: 4 } };
  /** stories260K's size as the coordinator sends it (weights + KV at 512 positions, ~1 MB). */
  const SMALL = { totalBytes: 1_200_000 };

  it(
    'a drafted answer through the ring gives the golden text in fewer laps than tokens',
    async () => {
      const { result, laps } = await churn(undefined, 0, DRAFTED, SMALL);
      expect(result.text + '\n').toBe(golden.text);
      // Its usage is the text's tokens; its laps verify several tokens each: no per-token timing.
      expect(laps).toEqual([{ type: 'ring-lap', ringId: 'r1', generated: GENERATED }]);
      const spec = result.stats.speculative!;
      expect(spec).toMatchObject({ format: 'q4', k: 4 });
      expect(spec.accepted).toBeGreaterThan(0);
      expect(spec.laps).toBeLessThan(result.result.timings.decodeTokens);
      expect(spec.tokensPerLap).toBeGreaterThan(1);
      expect(result.stats.failovers).toHaveLength(0);
    },
    scaled(120_000),
  );

  it.each([1, 2])(
    'stage %i leaving mid-answer while drafting: failover with replay, the golden text',
    async (kill) => {
      const { result, laps } = await churn(kill, 10, DRAFTED, SMALL);
      expect(result.stats.failovers).toHaveLength(1);
      expect(laps).toEqual([{ type: 'ring-lap', ringId: 'r2', generated: GENERATED }]);
      const f = result.stats.failovers[0]!;
      // Only kept tokens are replayed: the lost verify pass re-sent at the history's end.
      expect(f.replayed).toBe(f.position);
      expect(result.text + '\n').toBe(golden.text);
      expect(result.stats.speculative!.accepted).toBeGreaterThan(0);
      expect(result.stats.peers).toHaveLength(2);
    },
    scaled(120_000),
  );

  it(
    'drafting is refused with SPECULATIVE_UNSUPPORTED when sampling or when the model is too big to copy',
    async () => {
      const sampled = await churn(undefined, 0, { ...DRAFTED, temperature: 0.8, seed: 42 }, SMALL).catch(
        (e: unknown) => e,
      );
      expect(sampled).toMatchObject({ code: 'SPECULATIVE_UNSUPPORTED' });
      const big = await churn(undefined, 0, DRAFTED, { totalBytes: 2 ** 30 }).catch((e: unknown) => e);
      expect(big).toMatchObject({ code: 'SPECULATIVE_UNSUPPORTED' });
      expect((big as Error).message).toMatch(/downloads the whole model/);
      // Unknown size (a server that does not send it): not drafted blindly either.
      const unknown = await churn(undefined, 0, DRAFTED).catch((e: unknown) => e);
      expect(unknown).toMatchObject({ code: 'SPECULATIVE_UNSUPPORTED' });
    },
    scaled(120_000),
  );
});
