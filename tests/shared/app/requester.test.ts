import { beforeAll, describe, expect, it, vi } from 'vitest';
import { HISTORY_KEY, type HistoryStorage } from '../../../shared/app/requester';
import { createPipeline } from '../../../shared/runtime/pipeline';
import { generate } from '../../../shared/runtime/generate';
import { createSampler } from '../../../shared/runtime/sampler';
import { stories260KRunner, stories260KTokenizer } from '../../helpers/engine';
import { scaled } from '../../helpers/timeouts';
import { loadGolden } from '../../helpers/golden';
import { createFakeSignalingHub, type ServerMessageBody } from '../../helpers/memory-signaling';
import {
  CAPABILITY,
  GOLDEN_SETTINGS,
  STORIES,
  assign,
  contributorOn,
  gatedRunner,
  pid,
  requesterOn,
  ringOf,
  warmUpOrt,
} from './app-fixture';

const golden = loadGolden();
const history = [{ role: 'user' as const, text: 'Once upon a time' }];
const signal = () => new AbortController().signal;

/** A fake coordinator: answers ring-requests with `current()` and counts them. */
function coordinator(hub: ReturnType<typeof createFakeSignalingHub>, current: () => ServerMessageBody) {
  const requests: string[] = [];
  hub.onSend((from, m) => {
    if (m.type !== 'ring-request') return;
    requests.push(from);
    hub.push(from, current());
  });
  return { requests };
}

/** A storage that counts writes. */
function countingStorage(): HistoryStorage & { writes: number; data: Map<string, string> } {
  const data = new Map<string, string>();
  const s = {
    writes: 0,
    data,
    getItem: (k: string) => data.get(k) ?? null,
    setItem: (k: string, v: string) => {
      s.writes++;
      data.set(k, v);
    },
    removeItem: (k: string) => void data.delete(k),
  };
  return s;
}

