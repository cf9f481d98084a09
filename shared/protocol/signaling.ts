/**
 * The signaling channel: JSON text frames over one WebSocket between a browser peer and the
 * signaling server. One zod discriminated union per direction, each message carrying its `type`
 * and the protocol version `v`. Every frame is parsed at the boundary with {@link parseClientFrame}
 * / {@link parseServerFrame}; nothing unvalidated reaches a handler.
 */
import { z } from 'zod';
import {
  errorCodeSchema,
  invalidInputError,
  MAX_WIRE_MESSAGE,
  normaliseWireErrorCode,
  RingworkError,
} from '../errors.js';

/** The protocol version spoken by this build. A peer on another version gets PROTOCOL_BAD_VERSION. */
export const SIGNALING_VERSION = 1;
/** Largest accepted frame, bytes (SDP with many candidates fits well below this). */
export const MAX_SIGNALING_FRAME_BYTES = 64 * 1024;

const v = z.literal(SIGNALING_VERSION);
/** Server-assigned peer ids: `p_` + 16 url-safe chars. Clients never choose their id. */
export const peerIdSchema = z.string().regex(/^p_[A-Za-z0-9_-]{16}$/, 'not a peer id');
/** A connection id chosen by the dialing side (ring link vs requester link between the same pair). */
export const connIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'not a connection id');
const token = z.string().regex(/^[A-Za-z0-9_-]{32,128}$/, 'not a session token');
/** An identity token from `POST /api/auth/verify`: `base64url(payload).base64url(mac)`. */
export const identityTokenSchema = z
  .string()
  .max(1024)
  .regex(/^[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}$/, 'not an identity token');
/** A 20-byte EVM address, 0x-prefixed hex. */
export const addressSchema = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'not an address');
const unitRange = z.tuple([
  z.number().int().nonnegative().max(100_000),
  z.number().int().positive().max(100_000),
]);

/** What a contributor tells the coordinator about itself (the planner's view of a device profile). */
export const peerCapabilitySchema = z
  .object({
    tflops: z.number().positive().max(100_000),
    bandwidthGBps: z.number().positive().max(1_000_000),
    memoryBytes: z
      .number()
      .int()
      .nonnegative()
      .max(2 ** 50),
    category: z.enum(['A', 'B', 'C']).optional(),
    backend: z.enum(['webgpu', 'wasm']),
    mobile: z.boolean().default(false),
    /** Free-form device label for the network view ("NVIDIA RTX 4090", "SwiftShader"). */
    label: z.string().max(200).optional(),
  })
  .strict();
export type PeerCapability = z.infer<typeof peerCapabilitySchema>;

/** WebRTC signaling payloads relayed between introduced peers. */
export const signalPayloadSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('sdp'),
      sdp: z.object({ type: z.enum(['offer', 'answer']), sdp: z.string().max(48 * 1024) }).strict(),
    })
    .strict(),
  z
    .object({
      kind: z.literal('candidate'),
      candidate: z
        .object({
          candidate: z.string().max(2048),
          sdpMid: z.string().max(64).nullable().optional(),
          sdpMLineIndex: z.number().int().nonnegative().max(64).nullable().optional(),
          usernameFragment: z.string().max(256).nullable().optional(),
        })
        .strict(),
    })
    .strict(),
]);
export type SignalPayload = z.infer<typeof signalPayloadSchema>;

/** The model a ring serves, as a peer needs it to load its shard. */
/** How a catalog model is served: whole-model replicas on single peers, or sharded over a ring. */
export const modelServingSchema = z.enum(['lightweight', 'sharded']);
export type ModelServing = z.infer<typeof modelServingSchema>;

export const modelDescriptorSchema = z
  .object({
    id: z.string().min(1).max(200),
    /** URL (usually a path served by the signaling server) of the `.bin` or the HF directory. */
    url: z.string().min(1).max(2048),
    tokenizerUrl: z.string().max(2048).optional(),
    weightFormat: z.enum(['f32', 'q8', 'q4']),
    contextLength: z
      .number()
      .int()
      .positive()
      .max(1 << 20),
    /** Number of units (embedding + blocks + head). */
    units: z.number().int().positive().max(100_000),
    /**
     * How the network serves it: `lightweight` (whole-model replicas, one peer each; what category C
     * peers such as phones serve) or `sharded` (a ring of stronger peers). Absent: sharded.
     */
    serving: modelServingSchema.optional(),
  })
  .strict();
