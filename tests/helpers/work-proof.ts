/**
 * Real proofs of validated work for tests of the server's crediting: two k = 2 rings of stories260K
 * (real ORT runners, ring stages over in-memory links, each stage with its own P-256 session key)
 * generate greedily under the requester's validated pipeline, and the work-proof builder turns the
 * agreed steps into `validated-work` messages. A test registers each stage's public key for the
 * server peer that stands in that place of the server's rings (`validation-key`), then sends the
 * messages: the commitments carry ring/stage/step coordinates, not peer ids, so they verify there.
 */
import { splitUnits } from '../../shared/graph/units';
import { toBase64 } from '../../shared/ring/stage-commitments';
import type { ClientMessageOf } from '../../shared/protocol/signaling';
import { generate } from '../../shared/runtime/generate';
import { createSampler } from '../../shared/runtime/sampler';
import type { ShardRunner } from '../../shared/runtime/shard-runner';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { DEFAULT_TOLERANCE } from '../../shared/validation/checks';
import type { Commitment } from '../../shared/validation/commitment';
import { createSessionKey } from '../../shared/validation/crypto';
import { createKeyRegistry } from '../../shared/validation/key-registry';
import { createReferee } from '../../shared/validation/referee';
import type { TamperFn } from '../../shared/validation/stage';
import { createValidatedPipeline } from '../../shared/validation/validated-pipeline';
import type { EvidenceRecord } from '../../shared/validation/evidence';
import { createWorkProofBuilder, type SpotProof } from '../../shared/validation/work-proof';
import { mulberry32Float } from '../../shared/util/prng';
import { GREEDY, buildMemoryRing, connectRequester, stopMemoryRing } from '../../tools/bench/memory-ring';
import { noise } from '../../tools/bench/validation-tampers';
import { stories260KRunner, stories260KTokenizer } from './engine';

/** Unit boundaries of an `n`-stage split of stories260K (embedding, 5 blocks, head). */
const SPLITS: Record<number, number[]> = { 1: [], 2: [3], 3: [2, 4], 4: [2, 4, 6] };

/** What {@link provenWork} returns. */
export interface ProvenWork {
  /** Each ring's stages' public keys (base64, as `validation-key` carries them), in ring order. */
  keys: string[][];
  /** The `validated-work` messages (without `v`) for the steps both rings agreed on. */
  messages: Omit<ClientMessageOf<'validated-work'>, 'v'>[];
  /** Steps the rings compared and agreed on. */
  steps: number;
  /** Steps the requester's pipeline checked (agreed or not). */
  stepsChecked: number;
  /** Each ring's stage peer ids (the in-memory rings'), in ring order. */
  peers: string[][];
  /** Every compared step: each ring's commitments, whether the rings agreed, and (spot mode) the chunk. */
  compared: { rings: Commitment[][]; agreed: boolean; spot?: SpotProof }[];
  /** Steps the primary ran (spot mode: more than the steps compared). */
  stepsRun: number;
}

/**
 * Generates `steps` tokens on two `stages`-stage rings; proofs for `ringIds` of `model`. The rings
 * are honest unless `tamper` names a stage of the second ring whose outputs it rewrites.
 */
