/**
 * The tab's two logic objects — its contributor and its requester — built once with the browser's
 * parts: the WebRTC network, the Web Worker shard runner, the device profiler, HTTP tokenizer
 * loading and sessionStorage for the chat history. React pages only bind to their stores. The chat
 * sends through the browser SDK's ring transport (web/src/sdk), the same client other pages use.
 */
import { createChatSession } from '../../../shared/app/chat-session';
import { capabilityFrom, createContributor } from '../../../shared/app/contributor';
import { createRequester } from '../../../shared/app/requester';
import type { ModelDescriptor } from '../../../shared/protocol/signaling';
import type { Tokenizer } from '../../../shared/tokenizer/types';
import { createHttpFileOpener } from '../../../shared/model/http-source';
import { openModelLocation } from '../../../shared/model/open-model';
import { createWorkerShardRunner, DEFAULT_WARM_UP_MS } from '../engine/worker-shard-runner';
import { createProfilerClient } from '../profiler/profiler-client';
import { enablePerfTrace } from '../../../shared/util/perf-trace';
import { testTamper } from '../../../shared/validation/test-tampers';
import { createRingworkClient } from '../sdk/ringwork';
import { getNetwork } from './network';
import { useNetworkView } from './store';
import { consoleLogger, requireTestModeServer, toolingFromUrl } from './tooling';

const tooling = toolingFromUrl();
if (tooling.perf) enablePerfTrace();

/** This tab as a contributor. */
export const contributor = createContributor({
  network: getNetwork,
  // The Contribute page shows the stage's counters: a few times a second is live enough, and each
  // delivery re-renders it and composites a frame on the cores the stage computes on.
  statsEveryMs: 250,
  ...(tooling.log ? { logger: consoleLogger('contributor') } : {}),
  createRunner: () =>
    createWorkerShardRunner({
      ...(tooling.nullCompute
        ? { nullCompute: { allowed: () => requireTestModeServer('null compute') } }
        : {}),
      ...(tooling.threads !== undefined ? { threads: tooling.threads } : {}),
      // Served tokens run on optimized wasm from the first one (engine/worker-shard-runner.ts).
      warmUpMs: tooling.warmUpMs ?? DEFAULT_WARM_UP_MS,
    }),
  ...(tooling.tamper !== undefined
    ? {
        testTamper: async () => {
          await requireTestModeServer('validation tamper');
          return testTamper(tooling.tamper!);
        },
      }
    : {}),
  measure: async (signal) => {
    const profiler = createProfilerClient();
    try {
      const profile = await profiler.profile({ serverUrl: location.origin, signal });
      return { profile, capability: capabilityFrom(profile) };
    } finally {
      profiler.dispose();
    }
  },
});

/** Tokenizers by model URL, shared by the chat form's prompt check and the requester. */
const tokenizers = new Map<string, Promise<Tokenizer>>();
function openTokenizer(m: ModelDescriptor): Promise<Tokenizer> {
  let t = tokenizers.get(m.url);
  if (!t) {
    t = openModelLocation({ url: m.url, tokenizerUrl: m.tokenizerUrl }, (root) =>
      createHttpFileOpener(new URL(root, location.href).href),
    ).then((o) => o.loadTokenizer());
    t.catch(() => tokenizers.delete(m.url));
    tokenizers.set(m.url, t);
  }
  return t;
}

/**
 * Memory this tab may use to run a whole model itself (no ring, or a draft): a quarter of the
 * device's memory (the Device Memory API; 4 GB where it is missing).
 */
export function localMemoryBytes(): number {
  return ((navigator as { deviceMemory?: number }).deviceMemory ?? 4) * 2 ** 30 * 0.25;
}

/** This tab as a requester (chat). History is kept in the tab: a reload keeps it, another tab does not. */
export const requester = createRequester({
  // The chat sends through the browser SDK's ring transport, as any other page can.
  client: (ring) => createRingworkClient({ server: location.origin, transport: 'ring', requester: ring }),
  network: getNetwork,
  ...(tooling.log ? { logger: consoleLogger('requester') } : {}),
  createRunner: createWorkerShardRunner,
  openTokenizer,
  localStageLink: () => contributor.localStageLink(),
  existingLink: (peer) => contributor.openLink(peer),
  localMemoryBytes,
  storage: sessionStorage,
  ...(tooling.loop ? {} : { loop: false }),
});

/**
 * The chat as the tab holds it (draft, fields as typed, prompt checks). It outlives the Chat page:
 * an answer keeps streaming while the person looks at Network or Contribute; only Stop stops it.
 */
export const chatSession = createChatSession({
  requester,
  tokenizer: openTokenizer,
  // Before the first question the requester has asked no ring yet; the Network poll knows the model.
  contextLength: (model) =>
    useNetworkView.getState().snapshot?.models.find((m) => m.id === model)?.contextLength,
});