export type ModelDescriptor = z.infer<typeof modelDescriptorSchema>;

/** A raw uncompressed P-256 public key (65 bytes), base64. */
export const validationKeySchema = z.string().regex(/^[A-Za-z0-9+/]{87}=$/, 'not a P-256 key');

const ringStageSchema = z
  .object({
    peer: peerIdSchema,
    range: unitRange,
    /** The peer's registered validation key (absent: it registered none and cannot be validated). */
    key: validationKeySchema.optional(),
  })
  .strict();

/**
 * What one answer on a ring generated, as its requester counted it (`ring-lap`): the tokens after
 * the prompt, the same count as the answer's text and the API's `completion_tokens`. The server
 * bounds it by the model's context and credits it to the requester's own usage only.
 */
export const answerUsageSchema = z
  .object({
    /** Wire version of this field. */
    v: z.literal(1),
    tokens: z.number().int().nonnegative().max(1_000_000),
  })
  .strict();
export type AnswerUsage = z.infer<typeof answerUsageSchema>;

/** Highest security level a request may ask for (the primary ring plus two validator rings). */
export const MAX_SECURITY_LEVEL = 3;

/** A requester's security level: k rings with disjoint peers and the same unit boundaries. */
export const securityRequestSchema = z
  .object({
    /** Wire version of this field. */
    v: z.literal(1),
    k: z.number().int().min(1).max(MAX_SECURITY_LEVEL),
    /** Accept a lower level (never below the model's minimum) when too few peers are online. */
    degrade: z.boolean().optional(),
    /**
     * Spot-check mode (k = 2 only): the validator ring re-executes a sampled fraction of steps
     * instead of every one. `f`: the least fraction wanted (the coordinator's per-peer rate, never
     * below its floor, applies when higher). Ignored where the model's minimum level is 2 or more.
     */
    spot: z
      .object({ f: z.number().gt(0).max(1).optional() })
      .strict()
      .optional(),
  })
  .strict()
  .refine((s) => s.spot === undefined || s.k === 2, {
    message: 'Spot checks are a mode of security level 2.',
    path: ['spot'],
  });
export type SecurityRequest = z.infer<typeof securityRequestSchema>;

/** A validator ring as sent with the primary ring: same unit boundaries, disjoint peers. */
export const validatorRingSchema = z
  .object({
    ringId: z.string().max(200),
    epoch: z.number().int().nonnegative(),
    stages: z.array(ringStageSchema).min(1).max(1024),
  })
  .strict();
export type ValidatorRing = z.infer<typeof validatorRingSchema>;

/** The security level a `ring` (or `no-ring`) answers with. */
export const securityAnswerSchema = z
  .object({
    /** The level asked for (the request's, raised to the model's minimum). */
    requested: z.number().int().min(1).max(MAX_SECURITY_LEVEL),
    /** The level this answer serves: 1 + the validator rings sent. */
    k: z.number().int().min(0).max(MAX_SECURITY_LEVEL),
    /** Why it is lower than requested (too few disjoint peers), when it is. */
    missing: z.string().max(500).optional(),
    /**
     * On a refusal (`no-ring` with `security`): the typed error it is (absent: too few disjoint
     * peers, `VALIDATION_NOT_ENOUGH_PEERS`; `STAKE_INSUFFICIENT`: ring peers short of the level's
     * minimum stake).
     */
    code: z.enum(['VALIDATION_NOT_ENOUGH_PEERS', 'STAKE_INSUFFICIENT']).optional(),
    /**
     * Spot-check mode granted: the fraction of steps to re-execute on the validator ring — the
     * largest of the primary ring's peers' rates (each from the peer's validated record, never below
     * the server's floor) and the request's own `f`. Absent: every ring runs every step.
     */
    spot: z
      .object({ f: z.number().gt(0).max(1) })
      .strict()
      .optional(),
  })
  .strict();
