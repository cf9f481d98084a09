/**
 * The chat's speculative-decoding setting ("draft locally"): when a requester may draft, and why
 * not otherwise. One rule for the Chat page (which disables the setting and says why) and the
 * requester (which refuses a request that asks anyway, e.g. through the SDK).
 *
 * The draft is a 4-bit copy of the *same* model that the requester's tab runs whole (see
 * shared/runtime/speculative.ts): it keeps the tokenizer identical and needs no second model, but
 * the tab downloads every weight of the model. So it is offered only for small models.
 */
import { RingworkError } from '../errors.js';
import type { WeightFormat } from '../graph/compile-shard.js';

/** What a chat asks for when it drafts (absent from the settings: no drafting). */
export interface DraftSetting {
  /** The draft's weight format, quantised at load from the served weights (the chat uses q4). */
  format: WeightFormat;
  /** Most tokens drafted per ring lap. */
  k: number;
}

/** The chat's default draft: q4, up to 4 tokens per lap (bench:speculative's best k on stories260K). */
export const DEFAULT_DRAFT: DraftSetting = { format: 'q4', k: 4 };

/** Largest k a request may ask for (a verify pass is k + 1 rows; MAX_VERIFY_ROWS bounds it on the ring). */
export const MAX_DRAFT_K = 16;

/**
 * Largest model (weights in the served format + KV cache at its context, as the coordinator sizes
 * it) the tab downloads whole for a draft: 256 MB. stories260K (~1 MB) and a stories15M-sized model
 * (~60 MB at f32) qualify; a 110M-parameter model (~440 MB at f32) or anything larger does not —
 * its draft would cost more download and memory than drafting saves.
 */
export const DRAFT_MAX_MODEL_BYTES = 256 * 2 ** 20;

/** Why drafting is not available, or `undefined` when it is. */
export function draftUnavailable(o: {
  /** The answer's temperature (drafting is greedy only). */
  temperature: number;
  /** The whole model's bytes as the coordinator sizes it; undefined: not known (yet). */
  modelBytes: number | undefined;
  /** What this tab may use to run a model alone, bytes. */
  budgetBytes: number;
  /** The security level asked for (validated rings do not verify drafted tokens). */
  security?: number;
}): string | undefined {
  if (o.temperature !== 0)
    return 'drafting is greedy only: set the temperature to 0 (with sampling, a draft would change which answers come out)';
  if ((o.security ?? 1) >= 2) return 'validated answers (security level 2 or 3) are not drafted';
  if (o.modelBytes === undefined) return 'the model’s size is not known yet';
  const limit = Math.min(DRAFT_MAX_MODEL_BYTES, o.budgetBytes);
  if (o.modelBytes > limit)
    return `the draft downloads the whole model into this tab: offered for models up to ${mb(limit)} MB, this one is ${mb(o.modelBytes)} MB`;
  return undefined;
}

/** Throws `SPECULATIVE_UNSUPPORTED` with the reason when {@link draftUnavailable} gives one. */
export function assertDraftAvailable(o: Parameters<typeof draftUnavailable>[0] & { model: string }): void {
  const why = draftUnavailable(o);
  if (why) {
    throw new RingworkError('SPECULATIVE_UNSUPPORTED', `Cannot draft for ${o.model}: ${why}.`, {
      details: { model: o.model, temperature: o.temperature, modelBytes: o.modelBytes ?? null },
    });
  }
}

const mb = (b: number) => (b / 2 ** 20).toFixed(b < 10 * 2 ** 20 ? 1 : 0);
