/**
 * The followers' copy of the coordinator's introductions: built only from the messages the
 * coordinator sent, it must allow exactly the pairs the coordinator allows (ring neighbours, a
 * requester with the first stage and head of its current ring) and forget what was superseded.
 */
import { describe, expect, it } from 'vitest';
import type { ModelDescriptor, ServerMessage } from '../../../shared/protocol/signaling';
import { parseCliConfig } from '../../../signaling-server/src/config';
import { createIntroductionsMirror } from '../../../signaling-server/src/cluster/introductions-mirror';
import { createCoordinatorProxy } from '../../../signaling-server/src/cluster/coordinator-proxy';
import type { RedisStore } from '../../../signaling-server/src/cluster/redis-store';
import { isRingworkError } from '../../../shared/errors';

const id = (n: string): string => `p_${n.padEnd(16, '0')}`;
const [A, B, C, R, X] = ['a', 'b', 'c', 'r', 'x'].map(id) as [string, string, string, string, string];
const MODEL: ModelDescriptor = {
  id: 'stories260K',
  url: '/models/stories260K/stories260K.bin',
  weightFormat: 'f32',
  contextLength: 512,
  units: 7,
};
const assignment = (epoch: number, prev: string | null, next: string | null): ServerMessage => ({
  type: 'assignment',
  v: 1,
  epoch,
  ringId: `r${epoch}`,
  model: MODEL,
  range: [0, 3],
  prev,
  next,
});
const ring = (epoch: number, peers: string[]): ServerMessage => ({
  type: 'ring',
  v: 1,
  epoch,
  ringId: `r${epoch}`,
  model: MODEL,
  stages: peers.map((peer, i) => ({ peer, range: [i, i + 1] as [number, number] })),
});