export type SecurityAnswer = z.infer<typeof securityAnswerSchema>;

/** Most token ids a spot-checked proof step carries (the validator ring's catch-up chunk). */
export const MAX_SPOT_CHUNK_TOKENS = 4096;

/**
 * One validated step's signed commitments, all rings: `rings[j][stage]` is the commitment's wire
 * bytes (base64) of ring j (0: the primary) at that stage. The server verifies and compares them
 * itself before it credits anyone.
 */
export const workProofStepSchema = z
  .object({
    rings: z
      .array(
        z
          .array(
            z
              .string()
              .max(4096)
              .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'not base64'),
          )
          .min(1)
          .max(64),
      )
      .min(2)
      .max(MAX_SECURITY_LEVEL),
    /**
     * A spot-checked step (exactly two rings; ring 1 the validator that caught up): `tokens` are the
     * token ids of the validator's chunk (its stage 0's input, so its signed input hash), and the
     * primary ran the last `rows` of them at this step. The rings are compared at the chunk's last
     * row (validation-work.ts).
     */
    spot: z
      .object({
        tokens: z.array(z.number().int().min(0).max(0x7fffffff)).min(1).max(MAX_SPOT_CHUNK_TOKENS),
        rows: z.number().int().positive().max(MAX_SPOT_CHUNK_TOKENS),
      })
      .strict()
      .optional(),
  })
  .strict();
export type WorkProofStep = z.infer<typeof workProofStepSchema>;

/** An evidence record as it crosses the wire (bounded; decoded and verified by the server). */
export const evidenceRecordSchema = z
  .object({
    v: z.literal(1),
    model: z.string().max(200),
    modelHash: z.string().max(128).optional(),
    range: unitRange,
    peerId: peerIdSchema,
    ring: z.number().int().min(0).max(255),
    stage: z.number().int().min(0).max(255),
    step: z.number().int().nonnegative(),
    position: z.number().int().nonnegative(),
    reason: z.enum([
      'bad-signature',
      'equivocation',
      'false-input',
      'wrong-token',
      'false-sketch',
      'output-mismatch',
    ]),
    inHash: z.string().regex(/^[0-9a-f]{64}$/),
    commitments: z
      .array(
        z
          .string()
          .regex(/^(?:[0-9a-f]{2})+$/)
          .max(8192),
      )
      .min(1)
      .max(4),
    refereeDistance: z.number().finite().optional(),
    refereeToken: z.number().int().optional(),
    receipt: z
      .object({
        hash: z.string().regex(/^[0-9a-f]{64}$/),
        signature: z
          .string()
          .regex(/^(?:[0-9a-f]{2})+$/)
          .max(256),
      })
      .strict()
      .optional(),
    detail: z.string().max(500).optional(),
  })
  .strict();

/** Most entries one `link-report` carries (a peer probes its neighbours, a handful). */
export const MAX_LINK_REPORT_ENTRIES = 16;
/** Longest drain a withdrawing contributor may ask for, ms. */
export const MAX_DRAIN_MS = 120_000;

/** One measured link in a `link-report`: the reporter's view of its link to `peer`. */
export const linkReportEntrySchema = z
  .object({
    peer: peerIdSchema,
    rttMs: z.number().nonnegative().max(60_000),
    mbps: z.number().positive().max(1_000_000),
  })
  .strict();
export type LinkReportEntry = z.infer<typeof linkReportEntrySchema>;

/**
 * The id of a server-driven requester (the OpenAI API's ring path): never a peer id (`p_…`), so its
 * links cannot be mistaken for a neighbour's.
 */
export const apiRequesterIdSchema = z.string().regex(/^api-[A-Za-z0-9_-]{1,28}$/, 'not an API requester id');
/** Largest text (a ring control message) one `api-link` frame carries. */
export const MAX_API_LINK_TEXT = 16 * 1024;
/** Largest base64 piece of a binary message one `api-link` frame carries (a longer one is split). */
export const MAX_API_LINK_BASE64 = 40 * 1024;

