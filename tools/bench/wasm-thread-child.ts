/**
 * Child-process entry of the engine benchmark's multi-threaded wasm variant (see
 * `loadWasmChildVariant`). onnxruntime-web reads `env.wasm.numThreads` once, when its wasm module
 * starts, so a second thread count needs a second process. Answers one IPC request at a time.
 */
import { nodeOrt } from '../../signaling-server/src/model/open-node-model.js';
import {
  loadInProcessVariant,
  type BenchVariant,
  type ChildReply,
  type ChildRequest,
  type VariantRun,
} from './variants.js';

let variant: BenchVariant | undefined;
const runs = new Map<number, VariantRun>();

function runOf(id: number): VariantRun {
  const r = runs.get(id);
  if (!r) throw new Error(`no generation run ${id}`);
  return r;
}

async function handle(req: ChildRequest): Promise<unknown> {
  switch (req.type) {
    case 'load':
      variant = await loadInProcessVariant({ ...req, ort: nodeOrt(req.threads) });
      return { weightBytes: variant.weightBytes, loadMs: variant.loadMs };
    case 'start':
      if (!variant) throw new Error('start before load');
      runs.set(req.run, await variant.start(req.settings));
      return null;
    case 'prefill':
      return runOf(req.run).prefill();
    case 'decode':
      return runOf(req.run).decode(req.steps);
    case 'tokens':
      return runOf(req.run).tokens();
    case 'close':
      await runOf(req.run).close();
      runs.delete(req.run);
      return null;
    case 'dispose':
      await variant?.dispose();
      variant = undefined;
      return null;
  }
}

process.on('message', (req: ChildRequest) => {
  handle(req).then(
    (value) => process.send?.({ ok: true, value } satisfies ChildReply),
    (e: unknown) =>
      process.send?.({ ok: false, message: e instanceof Error ? e.message : String(e) } satisfies ChildReply),
  );
});

// The parent going away (Ctrl-C, crash, dispose) must not leave an orphan spinning wasm threads.
process.on('disconnect', () => process.exit(0));
