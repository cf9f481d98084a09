import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingworkError, type ErrorCode } from '../../shared/errors';
import { tensorsFor } from '../../shared/graph/compile-shard';
import type { UnitRange } from '../../shared/graph/units';
import { openLlama2cModel } from '../../shared/model/llama2c';
import { createMemoryFileOpener } from '../../shared/model/memory-source';
import type { ByteSource, FileOpener, ModelSource } from '../../shared/model/types';
import { createOrtShardRunner } from '../../shared/runtime/ort-shard-runner';
import type {
  LoadProgress,
  LoadRequest,
  LoadResult,
  ShardRunner,
  StepInput,
} from '../../shared/runtime/shard-runner';
import { nodeOrt } from '../../signaling-server/src/model/open-node-model';
import { stories260KRunner } from '../helpers/engine';
import { goldenHidden, loadGolden, repoPath } from '../helpers/golden';

const bin = new Uint8Array(readFileSync(repoPath('public/models/stories260K/stories260K.bin')));
const golden = loadGolden();
const VOCAB = 512;
const DIM = 64;

function request(range: UnitRange, over: Partial<LoadRequest> = {}): LoadRequest {
  return {
    model: { url: 'stories260K.bin' },
    range,
    weightFormat: 'f32',
    contextLength: 64,
    logits: 'last',
    backend: 'wasm',
    ...over,
  };
}

async function expectError(
  p: Promise<unknown>,
  code: ErrorCode,
  ...mentions: string[]
): Promise<RingworkError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(RingworkError);
  const re = err as RingworkError;
  expect(re.code, re.message).toBe(code);
  for (const m of mentions) expect(re.message).toContain(m);
  return re;
}