/**
 * One event of a link the server opens to a stage over that stage's signaling socket (the OpenAI
 * API drives rings as a requester this way; see shared/transport/api-link.ts). `open` comes from the
 * server with the requester's id and is acknowledged by an `open` back; `text` and `binary` are
 * the ring link's control and tensor frames (binary as base64, split with `more` when long);
 * `close` ends the link from either side.
 */
export const apiLinkFrameSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('open'), requester: apiRequesterIdSchema.optional() }).strict(),
  z.object({ kind: z.literal('text'), text: z.string().max(MAX_API_LINK_TEXT) }).strict(),
  z
    .object({
      kind: z.literal('binary'),
      data: z
        .string()
        .max(MAX_API_LINK_BASE64)
        .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'not base64'),
      /** More pieces of the same binary message follow. */
      more: z.boolean().optional(),
    })
    .strict(),
  z.object({ kind: z.literal('close'), reason: z.string().max(200).optional() }).strict(),
]);
export type ApiLinkFrame = z.infer<typeof apiLinkFrameSchema>;

// ---------------------------------------------------------------- client -> server

export const clientMessageSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('hello'),
      v,
      roles: z
        .array(z.enum(['contributor', 'requester']))
        .min(1)
        .max(2),
      /** A reconnecting peer proves who it is with the token it was given. */
      resume: z.object({ peerId: peerIdSchema, token }).strict().optional(),
      client: z.string().max(200).optional(),
      /**
       * A signed-in identity: the token of `POST /api/auth/verify` (SIWE). Binds the address to this
       * session; absent: anonymous (refused by a server run with `--require-identity`).
       */
      identity: identityTokenSchema.optional(),
    })
    .strict(),
  z.object({ type: z.literal('profile'), v, capability: peerCapabilitySchema }).strict(),
  z.object({ type: z.literal('heartbeat'), v, sentAt: z.number().finite() }).strict(),
  z
    .object({
      type: z.literal('signal'),
      v,
      to: peerIdSchema,
      /** Which connection between the two peers this belongs to (several may exist at once). */
      conn: connIdSchema.optional(),
      payload: signalPayloadSchema,
    })
    .strict(),
  z
    .object({
      type: z.literal('ring-request'),
      v,
      model: z.string().min(1).max(200),
      /**
       * Result validation: the security level asked for (absent: the server's default). At k >= 2
       * the coordinator plans k - 1 validator rings disjoint from the primary, or answers `no-ring`
       * with `security` saying what is missing — unless `degrade` lets it answer at a lower level.
       */
      security: securityRequestSchema.optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('assignment-status'),
      v,
      epoch: z.number().int().nonnegative(),
      state: z.enum(['loading', 'ready', 'failed']),
      message: z.string().max(2000).optional(),
    })
    .strict(),
  z
    .object({ type: z.literal('peer-unreachable'), v, peer: peerIdSchema, reason: z.string().max(500) })
    .strict(),
  /**
   * A requester's report of one answer on a ring it was sent. `msPerToken` over `tokens` decode
   * steps: its measured lap, the coordinator's evidence of the stages' speed (a stage's own trace
   * is only a hint); sent together or not at all (a drafted or failed-over answer has no one-token
   * laps of one ring). `generated`: the answer's generated tokens, its requester's usage; absent
   * from older clients, whose `tokens` then counts.
   */
  z
    .object({
      type: z.literal('ring-lap'),
      v,
      ringId: z.string().min(1).max(200),
      msPerToken: z.number().positive().max(3_600_000).optional(),
      tokens: z.number().int().positive().max(1_000_000).optional(),
      generated: answerUsageSchema.optional(),
    })
    .strict()
    .refine((m) => (m.msPerToken === undefined) === (m.tokens === undefined), {
      message: 'msPerToken and tokens come together',
    })
    .refine((m) => m.tokens !== undefined || m.generated !== undefined, {
      message: 'a lap carries its timing (msPerToken, tokens), its generated count, or both',
    }),
  /**
   * A requester's ring stalled mid-answer at `position` (a link closed, a step missed its deadline,
   * or a stage reported its neighbour gone). Evidence for the server to check, never a verdict: the
   * server probes the ring's peers (`peer`, when named, else every stage) and evicts only a peer
   * that fails its own probe. The requester's session fails over either way.
   */
  z
    .object({
      type: z.literal('ring-stalled'),
      v,
      ringId: z.string().min(1).max(200),
      epoch: z.number().int().nonnegative(),
      position: z.number().int().nonnegative().max(1_000_000),
      cause: z.enum(['link-close', 'deadline', 'stage-error']),
      peer: peerIdSchema.optional(),
    })
    .strict(),
  z.object({ type: z.literal('leave'), v }).strict(),
  /**
   * This peer's measurements of its links (see shared/ring/link-probe.ts): one entry per peer at the
   * other end. Counts only for links this peer is part of; bounded per message and rate-limited.
   */
  z
    .object({
      type: z.literal('link-report'),
      v,
      links: z.array(linkReportEntrySchema).min(1).max(MAX_LINK_REPORT_ENTRIES),
    })
    .strict(),
  /**
   * A contributor is about to leave or pause: it finishes its open sessions (at most `drainMs`),
   * takes no new ones, and is planned out when it says `withdrawn` or the drain time is up.
   */
  z
    .object({
      type: z.literal('withdraw'),
      v,
      mode: z.enum(['leave', 'pause']),
      drainMs: z.number().int().nonnegative().max(MAX_DRAIN_MS),
    })
    .strict(),
  /** The withdrawing contributor's sessions are done: plan without it now. */
  z.object({ type: z.literal('withdrawn'), v }).strict(),
  /** A paused contributor is back: plan with it again. */
  z.object({ type: z.literal('resume'), v }).strict(),
  /**
   * Result validation: this session's public key (raw uncompressed P-256, base64), with which the
   * peer signs its ring commitments. Sent before `profile`, so rings planned with it carry it.
   */
  z.object({ type: z.literal('validation-key'), v, key: validationKeySchema }).strict(),
  /**
   * Result validation: a located deviant's evidence (shared/validation/evidence.ts). The server
   * checks the signed commitments itself; the requester's word alone penalises nobody.
   */
  z
    .object({
      type: z.literal('validation-evidence'),
      v,
      ringId: z.string().max(200),
      evidence: evidenceRecordSchema,
      /**
       * k >= 3: the disputed step's signed commitments of every ring (`ringIds` in the same order,
       * the evidence's ring among them), so the server can see the majority outvote the deviant.
       */
      majority: z
        .object({
          ringIds: z.array(z.string().max(200)).min(3).max(MAX_SECURITY_LEVEL),
          step: workProofStepSchema,
        })
        .strict()
        .optional(),
    })
    .strict(),
  /** Result validation: steps of a ring's work this requester validated (all checks held). */
  z
    .object({
      type: z.literal('validated-work'),
      v,
      model: z.string().min(1).max(200),
      ringId: z.string().max(200),
      steps: z.number().int().positive().max(1_000_000),
      /**
       * The signed commitments of every ring for the validated steps (at most 16 per message). Only
       * steps the server verifies and compares itself are credited; without a proof nothing is.
       */
      proof: z.array(workProofStepSchema).min(1).max(16).optional(),
      /** The rings the proof's commitment lists belong to, in order: `ringId` first, then validator rings. */
      proofRings: z.array(z.string().max(200)).min(2).max(MAX_SECURITY_LEVEL).optional(),
    })
    .strict(),
  /** A stage's side of a link the server opened to it (`api-link` from the server). */
  z.object({ type: z.literal('api-link'), v, link: connIdSchema, frame: apiLinkFrameSchema }).strict(),
]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;