describe('introductions mirror', () => {
  it('keeps the validator rings a requester was sent: their ends may signal it, and they are found by model', () => {
    const m = createIntroductionsMirror();
    const [V1, V2, V3] = ['v1', 'v2', 'v3'].map(id) as [string, string, string];
    const validated: ServerMessage = {
      ...(ring(2, [A, B]) as Extract<ServerMessage, { type: 'ring' }>),
      validators: [
        {
          ringId: 'r2:v1',
          epoch: 2,
          stages: [V1, V2, V3].map((peer, i) => ({ peer, range: [i, i + 1] as [number, number] })),
        },
      ],
    };
    m.observe(R, validated);
    expect(m.getValidatorRings('stories260K').map((r) => r.ringId)).toEqual(['r2:v1']);
    expect(m.canSignal(R, V1)).toBe(true);
    expect(m.canSignal(V3, R)).toBe(true);
    expect(m.canSignal(R, V2)).toBe(false);
    // A later plain ring for the same requester ends its validator introductions.
    m.observe(R, ring(3, [A, B]));
    expect(m.canSignal(R, V1)).toBe(false);
    m.observe(R, { type: 'no-ring', v: 1, model: 'stories260K', reason: 'gone' });
    expect(m.canSignal(R, A)).toBe(false);
  });

  it('allows ring neighbours and the requester with first stage and head, nothing else', () => {
    const m = createIntroductionsMirror();
    m.observe(A, assignment(1, C, B));
    m.observe(B, assignment(1, A, C));
    m.observe(C, assignment(1, B, A));
    m.observe(R, ring(1, [A, B, C]));
    for (const [x, y] of [
      [A, B],
      [B, C],
      [C, A],
      [R, A],
      [R, C],
    ] as const) {
      expect(m.canSignal(x, y)).toBe(true);
      expect(m.canSignal(y, x)).toBe(true);
    }
    expect(m.canSignal(R, B)).toBe(false);
    expect(m.canSignal(B, R)).toBe(false);
    expect(m.canSignal(X, A)).toBe(false);
    expect(m.canSignal(A, A)).toBe(false);
    expect(m.getRing('stories260K')?.stages.map((s) => s.peer)).toEqual([A, B, C]);
    expect(m.getAssignment(A)).toMatchObject({ kind: 'assigned', prev: C, next: B });
    expect(m.epoch).toBe(1);
  });

  it('a new plan replaces the old introductions; a forgotten peer has none', () => {
    const m = createIntroductionsMirror();
    m.observe(A, assignment(1, B, B));
    m.observe(R, ring(1, [A, B]));
    m.observe(A, { type: 'unassigned', v: 1, epoch: 2, reason: 'replanned', lightweightModels: [] });
    m.observe(R, ring(2, [C]));
    expect(m.canSignal(A, B)).toBe(false);
    expect(m.canSignal(R, A)).toBe(false);
    expect(m.canSignal(R, C)).toBe(true);
    m.observe(R, { type: 'no-ring', v: 1, model: 'stories260K', reason: 'no capacity' });
    expect(m.canSignal(R, C)).toBe(false);
    expect(m.getRing('stories260K')).toBeNull();
    m.observe(C, assignment(3, X, X));
    m.observe(C, null);
    expect(m.canSignal(C, X)).toBe(false);
    expect(m.epoch).toBe(3);
  });

  it("a follower refuses a lap of a ring its requester was not sent (the requester's usage counts only laps the leader takes)", () => {
    const m = createIntroductionsMirror();
    const forwarded: unknown[][] = [];
    const proxy = createCoordinatorProxy({
      me: 'i-follower',
      locals: new Map(),
      store: {} as RedisStore,
      mirror: m,
      log: { debug: () => undefined },
      forward: (op, args) => forwarded.push([op, ...args]),
      saveLocal: () => undefined,
      real: () => null,
      cachedSnapshot: () => ({ epoch: 0, plans: 0, models: [], rings: [], peers: [] }),
    });
    const lap = (ringId: string) => ({ ringId, msPerToken: 12, tokens: 59 });
    const codeOf = (f: () => void): string | undefined => {
      try {
        f();
        return undefined;
      } catch (e) {
        return isRingworkError(e) ? e.code : 'not typed';
      }
    };
    expect(codeOf(() => proxy.reportLap(R, lap('stories260K:1')))).toBe('PROTOCOL_NOT_ALLOWED');
    m.observe(R, { ...ring(1, [A, B]), ringId: 'stories260K:1' } as ServerMessage);
    expect(m.ringSent(R, 'stories260K')).toBe('stories260K:1');
    // A newer ring replaces it: only a lap of that one is forwarded to the leader.
    m.observe(R, { ...ring(2, [C]), ringId: 'stories260K:2' } as ServerMessage);
    expect(codeOf(() => proxy.reportLap(R, lap('stories260K:2')))).toBeUndefined();
    expect(codeOf(() => proxy.reportLap(R, lap('stories260K:1')))).toBe('PROTOCOL_NOT_ALLOWED');
    expect(forwarded).toEqual([['reportLap', R, lap('stories260K:2')]]);
    m.observe(R, { type: 'no-ring', v: 1, model: 'stories260K', reason: 'no capacity' });
    expect(m.ringSent(R, 'stories260K')).toBeNull();
    expect(codeOf(() => proxy.reportLap(R, lap('stories260K:2')))).toBe('PROTOCOL_NOT_ALLOWED');
  });
});

describe('cluster flags', () => {
  it('--redis, --instance-id and --cluster-lease-ms are validated', () => {
    const c = parseCliConfig(
      ['--redis', 'redis://127.0.0.1:6379', '--instance-id', 'a-1', '--cluster-lease-ms', '2000'],
      {},
    );
    expect(c).toMatchObject({ redis: 'redis://127.0.0.1:6379', instanceId: 'a-1', clusterLeaseMs: 2000 });
    expect(parseCliConfig([], {}).redis).toBeUndefined();
    for (const argv of [
      ['--redis', 'http://127.0.0.1:6379'],
      ['--instance-id', 'bad id'],
      ['--cluster-lease-ms', '10'],
    ]) {
      let err: unknown;
      try {
        parseCliConfig(argv, {});
      } catch (e) {
        err = e;
      }
      expect(isRingworkError(err, 'INVALID_ARGUMENT')).toBe(true);
    }
  });
});
