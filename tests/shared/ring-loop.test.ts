/**
 * Loop mode (issue 16, "the ring closes at the head"): the head feeds each token it answers to stage
 * 0 as the next step, so the requester sends only the prefill. Real contributors (the app's own
 * objects and link wiring, closed rings as the coordinator assigns them) over in-memory signaling
 * and links, real ORT runners on stories260K. Greedy and seeded output must equal non-loop decoding;
 * stage 0 takes such steps only from its ring predecessor, only for loop sessions, only the next one.
 */
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { Contributor } from '../../shared/app/contributor';
import { splitUnits } from '../../shared/graph/units';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline';
import { loopStep } from '../../shared/ring/ring-loop';
import { parseRingControl, type RingLoop, type SamplerSettings } from '../../shared/ring/ring-protocol';
import { generate } from '../../shared/runtime/generate';
import type { ShardRunner } from '../../shared/runtime/shard-runner';
import type { TensorMessage } from '../../shared/transport/tensor-frame';
import type { PeerLink } from '../../shared/transport/types';
import { scaled } from '../helpers/timeouts';
import { loadGolden } from '../helpers/golden';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';
import { createFakeSignalingHub } from '../helpers/memory-signaling';
import {
  CAPABILITY,
  GOLDEN_SETTINGS,
  assign,
  contributorOn,
  pid,
  requesterOn,
  ringOf,
  warmUpOrt,
} from './app/app-fixture';

const golden = loadGolden();
const tokenizer = stories260KTokenizer();
const GREEDY: SamplerSettings = { temperature: 0, topP: 1, topK: 0, seed: 1 };
const STEPS = 64;

type Hub = ReturnType<typeof createFakeSignalingHub>;
interface Peer {
  id: string;
  contributor: Contributor;
  runner: ShardRunner;
}

/** A closed ring of contributors (the head's next stage is stage 0), as the coordinator assigns it. */
async function buildRing(hub: Hub, splits: number[], tag: string): Promise<Peer[]> {
  const ranges = splitUnits({ numLayers: 5 }, splits);
  const peers: Peer[] = [];
  for (let i = 0; i < ranges.length; i++) {
    const id = pid(`${tag}s${i}`);
    const runner = stories260KRunner();
    const contributor = contributorOn(hub, id, () => runner);
    await contributor.start({ capability: CAPABILITY });
    peers.push({ id, contributor, runner });
  }
  assign(
    hub,
    peers.map((p, i) => ({ peer: p.id, range: [ranges[i]![0], ranges[i]![1]] as [number, number] })),
    1,
  );
  for (const p of peers)
    await vi.waitFor(() => expect(p.contributor.store.getState().phase).toBe('serving'), {
      timeout: scaled(30_000),
    });
  // Every link of the ring is up (the head's to stage 0 included) before a request comes.
  for (let i = 0; i < peers.length && peers.length > 1; i++) {
    const next = peers[(i + 1) % peers.length]!;
    await vi.waitFor(() => expect(peers[i]!.contributor.openLink(next.id)?.isOpen).toBe(true));
  }
  return peers;
}

/** Typed error codes that arrive on `link` (what a stage answered its sender). */
function errorsOn(link: PeerLink): string[] {
  const codes: string[] = [];
  link.onControl((raw) => {
    try {
      const m = parseRingControl(raw);
      if (m.type === 'error') codes.push(m.code);
    } catch {
      /* not a ring control message */
    }
  });
  return codes;
}

interface AskOptions {
  loop?: RingLoop | false;
  sampler?: SamplerSettings;
  steps?: number;
  session?: string;
  /** Called with each streamed position (an attack fires mid-answer). */
  onPosition?: (position: number) => void;
}

/** One answer through the ring; counts the tensors the requester itself sent to stage 0. */
async function ask(hub: Hub, peers: Peer[], requester: string, o: AskOptions = {}) {
  const t = hub.network(requester).transport;
  const first = await t.connect(peers[0]!.id);
  const head = peers.length === 1 ? first : await t.connect(peers[peers.length - 1]!.id);
  const sent: TensorMessage[] = [];
  const send = first.sendTensor.bind(first);
  first.sendTensor = (m, opts) => (sent.push(m), send(m, opts));
  const steps = o.steps ?? STEPS;
  try {
    const result = await generate({
      pipeline: createRemotePipeline({
        requesterId: requester,
        epoch: 1,
        first,
        head,
        sampler: o.sampler ?? GREEDY,
        ...(o.session ? { newSessionId: () => o.session! } : {}),
        ...(o.loop === false ? {} : { loop: o.loop ?? { until: steps - 1, stop: [tokenizer.bosId] } }),
      }),
      tokenizer,
      prompt: 'Once upon a time',
      steps,
      stopTokens: [],
      onToken: (e) => o.onPosition?.(e.position),
    });
    return { result, sent };
  } finally {
    await t.close();
  }
}

