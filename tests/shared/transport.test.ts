import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { crc32 } from '../../shared/transport/crc32';
import { createMemoryChannelPair, createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { createPeerLink } from '../../shared/transport/peer-link';
import type { LinkClose } from '../../shared/transport/types';
import { frameBomb } from '../../tools/bench/hostile-attacks';
import {
  MAX_CHUNK_BYTES,
  createTensorReassembler,
  decodeChunk,
  encodeTensorFrames,
  type TensorMessage,
} from '../../shared/transport/tensor-frame';
import { cases, runs } from '../helpers/tier';

const tensor = (n: number, fill = (i: number) => Math.sin(i)): TensorMessage => ({
  session: 's1',
  step: 3,
  position: 7,
  kind: 'hidden',
  dtype: 'float32',
  shape: [1, n],
  data: Float32Array.from({ length: n }, (_, i) => fill(i)),
});

/** Byte equality without a deep-equal walk over a million elements. */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return (
    Buffer.compare(
      Buffer.from(a.buffer, a.byteOffset, a.byteLength),
      Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    ) === 0
  );
}

function roundTrip(m: TensorMessage): TensorMessage {
  const r = createTensorReassembler();
  let out: TensorMessage | undefined;
  for (const f of encodeTensorFrames(m, 9)) {
    expect(out).toBeUndefined();
    out = r.push(f);
  }
  return out!;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isRingworkError(e) ? e.code : `untyped: ${String(e)}`;
  }
  return undefined;
}

describe('CRC-32', () => {
  it('matches the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const b = new TextEncoder().encode('hello world');
    expect(crc32(b.subarray(5), crc32(b.subarray(0, 5)))).toBe(crc32(b));
  });
});

describe('tensor frames', () => {
  it('round-trips 16 B, 4 KiB, 64 KiB and 1 MiB tensors byte-exactly, in ≤ 64 KiB chunks', () => {
    for (const bytes of [16, 4096, 65536, 1 << 20]) {
      const m = tensor(bytes / 4);
      const frames = encodeTensorFrames(m, 1);
      expect(frames.length).toBe(Math.max(1, Math.ceil(bytes / MAX_CHUNK_BYTES)));
      for (const f of frames) expect(f.byteLength).toBeLessThanOrEqual(MAX_CHUNK_BYTES + 64);
      const out = roundTrip(m);
      expect(out).toMatchObject({
        session: 's1',
        step: 3,
        position: 7,
        kind: 'hidden',
        shape: [1, bytes / 4],
      });
      expect(sameBytes(out.data, m.data)).toBe(true);
    }
  });

  it('carries a per-stage timing trace', () => {
    const out = roundTrip({ ...tensor(4), trace: [1.5, 2.25, 0] });
    expect(out.trace).toEqual([1.5, 2.25, 0]);
    expect(codeOf(() => encodeTensorFrames({ ...tensor(4), trace: [NaN] }, 0))).toBe('TENSOR_BAD_FRAME');
  });

  it('carries int32 token ids and uint8 data', () => {
    const t: TensorMessage = {
      session: 'x',
      step: 0,
      position: 0,
      kind: 'tokens',
      dtype: 'int32',
      shape: [3],
      data: Int32Array.from([1, 403, 407]),
    };
    expect(Array.from(roundTrip(t).data)).toEqual([1, 403, 407]);
  });

  it('rejects a shape that does not match the data, NaN/Inf, corrupted payloads, reordered chunks', () => {
    expect(codeOf(() => encodeTensorFrames({ ...tensor(4), shape: [5] }, 0))).toBe('TENSOR_SIZE_MISMATCH');
    expect(codeOf(() => roundTrip(tensor(8, (i) => (i === 5 ? NaN : 1))))).toBe('TENSOR_NOT_FINITE');
    expect(codeOf(() => roundTrip(tensor(8, (i) => (i === 2 ? Infinity : 1))))).toBe('TENSOR_NOT_FINITE');
    const frames = encodeTensorFrames(tensor(40000), 2);
    const corrupt = new Uint8Array(frames[1]!.slice(0));
    corrupt[corrupt.length - 3]! ^= 0xff;
    const r = createTensorReassembler();
    r.push(frames[0]!);
    r.push(corrupt);
    expect(codeOf(() => r.push(frames[2]!))).toBe('TENSOR_CHECKSUM');
    const r2 = createTensorReassembler();
    expect(codeOf(() => r2.push(frames[1]!))).toBe('TENSOR_BAD_FRAME');
    const r3 = createTensorReassembler();
    r3.push(frames[0]!);
    expect(codeOf(() => r3.push(encodeTensorFrames(tensor(4), 3)[0]!))).toBe('TENSOR_BAD_FRAME');
  });

  it(`fuzz: arbitrary bytes and mutated frames only ever raise typed errors (${cases(10_000)})`, () => {
    const valid = encodeTensorFrames(tensor(20000), 5);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc
            .tuple(fc.nat(valid.length - 1), fc.nat(), fc.integer({ min: 0, max: 255 }))
            .map(([f, pos, byte]) => {
              const u = new Uint8Array(valid[f]!.slice(0));
              u[pos % u.length] = byte;
              return u;
            }),
          fc
            .tuple(fc.nat(valid.length - 1), fc.nat())
            .map(([f, cut]) => new Uint8Array(valid[f]!.slice(0, cut % valid[f]!.byteLength))),
        ),
        (bytes) => {
          const r = createTensorReassembler();
          try {
            r.push(bytes);
          } catch (e) {
            if (!isRingworkError(e)) throw e;
          }
          try {
            decodeChunk(bytes);
          } catch (e) {
            if (!isRingworkError(e)) throw e;
          }
        },
      ),
      { numRuns: runs(10_000), seed: 42 },
    );
  });
});