/** Bitwise equality of two float arrays. */
function expectSameFloats(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  const bad = a.findIndex((v, i) => v !== b[i]);
  expect(bad, `${what}: first mismatch at index ${bad}`).toBe(-1);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

const goldenLogits = (pos: number) => golden.logits.subarray(pos * VOCAB, (pos + 1) * VOCAB);

/** A memory opener that records every byte range read through it. */
function recordingOpener(): { opener: FileOpener; reads: { offset: number; length: number }[] } {
  const inner = createMemoryFileOpener({ 'stories260K.bin': bin }, 'rec:');
  const reads: { offset: number; length: number }[] = [];
  const opener: FileOpener = {
    root: inner.root,
    get bytesRead() {
      return inner.bytesRead;
    },
    open(file: string): ByteSource {
      const src = inner.open(file);
      return {
        name: src.name,
        get bytesRead() {
          return src.bytesRead;
        },
        size: (signal) => src.size(signal),
        read(offset, length, signal) {
          reads.push({ offset, length });
          return src.read(offset, length, signal);
        },
      };
    },
  };
  return { opener, reads };
}

/** The stories260K tensor index and config, as the loader reports them. */
let index: ModelSource;
/** Whole model [0, 7), logits 'last', context 64: shared by most tests. */
let whole: ShardRunner;
let wholeLoad: LoadResult;
const wholeEvents: LoadProgress[] = [];
/** Blocks 1 and 2 ([2, 4)), loaded through a recording opener. */
let middle: ShardRunner;
let middleLoad: LoadResult;
let middleReads: { offset: number; length: number }[];

beforeAll(async () => {
  index = await openLlama2cModel(createMemoryFileOpener({ 'stories260K.bin': bin }), 'stories260K.bin');
  whole = stories260KRunner();
  wholeLoad = await whole.load(request([0, 7]), { onProgress: (p) => wholeEvents.push(p) });
  const rec = recordingOpener();
  middle = createOrtShardRunner({
    ort: nodeOrt(),
    openModel: () => openLlama2cModel(rec.opener, 'stories260K.bin'),
  });
  middleReads = rec.reads;
  middleLoad = await middle.load(request([2, 4]));
});

afterAll(async () => {
  await whole?.dispose();
  await middle?.dispose();
});

describe('load', () => {
  it('reports backend, config, I/O and sizes', async () => {
    expect(wholeLoad.backend).toBe('wasm');
    expect(wholeLoad.backendReason).toMatch(/wasm/);
    expect(wholeLoad.config.numLayers).toBe(5);
    expect(wholeLoad.io).toMatchObject({ tokens: 'input_ids', output: 'logits', outputKind: 'logits' });
    expect(middleLoad.io).toMatchObject({
      hiddenIn: 'hidden_in',
      output: 'hidden_out',
      outputKind: 'hidden',
    });
    expect(wholeLoad.weightBytes).toBeGreaterThan(middleLoad.weightBytes);
    expect(wholeLoad.loadMs).toBeGreaterThanOrEqual(0);
    const info = await whole.info();
    expect(info).toMatchObject({ loaded: true, backend: 'wasm', range: [0, 7] });
    expect(await middle.info()).toMatchObject({ loaded: true, backend: 'wasm', range: [2, 4] });
  });

  it("progress: typed 'fetch' events count up to total, then one 'session' event", () => {
    const fetches = wholeEvents.filter((e) => e.phase === 'fetch');
    expect(fetches.length).toBeGreaterThan(0);
    expect(wholeEvents.map((e) => e.phase)).toEqual([...fetches.map(() => 'fetch'), 'session']);
    const last = wholeEvents[wholeEvents.length - 1]!;
    expect(last).toEqual({ phase: 'session', backend: 'wasm' });
    const unique = new Set(tensorsFor(index.config, [0, 7]));
    let bytes = 0;
    fetches.forEach((e, i) => {
      if (e.phase !== 'fetch') return;
      expect(e.done).toBe(i + 1);
      expect(e.total).toBe(unique.size);
      expect(unique.has(e.tensor)).toBe(true);
      expect(e.bytesFetched).toBeGreaterThan(bytes);
      bytes = e.bytesFetched;
    });
    const end = fetches[fetches.length - 1]!;
    expect(end.phase === 'fetch' && end.done === end.total).toBe(true);
    expect(new Set(fetches.map((e) => (e.phase === 'fetch' ? e.tensor : ''))).size).toBe(unique.size);
    expect(bytes).toBe(wholeLoad.bytesFetched);
  });

  it("bytesFetched is exactly the bytes of the shard's tensors (tied embedding read once)", () => {
    const sum = (range: UnitRange) =>
      [...new Set(tensorsFor(index.config, range))].reduce((a, n) => a + index.tensors.get(n)!.byteLength, 0);
    expect(wholeLoad.bytesFetched).toBe(sum([0, 7]));
    expect(middleLoad.bytesFetched).toBe(sum([2, 4]));
    expect(middleLoad.bytesFetched).toBeLessThan(wholeLoad.bytesFetched / 2);
  });

  it('the middle shard [2,4) reads only its own tensors: no embedding byte, nothing of other blocks', () => {
    const emb = index.tensors.get('model.embed_tokens.weight')!;
    const [header, ...rest] = middleReads;
    expect(header!.offset).toBe(0);
    expect(header!.length).toBeLessThanOrEqual(256);
    for (const r of rest)
      expect(r.offset + r.length <= emb.offset || r.offset >= emb.offset + emb.byteLength).toBe(true);
    const want = tensorsFor(index.config, [2, 4]).map((n) => index.tensors.get(n)!);
    const key = (r: { offset: number; length: number }) => `${r.offset}+${r.length}`;
    expect(rest.map(key).sort()).toEqual(
      want.map((t) => key({ offset: t.offset, length: t.byteLength })).sort(),
    );
  });

  it('an already-aborted signal: ABORTED, and a loaded runner stays loaded', async () => {
    const ac = new AbortController();
    ac.abort();
    const fresh = stories260KRunner();
    await expectError(fresh.load(request([0, 1]), { signal: ac.signal }), 'ABORTED');
    expect((await fresh.info()).loaded).toBe(false);
    await expectError(fresh.openSession(), 'RUNNER_NOT_LOADED');
    // Abort before anything is fetched or compiled on a loaded runner: it keeps serving.
    const r = stories260KRunner();
    await r.load(request([0, 1]));
    await expectError(r.load(request([0, 7]), { signal: ac.signal }), 'ABORTED');
    expect(await r.info()).toMatchObject({ loaded: true, range: [0, 1] });
    const out = await r.step(await r.openSession(), { tokens: Int32Array.of(1), position: 0 });
    expect(out.kind).toBe('hidden');
    await r.dispose();
  });
});

describe('generation sessions', () => {
  // Session A: the golden sequence (prompt prefilled, then token by token). Session B: another text.
  const seqA = golden.sequenceTokens.slice(0, 14);
  const seqB = [1, 20, 300, 45, 100, 7, 399, 12, 260, 261, 262, 263];
  const scheduleA: StepInput[] = [
    { tokens: Int32Array.from(seqA.slice(0, 5)), position: 0 },
    ...seqA.slice(5).map((t, i) => ({ tokens: Int32Array.of(t), position: 5 + i })),
  ];
  const scheduleB: StepInput[] = [
    { tokens: Int32Array.from(seqB.slice(0, 3)), position: 0 },
    ...seqB.slice(3).map((t, i) => ({ tokens: Int32Array.of(t), position: 3 + i })),
  ];

  async function alone(schedule: StepInput[]): Promise<Float32Array[]> {
    const s = await whole.openSession();
    const out: Float32Array[] = [];
    for (const input of schedule) out.push((await whole.step(s, input)).data.slice());
    await whole.closeSession(s);
    return out;
  }

  it('interleaved sessions each keep their own KV cache: logits equal each session run alone', async () => {
    const before = (await whole.info()).sessions;
    const a = await whole.openSession();
    const b = await whole.openSession();
    expect(a).not.toBe(b);
    expect((await whole.info()).sessions).toBe(before + 2);
    const gotA: Float32Array[] = [];
    const gotB: Float32Array[] = [];
    expect(scheduleA.length).toBe(scheduleB.length);
    for (let i = 0; i < scheduleA.length; i++) {
      if (i % 2 === 0) {
        // Submitted together: the runner serialises them, each against its own cache.
        const [oa, ob] = await Promise.all([whole.step(a, scheduleA[i]!), whole.step(b, scheduleB[i]!)]);
        gotA.push(oa.data.slice());
        gotB.push(ob.data.slice());
      } else {
        gotB.push((await whole.step(b, scheduleB[i]!)).data.slice());
        gotA.push((await whole.step(a, scheduleA[i]!)).data.slice());
      }
    }
    await whole.closeSession(a);
    await whole.closeSession(b);
    expect((await whole.info()).sessions).toBe(before);

    const soloA = await alone(scheduleA);
    const soloB = await alone(scheduleB);
    gotA.forEach((l, i) => expectSameFloats(l, soloA[i]!, `A step ${i}`));
    gotB.forEach((l, i) => expectSameFloats(l, soloB[i]!, `B step ${i}`));
    // The sessions saw different text, and A is the golden sequence: it matches llama2.c.
    expect(maxAbsDiff(gotA[3]!, gotB[3]!)).toBeGreaterThan(0.1);
    gotA.forEach((l, i) => {
      expect(l.length).toBe(VOCAB);
      expect(maxAbsDiff(l, goldenLogits(4 + i))).toBeLessThan(1e-4);
    });
  });

  it('the middle shard turns golden hidden states after block 0 into those after block 2', async () => {
    const s = await middle.openSession();
    const hidden = new Float32Array(5 * DIM);
    for (let p = 0; p < 5; p++) hidden.set(goldenHidden(golden, p, 1), p * DIM);
    const out = await middle.step(s, { hidden, position: 0 });
    expect(out).toMatchObject({ kind: 'hidden', seqLen: 5 });
    const want = new Float32Array(5 * DIM);
    for (let p = 0; p < 5; p++) want.set(goldenHidden(golden, p, 3), p * DIM);
    expect(maxAbsDiff(out.data, want)).toBeLessThan(1e-4);
    await middle.closeSession(s);
  });

  it('closeSession frees the session: a later step is RUNNER_UNKNOWN_SESSION; closing twice is fine', async () => {
    const s = await whole.openSession();
    await whole.step(s, { tokens: Int32Array.of(1), position: 0 });
    await whole.closeSession(s);
    await expectError(
      whole.step(s, { tokens: Int32Array.of(403), position: 1 }),
      'RUNNER_UNKNOWN_SESSION',
      s,
    );
    await expect(whole.closeSession(s)).resolves.toBeUndefined();
    await expect(whole.closeSession('never-opened')).resolves.toBeUndefined();
    await expectError(
      whole.step('never-opened', { tokens: Int32Array.of(1), position: 0 }),
      'RUNNER_UNKNOWN_SESSION',
    );
  });

  it('positions must be consecutive (RUNNER_BAD_INPUT); a rejected step leaves the session intact', async () => {
    const s = await whole.openSession();
    await expectError(
      whole.step(s, { tokens: Int32Array.of(1), position: 1 }),
      'RUNNER_BAD_INPUT',
      'Position 1',
    );
    await whole.step(s, { tokens: Int32Array.of(1), position: 0 });
    for (const position of [0, 2, -1, 0.5]) {
      const e = await expectError(
        whole.step(s, { tokens: Int32Array.of(403), position }),
        'RUNNER_BAD_INPUT',
      );
      expect(e.details).toMatchObject({ position, cached: 1 });
    }
    const out = await whole.step(s, { tokens: Int32Array.of(golden.sequenceTokens[1]!), position: 1 });
    expect(maxAbsDiff(out.data, goldenLogits(1))).toBeLessThan(1e-4);
    await whole.closeSession(s);
  });

  it('wrong input kind for the shard: RUNNER_BAD_INPUT', async () => {
    const s = await whole.openSession();
    await expectError(
      whole.step(s, { hidden: new Float32Array(DIM), position: 0 }),
      'RUNNER_BAD_INPUT',
      'tokens',
    );
    await expectError(
      whole.step(s, { tokens: Int32Array.of(1), hidden: new Float32Array(DIM), position: 0 }),
      'RUNNER_BAD_INPUT',
    );
    await expectError(whole.step(s, { tokens: new Int32Array(0), position: 0 }), 'RUNNER_BAD_INPUT');
    const m = await middle.openSession();
    await expectError(
      middle.step(m, { tokens: Int32Array.of(1), position: 0 }),
      'RUNNER_BAD_INPUT',
      'hidden',
    );
    await expectError(middle.step(m, { hidden: new Float32Array(DIM - 1), position: 0 }), 'RUNNER_BAD_INPUT');
    await whole.closeSession(s);
    await middle.closeSession(m);
  });

  it('NaN or infinite hidden states: RUNNER_BAD_INPUT naming the element', async () => {
    const m = await middle.openSession();
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const hidden = new Float32Array(2 * DIM).fill(0.5);
      hidden[DIM + 3] = bad;
      const e = await expectError(middle.step(m, { hidden, position: 0 }), 'RUNNER_BAD_INPUT', String(bad));
      expect(e.details.index).toBe(DIM + 3);
    }
    // Still at position 0: nothing was cached.
    const out = await middle.step(m, { hidden: new Float32Array(DIM).fill(0.5), position: 0 });
    expect(out.seqLen).toBe(1);
    await middle.closeSession(m);
  });

  it('token ids outside the vocabulary: RUNNER_BAD_INPUT', async () => {
    const s = await whole.openSession();
    for (const t of [VOCAB, -1, 100000]) {
      const e = await expectError(
        whole.step(s, { tokens: Int32Array.of(1, t), position: 0 }),
        'RUNNER_BAD_INPUT',
        String(t),
      );
      expect(e.details.token).toBe(t);
    }
    await expect(whole.step(s, { tokens: Int32Array.of(0, VOCAB - 1), position: 0 })).resolves.toMatchObject({
      seqLen: 2,
    });
    await whole.closeSession(s);
  });

  it('exceeding contextLength: RUNNER_CONTEXT_FULL', async () => {
    const tokens = Int32Array.from(
      { length: 65 },
      (_, i) => golden.sequenceTokens[i % golden.sequenceTokens.length]!,
    );
    const s1 = await whole.openSession();
    const e = await expectError(whole.step(s1, { tokens, position: 0 }), 'RUNNER_CONTEXT_FULL', '64');
    expect(e.details).toMatchObject({ position: 0, tokens: 65, contextLength: 64 });
    // Exactly 64 positions fit; the 65th does not.
    const full = await whole.step(s1, { tokens: tokens.subarray(0, 64), position: 0 });
    expect(maxAbsDiff(full.data, goldenLogits(63))).toBeLessThan(1e-4);
    await expectError(whole.step(s1, { tokens: Int32Array.of(1), position: 64 }), 'RUNNER_CONTEXT_FULL');
    await whole.closeSession(s1);
  });

  it('an already-aborted signal on step: ABORTED, and the session is unchanged', async () => {
    const s = await whole.openSession();
    const ac = new AbortController();
    ac.abort(new Error('user stop'));
    const e = await expectError(
      whole.step(s, { tokens: Int32Array.of(1), position: 0 }, { signal: ac.signal }),
      'ABORTED',
    );
    expect((e.cause as Error).message).toBe('user stop');
    const out = await whole.step(s, { tokens: Int32Array.of(1), position: 0 });
    expect(maxAbsDiff(out.data, goldenLogits(0))).toBeLessThan(1e-4);
    await whole.closeSession(s);
  });
});

