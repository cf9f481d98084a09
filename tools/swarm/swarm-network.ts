/**
 * What a swarm run asks its server and its model over HTTP, and how it reads the chat page's stats
 * line: the ring planned, the profiles and standbys, the prompt's token count and the per-unit
 * bytes the planner sees (tools/swarm/swarm-run.ts).
 */
import { RingworkError } from '../../shared/errors.js';
import { isLlama2cLocation, openModelLocation } from '../../shared/model/open-model.js';
import { profileModel } from '../../shared/model/profile.js';
import type { ModelDescriptor } from '../../shared/protocol/signaling.js';
import { nodeOpenerFor } from '../../signaling-server/src/model/open-node-model.js';
import type { NetworkSnapshot } from '../../signaling-server/src/network-snapshot.js';
import { peerLine, snapshot } from './swarm-trace.js';
import type { SwarmResult, SwarmStage, SwarmTimings } from './swarm-types.js';

/** Splits `--model`: `id=path`, or a path/URL whose last segment (no extension) is the id. */
export function parseModelArg(spec: string): { id: string; path: string } {
  const eq = spec.indexOf('=');
  // A URL may hold '=' in its query: only a prefix without '/' or ':' is an id.
  if (eq > 0 && !/[/:]/.test(spec.slice(0, eq))) return { id: spec.slice(0, eq), path: spec.slice(eq + 1) };
  const last =
    spec
      .replace(/[/\\]+$/, '')
      .split(/[/\\]/)
      .pop() ?? '';
  const id = last.replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9._-]/g, '_');
  if (!/^[A-Za-z0-9]/.test(id)) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `Cannot name a model id after "${spec}": pass --model <id>=<path>.`,
    );
  }
  return { id, path: spec };
}

/**
 * The coordinator's speed figures for a model, once the requester's `ring-lap` has arrived (it is
 * sent right after the answer; a few polls at most). Undefined when the server has no ring for it.
 */
export async function speedFigures(url: string, model: string): Promise<SwarmResult['speed']> {
  let m: NetworkSnapshot['models'][number] | undefined;
  for (let i = 0; i < 20; i++) {
    m = (await snapshot(url)).models.find((x) => x.id === model);
    if (!m || m.observedTokensPerSecond) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!m) return undefined;
  return {
    plannedTokPerS: m.predictedTokensPerSecond,
    pipelinedTokPerS: m.pipelinedTokensPerSecond ?? null,
    observedTokPerS: m.observedTokensPerSecond ?? null,
  };
}

