/**
 * A requester's usage from its `ring-lap` report: how many tokens one answer on a ring generated.
 * The count is the requester's own word and only ever changes its own record, but it is still
 * bounded: a ring's answer cannot hold more tokens than the model's context, so a larger count is
 * refused (counted as nothing) rather than believed or clipped.
 */
import type { ClientMessageOf } from '../../shared/protocol/signaling.js';
import type { CatalogModel } from './catalog.js';
import { refusal } from './refusal.js';

/** The model id of a ring id (`<model>:<n>`). */
export function modelOfRingId(ringId: string): string {
  return ringId.slice(0, ringId.lastIndexOf(':'));
}

/**
 * The tokens `lap`'s answer generated: its `generated` count, or from a client without it its
 * decode steps (`tokens`, one fewer than generated: the prefill yields the first token). Refuses
 * (PROTOCOL_NOT_ALLOWED) a ring of a model this server does not serve, and (PROTOCOL_BAD_FRAME) a
 * count over the model's context.
 */
export function answerTokens(catalog: readonly CatalogModel[], lap: ClientMessageOf<'ring-lap'>): number {
  const modelId = modelOfRingId(lap.ringId);
  const model = catalog.find((m) => m.descriptor.id === modelId);
  if (!model) {
    throw refusal(
      'PROTOCOL_NOT_ALLOWED',
      `No model ${modelId} is served here; no lap of ${lap.ringId} to report.`,
      {
        details: { ringId: lap.ringId },
      },
    );
  }
  const tokens = lap.generated?.tokens ?? lap.tokens ?? 0;
  const cap = model.descriptor.contextLength;
  if (tokens > cap) {
    throw refusal(
      'PROTOCOL_BAD_FRAME',
      `An answer of ${modelId} generates at most ${cap} tokens (its context); ${tokens} reported.`,
      { details: { ringId: lap.ringId, tokens, max: cap } },
    );
  }
  return tokens;
}
