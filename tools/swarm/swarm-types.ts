/**
 * The shapes of one swarm run (tools/swarm/swarm-run.ts): what it is asked to do and what it
 * reports — answers, timings, memory, failovers, hot-path timings. `npm run swarm`,
 * `npm run bench:swarm` and `bench:churn` read them.
 */
import type { AnswerSpeculative } from '../../shared/app/chat-history.js';
import type { PerfStat } from '../../shared/util/perf-trace.js';
import type { CpuReport } from './process-cpu.js';
import type { TracePageSummary } from './chrome-trace.js';

/** The embedded model every server offers (catalog.ts). */
export const DEFAULT_SWARM_MODEL = 'stories260K';

/** What one swarm run does. */
export interface SwarmOptions {
  /** Contributor pages; their declared memory makes the planner split the model over all of them. */
  peers: number;
  prompt: string;
  /** Total positions, BOS and prompt included (llama2.c's `-n`). */
  steps: number;
  temperature: number;
  /** `id=path` or a path/URL (id = its last path segment without extension); default: the embedded model. */
  model?: string;
  /** Overrides the "Max new tokens" worked out from `steps`. */
  maxNewTokens?: number;
  /** Also measure each contributor page's memory. */
  measureMemory?: boolean;
  /**
   * Tooling: the contributor pages load their shards but never run them (`nullCompute=1`, see
   * shared/runtime/null-compute-runner.ts): the answer is meaningless text, its timings are the
   * ring's protocol cost alone. The spawned server is in test mode, the only place pages allow it.
   */
  nullCompute?: boolean;
  /** ONNX Runtime wasm threads of every contributor page (`threads=N`; default: the page's own). */
  threads?: number;
  /** Engine warm-up of every contributor page after its first load, ms (`warmup=MS`; default: the page's own). */
  warmUpMs?: number;
  /**
   * Debug timings of the ring's hot path (`perf=1` on every page, shared/util/perf-trace.ts),
   * returned summarised per page in {@link SwarmResult.perf}.
   */
  perf?: boolean;
  /**
   * Where loading time goes: logs every contributor's assignment and load state at each change
   * (seconds since the start) and each page's shard-load breakdown once it is ready (worker start,
   * model open, graph build, session creation; the pages run with `perf=1`).
   */
  trace?: boolean;
  /**
   * Tooling: record a Chromium trace (V8 GC and compile, wasm, timeline categories) of the whole
   * browser while the first answer runs, write it to this path and summarise each page's threads
   * (tools/swarm/chrome-trace.ts) into {@link SwarmResult.chromeTrace}.
   */
  chromeTrace?: string;
  /**
   * Answers asked (and dropped) before the measured one, same settings: `perf`'s CPU window and
   * `chromeTrace` then see pages whose engine has served that many answers already (V8 has
   * moved more of its wasm to optimized code), not fresh ones.
   */
  warmAnswers?: number;
  /** Tooling: V8 flags for every page (Chromium's `--js-flags=`), e.g. `--single-threaded-gc`. */
  jsFlags?: string;
  /** Sampler seed (the chat's Seed field); unset: random per answer. */
  seed?: number;
  /**
   * `false`: the requester page sends every decode step itself (`loop=0`), instead of the ring's
   * head feeding each token to stage 0 (loop mode, the default for plain k = 1 answers).
   */
  loop?: boolean;
  /**
   * Speculative decoding: the requester page drafts with a copy of the model in `format` (the
   * chat's "Draft locally" setting, q4) and the ring verifies up to `k` drafted tokens per lap.
   * Greedy only. The answer's `speculative` figures are read from the chat's draft note.
   */
  draft?: { format: 'q4'; k: number };
  /**
   * Churn: close the page holding ring stage `stage` (0-based, ring order) once the answer has
   * `after` generated tokens; the answer must go on through a failover.
   */
  kill?: { stage: number; after: number };
  /**
   * Churn with standby replicas: this many more pages that the planner leaves out of the ring
   * (they declare far less speed) and the coordinator makes standbys of; every stage has a loaded
   * standby before each answer, so a loss is a swap and a replay (bench:churn's "with standby").
   */
  standbys?: number;
  /** Everything (start, ring, generation, close) must fit in this. */
  timeoutMs: number;
  /** Progress lines (stderr in the CLIs). */
  log?: (m: string) => void;
  /**
   * More answers in the same swarm after the first (bench:churn): before each, closed pages are
   * replaced with fresh contributor pages until the ring has `peers` stages again.
   */
  more?: SwarmAsk[];
  /** Sees each answer of `more` as it completes (1-based), next to the first answer. */
  onAnswer?: (a: SwarmAnswer, n: number, first: SwarmAnswer) => void;
}

/** One further answer of a swarm run (see {@link SwarmOptions.more}). */
export interface SwarmAsk {
  temperature: number;
  seed?: number;
  draft?: SwarmOptions['draft'];
  kill?: { stage: number; after: number };
}

