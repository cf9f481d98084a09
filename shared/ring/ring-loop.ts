/**
 * Loop mode on a ring stage (issue 16, "the ring closes at the head"): the head's next step for
 * stage 0, and what stage 0 accepts from its ring predecessor. The wire fields (`open.loop`,
 * `token.fed`) and the feeding rule ({@link loopFeeds}) are in ring-protocol.ts.
 */
import { RingworkError } from '../errors.js';
import type { TensorMessage } from '../transport/tensor-frame.js';
import type { RingLoop } from './ring-protocol.js';

/** What stage 0 tracks of a session to check a step the head feeds. */
export interface LoopState {
  /** Set when the session's `open` asked for loop mode. */
  loop?: RingLoop;
  /** The step and position the next step must have. */
  nextStep: number;
  nextPosition: number;
}

/** The one-token step the head feeds to stage 0: `token` at `position`, the session's step `step`. */
export function loopStep(session: string, step: number, position: number, token: number): TensorMessage {
  return {
    session,
    step,
    position,
    kind: 'tokens',
    dtype: 'int32',
    shape: [1],
    data: Int32Array.of(token),
    trace: [],
  };
}

/**
 * Why stage 0 refuses `t`, which came on a link other than the one that opened the session
 * (`fromHead`: that link is its ring predecessor, the head); undefined when `t` is the next step of
 * a loop session fed by the head. Taking it is safe because at k = 1 the head already chooses the
 * token the requester would send, and the step is bounded exactly as a requester's is: one token,
 * the next step and position, up to the open's `until`.
 */
export function loopFeedRefusal(
  t: TensorMessage,
  s: LoopState,
  fromHead: boolean,
): RingworkError | undefined {
  const details = { session: t.session, step: t.step, position: t.position };
  if (!fromHead)
    return new RingworkError('STAGE_WRONG_LINK', 'this session was opened on another link', { details });
  if (!s.loop)
    return new RingworkError('STAGE_WRONG_LINK', 'the head feeds only loop-mode sessions', { details });
  if (t.kind !== 'tokens' || t.dtype !== 'int32' || t.shape.length !== 1 || t.shape[0] !== 1)
    return new RingworkError('RUNNER_BAD_INPUT', 'a step fed by the head is one token id: int32 [1]', {
      details,
    });
  if (t.step !== s.nextStep || t.position !== s.nextPosition || t.position > s.loop.until)
    return new RingworkError('RUNNER_BAD_INPUT', 'a step fed by the head must be the next step', {
      details: { ...details, expectedStep: s.nextStep, expectedPosition: s.nextPosition },
    });
  return undefined;
}