const sessionsFreed = async (peers: Peer[]) => {
  for (const p of peers)
    await vi.waitFor(async () => expect((await p.runner.info()).sessions).toBe(0), {
      timeout: scaled(10_000),
    });
};

describe('loop mode: the head feeds stage 0', () => {
  beforeAll(warmUpOrt);

  it('3 stages: the golden text, with the requester sending the prefill only; every stage frees the session', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [2, 4], 'l3');
    const { result, sent } = await ask(hub, peers, pid('req'));
    expect(result.text).toBe(golden.text);
    expect(result.tokens).toEqual(golden.sequenceTokens);
    expect(sent.map((m) => [m.step, m.position, m.shape[0]])).toEqual([[0, 0, result.promptTokens]]);
    // Without the loop the same requester sends every decode step itself.
    const plain = await ask(hub, peers, pid('plain'), { loop: false });
    expect(plain.result.text).toBe(golden.text);
    expect(plain.sent.length).toBe(1 + plain.result.timings.decodeTokens);
    await sessionsFreed(peers);
    for (const p of peers) await p.contributor.stop();
  });

  it('1 stage: the head is stage 0 and queues its own next step (golden text, no step sent after the prefill)', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [], 'l1');
    const { result, sent } = await ask(hub, peers, pid('solo'));
    expect(result.text).toBe(golden.text);
    expect(sent).toHaveLength(1);
    await sessionsFreed(peers);
    for (const p of peers) await p.contributor.stop();
  });

  it('seeded sampling gives the tokens of non-loop decoding; `until` stops the feeding where the answer ends', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [3], 'l2');
    const sampler = { temperature: 0.9, topP: 0.9, topK: 0, seed: 7 };
    const plain = await ask(hub, peers, pid('p'), { sampler, loop: false });
    const looped = await ask(hub, peers, pid('l'), { sampler });
    expect(looped.result.tokens).toEqual(plain.result.tokens);
    expect(looped.sent).toHaveLength(1);
    // A shorter `until` than the answer: the head stops feeding there and the requester sends the
    // rest itself (the same rule on both ends), still the golden tokens.
    const short = await ask(hub, peers, pid('s'), { loop: { until: 20, stop: [] } });
    expect(short.result.tokens).toEqual(golden.sequenceTokens);
    expect(short.sent.map((m) => m.position)).toEqual([0, ...range(21, STEPS - 1)]);
    await sessionsFreed(peers);
    for (const p of peers) await p.contributor.stop();
  });

  it('a stop token is not fed: the head stops, the requester ends the session, every stage frees it', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [3], 'ls');
    // The 10th generated token as a stop token: generate() still runs to the end (stopTokens: []),
    // so the requester sends the step after it itself.
    const stopAt = golden.sequenceTokens[golden.promptTokens.length + 9]!;
    const firstStop = golden.sequenceTokens.indexOf(stopAt, golden.promptTokens.length);
    const { result, sent } = await ask(hub, peers, pid('stop'), {
      loop: { until: STEPS - 1, stop: [stopAt] },
    });
    expect(result.tokens).toEqual(golden.sequenceTokens);
    expect(sent[1]).toMatchObject({ position: firstStop, data: Int32Array.of(stopAt) });
    await sessionsFreed(peers);
    for (const p of peers) await p.contributor.stop();
  });
});