export async function provenWork(o: {
  model: string;
  ringIds: [string, string];
  stages: number;
  steps: number;
  tamper?: { stage: number; fn: TamperFn };
  /** Spot-check mode: the validator ring re-executes a seeded fraction `f` of the steps. */
  spot?: { f: number; seed: number };
}): Promise<ProvenWork> {
  const splits = SPLITS[o.stages];
  if (!splits) throw new Error(`provenWork: ${o.stages} stages are not supported (1-4).`);
  const ranges = splitUnits({ numLayers: 5 }, splits).map((r) => [r[0], r[1]] as [number, number]);
  const hub = createMemoryTransportHub();
  const seen = createKeyRegistry();
  const rings: Awaited<ReturnType<typeof buildMemoryRing>>[] = [];
  const keys: string[][] = [];
  const referees: ShardRunner[] = [];
  try {
    for (const prefix of ['a', 'b']) {
      const ks = await Promise.all(ranges.map(() => createSessionKey()));
      const stages = await buildMemoryRing({
        hub,
        makeRunner: stories260KRunner,
        model: { url: 'stories260K.bin' },
        numLayers: 5,
        splits,
        contextLength: 256,
        prefix,
        validation: (i) => ({
          key: ks[i]!,
          ...(prefix === 'b' && o.tamper?.stage === i ? { tamper: o.tamper.fn } : {}),
        }),
      });
      rings.push(stages);
      for (let i = 0; i < stages.length; i++) await seen.register(stages[i]!.id, ks[i]!.publicKeyRaw);
      keys.push(ks.map((k) => toBase64(k.publicKeyRaw)));
    }
    for (const range of ranges) {
      const r = stories260KRunner();
      await r.load({
        model: { url: 'stories260K.bin' },
        range,
        weightFormat: 'f32',
        contextLength: 256,
        logits: 'last',
        backend: 'wasm',
      });
      referees.push(r);
    }
    const links = await Promise.all(rings.map((stages, j) => connectRequester(hub, stages, `req${j}`)));
    const proof = createWorkProofBuilder({ model: o.model, ringIds: o.ringIds });
    let steps = 0;
    const compared: ProvenWork['compared'] = [];
    const pipeline = createValidatedPipeline({
      rings: rings.map((stages, j) => ({
        remote: {
          requesterId: `req${j}`,
          epoch: 1,
          first: links[j]!.first,
          head: links[j]!.head,
          sampler: GREEDY,
        },
        verifier: { peers: stages.map((s) => s.id), ranges, registry: seen, model: o.model },
      })),
      referee: createReferee({
        runners: referees,
        rowLens: ranges.map((_, i) => (i === ranges.length - 1 ? 512 : 64)),
      }),
      tolerance: DEFAULT_TOLERANCE,
      ...(o.spot ? { spot: { f: o.spot.f, random: mulberry32Float(o.spot.seed), greedy: true } } : {}),
      onComparedStep: (rs, agreed, spot) => {
        compared.push({ rings: rs.map((r) => r.commitments), agreed, ...(spot ? { spot } : {}) });
        if (!agreed) return;
        steps++;
        proof.add(
          rs.map((r) => r.commitments),
          spot,
        );
      },
    });
    await generate({
      pipeline,
      tokenizer: stories260KTokenizer(),
      prompt: 'Once upon a time',
      steps: o.steps,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
    });
    await Promise.all(links.map((l) => l.transport.close()));
    return {
      keys,
      messages: proof.drain(),
      steps,
      stepsChecked: pipeline.report.stepsChecked,
      stepsRun: pipeline.report.steps,
      peers: rings.map((stages) => stages.map((s) => s.id)),
      compared,
    };
  } finally {
    for (const stages of rings) await stopMemoryRing(stages);
    await Promise.all(referees.map((r) => r.dispose()));
  }
}

/** What {@link tamperedEvidence} returns. */
export interface TamperedRing {
  /** The ring's stages' public keys (base64, as `validation-key` carries them), in stage order. */
  keys: string[];
  /** The evidence the requester's validated pipeline located (send as `validation-evidence`). */
  evidence: EvidenceRecord[];
}

/**
 * One `stages`-stage ring of stories260K (real ORT runners, in-memory links, a P-256 session key per
 * stage) whose stage `tamper` uses validation's test-only injection: it commits to its honest output
 * but sends noise (`honestCommit`), so the requester's validated pipeline locates it by the boundary
 * check and produces signed evidence of the equivocation. Commitments carry ring/stage/step
 * coordinates, not peer ids: a test registers the keys for the server peers in those places and
 * names the server's peer in the evidence.
 */
export async function tamperedEvidence(o: {
  model: string;
  stages: number;
  tamper: number;
  steps: number;
}): Promise<TamperedRing> {
  const splits = SPLITS[o.stages];
  if (!splits || o.stages < 2)
    throw new Error(`tamperedEvidence: ${o.stages} stages are not supported (2-4).`);
  const ranges = splitUnits({ numLayers: 5 }, splits).map((r) => [r[0], r[1]] as [number, number]);
  const hub = createMemoryTransportHub();
  const seen = createKeyRegistry();
  const ks = await Promise.all(ranges.map(() => createSessionKey()));
  const stages = await buildMemoryRing({
    hub,
    makeRunner: stories260KRunner,
    model: { url: 'stories260K.bin' },
    numLayers: 5,
    splits,
    contextLength: 256,
    prefix: 't',
    validation: (i) =>
      i === o.tamper
        ? { key: ks[i]!, tamper: noise(1e-2, mulberry32Float(1)), honestCommit: true }
        : { key: ks[i]! },
  });
  const evidence: EvidenceRecord[] = [];
  try {
    for (let i = 0; i < stages.length; i++) await seen.register(stages[i]!.id, ks[i]!.publicKeyRaw);
    const link = await connectRequester(hub, stages, 'req');
    const pipeline = createValidatedPipeline({
      rings: [
        {
          remote: { requesterId: 'req', epoch: 1, first: link.first, head: link.head, sampler: GREEDY },
          verifier: { peers: stages.map((s) => s.id), ranges, registry: seen, model: o.model },
        },
      ],
      tolerance: DEFAULT_TOLERANCE,
      onEvidence: (e) => evidence.push(e),
    });
    // The only ring is dropped once its deviant is located: the generation then fails, as it should.
    await generate({
      pipeline,
      tokenizer: stories260KTokenizer(),
      prompt: 'Once upon a time',
      steps: o.steps,
      sampler: createSampler({ temperature: 0 }),
      stopTokens: [],
    }).catch(() => undefined);
    await link.transport.close();
    return { keys: ks.map((k) => toBase64(k.publicKeyRaw)), evidence };
  } finally {
    await stopMemoryRing(stages);
  }
}