// ---------------------------------------------------------------- server -> client

export const serverMessageSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('welcome'),
      v,
      peerId: peerIdSchema,
      token,
      heartbeatMs: z.number().int().positive(),
      /** Always empty in tests (loopback only); STUN/TURN servers in production config. */
      iceServers: z.array(z.object({ urls: z.union([z.string(), z.array(z.string())]) }).passthrough()),
      resumed: z.boolean(),
      /** The signed-in address bound to this session (absent: anonymous). */
      address: addressSchema.optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('assignment'),
      v,
      epoch: z.number().int().nonnegative(),
      ringId: z.string().max(200),
      model: modelDescriptorSchema,
      range: unitRange,
      prev: peerIdSchema.nullable(),
      next: peerIdSchema.nullable(),
    })
    .strict(),
  /**
   * Standby replica: load the units of a live ring's stage ahead (weights only, no KV, no stage),
   * so that when that stage's peer is lost the coordinator can swap this peer in and the failover
   * costs a replay instead of a download. A later `assignment` of the same units serves at once.
   */
  z
    .object({
      type: z.literal('standby'),
      v,
      epoch: z.number().int().nonnegative(),
      /** The ring whose stage this peer backs up. */
      ringId: z.string().max(200),
      model: modelDescriptorSchema,
      range: unitRange,
    })
    .strict(),
  z
    .object({
      type: z.literal('unassigned'),
      v,
      epoch: z.number().int().nonnegative(),
      reason: z.string().max(500),
      /** Lightweight whole models this peer could serve alone (category C). */
      lightweightModels: z.array(z.string().max(200)).max(100),
    })
    .strict(),
  z
    .object({
      type: z.literal('ring'),
      v,
      epoch: z.number().int().nonnegative(),
      ringId: z.string().max(200),
      model: modelDescriptorSchema,
      stages: z.array(ringStageSchema).min(1).max(1024),
      /**
       * Bytes of the whole model (weights + KV cache at its context length), as in `no-ring`: a
       * requester offers to draft with a copy of the model only when it is small enough.
       */
      totalBytes: z.number().nonnegative().optional(),
      /** Result validation: the validator rings planned for this requester's security level. */
      validators: z
        .array(validatorRingSchema)
        .max(MAX_SECURITY_LEVEL - 1)
        .optional(),
      /** Result validation: the level asked for and the level served (absent: k = 1, not asked). */
      security: securityAnswerSchema.optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('no-ring'),
      v,
      model: z.string().max(200),
      reason: z.string().max(500),
      missingBytes: z.number().nonnegative().optional(),
      /** Where to load the model from, so a requester can run it alone when it fits (catalog models). */
      descriptor: modelDescriptorSchema.optional(),
      /** Bytes of the whole model (weights + KV cache at its context length), to decide whether it fits. */
      totalBytes: z.number().nonnegative().optional(),
      /**
       * Result validation: set when a ring exists but not the security level asked for (too few
       * disjoint peers for the validator rings); `reason` names what is missing.
       */
      security: securityAnswerSchema.optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('signal'),
      v,
      from: peerIdSchema,
      conn: connIdSchema.optional(),
      payload: signalPayloadSchema,
    })
    .strict(),
  z
    .object({
      type: z.literal('heartbeat-ack'),
      v,
      sentAt: z.number().finite(),
      serverTime: z.number().finite(),
    })
    .strict(),
  /**
   * A request failed: the server's {@link RingworkError} as {@link RingworkError.toJSON} without its
   * cause (server internals stay in the server log). Rebuild it with {@link signalingErrorFromMessage}.
   */
  z
    .object({
      type: z.literal('error'),
      v,
      code: errorCodeSchema,
      message: z.string().max(MAX_WIRE_MESSAGE),
      details: z.record(z.string(), z.unknown()).optional(),
    })
    .strict(),
  /** The server's side of a link to this stage (its OpenAI API driving the ring as a requester). */
  z.object({ type: z.literal('api-link'), v, link: connIdSchema, frame: apiLinkFrameSchema }).strict(),
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;