/** One further answer's outcome. */
export interface SwarmAnswer {
  text: string;
  stages: SwarmStage[];
  timings: SwarmTimings;
  /** A drafted answer, as the chat shows it: drafted tokens accepted, ring laps, tokens per lap. */
  speculative?: SwarmSpeculative;
  failovers?: SwarmFailover[];
  /** What the chat page says about them (its `answer-failover` note), as a person reads it. */
  failoverNote?: string;
}

/** What drafting did in one answer (the chat's `answer-draft` note): the page's own record. */
export type SwarmSpeculative = AnswerSpeculative;

/** One ring stage as /api/network reports it. */
export interface SwarmStage {
  peer: string;
  range: [number, number];
}

/** The chat's answer stats line, parsed. */
export interface SwarmTimings {
  prefillTokPerS: number;
  decodeTokPerS: number;
  computeMsPerToken: number;
  hopMsPerToken: number;
}

/** One contributor page's memory next to what its shard needs. */
export interface SwarmPageMemory {
  peer: string;
  range: [number, number];
  /** Renderer process RSS (includes the shard worker's wasm memory); undefined when not attributable. */
  rssBytes?: number;
  /** The same process's proportional set size (shared pages divided among their sharers). */
  pssBytes?: number;
  /** The page's main-thread JS heap (CDP Performance.getMetrics JSHeapUsedSize). */
  jsHeapUsedBytes?: number;
  /** The shard's weights in the served format. */
  weightBytes: number;
  /** Its KV cache at the model's context length. */
  kvBytes: number;
}

/** What a swarm run produced. */
export interface SwarmResult {
  model: string;
  contextLength: number;
  /** The answer as the chat shows it (for llama2.c models: prompt + continuation, as `run` prints). */
  text: string;
  promptTokens: number;
  maxNewTokens: number;
  stages: SwarmStage[];
  timings: SwarmTimings;
  /** With `draft`: drafted tokens the ring accepted, laps, tokens per lap. */
  speculative?: SwarmSpeculative;
  memory?: SwarmPageMemory[];
  /**
   * The coordinator's speed figures for the ring after the answer (`/api/network`): planned single
   * request (1 / per-token latency), planned pipelined capacity, and what requests measured.
   */
  speed?: { plannedTokPerS: number | null; pipelinedTokPerS: number | null; observedTokPerS: number | null };
  /** Per page (`requester`, or the stage's ring index and units): hot-path timings, with `perf`. */
  perf?: SwarmPagePerf[];
  /** With `perf`: CPU per generated token of every process of the run, over the first answer's decode. */
  cpu?: CpuReport;
  /** With `chromeTrace`: each page's threads during the first answer, and its generated tokens. */
  chromeTrace?: { path: string; tokens: number; pages: TracePageSummary[] };
  /** Ring losses the answer survived (with `kill`): how each was noticed and how long recovery took. */
  failovers?: SwarmFailover[];
  /** What the chat page says about them (its `answer-failover` note). */
  failoverNote?: string;
  /** The answers of `more`, in order. */
  more?: SwarmAnswer[];
  /** Why the series of `more` answers stopped early, if it did. */
  moreError?: string;
  elapsedS: number;
}

/** One page's hot-path timings (ms), by name (shared/util/perf-trace.ts). */
export interface SwarmPagePerf {
  page: string;
  stats: Record<string, PerfStat>;
}

/** One loss survived, as measured from the moment the page was closed. */
export interface SwarmFailover {
  /** The killed stage (ring order) and its peer. */
  stage: number;
  peer: string;
  /** Generated tokens shown when the page was closed. */
  killedAfter: number;
  /** How the requester noticed: link-close, deadline or stage-error. */
  cause: string;
  /** Position of the step that was lost and re-sent; positions replayed on the new ring. */
  position: number;
  replayed: number;
  /** From closing the page to the requester noticing, ms. */
  detectMs: number;
  /** From closing the page to the new ring's first token, ms. */
  recoveryMs: number;
  /** Whether a standby replica took the lost stage's place (else the survivors were re-planned). */
  viaStandby: boolean;
  /** Where the recovery's time went, ms (see {@link FailoverBreakdown}); absent when the page showed none. */
  breakdown?: FailoverBreakdown;
}

/**
 * A recovery split into its steps, ms each, as the requester page timed them; they add up to
 * `recoveryMs`: `detect` (the close to the requester noticing), `replan` (to the first replacement
 * ring), `retry` (opening rings still loading, to the ring that took the answer on), `links` (to the
 * links to its first stage and head being open), `open` (the `open` and the replay sent) and
 * `replay` (the replay and the re-sent step, to the next token).
 */
export interface FailoverBreakdown {
  detect: number;
  replan: number;
  retry: number;
  links: number;
  open: number;
  replay: number;
  /** Rings tried, and the error codes that made the requester try again. */
  attempts: number;
  retriedOn: string[];
}
