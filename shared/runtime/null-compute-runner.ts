/**
 * Tooling only (`npm run bench:swarm`, `npm run swarm -- --null-compute`): a {@link ShardRunner}
 * that loads its shard like the real one (so its I/O, hidden size and vocabulary are the real
 * shard's) but never runs the model. A step hands its hidden states on unchanged, a first stage
 * emits zeros of the right shape, and a head answers logits whose argmax is a fixed function of the
 * position. The ring around it — links, frames, the worker round trip, scheduling — is unchanged,
 * so a ring of such stages measures what the protocol costs per token without any compute.
 *
 * Its answers are meaningless text: a page turns it on only when its server runs in test mode
 * (see web/src/app/tooling.ts), and refuses with `TOOLING_ONLY` otherwise.
 */
import { RingworkError } from '../errors.js';
import type { ShardIo } from '../graph/compile-shard.js';
import { checkInput, logitsRowsOf } from './ort-shard-runner.js';
import type { ShardRunner, StepOutput } from './shard-runner.js';

/** Logit given to the chosen token (the others are 0): a sure pick at any temperature ≤ 1. */
const PICK_LOGIT = 50;

/**
 * The token a null-compute head answers at `position`: spread over the vocabulary, never one of
 * the first three ids (llama2.c's UNK/BOS/EOS; BOS or EOS would end the answer early).
 */
export function nullComputeToken(position: number, vocabSize: number): number {
  const usable = vocabSize - 3;
  if (usable < 1) return vocabSize - 1;
  return 3 + ((position * 7919 + 101) % usable);
}

/**
 * Wraps `inner` (used for load, sessions' bookkeeping is its own): steps never reach `inner`'s
 * model. Position checks are the real runner's, so a ring bug still fails the same way.
 */
export function createNullComputeRunner(
  inner: ShardRunner,
  now: () => number = () => performance.now(),
): ShardRunner {
  let io: ShardIo | undefined;
  let contextLength = 0;
  let logitsMode: 'last' | 'all' | 'rows' = 'last';
  let seq = 0;
  const sessions = new Map<string, { length: number }>();
  const loaded = (): ShardIo => {
    if (!io)
      throw new RingworkError('RUNNER_NOT_LOADED', 'The runner has no shard loaded: call load() first.');
    return io;
  };
  return {
    async load(request, opts) {
      const r = await inner.load(request, opts);
      io = r.io;
      contextLength = Math.min(request.contextLength, r.config.maxPositions);
      logitsMode = request.logits;
      return r;
    },
    async openSession() {
      loaded();
      const id = `null-${++seq}`;
      sessions.set(id, { length: 0 });
      return id;
    },
    async step(sessionId, input): Promise<StepOutput> {
      const t0 = now();
      const shard = loaded();
      const s = sessions.get(sessionId);
      if (!s) {
        throw new RingworkError('RUNNER_UNKNOWN_SESSION', `No generation session "${sessionId}".`, {
          details: { sessionId },
        });
      }
      const S = checkInput(shard, input, s.length);
      if (input.position + S > contextLength) {
        throw new RingworkError('RUNNER_CONTEXT_FULL', `Context full at position ${input.position}.`, {
          details: { position: input.position, tokens: S, contextLength },
        });
      }
      s.length = input.position + S;
      if (shard.outputKind === 'logits') {
        // One row per position with `logits: 'all'`, the asked-for rows with `rows`, else the last one.
        const V = shard.vocabSize;
        const rows = logitsMode === 'all' ? S : logitsMode === 'rows' ? logitsRowsOf(input, S) : 1;
        const data = new Float32Array(rows * V);
        for (let r = 0; r < rows; r++)
          data[r * V + nullComputeToken(input.position + S - rows + r, V)] = PICK_LOGIT;
        return { kind: 'logits', data, seqLen: S, ms: now() - t0 };
      }
      const data = input.hidden ?? new Float32Array(S * shard.hiddenSize);
      return { kind: 'hidden', data, seqLen: S, ms: now() - t0 };
    },
    async closeSession(sessionId) {
      sessions.delete(sessionId);
    },
    async info() {
      const i = await inner.info();
      return { ...i, sessions: sessions.size };
    },
    dispose: () => inner.dispose(),
  };
}