/** Messages by type, for exhaustive handler maps. */
export type ClientMessageOf<T extends ClientMessage['type']> = Extract<ClientMessage, { type: T }>;
export type ServerMessageOf<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;
/** An exhaustive handler map: the compiler insists on one handler per message type. */
export type ClientHandlers<Ctx> = {
  [T in ClientMessage['type']]: (msg: ClientMessageOf<T>, ctx: Ctx) => void | Promise<void>;
};
export type ServerHandlers<Ctx> = {
  [T in ServerMessage['type']]: (msg: ServerMessageOf<T>, ctx: Ctx) => void | Promise<void>;
};

/**
 * Parses one raw frame (text) into a validated message of `schema`. Throws a typed error:
 * PROTOCOL_FRAME_TOO_LARGE, PROTOCOL_BAD_FRAME (not JSON / not an object / wrong fields),
 * PROTOCOL_BAD_VERSION, PROTOCOL_UNKNOWN_TYPE. Never throws anything else.
 */
export function parseFrame<S extends z.ZodType>(
  schema: S,
  raw: unknown,
  knownTypes: readonly string[],
): z.infer<S> {
  if (typeof raw !== 'string') {
    throw new RingworkError(
      'PROTOCOL_BAD_FRAME',
      'Signaling frames are UTF-8 JSON text; binary frames are not accepted.',
      {
        details: { kind: typeof raw },
      },
    );
  }
  if (raw.length > MAX_SIGNALING_FRAME_BYTES) {
    throw new RingworkError(
      'PROTOCOL_FRAME_TOO_LARGE',
      `Frame of ${raw.length} characters exceeds the ${MAX_SIGNALING_FRAME_BYTES}-byte limit.`,
      { details: { size: raw.length, limit: MAX_SIGNALING_FRAME_BYTES } },
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    throw new RingworkError('PROTOCOL_BAD_FRAME', 'The frame is not valid JSON.', { details: {} });
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new RingworkError('PROTOCOL_BAD_FRAME', 'A frame must be a JSON object with "type" and "v".', {
      details: {},
    });
  }
  const o = data as Record<string, unknown>;
  if (o.v !== SIGNALING_VERSION) {
    throw new RingworkError(
      'PROTOCOL_BAD_VERSION',
      `Protocol version ${JSON.stringify(o.v)} is not supported; this server speaks v${SIGNALING_VERSION}. Reload the page to get the current client.`,
      { details: { got: typeof o.v === 'number' ? o.v : String(o.v), supported: SIGNALING_VERSION } },
    );
  }
  if (typeof o.type !== 'string' || !knownTypes.includes(o.type)) {
    throw new RingworkError(
      'PROTOCOL_UNKNOWN_TYPE',
      `Unknown message type ${JSON.stringify(String(o.type).slice(0, 64))}.`,
      {
        details: { known: knownTypes },
      },
    );
  }
  // An error code from a newer peer is delivered as PROTOCOL_UNKNOWN_CODE, not dropped.
  const parsed = schema.safeParse(normaliseWireErrorCode(data));
  if (!parsed.success) {
    throw invalidInputError('PROTOCOL_BAD_FRAME', `"${o.type}" message`, parsed.error, { type: o.type });
  }
  return parsed.data;
}

/** The `error` message that tells a client about `e` (its code, short message and details). */
export function signalingErrorMessage(e: RingworkError): ServerMessageOf<'error'> {
  const { code, message, details } = e.toJSON();
  return {
    type: 'error',
    v: SIGNALING_VERSION,
    code,
    message,
    ...(Object.keys(details).length > 0 ? { details } : {}),
  };
}

/** The typed error an `error` message from the server carries. */
export function signalingErrorFromMessage(m: ServerMessageOf<'error'>): RingworkError {
  return RingworkError.fromJSON(m);
}

const CLIENT_TYPES = clientMessageSchema.options.map((o) => o.shape.type.value);
const SERVER_TYPES = serverMessageSchema.options.map((o) => o.shape.type.value);

/** Parses a client → server frame. */
export function parseClientFrame(raw: unknown): ClientMessage {
  return parseFrame(clientMessageSchema, raw, CLIENT_TYPES);
}
/** Parses a server → client frame. */
export function parseServerFrame(raw: unknown): ServerMessage {
  return parseFrame(serverMessageSchema, raw, SERVER_TYPES);
}
