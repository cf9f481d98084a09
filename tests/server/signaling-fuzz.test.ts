/**
 * Fuzzing the signaling frame parser (fast-check, > 10,000 cases): random strings, binary, random JSON
 * values and objects, and mutated valid frames. The parser must either return a message that
 * satisfies the schema or throw a RingworkError with a PROTOCOL_* code; nothing else may escape.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RingworkError } from '../../shared/errors';
import {
  clientMessageSchema,
  parseClientFrame,
  parseServerFrame,
  serverMessageSchema,
} from '../../shared/protocol/signaling';
import { cases, runs } from '../helpers/tier';

const PARSER_CODES = [
  'PROTOCOL_BAD_FRAME',
  'PROTOCOL_UNKNOWN_TYPE',
  'PROTOCOL_BAD_VERSION',
  'PROTOCOL_FRAME_TOO_LARGE',
];

let accepted = 0;
let rejected = 0;

function checkClient(raw: unknown): void {
  try {
    const m = parseClientFrame(raw);
    expect(clientMessageSchema.safeParse(m).success).toBe(true);
    accepted++;
  } catch (e) {
    if (!(e instanceof RingworkError)) throw e;
    expect(PARSER_CODES).toContain(e.code);
    expect(typeof e.message).toBe('string');
    // Errors go on the wire: their details must serialise.
    expect(() => JSON.stringify(e.toJSON())).not.toThrow();
    rejected++;
  }
}

function checkServer(raw: unknown): void {
  try {
    const m = parseServerFrame(raw);
    expect(serverMessageSchema.safeParse(m).success).toBe(true);
  } catch (e) {
    if (!(e instanceof RingworkError)) throw e;
    expect(PARSER_CODES).toContain(e.code);
  }
}

const PEER = 'p_AAAAAAAAAAAAAAAA';
const TOKEN = 'T'.repeat(43);
const VALID: Record<string, unknown>[] = [
  { type: 'hello', v: 1, roles: ['contributor', 'requester'], client: 'fuzz' },
  { type: 'hello', v: 1, roles: ['requester'], resume: { peerId: PEER, token: TOKEN } },
  {
    type: 'profile',
    v: 1,
    capability: {
      tflops: 12.5,
      bandwidthGBps: 300,
      memoryBytes: 8e9,
      backend: 'webgpu',
      mobile: false,
      label: 'x',
    },
  },
  { type: 'heartbeat', v: 1, sentAt: 1700000000000 },
  {
    type: 'signal',
    v: 1,
    to: PEER,
    payload: {
      kind: 'sdp',
      sdp: { type: 'offer', sdp: 'v=0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n' },
    },
  },
  {
    type: 'signal',
    v: 1,
    to: PEER,
    payload: {
      kind: 'candidate',
      candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0 },
    },
  },
  { type: 'ring-request', v: 1, model: 'stories260K' },
  { type: 'assignment-status', v: 1, epoch: 3, state: 'ready' },
  { type: 'peer-unreachable', v: 1, peer: PEER, reason: 'ice failed' },
  { type: 'leave', v: 1 },
];

const WEIRD_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'type',
  'v',
  'toString',
  'hasOwnProperty',
  '',
  'to',
  'payload',
];

/** Every path to a value inside a JSON object (arrays by index). */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (typeof value !== 'object' || value === null) return [prefix];
  const keys = Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value);
  return [
    prefix,
    ...keys.flatMap((k) => paths((value as Record<string | number, unknown>)[k], [...prefix, k])),
  ];
}

