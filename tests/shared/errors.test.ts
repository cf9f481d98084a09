/**
 * The error contract itself: one code list (a zod enum), RingworkError.toJSON / fromJSON survive JSON
 * and structured clone with code, details and cause chain, never throw on foreign input, bound what
 * crosses a wire, and map a code from a newer peer to PROTOCOL_UNKNOWN_CODE; one zod-issue formatter.
 */
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import {
  boundedErrorJSON,
  ERROR_CODES,
  errorCodeSchema,
  invalidInputError,
  isErrorCode,
  MAX_WIRE_MESSAGE,
  normaliseWireErrorCode,
  parseWithSchema,
  RingworkError,
  toRingworkError,
} from '../../shared/errors';
import { formatZodIssues, zodIssueDetails } from '../../shared/util/zod-issues';

const chained = () =>
  new RingworkError('RING_STALE_EPOCH', 'ring epoch 3 is stale; this stage serves epoch 4', {
    details: { requested: 3, serving: 4 },
    cause: new RingworkError('TRANSPORT_CLOSED', 'link closed', {
      details: { peer: 'p_x' },
      cause: new TypeError('socket hang up'),
    }),
  });

describe('error codes', () => {
  it('are one unique list, and the zod enum is built from it', () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    expect(errorCodeSchema.options).toEqual([...ERROR_CODES]);
    expect(isErrorCode('RING_STEP_TIMEOUT')).toBe(true);
    expect(isErrorCode('ring_step_timeout')).toBe(false);
    expect(errorCodeSchema.safeParse('NOT_A_CODE').success).toBe(false);
  });
});

describe('RingworkError.toJSON / fromJSON', () => {
  for (const [name, carry] of [
    ['JSON', (x: unknown) => JSON.parse(JSON.stringify(x)) as unknown],
    ['structured clone', (x: unknown) => structuredClone(x)],
  ] as const) {
    it(`round-trips code, message, details and the cause chain through ${name}`, () => {
      const back = RingworkError.fromJSON(carry(chained().toJSON()));
      expect(back).toBeInstanceOf(RingworkError);
      expect(back).toMatchObject({
        code: 'RING_STALE_EPOCH',
        message: 'ring epoch 3 is stale; this stage serves epoch 4',
        details: { requested: 3, serving: 4 },
      });
      const c1 = back.cause as RingworkError;
      expect(c1).toBeInstanceOf(RingworkError);
      expect(c1).toMatchObject({ code: 'TRANSPORT_CLOSED', details: { peer: 'p_x' } });
      expect(c1.cause).toBeInstanceOf(Error);
      expect(c1.cause).toMatchObject({ name: 'TypeError', message: 'socket hang up' });
    });
  }

  it('JSON.stringify of an error uses toJSON', () => {
    expect(JSON.parse(JSON.stringify({ e: chained() })).e.code).toBe('RING_STALE_EPOCH');
  });

  it('a code this build does not know becomes PROTOCOL_UNKNOWN_CODE, the original in details', () => {
    const e = RingworkError.fromJSON({ code: 'FROM_THE_FUTURE', message: 'new failure', details: { n: 1 } });
    expect(e).toMatchObject({
      code: 'PROTOCOL_UNKNOWN_CODE',
      message: 'new failure',
      details: { n: 1, remoteCode: 'FROM_THE_FUTURE' },
    });
  });

  it('never throws on foreign input', () => {
    for (const junk of [
      null,
      undefined,
      42,
      'oops',
      [],
      { code: 1 },
      { message: 'no code' },
      { code: 'X'.repeat(500), message: '' },
    ]) {
      const e = RingworkError.fromJSON(junk);
      expect(e).toBeInstanceOf(RingworkError);
      expect(e.code).toBe('PROTOCOL_BAD_FRAME');
    }
  });

  it('bounds what crosses: short message, JSON-safe details, a few causes deep', () => {
    let deep: RingworkError = new RingworkError('ABORTED', 'root');
    for (let i = 0; i < 10; i++) deep = new RingworkError('FETCH_FAILED', `level ${i}`, { cause: deep });
    let depth = 0;
    for (let c = deep.toJSON().cause; c; c = 'code' in c ? c.cause : undefined) depth++;
    expect(depth).toBe(3);

    const big = new RingworkError('RUNNER_BAD_INPUT', 'x'.repeat(10_000), {
      details: { blob: 'y'.repeat(10_000) },
    });
    const j = big.toJSON();
    expect(j.message.length).toBe(MAX_WIRE_MESSAGE);
    expect(j.details).toEqual({ truncated: true, size: expect.any(Number) });

    const odd = new RingworkError('RUNNER_BAD_INPUT', 'bigint', { details: { n: 1n } });
    expect(odd.toJSON().details).toEqual({ unserialisable: true });
  });

  it('boundedErrorJSON drops the cause, then the details, to fit a frame; the code always survives', () => {
    const e = new RingworkError('RUNNER_BACKEND_FAILED', 'outer', {
      details: { a: 'd'.repeat(3000) },
      cause: new RingworkError('FETCH_FAILED', 'c'.repeat(1900), { details: { b: 'e'.repeat(3500) } }),
    });
    expect(JSON.stringify(boundedErrorJSON(e, 100_000)).length).toBeGreaterThan(5000);
    const noCause = boundedErrorJSON(e, 4000);
    expect(noCause.cause).toBeUndefined();
    expect(noCause.details).toEqual({ a: 'd'.repeat(3000) });
    const tiny = boundedErrorJSON(e, 400);
    expect(tiny).toEqual({ code: 'RUNNER_BACKEND_FAILED', message: 'outer', details: { truncated: true } });
  });
});

