/**
 * A stage that commits to every step it serves: it wraps a loaded {@link ShardRunner}, checks the
 * sender's receipt on every frame it receives, runs the step, signs a receipt for what it sends and
 * a {@link Commitment} for the requester, and keeps its recent inputs so a referee can settle a
 * dispute from signed recorded inputs. `behaviour` is the test-only tampering hook the validation
 * benchmark and tests use to play a dishonest peer; honest stages leave it empty.
 */
import { RingworkError } from '../errors.js';
import type { ShardRunner } from '../runtime/shard-runner.js';
import { bytesEqual, bytesOf, sha256, SIGNATURE_BYTES, type SessionKey } from './crypto.js';
import {
  signCommitment,
  signReceipt,
  verifyReceipt,
  type Commitment,
  type StepCoordinates,
} from './commitment.js';
import type { KeyRegistry } from './key-registry.js';
import { DEFAULT_SKETCH, sketchOf, type SketchParams } from './sketch.js';

/** What a tamper function sees (the issue's `ctx`): the output the stage is about to send. */
export interface TamperContext {
  /** Hidden states `[rows * hidden]`, or for the head the logits row before sampling. */
  data: Float32Array;
  shape: number[];
  /** The stage's unit range `[start, end)`. */
  range: [number, number];
  step: number;
  position: number;
  /** The stage's hidden input (stages after the first); lets a test tamper pass its input through. */
  input?: Float32Array;
}

/** Returns a replacement the stage sends, or `undefined` to leave the step alone. */
export type TamperFn = (ctx: TamperContext) => Float32Array | undefined;

/** How a dishonest stage behaves (test-only; honest stages pass nothing). */
export interface StageBehaviour {
  tamper?: TamperFn;
  /**
   * `consistent` (default): commit to what is sent. `honest-commit`: commit to the honest output but
   * send the tampered one (the receipt, which the receiver checks, covers what is sent).
   */
  mode?: 'consistent' | 'honest-commit';
  /** Head only: a token to send (and commit to) instead of the sampled one; the logits sketch stays honest. */
  token?: (ctx: { token: number; step: number; logits: Float32Array }) => number | undefined;
}

/** A frame between stages: the exact payload bytes and the sender's receipt (none from the requester). */
export interface StageFrame {
  payload: Uint8Array;
  /** The sender's coordinates and receipt signature; absent for token ids from the requester. */
  from?: { peerId: string; coords: StepCoordinates; receipt: Uint8Array };
}

/** The result of one step on a stage. */
export interface StageStepResult {
  frame: StageFrame;
  commitment: Commitment;
  /** The token the head sent (head only). */
  token?: number;
  /** Wall time of the runner's step, ms (validation overhead excluded). */
  computeMs: number;
  /** Hash, sketch and signature time, ms. */
  validationMs: number;
  /** True when the behaviour changed this step (benchmark bookkeeping). */
  tampered: boolean;
}

/** Options of {@link createValidatingStage}. */
export interface ValidatingStageOptions {
  peerId: string;
  key: SessionKey;
  /** A runner already loaded with `range`. */
  runner: ShardRunner;
  range: [number, number];
  ring: number;
  stage: number;
  isHead: boolean;
  /** Row length of the output: hidden size, or the vocabulary for the head. */
  rowLen: number;
  registry: KeyRegistry;
  /** Picks the token from the head's logits row (default: greedy). */
  sample?: (logits: Float32Array, step: number) => number;
  sketch?: SketchParams;
  behaviour?: StageBehaviour;
  now?: () => number;
}

/** A committing stage; one generation session at a time. */
export interface ValidatingStage {
  readonly peerId: string;
  readonly ring: number;
  readonly stage: number;
  readonly range: [number, number];
  /** Starts a session (opens a KV session on the runner). */
  begin(session: Uint8Array): Promise<void>;
  /** Serves one step: verifies the frame's receipt, computes, commits and signs. */
  step(
    frame: StageFrame,
    step: number,
    position: number,
    opts?: { signal?: AbortSignal },
  ): Promise<StageStepResult>;
  /** The exact bytes received at `step` (kept for the session, for disputes). */
  recordedInput(step: number): Uint8Array | undefined;
  /** Ends the session and frees its KV cache. Safe to call twice. */
  end(): Promise<void>;
}

