/**
 * Speculative decoding through a ring (real ring stages, real ORT runners on stories260K, real peer
 * links over in-memory channels): `verify` steps, the head's `picks`, every stage rewinding past
 * rejected drafts. The text must be llama2.c's greedy golden text.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RingworkError } from '../../shared/errors';
import { createRemotePipeline } from '../../shared/ring/remote-pipeline';
import { generate } from '../../shared/runtime/generate';
import { createPipeline, type Pipeline } from '../../shared/runtime/pipeline';
import { createSampler } from '../../shared/runtime/sampler';
import type { ShardRunner } from '../../shared/runtime/shard-runner';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import {
  GREEDY,
  buildMemoryRing,
  connectRequester,
  stopMemoryRing,
  type MemoryRingOptions,
  type MemoryStage,
} from '../../tools/bench/memory-ring';
import {
  MAX_VERIFY_ROWS,
  RING_PROTOCOL_VERSION,
  parseRingControl,
  type SamplerSettings,
} from '../../shared/ring/ring-protocol';
import { stories260KRunner, stories260KTokenizer } from '../helpers/engine';
import { loadGolden } from '../helpers/golden';

const golden = loadGolden();
const tokenizer = stories260KTokenizer();
const hub = createMemoryTransportHub();
const rings: MemoryStage[][] = [];
let draftRunner: ShardRunner;
let draft: Pipeline;

beforeAll(async () => {
  draftRunner = stories260KRunner();
  await draftRunner.load({
    model: { url: 'stories260K.bin' },
    range: [0, 7],
    weightFormat: 'q4',
    contextLength: 64,
    logits: 'last',
    backend: 'wasm',
  });
  draft = createPipeline([draftRunner]);
});
afterAll(async () => {
  for (const r of rings) await stopMemoryRing(r);
  await draftRunner.dispose();
});

async function ring(prefix: string, o: Partial<MemoryRingOptions> = {}) {
  const stages = await buildMemoryRing({
    hub,
    makeRunner: stories260KRunner,
    model: { url: 'stories260K.bin' },
    numLayers: 5,
    splits: [2, 4],
    contextLength: 64,
    prefix,
    ...o,
  });
  rings.push(stages);
  return stages;
}

async function ask(stages: MemoryStage[], requester: string, sampler: SamplerSettings = GREEDY) {
  const { transport, first, head } = await connectRequester(hub, stages, requester);
  try {
    return await generate({
      pipeline: createRemotePipeline({ requesterId: requester, epoch: 1, first, head, sampler }),
      tokenizer,
      prompt: 'Once upon a time',
      steps: 64,
      stopTokens: [],
      draft: { pipeline: draft, k: 4 },
    });
  } finally {
    await transport.close();
  }
}

describe('verify / picks messages', () => {
  it('parse when well-formed and are refused (PROTOCOL_BAD_FRAME) otherwise', () => {
    const verify = { type: 'verify', v: RING_PROTOCOL_VERSION, session: 's', step: 3, position: 9, rows: 5 };
    const picks = {
      type: 'picks',
      v: RING_PROTOCOL_VERSION,
      session: 's',
      step: 3,
      position: 9,
      tokens: [4, 5],
      stageMs: [1],
    };
    expect(parseRingControl(verify)).toEqual(verify);
    expect(parseRingControl(picks)).toEqual(picks);
    const bad: unknown[] = [
      { ...verify, rows: 0 },
      { ...verify, rows: MAX_VERIFY_ROWS + 1 },
      { ...verify, position: -1 },
      { ...verify, extra: true },
      { ...verify, v: RING_PROTOCOL_VERSION + 1 },
      { ...picks, tokens: [] },
      { ...picks, tokens: [-1] },
      { ...picks, tokens: Array.from({ length: MAX_VERIFY_ROWS + 1 }, () => 4) },
    ];
    for (const m of bad) {
      const e = (() => {
        try {
          parseRingControl(m);
        } catch (x) {
          return x as RingworkError;
        }
      })();
      expect(e?.code, JSON.stringify(m)).toBe('PROTOCOL_BAD_FRAME');
    }
  });
});

describe('speculative decoding through a 3-stage ring (stories260K)', () => {
  it('golden text with a q4 draft, verify steps chunked into hidden-part frames', async () => {
    // Chunks of 3 positions: a 5-position verify step crosses each hop as two frames.
    const stages = await ring('a', { logits: 'rows', limits: { maxChunkPositions: 3 } });
    const r = await ask(stages, 'req-a');
    expect(r.text).toBe(golden.text);
    expect(r.tokens).toEqual(golden.sequenceTokens);
    const s = r.speculative!;
    expect(s.accepted).toBeGreaterThan(0);
    expect(s.accepted).toBeLessThan(s.drafted); // some drafts were rejected: stages rewound
    expect(s.laps + s.accepted).toBe(r.timings.decodeTokens);
    // The heads answered picks for every verified position; sessions are freed after.
    expect(stages[2]!.stage.stats.tokensServed).toBe(1 + s.laps + s.drafted);
    await vi.waitFor(() => expect(stages.map((x) => x.stage.stats.openSessions)).toEqual([0, 0, 0]));
  });

  it('a head that answers one row, sampling or validation: SPECULATIVE_UNSUPPORTED; the ring still serves plain requests', async () => {
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => 'resolved',
        (e: RingworkError) => e.code,
      );
    const last = await ring('b');
    expect(await codeOf(ask(last, 'req-b'))).toBe('SPECULATIVE_UNSUPPORTED');
    const rows = rings[0]!;
    expect(await codeOf(ask(rows, 'req-c', { ...GREEDY, temperature: 0.8 }))).toBe('SPECULATIVE_UNSUPPORTED');
    // A validated session is not verified speculatively (the requester refuses before sending).
    const v = await connectRequester(hub, rows, 'req-v');
    const validated = generate({
      pipeline: createRemotePipeline({
        requesterId: 'req-v',
        epoch: 1,
        first: v.first,
        head: v.head,
        sampler: GREEDY,
        validation: { ring: 0, verify: async () => undefined },
      }),
      tokenizer,
      prompt: 'Once upon a time',
      steps: 64,
      stopTokens: [],
      draft: { pipeline: draft, k: 4 },
    });
    expect(await codeOf(validated)).toBe('SPECULATIVE_UNSUPPORTED');
    await v.transport.close();
    // The ring still serves a plain greedy request afterwards.
    const { transport, first, head } = await connectRequester(hub, rows, 'req-d');
    const plain = await generate({
      pipeline: createRemotePipeline({ requesterId: 'req-d', epoch: 1, first, head, sampler: GREEDY }),
      tokenizer,
      prompt: 'Once upon a time',
      steps: 16,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
    });
    await transport.close();
    expect(plain.tokens).toEqual(golden.sequenceTokens.slice(0, 17));
  });
});
