/**
 * The contract of {@link ShardRunner} (shared/runtime/shard-runner.ts), written once and run against
 * every implementation on the real stories260K model: the in-process ORT runner in vitest
 * (tests/shared/shard-runner.contract.test.ts) and the Web Worker runner in Chromium
 * (web/src/harness/contract-harness.ts, tests/e2e/contracts.spec.ts).
 *
 * Decisions the contract makes:
 * - a step whose signal has already fired rejects with `ABORTED` and leaves the session unchanged;
 *   one aborted in flight rejects with `ABORTED` promptly (the session should then be closed, as
 *   the work may have reached the cache), and the runner keeps serving;
 * - `dispose()` is terminal and idempotent: afterwards `load`, `openSession` and `step` fail with
 *   `RUNNER_DISPOSED`, while the releases (`closeSession`, `dispose`) still resolve and `info()`
 *   reports nothing loaded.
 */
import type { ModelRef, ShardRunner, StepInput } from '../../shared/runtime/shard-runner.js';
import { close, equal, ok, rejects, within, type ContractCase, maxAbsDiff } from './check.js';

/** Reference outputs of the model (llama2.c on stories260K; see tests/helpers/golden.ts). */
export interface ContractGolden {
  /** The reference token sequence (prompt, then greedy continuation). */
  tokens: number[];
  /** Logits `[positions][vocab]` after each position of `tokens`. */
  logits: Float32Array;
  /** Residual stream `[positions][nLayers + 1][dim]`: 0 = embedding, l + 1 = after block l. */
  hidden: Float32Array;
  /** Positions covered by `logits` and `hidden` (at least 16). */
  positions: number;
  nLayers: number;
  dim: number;
  vocab: number;
}

/** A fresh, unloaded runner and how to release what it holds beyond `dispose()`. */
export interface RunnerFixture {
  runner: ShardRunner;
  teardown(): Promise<void>;
}

/** How the suite gets runners, which model they load and what that model must produce. */
export interface ShardRunnerSetup {
  create(): Promise<RunnerFixture>;
  model: ModelRef;
  golden: ContractGolden;
  /** Largest accepted |difference| from the reference (default 1e-4). */
  tolerance?: number;
  /** Timeout of one case (ms). */
  timeoutMs?: number;
  /** Multiplies every time budget of the suite (a slow machine; see tests/helpers/timeouts.ts). */
  scale?: number;
}

