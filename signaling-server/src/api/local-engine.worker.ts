/**
 * The local engine's worker thread: loads models in-process (onnxruntime-web's wasm, one thread)
 * and runs one generation at a time, streaming tokens to the server's event loop. Running here, the
 * wasm never blocks heartbeats, relays or other HTTP requests.
 */
import { parentPort } from 'node:worker_threads';
import { RingworkError, toRingworkError } from '../../../shared/errors.js';
import { generate } from '../../../shared/runtime/generate.js';
import { createSampler } from '../../../shared/runtime/sampler.js';
import { loadLocalPipeline, type LocalPipeline } from '../model/local-pipeline.js';
import { nodeOrt } from '../model/open-node-model.js';
import { engineRequestSchema, type EngineReply, type EngineRequest } from './local-engine-protocol.js';

const port = parentPort;
if (!port) throw new Error('local-engine.worker.ts runs as a worker thread');

const ort = nodeOrt(1);
/** Loaded models by location; at most two kept (the API serves few models). */
const loaded = new Map<string, Promise<LocalPipeline>>();
const aborts = new Map<number, AbortController>();
let queue: Promise<void> = Promise.resolve();

const post = (m: EngineReply): void => port.postMessage(m);

function pipelineFor(req: Extract<EngineRequest, { type: 'generate' }>): Promise<LocalPipeline> {
  const key = `${req.model.url}\n${req.model.tokenizerUrl ?? ''}\n${req.contextLength}`;
  let p = loaded.get(key);
  if (!p) {
    if (loaded.size >= 2) {
      const [oldKey, old] = loaded.entries().next().value as [string, Promise<LocalPipeline>];
      loaded.delete(oldKey);
      void old.then((l) => l.dispose()).catch(() => undefined);
    }
    p = loadLocalPipeline({ model: req.model, contextLength: req.contextLength, ort });
    p.catch(() => loaded.delete(key));
    loaded.set(key, p);
  }
  return p;
}

/** A validated request: the prompt encoded and checked against the context. */
interface Prepared {
  local: LocalPipeline;
  prompt: number[];
  maxTokens: number;
}

/**
 * Loads the model (once), encodes and checks the prompt, and says `started` — at once, not after
 * the generations queued before it, so a client learns about a bad request (or that it is accepted)
 * without waiting its turn.
 */
async function prepare(req: Extract<EngineRequest, { type: 'generate' }>): Promise<Prepared> {
  const local = await pipelineFor(req);
  const tok = local.tokenizer;
  let prompt: number[];
  if (req.input.kind === 'chat' && tok.applyChatTemplate) {
    prompt = tok.encode(tok.applyChatTemplate(req.input.messages, { addGenerationPrompt: true }));
  } else {
    // A model without a chat template continues the messages' text (TinyStories is a story model).
    const text =
      req.input.kind === 'text' ? req.input.text : req.input.messages.map((m) => m.content).join('\n');
    prompt = tok.encode(text, { bos: true });
  }
  // llama2.c's loop: the last prompt position samples the first new token, and the token sampled
  // at the last position is never run, so N new tokens need prompt + N - 1 positions.
  const room = req.contextLength - prompt.length + 1;
  if (room < 1 || (req.maxTokens !== null && req.maxTokens > room)) {
    throw new RingworkError(
      'API_CONTEXT_EXCEEDED',
      `The prompt is ${prompt.length} tokens and this model's context is ${req.contextLength}: ` +
        (room < 1 ? 'shorten the prompt.' : `max_tokens may be at most ${room}.`),
      { details: { param: 'max_tokens', promptTokens: prompt.length, contextLength: req.contextLength } },
    );
  }
  post({ type: 'started', id: req.id, promptTokens: prompt.length });
  return { local, prompt, maxTokens: req.maxTokens ?? room };
}

async function run(
  req: Extract<EngineRequest, { type: 'generate' }>,
  { local, prompt, maxTokens }: Prepared,
  signal: AbortSignal,
): Promise<void> {
  let completion = 0;
  const result = await generate({
    pipeline: local.pipeline,
    tokenizer: local.tokenizer,
    prompt,
    steps: prompt.length + maxTokens - 1,
    sampler: createSampler({ temperature: req.temperature, topP: req.topP, topK: 0, seed: req.seed }),
    stopTokens: req.llama2c ? [] : undefined,
    signal,
    onToken: (e) => {
      if (e.position < prompt.length) return; // the prompt, printed as llama2.c does: not an answer
      completion++;
      post({ type: 'token', id: req.id, token: e.token, piece: e.piece });
    },
  });
  post({
    type: 'done',
    id: req.id,
    stop: result.stop,
    promptTokens: prompt.length,
    completionTokens: completion,
  });
}

port.on('message', (raw: unknown) => {
  const parsed = engineRequestSchema.safeParse(raw);
  if (!parsed.success) return;
  const req = parsed.data;
  if (req.type === 'abort') {
    aborts.get(req.id)?.abort(new RingworkError('ABORTED', 'The client went away.'));
    return;
  }
  const ctl = new AbortController();
  aborts.set(req.id, ctl);
  const prepared = prepare(req);
  prepared.catch(() => undefined); // reported below, in queue order
  // One generation at a time: ORT's wasm runs one inference per session at once, and queued
  // requests keep their server-side stream slot, so the queue is bounded by the stream cap.
  queue = queue.then(async () => {
    try {
      const p = await prepared;
      ctl.signal.throwIfAborted();
      await run(req, p, ctl.signal);
    } catch (e) {
      post({ type: 'error', id: req.id, error: toRingworkError(e, 'RUNNER_BACKEND_FAILED').toJSON() });
    } finally {
      aborts.delete(req.id);
    }
  });
});