describe('in-memory transport + peer links', () => {
  it('passes 4 KiB and 1 MiB tensors round a 3-peer ring byte-exactly, with back-pressure', async () => {
    const hub = createMemoryTransportHub();
    const ids = ['a', 'b', 'c'];
    const t = ids.map((id) => hub.transport(id));
    // Each peer forwards what it receives from its predecessor to its successor; a starts and ends.
    const received = new Promise<TensorMessage[]>((resolve) => {
      const got: TensorMessage[] = [];
      t[0]!.onIncoming((link) => link.onTensor((m) => (got.push(m), got.length === 2 && resolve(got))));
    });
    for (let i = 1; i < 3; i++) {
      t[i]!.onIncoming((link) => {
        void t[i]!.connect(ids[(i + 1) % 3]!).then((next) => link.onTensor((m) => void next.sendTensor(m)));
      });
    }
    const first = await t[0]!.connect('b');
    const small = tensor(1024);
    const big = tensor(1 << 18, (i) => (i % 251) / 7);
    await first.sendTensor(small);
    await first.sendTensor(big);
    const [a, b] = await received;
    expect(sameBytes(a!.data, small.data)).toBe(true);
    expect(sameBytes(b!.data, big.data)).toBe(true);
    await Promise.all(t.map((x) => x.close()));
    await Promise.all(t.map((x) => x.close()));
  });

  it('garbage on the wire closes the link with a typed error; sends after close fail typed', async () => {
    for (const [junk, code] of [
      [new Uint8Array([1, 2, 3, 4]).buffer, 'PROTOCOL_BAD_FRAME'],
      [new Uint8Array([0xff, 0xfe, 0xfd]).buffer, 'TENSOR_BAD_FRAME'],
      [new Uint8Array([0x52, 0x57, 0x54, 0x46, 9, 9, 9]).buffer, 'TENSOR_BAD_FRAME'],
      [new TextEncoder().encode('{"type":"ping","v":1,"x":').buffer, 'PROTOCOL_BAD_FRAME'],
      ['{not json', 'PROTOCOL_BAD_FRAME'],
      ['{"type":"x"}', 'PROTOCOL_BAD_FRAME'],
      ['x'.repeat(20_000), 'PROTOCOL_FRAME_TOO_LARGE'],
    ] as const) {
      const [raw, end] = createMemoryChannelPair();
      const link = createPeerLink('remote', end);
      const error = new Promise<unknown>((resolve) => link.onError(resolve));
      const closed = new Promise<LinkClose>((resolve) => link.onClose(resolve));
      raw.send(junk);
      expect(isRingworkError(await error)).toBe(true);
      expect(await error).toMatchObject({ code });
      expect((await closed).reason).toBe('error');
      expect(link.isOpen).toBe(false);
      await expect(link.sendTensor(tensor(4))).rejects.toMatchObject({ code: 'TRANSPORT_CLOSED' });
      expect(() => link.sendControl({ type: 'x', v: 1 })).toThrow(/closed/);
    }
  });

  it('control messages arrive in order with tensors; connecting to an unknown peer fails typed', async () => {
    const hub = createMemoryTransportHub();
    const a = hub.transport('a');
    const b = hub.transport('b');
    const seen: string[] = [];
    const done = new Promise<void>((resolve) =>
      b.onIncoming((l) => {
        l.onControl((m) => (seen.push(`c:${m.type}`), m.type === 'end' && resolve()));
        l.onTensor((m) => seen.push(`t:${m.shape[1]}`));
      }),
    );
    const link = await a.connect('b');
    link.sendControl({ type: 'open', v: 1 });
    await link.sendTensor(tensor(8));
    link.sendControl({ type: 'end', v: 1 });
    await done;
    expect(seen).toEqual(['c:open', 't:8', 'c:end']);
    await expect(a.connect('nobody')).rejects.toMatchObject({ code: 'TRANSPORT_PEER_UNREACHABLE' });
  });
});