/** The shard-runner contract as a list of self-contained cases (one fresh runner each). */
export function contract(setup: ShardRunnerSetup): ContractCase[] {
  const g = setup.golden;
  const tol = setup.tolerance ?? 1e-4;
  const t = (ms: number) => Math.round(ms * (setup.scale ?? 1));
  const units = g.nLayers + 2; // embedding, blocks, head
  const logitsAt = (pos: number) => g.logits.subarray(pos * g.vocab, (pos + 1) * g.vocab);
  const hiddenAt = (pos: number, index: number) => {
    const off = (pos * (g.nLayers + 1) + index) * g.dim;
    return g.hidden.subarray(off, off + g.dim);
  };
  const tokens = (from: number, to: number) => Int32Array.from(g.tokens.slice(from, to));
  const load = (runner: ShardRunner, range: readonly [number, number]) =>
    runner.load({
      model: setup.model,
      range,
      weightFormat: 'f32',
      contextLength: 32,
      logits: 'last',
      backend: 'wasm',
    });

  const cases: ContractCase[] = [];
  const add = (name: string, fn: (runner: ShardRunner) => Promise<void>) =>
    cases.push({
      name,
      timeoutMs: setup.timeoutMs ?? t(60_000),
      async run() {
        const fx = await setup.create();
        try {
          await fn(fx.runner);
        } finally {
          await fx.runner.dispose();
          await fx.teardown();
        }
      },
    });

  add('before load: openSession and step fail with RUNNER_NOT_LOADED; info() says not loaded', async (r) => {
    await rejects(r.openSession(), 'RUNNER_NOT_LOADED', 'openSession before load');
    await rejects(
      r.step('s1', { tokens: tokens(0, 1), position: 0 }),
      'RUNNER_NOT_LOADED',
      'step before load',
    );
    const info = await r.info();
    equal(info.loaded, false, 'info().loaded');
    equal(info.sessions, 0, 'info().sessions');
  });

  add('prefill then token-by-token decode on the whole model reproduces the reference logits', async (r) => {
    const loaded = await load(r, [0, units]);
    equal(loaded.backend, 'wasm', 'backend');
    equal(loaded.config.numLayers, g.nLayers, 'layers');
    const info = await r.info();
    ok(info.loaded, 'info().loaded');
    equal(info.range, [0, units], 'info().range');
    const s = await r.openSession();
    const pre = await r.step(s, { tokens: tokens(0, 5), position: 0 });
    equal(pre.kind, 'logits', 'output kind');
    equal(pre.seqLen, 5, 'seqLen');
    close(pre.data, logitsAt(4), tol, 'prefill logits at position 4');
    for (let pos = 5; pos < 12; pos++) {
      const out = await r.step(s, { tokens: tokens(pos, pos + 1), position: pos });
      equal(out.seqLen, 1, `seqLen at ${pos}`);
      close(out.data, logitsAt(pos), tol, `decode logits at position ${pos}`);
    }
  });

  add(
    'a two-shard chain hands over the reference hidden states and ends in the reference logits',
    async (first) => {
      // The second shard runs in a runner of the same kind, so both ends of a boundary are tested.
      const fx2 = await setup.create();
      const second = fx2.runner;
      try {
        const split = 3; // [0, 3) = embedding + blocks 0-1; its output is the residual after block 1
        await load(first, [0, split]);
        await load(second, [split, units]);
        const s1 = await first.openSession();
        const s2 = await second.openSession();
        const schedule: StepInput[] = [
          { tokens: tokens(0, 4), position: 0 },
          { tokens: tokens(4, 5), position: 4 },
          { tokens: tokens(5, 6), position: 5 },
        ];
        for (const input of schedule) {
          const h = await first.step(s1, input);
          equal(h.kind, 'hidden', 'first shard output kind');
          const rows = h.seqLen;
          equal(h.data.length, rows * g.dim, 'hidden length');
          for (let i = 0; i < rows; i++) {
            const pos = input.position + i;
            close(
              h.data.subarray(i * g.dim, (i + 1) * g.dim),
              hiddenAt(pos, split - 1),
              tol,
              `hidden at ${pos}`,
            );
          }
          const hidden = h.data.slice(); // the worker runner transfers (detaches) its input
          const out = await second.step(s2, { hidden, position: input.position });
          equal(out.kind, 'logits', 'second shard output kind');
          close(out.data, logitsAt(input.position + rows - 1), tol, `logits at ${input.position + rows - 1}`);
        }
      } finally {
        await second.dispose();
        await fx2.teardown();
      }
    },
  );

  add(
    'sessions are independent: interleaved and concurrent steps each see only their own cache',
    async (r) => {
      await load(r, [0, units]);
      const other = [1, 20, 300, 45, 100, 7, 399, 12];
      const a = await r.openSession();
      const b = await r.openSession();
      ok(a !== b, 'distinct session ids');
      equal((await r.info()).sessions, 2, 'info().sessions');
      const gotA: Float32Array[] = [];
      const gotB: Float32Array[] = [];
      const [a0, b0] = await Promise.all([
        r.step(a, { tokens: tokens(0, 3), position: 0 }),
        r.step(b, { tokens: Int32Array.from(other.slice(0, 3)), position: 0 }),
      ]);
      gotA.push(a0.data.slice());
      gotB.push(b0.data.slice());
      for (let pos = 3; pos < 8; pos++) {
        const [oa, ob] = await Promise.all([
          r.step(a, { tokens: tokens(pos, pos + 1), position: pos }),
          r.step(b, { tokens: Int32Array.of(other[pos]!), position: pos }),
        ]);
        gotA.push(oa.data.slice());
        gotB.push(ob.data.slice());
      }
      gotA.forEach((l, i) => close(l, logitsAt(i + 2), tol, `session A logits at ${i + 2}`));
      ok(maxAbsDiff(gotA[3]!, gotB[3]!) > 0.1, 'the two sessions saw different text');
      // B alone, in a fresh session, gives what B gave interleaved with A.
      const solo = await r.openSession();
      const s0 = await r.step(solo, { tokens: Int32Array.from(other.slice(0, 3)), position: 0 });
      close(s0.data, gotB[0]!, 1e-6, 'B alone at 2');
      for (let pos = 3; pos < 8; pos++) {
        const o = await r.step(solo, { tokens: Int32Array.of(other[pos]!), position: pos });
        close(o.data, gotB[pos - 2]!, 1e-6, `B alone at ${pos}`);
      }
    },
  );

  add(
    'closeSession frees the session: later steps fail with RUNNER_UNKNOWN_SESSION; closing twice is fine',
    async (r) => {
      await load(r, [0, units]);
      const s = await r.openSession();
      const keep = await r.openSession();
      await r.step(s, { tokens: tokens(0, 1), position: 0 });
      equal((await r.info()).sessions, 2, 'two sessions');
      await r.closeSession(s);
      equal((await r.info()).sessions, 1, 'one session after closeSession');
      await rejects(
        r.step(s, { tokens: tokens(1, 2), position: 1 }),
        'RUNNER_UNKNOWN_SESSION',
        'step after close',
      );
      await r.closeSession(s);
      await r.closeSession('never-opened');
      await rejects(
        r.step('never-opened', { tokens: tokens(0, 1), position: 0 }),
        'RUNNER_UNKNOWN_SESSION',
        'step on an unknown id',
      );
      const out = await r.step(keep, { tokens: tokens(0, 1), position: 0 });
      close(out.data, logitsAt(0), tol, 'the other session still works');
    },
  );

  add('bad input fails with RUNNER_BAD_INPUT and leaves the session intact', async (r) => {
    await load(r, [0, units]);
    const s = await r.openSession();
    await rejects(r.step(s, { tokens: tokens(0, 1), position: 1 }), 'RUNNER_BAD_INPUT', 'position gap');
    await rejects(r.step(s, { tokens: Int32Array.of(g.vocab), position: 0 }), 'RUNNER_BAD_INPUT', 'token id');
    await rejects(
      r.step(s, { hidden: new Float32Array(g.dim), position: 0 }),
      'RUNNER_BAD_INPUT',
      'hidden into the embedding shard',
    );
    const out = await r.step(s, { tokens: tokens(0, 1), position: 0 });
    close(out.data, logitsAt(0), tol, 'the session is still at position 0');
  });

  add(
    'a step with an already-aborted signal fails with ABORTED and leaves the session unchanged',
    async (r) => {
      await load(r, [0, units]);
      const s = await r.openSession();
      await r.step(s, { tokens: tokens(0, 2), position: 0 });
      const ac = new AbortController();
      ac.abort();
      await rejects(
        r.step(s, { tokens: tokens(2, 3), position: 2 }, { signal: ac.signal }),
        'ABORTED',
        'pre-aborted',
      );
      const out = await r.step(s, { tokens: tokens(2, 3), position: 2 });
      close(out.data, logitsAt(2), tol, 'the session continues at position 2');
    },
  );

  add('aborting a step in flight fails it with ABORTED promptly; the runner keeps serving', async (r) => {
    await load(r, [0, units]);
    const busy = await r.openSession();
    const victim = await r.openSession();
    // A long prefill keeps the runner busy; the victim is queued behind it, then aborted: it must
    // not wait for the long step to finish.
    let longDone = false;
    const long = r.step(busy, { tokens: tokens(0, 16), position: 0 });
    void long.then(() => (longDone = true));
    const ac = new AbortController();
    const queued = r.step(victim, { tokens: tokens(0, 16), position: 0 }, { signal: ac.signal });
    ac.abort();
    await within(rejects(queued, 'ABORTED', 'queued step'), t(5_000), 'abort of a queued step');
    ok(!longDone, 'the abort did not wait for the step ahead of it');
    // Aborted right after it was submitted, while the runner is (or was just) busy.
    const ac2 = new AbortController();
    const running = r.step(
      await r.openSession(),
      { tokens: tokens(0, 16), position: 0 },
      { signal: ac2.signal },
    );
    ac2.abort();
    await within(rejects(running, 'ABORTED', 'step in flight'), t(5_000), 'abort of a submitted step');
    close((await long).data, logitsAt(15), tol, 'the unaborted step completes correctly');
    const fresh = await r.openSession();
    const out = await r.step(fresh, { tokens: tokens(0, 3), position: 0 });
    close(out.data, logitsAt(2), tol, 'a new session works after the aborts');
  });

  add(
    'dispose() is idempotent and terminal: later load/openSession/step fail with RUNNER_DISPOSED; releases still resolve',
    async (r) => {
      await load(r, [0, units]);
      const s = await r.openSession();
      await r.step(s, { tokens: tokens(0, 1), position: 0 });
      await Promise.all([r.dispose(), r.dispose()]);
      await r.dispose();
      await rejects(r.openSession(), 'RUNNER_DISPOSED', 'openSession after dispose');
      await rejects(
        r.step(s, { tokens: tokens(1, 2), position: 1 }),
        'RUNNER_DISPOSED',
        'step after dispose',
      );
      await rejects(load(r, [0, 1]), 'RUNNER_DISPOSED', 'load after dispose');
      await r.closeSession(s);
      const info = await r.info();
      equal(info.loaded, false, 'info().loaded after dispose');
      equal(info.sessions, 0, 'info().sessions after dispose');
    },
  );

  return cases;
}
