/**
 * Control messages of a generation session on the DataChannels between a requester and the ring's
 * stages (JSON text frames next to the binary tensor frames). One zod discriminated union, versioned
 * like the signaling protocol; every message is parsed on receipt with {@link parseRingControl}.
 *
 * Flow (requester-driven, so stop, streaming and sampling settings stay with the person asking):
 * requester --open--> stage 0 --open--> ... --open--> head   (every stage opens a KV session)
 * requester --tokens tensor--> stage 0 --hidden--> ... --> head --token--> requester
 * requester --end--> stage 0 --end--> ... --> head            (every stage frees its KV cache)
 * Speculative decoding: requester --verify, tokens[k+1]--> ... --> head --picks[k+1]--> requester
 * (every stage drops the rejected positions of the previous verify before computing this one).
 * The head samples with the requester's settings, so only a token id travels back.
 * Loop mode (an `open` with `loop`): after answering a decode step the head also sends the token it
 * chose to stage 0 as the next step, over the ring's closing link, so a token costs `stages` wire
 * hops instead of `stages + 1` and the requester's tab is off the critical path:
 * requester --tokens (prefill)--> stage 0 --> ... --> head --token--> requester
 *                                 stage 0 <--tokens[1]-- head       (the next step, no lap back)
 */
import { z } from 'zod';
import {
  boundedErrorJSON,
  errorCodeSchema,
  invalidInputError,
  normaliseWireErrorCode,
  wireCauseSchema,
  MAX_WIRE_MESSAGE,
  RingworkError,
} from '../errors.js';

export const RING_PROTOCOL_VERSION = 1;
const v = z.literal(RING_PROTOCOL_VERSION);
const session = z.string().min(1).max(64);

export const samplerSettingsSchema = z
  .object({
    temperature: z.number().min(0).max(100),
    topP: z.number().gt(0).max(1).default(1),
    topK: z.number().int().min(0).max(1_000_000).default(0),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 53),
    /**
     * Random numbers already drawn from `seed` in this generation: a head that takes over a session
     * fast-forwards its sampler past them, so the one sampler's sequence carries on unbroken.
     */
    draws: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31)
      .optional(),
  })
  .strict();
export type SamplerSettings = z.infer<typeof samplerSettingsSchema>;

/** Most positions one `verify` step checks (64 drafted tokens + the last accepted one). */
export const MAX_VERIFY_ROWS = 65;

/** Highest stage index a `commit` may name (a ring longer than this is not validated). */
export const MAX_RING_COMMIT_STAGE = 255;
/** Longest base64 commitment a `commit` carries (a 16-row sketch is ~1.3 KB, 1.8 KB in base64). */
export const MAX_COMMITMENT_B64 = 8 * 1024;

/** What an `open` asks of the stages when the requester validates the session. */
export const ringValidationSchema = z
  .object({
    /** The generation's random 16-byte nonce (hex), bound into every commitment and receipt. */
    nonce: z.string().regex(/^[0-9a-f]{32}$/, 'not a 16-byte hex nonce'),
    /** Which of the request's k rings this is (0 = primary, 1.. = validator rings). */
    ring: z.number().int().min(0).max(255),
  })
  .strict();
export type RingValidation = z.infer<typeof ringValidationSchema>;

/** Most stop tokens a loop-mode `open` may list. */
export const MAX_LOOP_STOP_TOKENS = 64;

/**
 * Loop mode ("head feeds stage 0"): after each sampled answer the head sends the token on to stage 0
 * as the session's next step itself, unless that step's position would pass `until` or the token
 * is a stop token. Plain k = 1 sessions only: validated sessions need the requester between laps
 * (commitments are checked per step), and speculative verify steps are built by the requester.
 */
export const ringLoopSchema = z
  .object({
    /** The last position the head may feed (the requester's last decode position). */
    until: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31),
    /** Tokens that end the answer: the head feeds none of them. */
    stop: z.array(z.number().int().nonnegative()).max(MAX_LOOP_STOP_TOKENS),
  })
  .strict();
export type RingLoop = z.infer<typeof ringLoopSchema>;

/**
 * Whether the head of a loop-mode session feeds the token it answered at `position` to stage 0 as
 * the next step (the same rule on both ends: the requester then sends nothing for that step).
 */
export function loopFeeds(loop: RingLoop | undefined, position: number, token: number): boolean {
  return loop !== undefined && position + 1 <= loop.until && !loop.stop.includes(token);
}