/** Applies one structural mutation to a deep copy of `frame`. */
function mutate(
  frame: Record<string, unknown>,
  pick: number,
  op: number,
  key: number,
  value: unknown,
): unknown {
  const copy = JSON.parse(JSON.stringify(frame)) as Record<string, unknown>;
  const all = paths(copy).filter((p) => p.length > 0);
  const path = all[pick % all.length]!;
  const parent = path
    .slice(0, -1)
    .reduce<Record<string | number, unknown>>((o, k) => o[k] as Record<string | number, unknown>, copy);
  const last = path[path.length - 1]!;
  switch (op % 4) {
    case 0:
      parent[last] = value;
      break;
    case 1:
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
      break;
    case 2:
      // defineProperty makes "__proto__" an own key, as JSON.parse would, instead of setting the prototype.
      Object.defineProperty(Array.isArray(parent) ? copy : parent, WEIRD_KEYS[key % WEIRD_KEYS.length]!, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      break;
    default:
      parent[last] = typeof parent[last] === 'number' ? -parent[last] * 1e300 : [parent[last]];
  }
  return JSON.stringify(copy);
}

describe('parseClientFrame fuzz', () => {
  it('accepts the valid templates', () => {
    for (const f of VALID) expect(() => parseClientFrame(JSON.stringify(f))).not.toThrow();
  });

  it(`random strings (${cases(3_000)})`, () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 300 }), fc.string({ maxLength: 40, unit: 'binary' })),
        (s) => checkClient(s),
      ),
      { numRuns: runs(3000), seed: 1 },
    );
  });

  it(`random binary and non-string values (${cases(1_000)})`, () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)),
          fc.anything(),
        ),
        (x) => checkClient(x),
      ),
      { numRuns: runs(1000), seed: 2 },
    );
  });

  it(`random JSON values and objects with frame-like keys (${cases(3_000)})`, () => {
    const frameLike = fc.record(
      {
        type: fc.oneof(fc.constantFrom(...VALID.map((f) => f.type as string)), fc.string()),
        v: fc.oneof(fc.constant(1), fc.jsonValue()),
        roles: fc.jsonValue(),
        capability: fc.jsonValue(),
        to: fc.oneof(fc.constant(PEER), fc.string()),
        payload: fc.jsonValue(),
        sentAt: fc.oneof(fc.double(), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), frameLike), (v) => checkClient(JSON.stringify(v) ?? 'undefined')),
      {
        numRuns: runs(3000),
        seed: 3,
      },
    );
  });

  it(`structurally mutated valid frames (${cases(3_000)})`, () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...VALID),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        fc.oneof(fc.jsonValue(), fc.constant(Number.MAX_SAFE_INTEGER), fc.constant(-1), fc.constant('NaN')),
        (frame, pick, op, key, value) => checkClient(mutate(frame, pick, op, key, value)),
      ),
      { numRuns: runs(3000), seed: 4 },
    );
  });

  it(`textually mutated valid frames (${cases(2_000)})`, () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...VALID),
        fc.nat(),
        fc.nat(2),
        fc.string({ maxLength: 4 }),
        (frame, pos, op, ins) => {
          const s = JSON.stringify(frame);
          const at = pos % (s.length + 1);
          const mutated =
            op === 0
              ? s.slice(0, at)
              : op === 1
                ? s.slice(0, at) + ins + s.slice(at)
                : s.slice(0, at) + s.slice(at + 1);
          checkClient(mutated);
        },
      ),
      { numRuns: runs(2000), seed: 5 },
    );
    // The fuzzers did exercise both outcomes (thresholds follow the tier's share of the campaign).
    const share = runs(1000) / 1000;
    expect(accepted).toBeGreaterThan(50 * share);
    expect(rejected).toBeGreaterThan(10_000 * share);
  });

  it('oversize frames are rejected before JSON parsing', () => {
    const big = JSON.stringify({ type: 'ring-request', v: 1, model: 'x'.repeat(70_000) });
    expect(() => parseClientFrame(big)).toThrowError(
      expect.objectContaining({ code: 'PROTOCOL_FRAME_TOO_LARGE' }) as Error,
    );
  });
});

describe('parseServerFrame fuzz', () => {
  it(`random JSON values (${cases(1_000)})`, () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => checkServer(JSON.stringify(v) ?? 'undefined')),
      { numRuns: runs(1000), seed: 6 },
    );
  });
});
