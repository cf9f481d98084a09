import { describe, expect, it } from 'vitest';
import { RingworkError } from '../../shared/errors';
import {
  createFailoverPipeline,
  lossCause,
  type RingLoss,
  type RingTarget,
} from '../../shared/ring/failover-pipeline';
import type { RemoteResume, RemoteSession } from '../../shared/ring/remote-pipeline';

/**
 * A fake ring: each token is `position + 1000` (what the model "samples"), and every session counts
 * one draw per answered step. `dieAt` makes the ring fail the step at that position with `error`.
 */
function fakeRing(id: string, o: { dieAt?: number; error?: RingworkError } = {}) {
  const opens: (RemoteResume | undefined)[] = [];
  const steps: { position: number; tokens: number[] }[] = [];
  let dead = false;
  const target: RingTarget = {
    ringId: id,
    epoch: 1,
    peers: [`${id}-a`, `${id}-b`],
    async open(resume) {
      opens.push(resume);
      let draws = resume?.draws ?? 0;
      const s: RemoteSession = {
        id: `${id}-s${opens.length}`,
        get draws() {
          return draws;
        },
        async forward(tokens, position) {
          steps.push({ position, tokens: [...tokens] });
          if (dead || position === o.dieAt) {
            dead = true;
            throw o.error ?? new RingworkError('RING_PEER_LOST', 'gone', { details: { peer: `${id}-b` } });
          }
          draws++;
          return { token: position + tokens.length - 1 + 1000, timing: { stageMs: [1], totalMs: 2 } };
        },
        close: async () => undefined,
        abandon: () => undefined,
      };
      return s;
    },
  };
  return { target, opens, steps };
}

/** Drives a session like generate(): a prompt, then one token at a time. */
async function drive(p: ReturnType<typeof createFailoverPipeline>, prompt: number[], n: number) {
  const s = await p.open();
  let r = await s.forward(Int32Array.from(prompt), 0);
  const out = [r.token!];
  for (let pos = prompt.length; out.length < n; pos++) {
    r = await s.forward(Int32Array.from([out[out.length - 1]!]), pos);
    out.push(r.token!);
  }
  await s.close();
  return out;
}

describe('failover pipeline: replay on the replacement ring', () => {
  it('a loss mid-answer replays the history with the draws so far and re-sends the lost step', async () => {
    const a = fakeRing('A', { dieAt: 6 });
    const b = fakeRing('B');
    const losses: RingLoss[] = [];
    let t = 0;
    const p = createFailoverPipeline({
      initial: a.target,
      replace: async (loss) => (losses.push(loss), (t += 700), b.target),
      now: () => t,
    });
    const out = await drive(p, [1, 2, 3], 6);
    // Same tokens as an undisturbed ring would give.
    expect(out).toEqual([1002, 1003, 1004, 1005, 1006, 1007]);
    expect(losses).toHaveLength(1);
    expect(losses[0]).toMatchObject({ cause: 'link-close', lostPeer: 'A-b', position: 6, attempt: 0 });
    // The history is every token fed at positions 0..5; 4 tokens were answered (4 draws) before the loss.
    expect(b.opens).toEqual([{ history: [1, 2, 3, 1002, 1003, 1004], draws: 4 }]);
    expect(b.steps[0]).toEqual({ position: 6, tokens: [1005] });
    expect(p.failovers).toEqual([
      expect.objectContaining({
        index: 1,
        position: 6,
        fromRing: 'A',
        toRing: 'B',
        replayed: 6,
        recoveryMs: 700,
      }),
    ]);
  });

  it('several losses are survived one at a time; a deadline miss is told apart from a link close', async () => {
    const a = fakeRing('A', { dieAt: 4 });
    const b = fakeRing('B', {
      dieAt: 7,
      error: new RingworkError('RING_STEP_TIMEOUT', 'late', { details: { step: 3 } }),
    });
    const c = fakeRing('C');
    const rings = [b.target, c.target];
    const p = createFailoverPipeline({ initial: a.target, replace: async () => rings.shift()! });
    expect(await drive(p, [1, 2], 9)).toEqual([1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009]);
    expect(p.failovers.map((f) => [f.cause, f.position])).toEqual([
      ['link-close', 4],
      ['deadline', 7],
    ]);
    expect(c.opens[0]).toEqual({ history: [1, 2, 1001, 1002, 1003, 1004, 1005], draws: 6 });
  });

  it('no replacement ring: the typed error of `replace` ends the answer; a loss before the first token is left to the caller', async () => {
    const none = new RingworkError('RING_FAILOVER_FAILED', 'no ring: 0.01 GB more peer memory is needed', {
      details: { missingBytes: 1e7 },
    });
    const p = createFailoverPipeline({
      initial: fakeRing('A', { dieAt: 5 }).target,
      replace: async () => {
        throw none;
      },
    });
    await expect(drive(p, [1, 2], 8)).rejects.toBe(none);
    const early = createFailoverPipeline({
      initial: fakeRing('A', { dieAt: 0 }).target,
      replace: async () => fakeRing('B').target,
    });
    await expect(drive(early, [1, 2], 4)).rejects.toMatchObject({ code: 'RING_PEER_LOST' });
    expect(early.failovers).toHaveLength(0);
  });

  it('errors that are not a ring loss are not failed over; a replacement that keeps failing runs out of the window', async () => {
    const bad = createFailoverPipeline({
      initial: fakeRing('A', { dieAt: 4, error: new RingworkError('RUNNER_BAD_INPUT', 'bad') }).target,
      replace: async () => fakeRing('B').target,
    });
    await expect(drive(bad, [1, 2], 6)).rejects.toMatchObject({ code: 'RUNNER_BAD_INPUT' });
    let t = 0;
    const p = createFailoverPipeline({
      initial: fakeRing('A', { dieAt: 3 }).target,
      // Every replacement is still loading its shard.
      replace: async () => (
        (t += 2000),
        fakeRing('B', { dieAt: 3, error: new RingworkError('RING_STAGE_NOT_SERVING', 'loading') }).target
      ),
      recoveryWindowMs: 10_000,
      now: () => t,
    });
    await expect(drive(p, [1, 2], 6)).rejects.toMatchObject({
      code: 'RING_FAILOVER_FAILED',
      details: { lastCode: 'RING_STAGE_NOT_SERVING' },
    });
  });

  it('tells how a loss was noticed from the error alone (code and details)', () => {
    const e = (
      code: 'RING_PEER_LOST' | 'RING_STEP_TIMEOUT' | 'RING_STALE_EPOCH' | 'STAGE_NEXT_TIMEOUT',
      d = {},
    ) => lossCause(new RingworkError(code, 'x', { details: d }));
    expect(e('RING_PEER_LOST', { peer: 'p1' })).toEqual({ cause: 'link-close', lostPeer: 'p1' });
    expect(e('RING_STEP_TIMEOUT', { step: 3 })).toEqual({ cause: 'deadline' });
    expect(e('RING_STALE_EPOCH', { replanned: true })).toEqual({ cause: 'replanned' });
    expect(e('STAGE_NEXT_TIMEOUT', { peer: 'p2' })).toEqual({ cause: 'stage-error', lostPeer: 'p2' });
  });
});
