/**
 * Chatting from a tab: ask the coordinator which ring serves the model, connect to its first stage
 * (which embeds the token ids) and its head (which samples), and drive the same `generate` loop the
 * CLI uses — so the ring's tokens equal a single device's. The tab tokenizes and detokenizes; the
 * ring's stages run the embedding, blocks and head as the planner placed them. With no ring, a tab
 * runs the whole model itself when it fits.
 */
import { RingworkError } from '../../../shared/errors';
import { createHttpFileOpener } from '../../../shared/model/http-source';
import { isLlama2cLocation, openModelLocation } from '../../../shared/model/open-model';
import type { ModelDescriptor, ServerMessageOf } from '../../../shared/protocol/signaling';
import { createRemotePipeline } from '../../../shared/ring/remote-pipeline';
import { isRetryableRingError } from '../../../shared/ring/retry';
import { generate, type GenerateResult } from '../../../shared/runtime/generate';
import { createPipeline, type Pipeline } from '../../../shared/runtime/pipeline';
import { createSampler } from '../../../shared/runtime/sampler';
import type { Tokenizer } from '../../../shared/tokenizer/types';
import type { PeerLink } from '../../../shared/transport/types';
import { createWorkerShardRunner } from '../engine/worker-shard-runner';
import { localStageLink } from './contributor';
import { getNetwork, type TabNetwork } from './network';
import type { ChatMessage, ChatSettings, NetworkSnapshot } from './store';

const tokenizers = new Map<string, Promise<Tokenizer>>();
function tokenizerFor(m: ModelDescriptor): Promise<Tokenizer> {
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

/** Links to ring stages, reused across requests while open. */
const stageLinks = new Map<string, PeerLink>();
async function linkTo(net: TabNetwork, peer: string): Promise<PeerLink> {
  if (peer === net.peerId) {
    const self = localStageLink();
    if (!self)
      throw new RingworkError(
        'NO_RING',
        'This tab is in the ring but is not serving its stage yet; try again in a moment.',
      );
    return self;
  }
  const open = stageLinks.get(peer);
  if (open?.isOpen) return open;
  const link = await net.transport.connect(peer, { timeoutMs: 15_000 });
  stageLinks.set(peer, link);
  link.onClose(() => stageLinks.get(peer) === link && stageLinks.delete(peer));
  return link;
}

function requestRing(
  net: TabNetwork,
  model: string,
): Promise<ServerMessageOf<'ring'> | ServerMessageOf<'no-ring'>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      offs.forEach((f) => f());
      reject(
        new RingworkError(
          'SIGNALING_COORDINATOR_TIMEOUT',
          'The coordinator did not answer the ring request within 10 s.',
        ),
      );
    }, 10_000);
    const done = (m: ServerMessageOf<'ring'> | ServerMessageOf<'no-ring'>) => {
      clearTimeout(timer);
      offs.forEach((f) => f());
      resolve(m);
    };
    const offs = [
      net.client.on('ring', (m) => m.model.id === model && done(m)),
      net.client.on('no-ring', (m) => m.model === model && done(m)),
    ];
    net.client.send({ type: 'ring-request', model });
  });
}

/** What one answer cost, for the chat's stats line. */
export interface AnswerStats {
  prefillTokPerS: number;
  decodeTokPerS: number;
  peers: string[];
  local: boolean;
  computeMsPerToken: number;
  hopMsPerToken: number;
}

export interface AskOptions {
  settings: ChatSettings;
  /** The conversation so far, ending with the user's new message. */
  history: ChatMessage[];
  signal: AbortSignal;
  /** Called with the full text of the answer so far, as tokens stream in. */
  onText: (text: string) => void;
  /** Memory this tab may use to run a model alone, bytes. */
  localMemoryBytes?: number;
}

/**
 * Answers the last user message. Chat models get their chat template over the whole history;
 * completion models (like the TinyStories checkpoints) continue the prompt and show it, as
 * llama2.c's `run` prints it.
 */
export async function ask(
  o: AskOptions,
): Promise<{ text: string; stats: AnswerStats; result: GenerateResult }> {
  // Right after a re-plan the coordinator may announce a ring whose stages are still loading their
  // shards (they refuse the new epoch until then), or a link may still be connecting. Until the
  // first token has streamed, such a request is retried for a few seconds; after that a failure is
  // the person's to see (and the next request works on the re-planned ring).
  const deadline = performance.now() + 20_000;
  for (let attempt = 0; ; attempt++) {
    let streamed = false;
    try {
      return await askOnce({ ...o, onText: (t) => ((streamed = true), o.onText(t)) });
    } catch (e) {
      const retryable =
        !streamed && !o.signal.aborted && performance.now() < deadline && isRetryableRingError(e);
      if (!retryable) throw e;
      await new Promise((r) => setTimeout(r, Math.min(2000, 250 * 2 ** attempt)));
    }
  }
}

