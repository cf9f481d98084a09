/**
 * Inputs and outputs of the ring planner: the peers file, planner options, and the plan it prints.
 * Every boundary is a zod schema so the CLI, the coordinator and tests reject the same bad input with
 * the same message.
 */
import { z } from 'zod';
import { parseWithSchema } from '../errors.js';
import { modelProfileSchema, type ModelProfile } from '../model/profile.js';

/** What a plan optimises. Both are seconds per token; lower is better. */
export const objectiveSchema = z.enum(['latency', 'throughput']);
export type Objective = z.infer<typeof objectiveSchema>;

/** Capability classes: A (> 20 TFLOPS), B (5–20), C (< 5) by default; see {@link categorize}. */
export const peerCategorySchema = z.enum(['A', 'B', 'C']);
export type PeerCategory = z.infer<typeof peerCategorySchema>;

/** One volunteer peer as the coordinator measured or the operator described it. */
export const peerProfileSchema = z
  .object({
    id: z.string().min(1, 'a peer id must not be empty').max(200),
    /** Sustained compute, 10^12 FLOP/s. */
    tflops: z.number().positive().finite(),
    /** Memory bandwidth the weights stream at, 10^9 B/s. */
    bandwidthGBps: z.number().positive().finite(),
    /** Memory the peer offers for weights and KV cache, bytes. */
    memoryBytes: z.number().nonnegative().finite(),
    /** Overrides the category derived from `tflops`. */
    category: peerCategorySchema.optional(),
  })
  .strict();
export type PeerProfileInput = z.infer<typeof peerProfileSchema>;

/** A measured network link. Looked up as (from, to), then (to, from); otherwise the default link. */
export const linkSchema = z
  .object({
    from: z.string().min(1),
    to: z.string().min(1),
    rttMs: z.number().nonnegative().finite(),
    mbps: z.number().positive().finite(),
  })
  .strict();
export type LinkInput = z.infer<typeof linkSchema>;

/** Link figures used where no link data is given (the cost model's defaults: 20 ms, 100 Mbit/s). */
export const defaultLinkSchema = z
  .object({ rttMs: z.number().nonnegative().finite(), mbps: z.number().positive().finite() })
  .strict();
export type DefaultLink = z.infer<typeof defaultLinkSchema>;

/** Thresholds of {@link categorize}: A above `aAboveTflops`, C below `cBelowTflops`, B in between. */
export const categoryThresholdsSchema = z
  .object({ aAboveTflops: z.number().positive().finite(), cBelowTflops: z.number().nonnegative().finite() })
  .strict()
  .refine((t) => t.cBelowTflops <= t.aAboveTflops, { message: 'cBelowTflops must not exceed aAboveTflops' });
export type CategoryThresholds = z.infer<typeof categoryThresholdsSchema>;

/** Tuning knobs. All optional; the defaults are the documented cost model and search. */
export const plannerOptionsSchema = z
  .object({
    categoryThresholds: categoryThresholdsSchema.optional(),
    /**
     * Fleets with at most this many eligible peers are searched exhaustively (default 8, at most 12).
     * Without link data the exact search is a DP over subsets (2^k rows); with link data it enumerates
     * ring orders, which grows like k!, so keep it at 8 there.
     */
    exhaustiveLimit: z.number().int().min(0).max(12).optional(),
    defaultLink: defaultLinkSchema.optional(),
    /**
     * Fixed time every stage adds per token whatever its units (an ONNX Runtime run's dispatch, the
     * tensor's framing and the worker/thread hand-offs), ms (default 0). Charged with the stage's
     * outgoing hop, so a one-peer ring pays it once and a k-stage ring k times.
     */
    stageOverheadMs: z.number().nonnegative().finite().optional(),
    /** Work budget of the heuristic's local search, in DP cells (default scales with the instance). */
    searchBudget: z.number().int().positive().optional(),
  })
  .strict();
export type PlannerOptions = z.infer<typeof plannerOptionsSchema>;

type FleetLike = { peers: readonly PeerProfileInput[]; links?: readonly LinkInput[] | undefined };

/** Cross-field checks shared by the peers file and the planner input. */
function checkFleet(f: FleetLike, ctx: z.RefinementCtx): void {
  const ids = new Set<string>();
  f.peers.forEach((p, i) => {
    if (ids.has(p.id))
      ctx.addIssue({ code: 'custom', path: ['peers', i, 'id'], message: `duplicate peer id "${p.id}"` });
    ids.add(p.id);
  });
  const seen = new Set<string>();
  (f.links ?? []).forEach((l, i) => {
    for (const end of ['from', 'to'] as const) {
      if (!ids.has(l[end]))
        ctx.addIssue({ code: 'custom', path: ['links', i, end], message: `unknown peer "${l[end]}"` });
    }
    if (l.from === l.to)
      ctx.addIssue({ code: 'custom', path: ['links', i], message: `a link from "${l.from}" to itself` });
    const key = `${l.from}\u0000${l.to}`;
    if (seen.has(key))
      ctx.addIssue({ code: 'custom', path: ['links', i], message: `duplicate link ${l.from} -> ${l.to}` });
    seen.add(key);
  });
}