describe('loop mode in the chat requester', () => {
  beforeAll(warmUpOrt);

  it('is on for a plain k = 1 answer (only the prefill leaves the tab) and off with `loop: false`; the golden text both ways', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [3], 'rq');
    const ranges: [number, number][] = [
      [0, 3],
      [3, 7],
    ];
    const order = peers.map((p, i) => ({ peer: p.id, range: ranges[i]! }));
    hub.onSend((from, m) => {
      if (m.type === 'ring-request') hub.push(from, ringOf(order, 1));
    });
    const history = [{ role: 'user' as const, text: 'Once upon a time' }];
    for (const loop of [true, false]) {
      const id = pid(loop ? 'rqloop' : 'rqplain');
      // What the requester's tab sends to the ring's first stage.
      const sent: TensorMessage[] = [];
      const net = hub.network(id);
      const connect = net.transport.connect.bind(net.transport);
      net.transport.connect = async (peer, opts) => {
        const link = await connect(peer, opts);
        const send = link.sendTensor.bind(link);
        link.sendTensor = (m, o) => (sent.push(m), send(m, o));
        return link;
      };
      const r = requesterOn(hub, id, loop ? {} : { loop: false });
      const answer = await r.ask({
        settings: GOLDEN_SETTINGS,
        history,
        signal: new AbortController().signal,
      });
      expect(answer.text + '\n').toBe(golden.text);
      // 60 new tokens: the prefill and 59 decode steps, all fed by the head in loop mode.
      expect(sent.length).toBe(loop ? 1 : 60);
      await r.stop();
    }
    await sessionsFreed(peers);
    for (const p of peers) await p.contributor.stop();
  });
});

describe('loop mode: what stage 0 refuses', () => {
  beforeAll(warmUpOrt);

  it('a one-token step from the head link for a non-loop session is refused (STAGE_WRONG_LINK); the answer is unharmed', async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [3], 'h1');
    const fromHead = peers[1]!.contributor.openLink(peers[0]!.id)!;
    const codes = errorsOn(fromHead);
    let fired = false;
    const { result } = await ask(hub, peers, pid('victim'), {
      loop: false,
      session: 'victim-session',
      onPosition: (p) => {
        if (p !== 20 || fired) return;
        fired = true;
        void fromHead.sendTensor(loopStep('victim-session', p - 4, p, 7));
      },
    });
    expect(result.text).toBe(golden.text);
    await vi.waitFor(() => expect(codes).toContain('STAGE_WRONG_LINK'));
    for (const p of peers) await p.contributor.stop();
  });

  it("a stranger's one-token step for someone's loop session is refused (STAGE_WRONG_LINK); the answer is unharmed", async () => {
    const hub = createFakeSignalingHub();
    const peers = await buildRing(hub, [3], 'h2');
    const stranger = await hub.network(pid('mallory')).transport.connect(peers[0]!.id);
    const codes = errorsOn(stranger);
    let fired = false;
    const { result } = await ask(hub, peers, pid('victim'), {
      session: 'victim-session',
      onPosition: (p) => {
        if (p !== 20 || fired) return;
        fired = true;
        // The step the head feeds next: right step, right position, the stranger's token.
        void stranger.sendTensor(loopStep('victim-session', p - golden.promptTokens.length + 2, p + 1, 7));
      },
    });
    expect(result.text).toBe(golden.text);
    await vi.waitFor(() => expect(codes).toContain('STAGE_WRONG_LINK'));
    for (const p of peers) await p.contributor.stop();
  });

  it.each([
    ['a wrong position', (p: number) => loopStep('victim-session', 9999, p + 100, 7)],
    [
      'several tokens',
      (p: number) => ({
        ...loopStep('victim-session', 9999, p + 1, 7),
        shape: [2],
        data: Int32Array.of(7, 8),
      }),
    ],
    [
      'hidden states',
      (p: number) => ({
        ...loopStep('victim-session', 9999, p + 1, 7),
        kind: 'hidden' as const,
        dtype: 'float32' as const,
        data: Float32Array.of(1),
      }),
    ],
  ])(
    '%s from the head link on a loop session is refused with a typed error that reaches the requester',
    async (_what, bad) => {
      const hub = createFakeSignalingHub();
      const peers = await buildRing(hub, [3], 'h3');
      const fromHead = peers[1]!.contributor.openLink(peers[0]!.id)!;
      const codes = errorsOn(fromHead);
      let fired = false;
      const run = ask(hub, peers, pid('victim'), {
        session: 'victim-session',
        onPosition: (p) => {
          if (p !== 20 || fired) return;
          fired = true;
          void fromHead.sendTensor(bad(p));
        },
      });
      // Only the head sends on that link, and at k = 1 it chooses the tokens anyway: a head that feeds
      // nonsense fails the answer at once (the requester fails over), nothing runs at a wrong position.
      await expect(run).rejects.toMatchObject({ code: 'RUNNER_BAD_INPUT' });
      expect(codes).toContain('RUNNER_BAD_INPUT');
      await sessionsFreed(peers);
      for (const p of peers) await p.contributor.stop();
    },
  );
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