export const ringControlSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('open'),
      v,
      session,
      /** The ring epoch the requester planned against; stages on another epoch refuse. */
      epoch: z.number().int().nonnegative(),
      /** The peer the head must answer. */
      requester: z.string().min(1).max(64),
      sampler: samplerSettingsSchema,
      /**
       * Failover replay: positions below this are the session's history, re-sent so that a new ring
       * rebuilds its KV caches. A step ending below it is not sampled (the head spends no random
       * draws on it) and not answered; the step that reaches it is answered as usual.
       */
      replayThrough: z
        .number()
        .int()
        .min(0)
        .max(2 ** 31)
        .optional(),
      /**
       * Result validation (issue 10): every stage signs a commitment per step and sends it on with
       * `commit` messages, so the requester can check boundary hashes and signatures. Absent: no
       * commitments (a stage without a session key answers as before; the requester decides).
       */
      validation: ringValidationSchema.optional(),
      /** Loop mode (see {@link ringLoopSchema}); a stage refuses it together with `validation`. */
      loop: ringLoopSchema.optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('commit'),
      v,
      session,
      step: z.number().int().nonnegative(),
      /** Index of the committing stage in the ring (0 takes token ids). */
      stage: z.number().int().min(0).max(MAX_RING_COMMIT_STAGE),
      /** The signed commitment's wire bytes (`encodeCommitment`), base64. */
      commitment: z.string().min(1).max(MAX_COMMITMENT_B64),
      /**
       * Only on a stage's own commitment: its send receipt (base64 of 64 bytes) over the hash of
       * exactly what it sends on for this step (the next stage copies it into its commitment).
       */
      receipt: z.string().length(88).optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('token'),
      v,
      session,
      /** The requester's step this token answers (a late token of an earlier step is not mistaken for it). */
      step: z.number().int().nonnegative(),
      /** Position whose logits produced the token. */
      position: z.number().int().nonnegative(),
      token: z.number().int().nonnegative(),
      /** ms spent per stage for this step (compute only), in ring order. */
      stageMs: z.array(z.number().nonnegative()).max(1024),
      /** Wall time from the head's receipt of the step to sending this token, ms. */
      t: z.number().nonnegative().optional(),
      /**
       * Random numbers the head's sampler has drawn in this session so far, this token included: what
       * a replacement head must fast-forward past after a failover.
       */
      draws: z
        .number()
        .int()
        .min(0)
        .max(2 ** 31)
        .optional(),
      /**
       * Loop mode: the head has sent this token on to stage 0 as step `step + 1` at `position + 1`,
       * so the requester sends nothing for that step and waits for its answer.
       */
      fed: z.boolean().optional(),
    })
    .strict(),
  /**
   * Speculative decoding: the requester's step `step` (sent right after this, on the same ordered
   * link) is a verify pass of `rows` positions from `position`. Every stage first drops its cached
   * positions `>= position` (rejected drafts of the previous pass; no extra lap) and passes this on
   * ahead of the step's hidden states; the head answers `picks` (its greedy token after each of
   * the step's positions) instead of sampling one `token`. Greedy sessions only.
   */
  z
    .object({
      type: z.literal('verify'),
      v,
      session,
      step: z.number().int().nonnegative(),
      position: z.number().int().nonnegative(),
      rows: z.number().int().min(1).max(MAX_VERIFY_ROWS),
    })
    .strict(),
  /** The head's answer to a `verify` step: its greedy pick after each of the step's positions. */
  z
    .object({
      type: z.literal('picks'),
      v,
      session,
      step: z.number().int().nonnegative(),
      /** Position whose logits produced the first pick. */
      position: z.number().int().nonnegative(),
      tokens: z.array(z.number().int().nonnegative()).min(1).max(MAX_VERIFY_ROWS),
      /** ms spent per stage for this step (compute only), in ring order. */
      stageMs: z.array(z.number().nonnegative()).max(1024),
    })
    .strict(),
  z.object({ type: z.literal('end'), v, session, reason: z.string().max(200) }).strict(),
  /**
   * A stage failed: the stage's error as {@link RingworkError.toJSON} (code, message, details,
   * cause) plus where. The requester rebuilds it with {@link ringErrorFromControl}.
   */
  z
    .object({
      type: z.literal('error'),
      v,
      session,
      code: errorCodeSchema,
      message: z.string().max(MAX_WIRE_MESSAGE),
      details: z.record(z.string(), z.unknown()).optional(),
      cause: wireCauseSchema.optional(),
      /** The stage (peer id) that failed. */
      at: z.string().max(64),
    })
    .strict(),
]);
export type RingControl = z.infer<typeof ringControlSchema>;
export type RingControlOf<T extends RingControl['type']> = Extract<RingControl, { type: T }>;

/**
 * Validates a control message received on a ring link. An error code this build does not know (a
 * newer peer) is delivered as `PROTOCOL_UNKNOWN_CODE` with the original in `details.remoteCode`.
 */
export function parseRingControl(m: unknown): RingControl {
  const r = ringControlSchema.safeParse(normaliseWireErrorCode(m));
  if (!r.success) throw invalidInputError('PROTOCOL_BAD_FRAME', 'ring control message', r.error);
  return r.data;
}

/** Largest serialised error a ring `error` message carries (control frames are 16 KiB at most). */
const MAX_RING_ERROR_CHARS = 8 * 1024;

/**
 * The ring `error` message carrying `e` (serialised with {@link RingworkError.toJSON}, cut to fit a
 * control frame).
 */
export function ringErrorControl(session: string, at: string, e: RingworkError): RingControlOf<'error'> {
  return {
    type: 'error',
    v: RING_PROTOCOL_VERSION,
    session,
    at,
    ...boundedErrorJSON(e, MAX_RING_ERROR_CHARS),
  };
}

/**
 * The typed error a ring `error` message carries, as the requester sees it: the stage's own code,
 * message, details and cause, plus `details.stage` (who failed) and `details.session`.
 */
export function ringErrorFromControl(m: RingControlOf<'error'>): RingworkError {
  const e = RingworkError.fromJSON(m);
  return new RingworkError(e.code, `Ring stage ${m.at} failed: ${e.message}`, {
    details: { ...e.details, stage: m.at, session: m.session },
    cause: e.cause,
  });
}
