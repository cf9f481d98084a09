/**
 * The tab's two logic objects — its contributor and its requester — built once with the browser's
 * parts: the WebRTC network, the Web Worker shard runner, the device profiler, HTTP tokenizer
 * loading and sessionStorage for the chat history. React pages only bind to their stores.
 */
import { capabilityFrom, createContributor } from '../../../shared/app/contributor';
import { createRequester } from '../../../shared/app/requester';
import { createHttpFileOpener } from '../../../shared/model/http-source';
import { openModelLocation } from '../../../shared/model/open-model';
import { createWorkerShardRunner } from '../engine/worker-shard-runner';
import { createProfilerClient } from '../profiler/profiler-client';
import { getNetwork } from './network';

/** This tab as a contributor. */
export const contributor = createContributor({
  network: getNetwork,
  createRunner: createWorkerShardRunner,
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

/** This tab as a requester (chat). History is kept in the tab: a reload keeps it, another tab does not. */
export const requester = createRequester({
  network: getNetwork,
  createRunner: createWorkerShardRunner,
  openTokenizer: (m) =>
    openModelLocation({ url: m.url, tokenizerUrl: m.tokenizerUrl }, (root) =>
      createHttpFileOpener(new URL(root, location.href).href),
    ).then((o) => o.loadTokenizer()),
  localStageLink: () => contributor.localStageLink(),
  existingLink: (peer) => contributor.openLink(peer),
  // A quarter of the device's memory (the Device Memory API; 4 GB where it is missing).
  localMemoryBytes: () => ((navigator as { deviceMemory?: number }).deviceMemory ?? 4) * 2 ** 30 * 0.25,
  storage: sessionStorage,
});