describe('normaliseWireErrorCode', () => {
  it('maps unknown codes of error frames only, keeping the original', () => {
    expect(normaliseWireErrorCode({ type: 'error', code: 'NEW', message: 'm' })).toEqual({
      type: 'error',
      code: 'PROTOCOL_UNKNOWN_CODE',
      message: 'm',
      details: { remoteCode: 'NEW' },
    });
    const known = { type: 'error', code: 'ABORTED', message: 'm' };
    expect(normaliseWireErrorCode(known)).toBe(known);
    const other = { type: 'token', code: 'NEW' };
    expect(normaliseWireErrorCode(other)).toBe(other);
    expect(normaliseWireErrorCode('text')).toBe('text');
  });
});

describe('toRingworkError', () => {
  it('keeps typed errors, rebuilds serialised ones, wraps the rest with the fallback code', () => {
    const e = chained();
    expect(toRingworkError(e, 'RUNNER_BACKEND_FAILED')).toBe(e);
    expect(toRingworkError(e.toJSON(), 'RUNNER_BACKEND_FAILED').code).toBe('RING_STALE_EPOCH');
    const plain = new Error('boom');
    const w = toRingworkError(plain, 'RUNNER_BACKEND_FAILED');
    expect(w).toMatchObject({ code: 'RUNNER_BACKEND_FAILED', message: 'boom' });
    expect(w.cause).toBe(plain);
  });
});

describe('the zod-issue formatter', () => {
  const schema = z.object({ a: z.number(), list: z.array(z.object({ id: z.string() })) }).strict();
  const bad = schema.safeParse({ a: 'x', list: [{ id: 1 }], extra: true });
  if (bad.success) throw new Error('expected invalid input');

  it('names each path with indices, and lists issues as plain data', () => {
    const text = formatZodIssues(bad.error);
    expect(text).toMatch(/^a: .+; list\[0\]\.id: .+; \(root\): .*extra/);
    expect(zodIssueDetails(bad.error)).toEqual([
      { path: 'a', message: expect.any(String) },
      { path: 'list[0].id', message: expect.any(String) },
      { path: '(root)', message: expect.stringContaining('extra') },
    ]);
  });

  it('counts issues past the limit', () => {
    const many = z.array(z.number()).safeParse(Array.from({ length: 12 }, () => 'x'));
    if (many.success) throw new Error('expected invalid input');
    expect(formatZodIssues(many.error)).toMatch(/; \.\.\. and 4 more$/);
    expect(zodIssueDetails(many.error)).toHaveLength(8);
  });

  it('invalidInputError / parseWithSchema throw the caller’s code with the issues in details', () => {
    const e = invalidInputError('PLAN_BAD_INPUT', 'peers file', bad.error, { file: 'peers.json' });
    expect(e).toMatchObject({ code: 'PLAN_BAD_INPUT', details: { file: 'peers.json' } });
    expect(e.message).toMatch(/^Invalid peers file: a: /);
    expect(e.details.issues).toHaveLength(3);
    expect(() => parseWithSchema(schema, {}, 'INVALID_ARGUMENT', 'options')).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(parseWithSchema(schema, { a: 1, list: [] }, 'INVALID_ARGUMENT', 'options')).toEqual({
      a: 1,
      list: [],
    });
  });
});
