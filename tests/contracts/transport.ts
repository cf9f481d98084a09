/**
 * The contract of {@link Transport} and {@link PeerLink} (shared/transport/types.ts), written once and
 * run against every implementation: the in-memory hub in vitest
 * (tests/shared/transport.contract.test.ts) and the WebRTC transport in Chromium
 * (web/src/harness/contract-harness.ts, tests/e2e/contracts.spec.ts).
 *
 * Decisions the contract makes (both implementations follow them):
 * - connecting to a peer id nobody holds fails fast with `TRANSPORT_PEER_UNREACHABLE`, not after the
 *   connect timeout;
 * - a connect on a closed transport fails with `TRANSPORT_CLOSED`, one with an aborted signal with
 *   `ABORTED`;
 * - a send on a closed link fails with `TRANSPORT_CLOSED` (sendTensor rejects, sendControl throws);
 *   an invalid tensor makes sendTensor reject (never throw) and leaves the link open;
 * - a send aborted before its first chunk leaves the link usable; one aborted mid-tensor closes the
 *   link (the receiver could not resynchronise), so nothing sent later is silently lost.
 */
import type { TensorMessage } from '../../shared/transport/tensor-frame.js';
import type { ControlMessage, LinkClose, PeerLink, Transport } from '../../shared/transport/types.js';
import {
  ContractFailure,
  equal,
  fails,
  ok,
  rejects,
  sameBytes,
  waitFor,
  within,
  type ContractCase,
} from './check.js';

/** N transports that can all reach each other, and how to release them. */
export interface TransportFixture {
  transports: Transport[];
  /** A well-formed peer id that no transport holds. */
  unknownPeerId: string;
  teardown(): Promise<void>;
}

/** Creates a fresh fixture of `n` transports. */
export type TransportSetup = (n: number) => Promise<TransportFixture>;

/** Options of {@link contract}. */
export interface TransportContractOptions {
  /** How long a close takes to reach the other side at most (ms). */
  closeMs?: number;
  /** Base timeout of a case (ms); heavy cases get a multiple. */
  timeoutMs?: number;
  /** Multiplies every time budget of the suite (a slow machine; see tests/helpers/timeouts.ts). */
  scale?: number;
}

/** Deterministic, non-trivial content (every byte value occurs; no NaN for floats). */
function tensor(
  dtype: TensorMessage['dtype'],
  count: number,
  meta: Partial<Omit<TensorMessage, 'data' | 'dtype'>> = {},
): TensorMessage {
  const data =
    dtype === 'float32'
      ? Float32Array.from({ length: count }, (_, i) => Math.sin(i * 0.37) * 1e3 + i)
      : dtype === 'int32'
        ? Int32Array.from({ length: count }, (_, i) => (i * 2654435761) | 0)
        : Uint8Array.from({ length: count }, (_, i) => (i * 131 + 7) & 0xff);
  return {
    session: 'contract',
    step: 0,
    position: 0,
    kind: 'raw',
    shape: [count],
    ...meta,
    dtype,
    data,
  };
}

function sameTensor(got: TensorMessage, want: TensorMessage, what: string): void {
  equal(got.session, want.session, `${what}: session`);
  equal(got.step, want.step, `${what}: step`);
  equal(got.position, want.position, `${what}: position`);
  equal(got.kind, want.kind, `${what}: kind`);
  equal(got.dtype, want.dtype, `${what}: dtype`);
  equal(got.shape, want.shape, `${what}: shape`);
  equal(got.trace ?? [], want.trace ?? [], `${what}: trace`);
  ok(got.data.constructor === want.data.constructor, `${what}: typed array class`);
  sameBytes(got.data, want.data, `${what}: payload`);
}

/** Collects what arrives on a link. */
function inbox(link: PeerLink) {
  const tensors: TensorMessage[] = [];
  const controls: ControlMessage[] = [];
  const closes: LinkClose[] = [];
  link.onTensor((m) => tensors.push(m));
  link.onControl((m) => controls.push(m));
  link.onClose((c) => closes.push(c));
  return { tensors, controls, closes };
}