const peersArraySchema = z.array(peerProfileSchema).min(1, 'the fleet is empty: list at least one peer');

/** The `--peers` file: `{"peers": [...], "links": [...]}` (links optional). */
export const peersFileSchema = z
  .object({ peers: peersArraySchema, links: z.array(linkSchema).optional() })
  .strict()
  .superRefine(checkFleet);
export type PeersFile = z.infer<typeof peersFileSchema>;

/** Everything a planner call needs. */
export const planInputSchema = z
  .object({
    profile: modelProfileSchema,
    peers: peersArraySchema,
    links: z.array(linkSchema).optional(),
    objective: objectiveSchema,
    /** Context length to reserve KV memory for (default 2048). */
    contextTokens: z.number().int().positive().optional(),
    options: plannerOptionsSchema.optional(),
  })
  .strict()
  .superRefine(checkFleet);

/** Input of {@link planRingwork}, {@link planExo}, {@link evaluatePlan} and {@link lowerBound}. */
export interface PlanInput {
  profile: ModelProfile;
  peers: readonly PeerProfileInput[];
  links?: readonly LinkInput[] | undefined;
  objective: Objective;
  contextTokens?: number | undefined;
  options?: PlannerOptions | undefined;
}

/** A peer's place in the ring: a half-open range of model-profile units `[start, end)`. */
export const planStageSchema = z
  .object({
    peer: z.string().min(1),
    layers: z.tuple([z.number().int().nonnegative(), z.number().int().positive()]),
    /** Predicted compute time of the range on this peer (roofline), seconds per token. */
    computeS: z.number().nonnegative().optional(),
    /** Predicted hop of this stage's output to the next peer in the ring, seconds. */
    hopS: z.number().nonnegative().optional(),
    /** Weights plus KV cache of the range at the plan's context, bytes. */
    memoryBytes: z.number().nonnegative().optional(),
  })
  .strict();

const excludedSchema = z.object({ peer: z.string().min(1), reason: z.string().min(1) }).strict();

/**
 * A plan as `npm run plan -- --json` prints it. `ring`, `objective` and `excluded` are the contract;
 * the rest is informative (and optional so that a hand-written previous plan can be re-planned).
 */
export const planSchema = z
  .object({
    ring: z.array(planStageSchema).min(1),
    objective: z.object({ kind: objectiveSchema, value: z.number().nonnegative() }).strict(),
    excluded: z.array(excludedSchema),
    model: z.string().optional(),
    contextTokens: z.number().int().positive().optional(),
    algorithm: z.enum(['exo', 'ringwork-exhaustive', 'ringwork-heuristic', 'ringwork-replan']).optional(),
    /** True when the objective is proven optimal under the default cost model. */
    optimal: z.boolean().optional(),
    /** A proven lower bound on the objective (equal to it when `optimal`). */
    lowerBound: z.number().nonnegative().optional(),
    predicted: z
      .object({
        latencyS: z.number().nonnegative(),
        throughputS: z.number().nonnegative(),
        tokensPerSecond: z.number().nonnegative(),
      })
      .strict()
      .optional(),
    /** False only for baselines that ignore memory (exo): some stage exceeds its peer's memory. */
    memoryOk: z.boolean().optional(),
    /** Set by re-planning: units whose peer changed against the previous plan. */
    layersMoved: z.number().int().nonnegative().optional(),
  })
  .strict();
export type PlanJson = z.infer<typeof planSchema>;

/** One stage of a produced plan (all predictions filled in). */
export interface PlanStage {
  peer: string;
  layers: [number, number];
  computeS: number;
  hopS: number;
  memoryBytes: number;
}

/** A peer left out of the ring, and why. */
export interface ExcludedPeer {
  peer: string;
  reason: string;
}

/** What the planners return; serialises to {@link planSchema}. */
export interface Plan {
  ring: PlanStage[];
  objective: { kind: Objective; value: number };
  excluded: ExcludedPeer[];
  model: string;
  contextTokens: number;
  algorithm: 'exo' | 'ringwork-exhaustive' | 'ringwork-heuristic' | 'ringwork-replan';
  optimal: boolean;
  lowerBound: number;
  predicted: { latencyS: number; throughputS: number; tokensPerSecond: number };
  memoryOk: boolean;
  layersMoved?: number;
}

/** Parses `value` with `schema` or throws `PLAN_BAD_INPUT` naming `what` and every issue. */
export function parseOrThrow<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  return parseWithSchema(schema, value, 'PLAN_BAD_INPUT', what);
}
