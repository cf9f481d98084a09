import { resolve } from 'node:path';
import * as ort from 'onnxruntime-web';
import { createHttpFileOpener } from '../../../shared/model/http-source.js';
import { openModelLocation, type ModelLocation, type OpenedModel } from '../../../shared/model/open-model.js';
import type { FileOpener } from '../../../shared/model/types.js';
import { createOrtShardRunner, type OrtModule } from '../../../shared/runtime/ort-shard-runner.js';
import type { ShardRunner } from '../../../shared/runtime/shard-runner.js';
import { createNodeFileOpener } from './file-source.js';

/** True for http(s) URLs; anything else is a local path. */
export function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/** A FileOpener for a local directory or an http(s) base URL. */
export function nodeOpenerFor(root: string): FileOpener {
  return isUrl(root) ? createHttpFileOpener(root) : createNodeFileOpener(resolve(root));
}

/** Opens a model from a local path or URL (llama2.c `.bin` or a Hugging Face directory). */
export function openNodeModel(loc: ModelLocation, signal?: AbortSignal): Promise<OpenedModel> {
  return openModelLocation(loc, nodeOpenerFor, signal);
}

let configured = false;
/** onnxruntime-web's wasm backend in Node; threads default to 1 so runs are reproducible. */
export function nodeOrt(threads = 1): OrtModule {
  if (!configured) {
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = 'error';
    configured = true;
  }
  return ort;
}

/** An in-process shard runner for Node (onnxruntime-web wasm, or another ORT module such as onnxruntime-node). */
export function createNodeShardRunner(opts: { ort?: OrtModule } = {}): ShardRunner {
  return createOrtShardRunner({
    ort: opts.ort ?? nodeOrt(),
    openModel: async (ref, signal) => (await openNodeModel(ref, signal)).source,
    probeWebGpu: async () => ({
      ok: false,
      reason: 'Node has no WebGPU; using onnxruntime wasm on the CPU.',
    }),
  });
}