/** Polls until `n` peers have sent their capability profile. */
export async function waitForProfiles(url: string, n: number, deadline: number): Promise<void> {
  for (;;) {
    const seen = Object.keys((await snapshot(url)).profiles).length;
    if (seen >= n) return;
    if (Date.now() > deadline)
      throw new RingworkError('NO_RING', `Only ${seen} of ${n} contributor pages joined in time.`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Polls until the model's ring has `n` stages, each loaded and ready for the ring's epoch. */
export async function waitForRing(
  url: string,
  model: string,
  n: number,
  deadline: number,
): Promise<SwarmStage[]> {
  for (;;) {
    const snap = await snapshot(url);
    const ring = snap.rings.find((r) => r.model === model);
    if (ring && ring.stages.length === n) {
      const ready = ring.stages.every((s) => {
        const st = snap.peers.find((p) => p.id === s.peer)?.status;
        return st?.state === 'ready' && st.epoch === ring.epoch;
      });
      if (ready) return ring.stages.map((s) => ({ peer: s.peer, range: s.range }));
    }
    const m = snap.models.find((x) => x.id === model);
    const last =
      `ring: ${ring ? `${ring.stages.length} stages` : 'none'}` +
      (m?.noRing ? ` (${m.noRing.reason})` : '') +
      `; peers: ${snap.peers.map((p) => `${p.id.slice(0, 8)} ${p.status?.state ?? p.assignment?.kind ?? '-'}`).join(', ')}`;
    if (Date.now() > deadline) {
      throw new RingworkError(
        'NO_RING',
        `No ring of ${n} ready stages for ${model} in time; last seen ${last}.`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Waits until every stage of the model's ring has a standby replica holding exactly its units,
 * loaded (`ready`). Returns the standbys' peer ids.
 */
export async function waitForStandbys(url: string, model: string, deadline: number): Promise<Set<string>> {
  for (;;) {
    const snap = await snapshot(url);
    const ring = snap.rings.find((r) => r.model === model);
    const ready = snap.peers.filter(
      (p) =>
        p.assignment?.kind === 'standby' &&
        p.assignment.model === model &&
        p.status?.state === 'ready' &&
        p.status.epoch >= p.assignment.epoch,
    );
    const covered = (range: [number, number]) =>
      ready.some(
        (p) =>
          p.assignment?.kind === 'standby' &&
          p.assignment.range[0] === range[0] &&
          p.assignment.range[1] === range[1],
      );
    if (ring && ring.stages.every((s) => covered(s.range))) return new Set(ready.map((p) => p.id));
    if (Date.now() > deadline) {
      throw new RingworkError(
        'NO_RING',
        `Not every stage of ${model}'s ring got a loaded standby in time; ring: ${
          ring?.stages.map((s) => `${s.peer.slice(0, 8)} [${s.range[0]}, ${s.range[1]})`).join(' → ') ??
          'none'
        }; contributors: ${snap.peers
          .filter((p) => p.roles.includes('contributor'))
          .map((p) => `${p.id.slice(0, 8)} ${peerLine(p)}`)
          .join('; ')}.`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Prompt tokens as the requester page counts them (same tokenizer, same chat-or-completion rule as
 * shared/app/requester.ts), read over HTTP from the URLs the server gives the browsers.
 */
export async function countPromptTokens(url: string, d: ModelDescriptor, prompt: string): Promise<number> {
  const abs = (u: string) => new URL(u, url).href;
  const opened = await openModelLocation(
    { url: abs(d.url), ...(d.tokenizerUrl ? { tokenizerUrl: abs(d.tokenizerUrl) } : {}) },
    nodeOpenerFor,
  );
  const tok = await opened.loadTokenizer();
  const chat = tok.applyChatTemplate !== undefined && !isLlama2cLocation(d.url);
  return chat
    ? tok.encode(tok.applyChatTemplate!([{ role: 'user', content: prompt }], { addGenerationPrompt: true }))
        .length
    : tok.encode(prompt, { bos: true }).length;
}

/** Per-unit weight and KV bytes, as the catalog profiles the model for the planner. */
export async function unitBytes(
  url: string,
  d: ModelDescriptor,
): Promise<Array<{ weight: number; kv: number }>> {
  const abs = (u: string) => new URL(u, url).href;
  const opened = await openModelLocation(
    { url: abs(d.url), ...(d.tokenizerUrl ? { tokenizerUrl: abs(d.tokenizerUrl) } : {}) },
    nodeOpenerFor,
  );
  const profile = profileModel(d.id, opened.source.config, {
    format: d.weightFormat,
    contextTokens: d.contextLength,
  });
  return profile.layers.map((l) => ({ weight: l.weightBytes, kv: l.kvBytesPerToken * d.contextLength }));
}

const META =
  /prefill ([\d.]+|—) tok\/s · decode ([\d.]+|—) tok\/s · per token ([\d.]+|—) ms compute \+ ([\d.]+|—) ms hops/;

/** Parses the chat's stats line ("prefill X tok/s · decode Y tok/s · per token A ms compute + B ms hops"). */
export function parseAnswerMeta(meta: string): SwarmTimings {
  const m = META.exec(meta);
  if (!m) throw new RingworkError('SERVER_INTERNAL', `Unexpected answer stats line: "${meta}".`);
  const n = (s: string) => (s === '—' ? NaN : Number(s));
  return {
    prefillTokPerS: n(m[1]!),
    decodeTokPerS: n(m[2]!),
    computeMsPerToken: n(m[3]!),
    hopMsPerToken: n(m[4]!),
  };
}
