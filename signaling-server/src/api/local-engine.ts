/**
 * The server's own engine (`--api-local-fallback`): a worker thread that runs whole models when no
 * ring serves them. Started on first use; a worker that dies fails its requests with a typed error
 * and the next request starts a fresh one.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { RingworkError } from '../../../shared/errors.js';
import {
  engineReplySchema,
  type EngineInput,
  type EngineReply,
  type EngineRequest,
} from './local-engine-protocol.js';

/** One generation's request, as the API resolved it. */
export interface LocalGenerateRequest {
  model: { url: string; tokenizerUrl?: string };
  contextLength: number;
  llama2c: boolean;
  input: EngineInput;
  maxTokens: number | null;
  temperature: number;
  topP: number;
  seed: number;
}

/** Streams of one generation. */
export interface LocalGenerateHandlers {
  signal: AbortSignal;
  onStarted?(promptTokens: number): void;
  onToken(token: number, piece: string): void;
}

/** How a generation ended. */
export interface LocalGenerateResult {
  stop: 'steps' | 'bos' | 'eos';
  promptTokens: number;
  completionTokens: number;
}

/** The local engine. */
export interface LocalEngine {
  generate(req: LocalGenerateRequest, h: LocalGenerateHandlers): Promise<LocalGenerateResult>;
  /** Terminates the worker; safe twice. */
  stop(): Promise<void>;
}

interface Pending {
  h: LocalGenerateHandlers;
  resolve(r: LocalGenerateResult): void;
  reject(e: unknown): void;
}

/**
 * The worker is TypeScript, like the server: a one-line ES module registers tsx's loader in the new
 * thread (loader hooks of the main thread do not reach workers on Node 20), then imports it.
 */
const WORKER_BOOT = new URL(
  'data:text/javascript,' +
    encodeURIComponent(
      `import { register } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))};\n` +
        `register();\n` +
        `await import(${JSON.stringify(new URL('./local-engine.worker.ts', import.meta.url).href)});\n`,
    ),
);

/** Creates the engine; no thread starts until the first request. */
export function createLocalEngine(opts: { logger: Logger }): LocalEngine {
  let worker: Worker | null = null;
  let nextId = 1;
  const pending = new Map<number, Pending>();

  const failAll = (e: RingworkError): void => {
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  };

  const onReply = (raw: unknown): void => {
    const parsed = engineReplySchema.safeParse(raw);
    if (!parsed.success) {
      opts.logger.error({ issues: parsed.error.issues }, 'local engine sent a malformed reply');
      return;
    }
    const m: EngineReply = parsed.data;
    const p = pending.get(m.id);
    if (!p) return;
    switch (m.type) {
      case 'started':
        p.h.onStarted?.(m.promptTokens);
        return;
      case 'token':
        p.h.onToken(m.token, m.piece);
        return;
      case 'done':
        pending.delete(m.id);
        p.resolve({ stop: m.stop, promptTokens: m.promptTokens, completionTokens: m.completionTokens });
        return;
      case 'error':
        pending.delete(m.id);
        p.reject(RingworkError.fromJSON(m.error));
        return;
    }
  };

  const ensureWorker = (): Worker => {
    if (worker) return worker;
    const w = new Worker(WORKER_BOOT);
    w.on('message', onReply);
    w.on('error', (e) => {
      opts.logger.error({ err: e }, 'local engine worker failed');
      failAll(new RingworkError('RUNNER_BACKEND_FAILED', 'The server engine failed; retry.', { cause: e }));
    });
    w.on('exit', (code) => {
      if (worker === w) worker = null;
      if (pending.size > 0)
        failAll(new RingworkError('RUNNER_BACKEND_FAILED', `The server engine exited (${code}); retry.`));
    });
    w.unref();
    worker = w;
    return w;
  };

  return {
    generate(req, h) {
      return new Promise<LocalGenerateResult>((resolve, reject) => {
        if (h.signal.aborted) return reject(new RingworkError('ABORTED', 'The request was aborted.'));
        const id = nextId++;
        const w = ensureWorker();
        pending.set(id, { h, resolve, reject });
        const msg: EngineRequest = { type: 'generate', id, ...req };
        w.postMessage(msg);
        h.signal.addEventListener(
          'abort',
          () => {
            if (!pending.has(id)) return;
            const abort: EngineRequest = { type: 'abort', id };
            w.postMessage(abort);
          },
          { once: true },
        );
      });
    },
    async stop() {
      const w = worker;
      worker = null;
      failAll(new RingworkError('ABORTED', 'The server is stopping.'));
      if (w) await w.terminate();
    },
  };
}