describe('requester (in-memory signaling and links, real ORT runner on stories260K)', () => {
  beforeAll(warmUpOrt);

  it('subscribes once per model and follows pushed ring changes; a stale epoch is retried on the pushed ring', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    const c = contributorOn(hub, a);
    await c.start({ capability: CAPABILITY });
    const whole = [{ peer: a, range: [0, 7] as [number, number] }];
    assign(hub, whole, 2);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    // The coordinator's answer is a ring one epoch behind; the current one is pushed after a failure.
    const co = coordinator(hub, () => ringOf(whole, 1));
    const failures: unknown[] = [];
    const req = pid('req');
    const r = requesterOn(hub, req, {
      logger: {
        debug() {},
        warn() {},
        error() {},
        info: (o) => {
          failures.push(o);
          hub.push(req, ringOf(whole, 2));
        },
      },
    });
    const first = await r.ask({ settings: GOLDEN_SETTINGS, history, signal: signal() });
    expect(first.text + '\n').toBe(golden.text);
    expect(failures).toEqual([{ attempt: 0, retry: true, code: 'RING_STALE_EPOCH' }]);
    expect(r.store.getState().rings.stories260K).toMatchObject({ type: 'ring', epoch: 2 });
    // A second request uses the pushed ring: no further ring-request round trip.
    const second = await r.ask({ settings: GOLDEN_SETTINGS, history, signal: signal() });
    expect(second.text).toBe(first.text);
    expect(co.requests).toEqual([req]);
    await c.stop();
  });

  it('a ring whose stage is still loading its shard is retried until it serves', async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const c = contributorOn(hub, a, () => gatedRunner(gate));
    await c.start({ capability: CAPABILITY });
    const whole = [{ peer: a, range: [0, 7] as [number, number] }];
    assign(hub, whole, 1);
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('loading'));
    coordinator(hub, () => ringOf(whole, 1));
    const codes: unknown[] = [];
    const r = requesterOn(hub, pid('req'), {
      logger: {
        debug() {},
        warn() {},
        error() {},
        info: (o) => {
          codes.push(o);
          release(); // the shard finishes loading after the first refusal
        },
      },
    });
    const answer = await r.ask({ settings: GOLDEN_SETTINGS, history, signal: signal() });
    expect(answer.text + '\n').toBe(golden.text);
    expect(codes[0]).toMatchObject({ attempt: 0, retry: true, code: 'RING_STAGE_NOT_SERVING' });
    await c.stop();
  });

  it('no ring and the model does not fit: a NO_RING error saying how much memory is missing, not retried', async () => {
    const hub = createFakeSignalingHub();
    const co = coordinator(hub, () => ({
      type: 'no-ring',
      model: 'stories260K',
      reason: 'no contributors',
      descriptor: STORIES,
      totalBytes: 3e9,
    }));
    const r = requesterOn(hub, pid('req'), { localMemoryBytes: () => 1e9 });
    await expect(r.ask({ settings: GOLDEN_SETTINGS, history, signal: signal() })).rejects.toMatchObject({
      code: 'NO_RING',
      message: expect.stringContaining('2.00 GB more peer memory'),
      details: { model: 'stories260K', missingBytes: 2e9 },
    });
    expect(co.requests).toHaveLength(1);
  });

  it("a k = 2 question never runs on the late answer to start()'s default-level request", async () => {
    const hub = createFakeSignalingHub();
    const a = pid('a');
    const c = contributorOn(hub, a);
    await c.start({ capability: CAPABILITY });
    const whole = [{ peer: a, range: [0, 7] as [number, number] }];
    assign(hub, whole, 1);
    // A serving ring: taking the stale answer would give an unvalidated golden answer, not an error.
    await vi.waitFor(() => expect(c.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    const requests: Array<number | undefined> = [];
    hub.onSend((_from, m) => {
      if (m.type === 'ring-request') requests.push(m.security?.k);
    });
    const req = pid('req');
    const r = requesterOn(hub, req, { ringTimeoutMs: 1500, validatedRetryWindowMs: 0 });
    await r.start();
    const asked = r.ask({ settings: { ...GOLDEN_SETTINGS, security: 2 }, history, signal: signal() });
    // Both requests are out before the coordinator answers the first (in order, but late).
    await vi.waitFor(() => expect(requests).toEqual([undefined, 2]));
    hub.push(req, ringOf(whole, 1)); // the default-level answer: a ring without validator rings
    // The level-2 answer never comes: the question fails typed instead of running unvalidated.
    await expect(asked).rejects.toMatchObject({ code: 'SIGNALING_COORDINATOR_TIMEOUT' });
    await r.stop();
    await c.stop();
  });

  it('no ring and the model fits: it runs alone here with the golden text, and the same text at temperature > 0 as a ring', async () => {
    const hub = createFakeSignalingHub();
    coordinator(hub, () => ({
      type: 'no-ring',
      model: 'stories260K',
      reason: 'no contributors',
      descriptor: STORIES,
      totalBytes: 1e6,
    }));
    const req = pid('req');
    const r = requesterOn(hub, req);
    const local = await r.ask({ settings: GOLDEN_SETTINGS, history, signal: signal() });
    expect(local.text + '\n').toBe(golden.text);
    expect(local.stats).toMatchObject({ local: true, peers: [req] });

    // Sampling: the local run's sampler and a ring head's (same seed) draw the same tokens.
    const warm = { ...GOLDEN_SETTINGS, temperature: 0.9, topP: 0.9 };
    const localWarm = await r.ask({ settings: warm, history, signal: signal() });
    const hub2 = createFakeSignalingHub();
    const a = pid('a');
    const b = pid('b');
    const [ca, cb] = [contributorOn(hub2, a), contributorOn(hub2, b)];
    await Promise.all([ca.start({ capability: CAPABILITY }), cb.start({ capability: CAPABILITY })]);
    const order = [
      { peer: a, range: [0, 2] as [number, number] },
      { peer: b, range: [2, 7] as [number, number] },
    ];
    assign(hub2, order, 1);
    await vi.waitFor(() => expect(cb.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    await vi.waitFor(() => expect(ca.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    coordinator(hub2, () => ringOf(order, 1));
    const ringWarm = await requesterOn(hub2, req).ask({ settings: warm, history, signal: signal() });
    expect(ringWarm.text).toBe(localWarm.text);
    expect(ringWarm.text).not.toBe(local.text); // it did sample
    // And both equal one sampler over a local pipeline with that seed.
    const runner = stories260KRunner();
    await runner.load({
      model: { url: STORIES.url },
      range: [0, 7],
      weightFormat: 'f32',
      contextLength: 512,
      logits: 'last',
      backend: 'wasm',
    });
    const ref = await generate({
      pipeline: createPipeline([runner]),
      tokenizer: stories260KTokenizer(),
      prompt: 'Once upon a time',
      steps: 64,
      sampler: createSampler({ temperature: 0.9, topP: 0.9, seed: 1 }),
      stopTokens: [],
    });
    expect(ref.text).toBe(ringWarm.text + '\n');
    await runner.dispose();
    await ca.stop();
    await cb.stop();
  });

  it('send() streams into the store and persists the history on completion only; a new requester reads it back', async () => {
    const hub = createFakeSignalingHub();
    coordinator(hub, () => ({
      type: 'no-ring',
      model: 'stories260K',
      reason: 'none',
      descriptor: STORIES,
      totalBytes: 1e6,
    }));
    const storage = countingStorage();
    const r = requesterOn(hub, pid('req'), { storage });
    r.setSettings(GOLDEN_SETTINGS);
    const streamed: string[] = [];
    const off = r.store.subscribe((s) => s.streaming?.text && streamed.push(s.streaming.text));
    await r.send('Once upon a time');
    off();
    const state = r.store.getState();
    expect(state.busy).toBe(false);
    expect(state.streaming).toBeUndefined();
    expect(state.messages).toHaveLength(2);
    expect(state.messages[1]!.text + '\n').toBe(golden.text);
    expect(state.messages[1]!.meta).toMatchObject({ done: true, local: true, model: 'stories260K' });
    expect(streamed.length).toBeGreaterThan(50); // every token streamed...
    expect(storage.writes).toBeLessThanOrEqual(3); // ...but the history was written at send and at the end
    const saved = JSON.parse(storage.data.get(HISTORY_KEY)!) as { text: string }[];
    expect(saved.map((m) => m.text)).toEqual(['Once upon a time', state.messages[1]!.text]);
    const again = requesterOn(hub, pid('req2'), { storage });
    expect(again.store.getState().messages).toEqual(state.messages);
    r.clear();
    expect(JSON.parse(storage.data.get(HISTORY_KEY)!)).toEqual([]);
  });

  it('stop() aborts a running answer with a typed error kept on the message', async () => {
    const hub = createFakeSignalingHub();
    coordinator(hub, () => ({
      type: 'no-ring',
      model: 'stories260K',
      reason: 'none',
      descriptor: STORIES,
      totalBytes: 1e6,
    }));
    const r = requesterOn(hub, pid('req'));
    r.setSettings({ ...GOLDEN_SETTINGS, maxTokens: 400 });
    const off = r.store.subscribe((s) => (s.streaming?.text.length ?? 0) > 40 && r.abort());
    await r.send('Once upon a time');
    off();
    const m = r.store.getState().messages[1]!;
    expect(m.meta).toMatchObject({ done: true, error: expect.stringContaining('aborted') });
    expect(m.text.length).toBeGreaterThan(40);
    await r.stop();
    await r.stop();
  });
});
