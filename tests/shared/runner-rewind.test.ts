/**
 * Truncation (`rewind`) and chunked verification (`logits: 'rows'`) on a real in-process runner
 * (onnxruntime-web wasm, stories260K): what speculative decoding needs from a runner session.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingworkError, type ErrorCode } from '../../shared/errors';
import type { ShardRunner, StepInput } from '../../shared/runtime/shard-runner';
import { argmax } from '../../shared/validation/stage';
import { stories260KRunner } from '../helpers/engine';
import { loadGolden } from '../helpers/golden';

const golden = loadGolden();
const seq = golden.sequenceTokens;
const V = 512;

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<RingworkError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(RingworkError);
  expect((e as RingworkError).code, (e as RingworkError).message).toBe(code);
  return e as RingworkError;
}

function expectBitwise(a: Float32Array, b: Float32Array, what: string) {
  expect(a.length, what).toBe(b.length);
  expect(
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
      Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    ),
    what,
  ).toBe(true);
}

const toks = (from: number, to: number) => Int32Array.from(seq.slice(from, to));

describe('runner rewind and chunked verification (stories260K, wasm)', () => {
  let runner: ShardRunner;
  beforeAll(async () => {
    runner = stories260KRunner();
    await runner.load({
      model: { url: 'stories260K.bin' },
      range: [0, 7],
      weightFormat: 'f32',
      contextLength: 64,
      logits: 'rows',
      backend: 'wasm',
    });
  });
  afterAll(() => runner.dispose());

  /** Prefill 0..9, then decode one position at a time up to `end`; logits per decoded position. */
  async function decodeTo(id: string, end: number): Promise<Map<number, Float32Array>> {
    const out = new Map<number, Float32Array>();
    out.set(9, (await runner.step(id, { tokens: toks(0, 10), position: 0 })).data);
    for (let p = 10; p < end; p++)
      out.set(p, (await runner.step(id, { tokens: toks(p, p + 1), position: p })).data);
    return out;
  }

  it('decode 16, rewind to 12, decode again: the same logits as before and as a fresh run', async () => {
    const a = await runner.openSession();
    const first = await decodeTo(a, 16);
    // Position 12 again, after 16 were cached: bitwise the logits it had the first time.
    const again = await runner.step(a, { tokens: toks(12, 13), position: 12, rewind: true });
    expectBitwise(again.data, first.get(12)!, 'position 12 after rewind');
    // A different token at 12 equals a fresh session fed the same 13 tokens.
    const other = seq[12] === 100 ? 101 : 100;
    const alt = await runner.step(a, { tokens: Int32Array.of(other), position: 12, rewind: true });
    const b = await runner.openSession();
    await decodeTo(b, 12);
    const fresh = await runner.step(b, { tokens: Int32Array.of(other), position: 12 });
    expectBitwise(alt.data, fresh.data, 'rewound vs fresh at 12');
    // And the session carries on from 13 (its length is 13 now, not 17).
    const next = await runner.step(a, { tokens: Int32Array.of(7), position: 13 });
    const freshNext = await runner.step(b, { tokens: Int32Array.of(7), position: 13 });
    expectBitwise(next.data, freshNext.data, 'position 13 after rewind');
    // Matches llama2.c where the tokens are the golden ones.
    for (const [p, l] of first) expect(argmax(l)).toBe(golden.argmax[p]);
    await runner.closeSession(a);
    await runner.closeSession(b);
  });

  it('a position below the cache needs rewind; a rewind past the cache is refused', async () => {
    const a = await runner.openSession();
    await decodeTo(a, 12);
    const e1 = await expectCode(runner.step(a, { tokens: toks(10, 11), position: 10 }), 'RUNNER_BAD_INPUT');
    expect(e1.details).toMatchObject({ position: 10, cached: 12 });
    await expectCode(
      runner.step(a, { tokens: toks(13, 14), position: 13, rewind: true }),
      'RUNNER_BAD_INPUT',
    );
    // The refused steps changed nothing: position 12 still follows.
    await runner.step(a, { tokens: toks(12, 13), position: 12 });
    await runner.closeSession(a);
  });

  it('verifies k+1 positions in one pass: one logits row per asked-for position', async () => {
    const a = await runner.openSession();
    const stepwise = await decodeTo(a, 15);
    const v = await runner.openSession();
    await runner.step(v, { tokens: toks(0, 10), position: 0 });
    const chunk = await runner.step(v, { tokens: toks(10, 15), position: 10, logitsRows: 5 });
    expect(chunk.data.length).toBe(5 * V);
    let maxDiff = 0;
    for (let r = 0; r < 5; r++) {
      const row = chunk.data.subarray(r * V, (r + 1) * V);
      const want = stepwise.get(10 + r)!;
      for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(row[i]! - want[i]!));
      expect(argmax(row)).toBe(golden.argmax[10 + r]);
    }
    expect(maxDiff).toBeLessThan(1e-4);
    // A default step still returns one row; bad row counts are refused.
    expect((await runner.step(v, { tokens: toks(15, 16), position: 15 })).data.length).toBe(V);
    for (const logitsRows of [0, 3, 1.5]) {
      const input: StepInput = { tokens: toks(16, 18), position: 16, logitsRows };
      await expectCode(runner.step(v, input), 'RUNNER_BAD_INPUT');
    }
    await runner.closeSession(a);
    await runner.closeSession(v);
  });
});