/** Greedy pick: the first index of the largest logit. */
export function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** Creates a committing stage over a loaded runner. */
export function createValidatingStage(o: ValidatingStageOptions): ValidatingStage {
  const now = o.now ?? (() => performance.now());
  const sketchParams = o.sketch ?? DEFAULT_SKETCH;
  const sample = o.sample ?? ((l: Float32Array) => argmax(l));
  let sessionId: string | undefined;
  let session: Uint8Array | undefined;
  const inputs = new Map<number, Uint8Array>();

  return {
    peerId: o.peerId,
    ring: o.ring,
    stage: o.stage,
    range: o.range,
    async begin(s) {
      if (sessionId) await this.end();
      session = s;
      sessionId = await o.runner.openSession();
    },
    async step(frame, step, position, opts = {}) {
      if (!sessionId || !session) throw new RingworkError('INVALID_ARGUMENT', 'step() before begin().');
      const t0 = now();
      const inHash = await sha256(frame.payload);
      let inReceipt: Uint8Array = new Uint8Array(SIGNATURE_BYTES);
      if (o.stage > 0) {
        // Never compute on bytes the sender did not sign for exactly: that is what later lets the
        // requester hold a sender to what it sent.
        const ok =
          frame.from !== undefined &&
          (await verifyReceipt(
            o.registry.keyOf(frame.from.peerId),
            frame.from.coords,
            inHash,
            frame.from.receipt,
          ));
        if (!ok) {
          throw new RingworkError(
            'VALIDATION_RECEIPT_MISMATCH',
            `Stage ${o.peerId} refused a frame without a valid receipt.`,
            {
              details: { step, from: frame.from?.peerId },
            },
          );
        }
        inReceipt = frame.from!.receipt;
      }
      inputs.set(step, frame.payload.slice());
      let validationMs = now() - t0;
      const input =
        o.stage === 0
          ? { tokens: new Int32Array(frame.payload.slice().buffer), position }
          : { hidden: new Float32Array(frame.payload.slice().buffer), position };
      const out = await o.runner.step(sessionId, input, { signal: opts.signal });
      const t1 = now();
      const rows = out.data.length / o.rowLen;
      const honest = out.data;
      const replaced = o.behaviour?.tamper?.({
        data: honest.slice(),
        shape: [rows, o.rowLen],
        range: o.range,
        step,
        position,
        input: 'hidden' in input ? input.hidden : undefined,
      });
      if (replaced && replaced.length !== honest.length) {
        throw new RingworkError('INVALID_ARGUMENT', 'A tamper function must return the shape it was given.');
      }
      const sent = replaced ?? honest;
      const committed = o.behaviour?.mode === 'honest-commit' ? honest : sent;
      let tampered = replaced !== undefined && !bytesEqual(bytesOf(replaced), bytesOf(honest));
      const coords: StepCoordinates = { session, ring: o.ring, stage: o.stage, step, position };
      let payload: Uint8Array;
      let committedPayload: Uint8Array;
      let token = -1;
      if (o.isHead) {
        const last = (a: Float32Array) => a.subarray(a.length - o.rowLen);
        token = sample(last(sent), step);
        const committedToken = committed === sent ? token : sample(last(committed), step);
        const honestToken = replaced ? sample(last(honest), step) : token;
        const forced = o.behaviour?.token?.({ token, step, logits: last(honest) });
        if (forced !== undefined && forced !== token) token = forced;
        // What counts as a change at the head: the token it sends, or (committing to what it sends) its logits.
        tampered = token !== honestToken || (tampered && o.behaviour?.mode !== 'honest-commit');
        payload = bytesOf(Int32Array.of(token)).slice();
        committedPayload =
          o.behaviour?.mode === 'honest-commit' ? bytesOf(Int32Array.of(committedToken)).slice() : payload;
      } else {
        payload = bytesOf(sent).slice();
        committedPayload = committed === sent ? payload : bytesOf(committed).slice();
      }
      const sentHash = await sha256(payload);
      const committedHash = committedPayload === payload ? sentHash : await sha256(committedPayload);
      const committedToken = o.isHead ? new Int32Array(committedPayload.slice().buffer)[0]! : -1;
      const commitment = await signCommitment(o.key, {
        ...coords,
        kind: o.isHead ? 'logits' : 'hidden',
        inHash,
        outHash: committedHash,
        inReceipt,
        token: committedToken,
        sketch: sketchOf(
          o.isHead ? committed.subarray(committed.length - o.rowLen) : committed,
          o.rowLen,
          sketchParams,
        ),
      });
      const receipt = await signReceipt(o.key, coords, sentHash);
      validationMs += now() - t1;
      return {
        frame: { payload, from: { peerId: o.peerId, coords, receipt } },
        commitment,
        token: o.isHead ? token : undefined,
        computeMs: out.ms,
        validationMs,
        tampered,
      };
    },
    recordedInput: (step) => inputs.get(step),
    async end() {
      const id = sessionId;
      sessionId = undefined;
      session = undefined;
      inputs.clear();
      if (id) await o.runner.closeSession(id);
    },
  };
}
