/**
 * The draft runner of speculative answers: the whole model at the draft's format, in this tab, kept
 * across answers for the model it was loaded for, so a second answer downloads and compiles nothing.
 */
import type { ModelDescriptor } from '../protocol/signaling.js';
import type { ShardRunner } from '../runtime/shard-runner.js';
import type { DraftSetting } from './draft-setting.js';

/** The kept draft runner. */
export interface DraftRunnerCache {
  /** The runner for `m` at `d`'s format (loading it, or the one loading or loaded). */
  get(m: ModelDescriptor, d: DraftSetting, signal: AbortSignal): Promise<ShardRunner>;
  /** Frees the runner; safe twice. */
  dispose(): Promise<void>;
}

/** Creates a {@link DraftRunnerCache} over a runner factory. */
export function createDraftRunnerCache(createRunner: () => ShardRunner): DraftRunnerCache {
  /**
   * The draft runner (the whole model at the draft's format, in this tab), kept across answers for
   * the model it was loaded for: a second answer downloads and compiles nothing.
   */
  let draftHeld: { key: string; runner: Promise<ShardRunner> } | undefined;
  const draftRunner = async (
    m: ModelDescriptor,
    d: DraftSetting,
    signal: AbortSignal,
  ): Promise<ShardRunner> => {
    const key = `${m.url}|${d.format}|${m.contextLength}`;
    if (draftHeld?.key !== key) {
      const old = draftHeld;
      draftHeld = undefined;
      if (old) void old.runner.then((r) => r.dispose()).catch(() => undefined);
      const runner = createRunner();
      const loading = runner
        .load(
          {
            model: { url: m.url, tokenizerUrl: m.tokenizerUrl },
            range: [0, m.units],
            weightFormat: d.format,
            contextLength: m.contextLength,
            logits: 'last',
            backend: 'auto',
          },
          { signal },
        )
        .then(() => runner);
      const held = { key, runner: loading };
      draftHeld = held;
      loading.catch(() => {
        if (draftHeld === held) draftHeld = undefined;
        void runner.dispose().catch(() => undefined);
      });
    }
    return draftHeld.runner;
  };

  return {
    get: draftRunner,
    async dispose() {
      const held = draftHeld;
      draftHeld = undefined;
      await held?.runner.then((r) => r.dispose()).catch(() => undefined);
    },
  };
}