describe('frame bombs (a declared size is not an allocation)', () => {
  it('refuses a tensor over the link limit from its first header; holds only received chunks; a partial tensor times out', async () => {
    const r = createTensorReassembler({ maxBytes: () => 1024 * 1024 });
    expect(codeOf(() => r.push(frameBomb(256 * 1024 * 1024)))).toBe('TENSOR_TOO_LARGE');
    expect(r.partial).toBe(false);
    // Within the limit, 64 MiB declared but one 64 KiB chunk sent: 64 KiB held, not 64 MiB.
    const lax = createTensorReassembler();
    expect(lax.push(frameBomb(64 * 1024 * 1024))).toBeUndefined();
    expect(lax.partial).toBe(true);
    expect(lax.heldBytes).toBe(MAX_CHUNK_BYTES);

    // Over a link, with the timer injected: the partial tensor closes the link when it fires.
    const timers: (() => void)[] = [];
    const [a, b] = createMemoryChannelPair();
    const link = createPeerLink('mallory', b, {
      partialTimeoutMs: 5_000,
      setTimer: (fn) => {
        timers.push(fn);
        return () => timers.splice(timers.indexOf(fn), 1);
      },
    });
    const closed = new Promise<LinkClose>((resolve) => link.onClose(resolve));
    a.send(frameBomb(64 * 1024 * 1024));
    await vi.waitFor(() => expect(timers.length).toBe(1));
    expect(link.isOpen).toBe(true);
    timers[0]!();
    await expect(closed).resolves.toMatchObject({
      reason: 'error',
      error: { code: 'TENSOR_PARTIAL_TIMEOUT' },
    });

    // A stage's limit (setTensorLimit) applies to the next tensor's header.
    const [c, d] = createMemoryChannelPair();
    const tight = createPeerLink('peer', d);
    tight.setTensorLimit(16 * 1024);
    const closed2 = new Promise<LinkClose>((resolve) => tight.onClose(resolve));
    void createPeerLink('x', c)
      .sendTensor(tensor(8192))
      .catch(() => undefined);
    await expect(closed2).resolves.toMatchObject({ error: { code: 'TENSOR_TOO_LARGE' } });
  });
});