describe('runner lifecycle', () => {
  it('step or openSession before load: RUNNER_NOT_LOADED', async () => {
    const r = stories260KRunner();
    await expectError(r.step('s1', { tokens: Int32Array.of(1), position: 0 }), 'RUNNER_NOT_LOADED', 'load()');
    await expectError(r.openSession(), 'RUNNER_NOT_LOADED');
    expect(await r.info()).toEqual({
      loaded: false,
      sessions: 0,
      backend: undefined,
      backendReason: undefined,
      range: undefined,
    });
    await expect(r.dispose()).resolves.toBeUndefined();
  });

  it('dispose() is safe twice and terminal: afterwards calls are RUNNER_DISPOSED and info() is empty', async () => {
    const r = stories260KRunner();
    await r.load(request([0, 1]));
    const s = await r.openSession();
    await r.openSession();
    expect(await r.info()).toMatchObject({ loaded: true, backend: 'wasm', range: [0, 1], sessions: 2 });
    await r.dispose();
    await expect(r.dispose()).resolves.toBeUndefined();
    await expectError(r.step(s, { tokens: Int32Array.of(1), position: 0 }), 'RUNNER_DISPOSED');
    await expectError(r.openSession(), 'RUNNER_DISPOSED');
    await expectError(r.load(request([0, 1])), 'RUNNER_DISPOSED');
    const info = await r.info();
    expect(info).toMatchObject({ loaded: false, sessions: 0 });
    expect(info.range).toBeUndefined();
    expect(info.backend).toBeUndefined();
    await r.dispose();
  });
});
