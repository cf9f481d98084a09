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
async function churn(kill: number, killAfter: number, settings: ChatSettings) {
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
  const survivors = ids.filter((_, i) => i !== kill);
  const ring2 = [
    { peer: survivors[0]!, range: [0, 3] as Range },
    { peer: survivors[1]!, range: [3, 7] as Range },
  ];
  const req = pid('req');
  let current = ringOf(ring1, 1);
  hub.onSend((from, m) => {
    if (m.type === 'ring-request') hub.push(from, current);
  });
  const r = requesterOn(hub, req, { stallGraceMs: scaled(10_000) });
  let killed = false;
  const result = await r.ask({
    settings,
    history,
    signal: new AbortController().signal,
    onText: (_t, generated) => {
      if (generated !== killAfter || killed) return;
      killed = true;
      void cs[kill]!.stop().then(() => {
        assign(hub, ring2, 2);
        current = ringOf(ring2, 2);
        hub.push(req, current);
      });
    },
  });
  const stalled = hub.sent(req, 'ring-stalled');
  for (const c of cs) await c.stop();
  return { result, stalled, killedPeer: ids[kill]! };
}

describe('requester failover (real contributors and runners, in-memory links)', () => {
  beforeAll(warmUpOrt);

  it.each([0, 1, 2])(
    'stage %i leaving mid-answer: the answer completes with the golden text and records one failover',
    async (kill) => {
      const { result, stalled, killedPeer } = await churn(kill, 12, GOLDEN_SETTINGS);
      expect(result.text + '\n').toBe(golden.text);
      expect(result.stats.failovers).toHaveLength(1);
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
});