async function askOnce(o: AskOptions): Promise<{ text: string; stats: AnswerStats; result: GenerateResult }> {
  const net = await getNetwork();
  const answer = await requestRing(net, o.settings.model);
  let model: ModelDescriptor;
  let pipeline: Pipeline;
  let peers: string[];
  let local = false;
  let release = async () => {};
  const seed = Math.floor(Math.random() * 2 ** 31) + 1;
  if (answer.type === 'ring') {
    model = answer.model;
    const stages = answer.stages;
    const first = await linkTo(net, stages[0]!.peer);
    const head = stages.length === 1 ? first : await linkTo(net, stages[stages.length - 1]!.peer);
    pipeline = createRemotePipeline({
      requesterId: net.peerId,
      epoch: answer.epoch,
      first,
      head,
      sampler: { temperature: o.settings.temperature, topP: o.settings.topP, topK: 0, seed },
    });
    peers = stages.map((s) => s.peer);
  } else {
    // No ring: run the whole model in this tab when it fits.
    const snap = (await (await fetch('/api/network')).json()) as NetworkSnapshot;
    const entry = snap.models.find((m) => m.id === o.settings.model);
    const budget =
      o.localMemoryBytes ?? ((navigator as { deviceMemory?: number }).deviceMemory ?? 4) * 2 ** 30 * 0.25;
    if (!entry?.descriptor || entry.totalBytes > budget) {
      const missing = answer.missingBytes ?? (entry ? entry.totalBytes - budget : undefined);
      throw new RingworkError(
        'NO_RING',
        missing !== undefined && missing > 0
          ? `No ring can serve ${o.settings.model} yet: ${(missing / 1e9).toFixed(2)} GB more peer memory is needed. Open more contributor tabs or invite peers.`
          : `No ring can serve ${o.settings.model} yet: ${answer.reason}`,
        { details: { model: o.settings.model, missingBytes: missing } },
      );
    }
    model = entry.descriptor;
    const runner = createWorkerShardRunner();
    await runner.load({
      model: { url: model.url, tokenizerUrl: model.tokenizerUrl },
      range: [0, model.units],
      weightFormat: model.weightFormat,
      contextLength: model.contextLength,
      logits: 'last',
      backend: 'auto',
    });
    pipeline = createPipeline([runner]);
    release = () => runner.dispose();
    peers = [net.peerId];
    local = true;
  }
  try {
    const tokenizer = await tokenizerFor(model);
    const last = o.history[o.history.length - 1]!;
    const chat = tokenizer.applyChatTemplate !== undefined && !isLlama2cLocation(model.url);
    const prompt = chat
      ? tokenizer.encode(
          tokenizer.applyChatTemplate!(
            o.history.filter((m) => !m.meta?.error).map((m) => ({ role: m.role, content: m.text })),
            { addGenerationPrompt: true },
          ),
        )
      : tokenizer.encode(last.text, { bos: true });
    const steps = Math.min(model.contextLength, prompt.length - 1 + o.settings.maxTokens);
    let text = '';
    let compute = 0;
    let wall = 0;
    let decodeSteps = 0;
    const result = await generate({
      pipeline,
      tokenizer,
      prompt,
      steps,
      sampler: createSampler({ temperature: o.settings.temperature, topP: o.settings.topP, seed }),
      stopTokens: isLlama2cLocation(model.url) ? [] : undefined,
      signal: o.signal,
      onToken: (e) => {
        // Chat models show only the answer; completion models show the story as printed.
        if (chat && e.position < prompt.length) return;
        text += e.piece;
        o.onText(text);
      },
      onStep: (e) => {
        if (e.tokens !== 1) return;
        decodeSteps++;
        compute += e.timing.stageMs.reduce((a, b) => a + b, 0);
        wall += e.timing.totalMs;
      },
    });
    return {
      text,
      result,
      stats: {
        prefillTokPerS: result.timings.prefillTokPerS,
        decodeTokPerS: result.timings.decodeTokPerS,
        peers,
        local,
        computeMsPerToken: decodeSteps ? compute / decodeSteps : 0,
        hopMsPerToken: decodeSteps ? Math.max(0, wall - compute) / decodeSteps : 0,
      },
    };
  } finally {
    await release();
  }
}