/** Opens a link from `from` to `to`; resolves with both ends once both are open. */
async function pairOf(from: Transport, to: Transport, budgetMs = 15_000): Promise<[PeerLink, PeerLink]> {
  const incoming = new Promise<PeerLink>((resolve) => {
    const off = to.onIncoming((l) => {
      if (l.remoteId !== from.localId) return;
      off();
      resolve(l);
    });
  });
  const a = await from.connect(to.localId, { timeoutMs: budgetMs });
  const b = await within(incoming, budgetMs, 'the incoming side of a new link');
  return [a, b];
}

/**
 * The transport contract as a list of self-contained cases. `setup` is called once per case; the
 * fixture is torn down whatever the case's outcome.
 */
export function contract(setup: TransportSetup, opts: TransportContractOptions = {}): ContractCase[] {
  const scale = opts.scale ?? 1;
  const t = (ms: number) => Math.round(ms * scale);
  const closeMs = opts.closeMs ?? t(5_000);
  const base = opts.timeoutMs ?? t(30_000);
  const pair = (from: Transport, to: Transport) => pairOf(from, to, t(15_000));
  const cases: ContractCase[] = [];
  const add = (name: string, n: number, fn: (fx: TransportFixture) => Promise<void>, weight = 1) =>
    cases.push({
      name,
      timeoutMs: base * weight,
      async run() {
        const fx = await setup(n);
        try {
          await fn(fx);
        } finally {
          await fx.teardown();
        }
      },
    });

  add('connect: both ends are open and name each other', 2, async ({ transports: [t0, t1] }) => {
    const [a, b] = await pair(t0!, t1!);
    equal(a.remoteId, t1!.localId, 'dialer remoteId');
    equal(b.remoteId, t0!.localId, 'acceptor remoteId');
    ok(a.isOpen && b.isOpen, 'both ends open');
    ok(t0!.localId !== t1!.localId && t0!.localId.length > 0, 'distinct, non-empty local ids');
  });

  add(
    'tensors arrive byte-exact with their metadata: empty, small, 64 KiB, 64 KiB + 4, multi-MiB, every dtype, both ways',
    2,
    async ({ transports: [t0, t1] }) => {
      const [a, b] = await pair(t0!, t1!);
      const toB = inbox(b);
      const toA = inbox(a);
      const sent: TensorMessage[] = [
        tensor('float32', 0),
        tensor('float32', 3, {
          session: 'sess-ü',
          step: 7,
          position: 42,
          kind: 'hidden',
          trace: [1.5, 2.25],
        }),
        tensor('uint8', 5, { kind: 'tokens' }),
        tensor('int32', 16 * 1024, { kind: 'tokens', shape: [4, 4096] }),
        tensor('float32', 16 * 1024 + 1, { kind: 'logits' }),
        tensor('uint8', 3 * 65536 + 7),
        tensor('float32', (3 << 20) / 4, { kind: 'hidden', shape: [3, 1 << 18] }),
      ];
      for (const m of sent) await a.sendTensor(m);
      for (const m of sent) await b.sendTensor(m);
      await waitFor(
        () => toB.tensors.length >= sent.length && toA.tensors.length >= sent.length,
        t(20_000),
        'all tensors',
      );
      equal(toB.tensors.length, sent.length, 'tensors at b');
      equal(toA.tensors.length, sent.length, 'tensors at a');
      sent.forEach((m, i) => {
        sameTensor(toB.tensors[i]!, m, `a->b #${i}`);
        sameTensor(toA.tensors[i]!, m, `b->a #${i}`);
      });
    },
    2,
  );

  add(
    'tensors arrive in send order, and control messages in theirs, even when sent without waiting',
    2,
    async ({ transports: [t0, t1] }) => {
      const [a, b] = await pair(t0!, t1!);
      const got = inbox(b);
      const sizes = [1, 70_000, 5, 200_000, 17, 16_384, 3, 100_000, 9, 1];
      const sent = sizes.map((n, step) => tensor(step % 2 ? 'uint8' : 'float32', n, { step }));
      const sends = sent.map((m) => a.sendTensor(m));
      for (let i = 0; i < 50; i++) a.sendControl({ type: 'seq', v: 1, i });
      await Promise.all(sends);
      await waitFor(
        () => got.tensors.length >= sent.length && got.controls.length >= 50,
        t(20_000),
        'everything',
      );
      equal(
        got.tensors.map((m) => m.step),
        sent.map((m) => m.step),
        'tensor order',
      );
      sent.forEach((m, i) => sameTensor(got.tensors[i]!, m, `tensor ${i}`));
      equal(
        got.controls.map((m) => m.i),
        Array.from({ length: 50 }, (_, i) => i),
        'control order',
      );
      ok(
        got.controls.every((m) => m.type === 'seq' && m.v === 1),
        'control content',
      );
    },
  );

  add(
    'back-pressure: many MiB sent at once (far above the high-water mark) all resolve and arrive',
    2,
    async ({ transports: [t0, t1] }) => {
      const [a, b] = await pair(t0!, t1!);
      const got = inbox(b);
      const sent = Array.from({ length: 6 }, (_, step) => tensor('float32', (2 << 20) / 4, { step }));
      await within(Promise.all(sent.map((m) => a.sendTensor(m))), t(60_000), 'six 2 MiB sends');
      await waitFor(() => got.tensors.length >= sent.length, t(30_000), 'all 12 MiB delivered');
      sent.forEach((m, i) => sameTensor(got.tensors[i]!, m, `tensor ${i}`));
      ok(a.isOpen && b.isOpen, 'link still open');
    },
    3,
  );

  add(
    'close: both ends see it once (local / remote); sends on either end then fail with TRANSPORT_CLOSED; close twice is fine',
    2,
    async ({ transports: [t0, t1] }) => {
      const [a, b] = await pair(t0!, t1!);
      const atA = inbox(a);
      const atB = inbox(b);
      a.close();
      a.close();
      ok(!a.isOpen, 'the closing end is closed at once');
      equal(atA.closes, [{ reason: 'local' }], 'local close event');
      await waitFor(() => atB.closes.length > 0, closeMs, 'the other end sees the close');
      ok(!b.isOpen, 'the other end is closed');
      // WebRTC may report the peer's close as an SCTP abort ('error') rather than an orderly 'remote'
      // close; either way it is exactly one event and never 'local'.
      equal(atB.closes.length, 1, 'one close event at the other end');
      ok(atB.closes[0]!.reason !== 'local', `the other end's close is remote (got ${atB.closes[0]!.reason})`);
      for (const [end, name] of [
        [a, 'closer'],
        [b, 'other end'],
      ] as const) {
        await rejects(end.sendTensor(tensor('float32', 4)), 'TRANSPORT_CLOSED', `sendTensor on the ${name}`);
        await fails(
          () => end.sendControl({ type: 'x', v: 1 }),
          'TRANSPORT_CLOSED',
          `sendControl on the ${name}`,
        );
      }
      b.close();
      equal(atA.closes.length + atB.closes.length, 2, 'one close event per end');
    },
  );

  add(
    'connecting to an unknown peer fails fast with TRANSPORT_PEER_UNREACHABLE (not a timeout)',
    1,
    async (fx) => {
      const dialer = fx.transports[0]!;
      const t0 = Date.now();
      // A budget far above the fail-fast limit: only an immediate refusal passes.
      await within(
        rejects(
          dialer.connect(fx.unknownPeerId, { timeoutMs: t(60_000) }),
          'TRANSPORT_PEER_UNREACHABLE',
          'connect',
        ),
        t(5_000),
        'the unknown-peer rejection',
      );
      ok(Date.now() - t0 < t(5_000), 'failed fast');
    },
  );

  add(
    'connect with an aborted signal fails with ABORTED; the transport still connects afterwards',
    2,
    async ({ transports: [t0, t1] }) => {
      const ac = new AbortController();
      ac.abort();
      await within(
        rejects(t0!.connect(t1!.localId, { signal: ac.signal }), 'ABORTED', 'connect'),
        t(5_000),
        'abort',
      );
      const [a, b] = await pair(t0!, t1!);
      ok(a.isOpen && b.isOpen, 'a later connect works');
    },
  );

  add(
    'transport.close(): every link closes on both ends, close twice is fine, connect afterwards fails with TRANSPORT_CLOSED',
    3,
    async ({ transports: [t0, t1, t2] }) => {
      const [a1, b1] = await pair(t0!, t1!);
      const [c2, a2] = await pair(t2!, t0!);
      const remote = [inbox(b1), inbox(c2)];
      await t0!.close();
      await t0!.close();
      ok(!a1.isOpen && !a2.isOpen, "the closed transport's links are closed");
      await waitFor(() => remote.every((r) => r.closes.length > 0), closeMs, 'remote ends see the close');
      ok(!b1.isOpen && !c2.isOpen, 'remote ends closed');
      await rejects(
        t0!.connect(t1!.localId, { timeoutMs: t(5_000) }),
        'TRANSPORT_CLOSED',
        'connect after close',
      );
      // The other transports are unaffected.
      const [x, y] = await pair(t1!, t2!);
      ok(x.isOpen && y.isOpen, 'the others still connect');
    },
    2,
  );

  add(
    'two links between the same pair are independent: closing one leaves the other working',
    2,
    async ({ transports: [t0, t1] }) => {
      const [a1, b1] = await pair(t0!, t1!);
      const [a2, b2] = await pair(t0!, t1!);
      ok(a1 !== a2 && b1 !== b2, 'distinct links');
      const at2 = inbox(b2);
      const at1 = inbox(b1);
      a1.close();
      await waitFor(() => at1.closes.length > 0, closeMs, 'first link closes');
      ok(a2.isOpen && b2.isOpen, 'second link still open');
      const m = tensor('float32', 100_000, { step: 9 });
      await a2.sendTensor(m);
      await waitFor(() => at2.tensors.length > 0, t(10_000), 'tensor on the second link');
      sameTensor(at2.tensors[0]!, m, 'second link tensor');
    },
  );

  add(
    'an invalid tensor makes sendTensor reject with a typed code; the link stays open',
    2,
    async ({ transports: [t0, t1] }) => {
      const [a, b] = await pair(t0!, t1!);
      const got = inbox(b);
      const bad = { ...tensor('float32', 10), shape: [11] };
      let p: Promise<void> | undefined;
      try {
        p = a.sendTensor(bad);
      } catch (e) {
        throw new ContractFailure(`sendTensor threw synchronously instead of rejecting: ${String(e)}`);
      }
      await rejects(p, 'TENSOR_SIZE_MISMATCH', 'shape/data mismatch');
      await rejects(
        a.sendTensor({ ...tensor('float32', 2), session: 'x'.repeat(65) }),
        'TENSOR_BAD_FRAME',
        'long session id',
      );
      ok(a.isOpen, 'link still open');
      const good = tensor('int32', 10);
      await a.sendTensor(good);
      await waitFor(() => got.tensors.length > 0, t(10_000), 'the next good tensor');
      equal(got.tensors.length, 1, 'only the good tensor arrived');
      sameTensor(got.tensors[0]!, good, 'good tensor');
    },
  );

  add(
    'aborting a send rejects with ABORTED and never corrupts the stream: what is sent later arrives intact or fails typed',
    2,
    async ({ transports: [t0, t1] }) => {
      const [a, b] = await pair(t0!, t1!);
      const got = inbox(b);
      // Aborted before it starts: nothing goes out and the link stays usable.
      const pre = new AbortController();
      pre.abort();
      await rejects(
        a.sendTensor(tensor('float32', 10), { signal: pre.signal }),
        'ABORTED',
        'pre-aborted send',
      );
      ok(a.isOpen, 'open after a pre-aborted send');
      // Aborted while a large tensor is going out.
      const ac = new AbortController();
      const big = a.sendTensor(tensor('float32', (8 << 20) / 4, { step: 1 }), { signal: ac.signal });
      await new Promise((r) => setTimeout(r, 0));
      ac.abort();
      let aborted = false;
      try {
        await big;
      } catch (e) {
        await rejects(Promise.reject(e), 'ABORTED', 'mid-send abort');
        aborted = true;
      }
      const after = tensor('uint8', 1000, { step: 2 });
      let delivered = true;
      try {
        await a.sendTensor(after);
      } catch (e) {
        await rejects(Promise.reject(e), 'TRANSPORT_CLOSED', 'send after a mid-tensor abort');
        delivered = false;
      }
      if (delivered) {
        await waitFor(
          () => got.tensors.some((m) => m.step === 2),
          t(10_000),
          'the tensor sent after the abort',
        );
        const last = got.tensors[got.tensors.length - 1]!;
        sameTensor(last, after, 'tensor after the abort');
        if (aborted) equal(got.tensors.length, 1, 'the aborted tensor was not delivered');
      } else {
        ok(aborted, 'the link only closes when a send was cut off');
        await waitFor(() => got.closes.length > 0, closeMs, 'the receiver sees the link close');
      }
      ok(
        got.tensors.every((m) => m.step !== 0),
        'the pre-aborted tensor never arrived',
      );
    },
  );

  return cases;
}
