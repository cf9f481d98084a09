/**
 * The public shapes of a requester (shared/app/requester.ts): what a chat shows, what one question
 * takes and gives back, and what the browser or a Node host injects.
 */
import type { AnswerEnd } from './chat-input.js';
import type { RingRequesterPort } from '../api/ring-transport.js';
import type { RingworkClient } from '../api/ringwork-client.js';
import type { StoreApi } from 'zustand/vanilla';
import type {
  AnswerFailover,
  AnswerSpeculative,
  ChatMessage,
  ChatSettings,
  HistoryStorage,
} from './chat-history.js';
import type { ModelDescriptor, ServerMessageOf } from '../protocol/signaling.js';
import type { GenerateResult } from '../runtime/generate.js';
import type { ShardRunner } from '../runtime/shard-runner.js';
import type { Tokenizer } from '../tokenizer/types.js';
import type { PeerLink } from '../transport/types.js';
import type { AppClock, Logger, NetworkHandle } from './network-port.js';
import type { AnswerVerification } from './validated-ring.js';

/** The coordinator's latest word on a model: its ring, or why there is none. */
export type RingAnswer = ServerMessageOf<'ring'> | ServerMessageOf<'no-ring'>;

/** What a chat shows. Only `messages` is persisted, and only when a message completes. */
export interface ChatState {
  messages: ChatMessage[];
  busy: boolean;
  status?: string;
  settings: ChatSettings;
  /**
   * The answer being streamed: its index in `messages`, its text so far, the tokens generated so
   * far and the ring peers lost (and survived) meanwhile.
   */
  streaming?: { index: number; text: string; tokens?: number; failovers?: AnswerFailover[] };
  /** The latest ring / no-ring pushed by the coordinator, by model id. */
  rings: Record<string, RingAnswer>;
}

/** What one answer cost, for the chat's stats line. */
export interface AnswerStats {
  prefillTokPerS: number;
  decodeTokPerS: number;
  peers: string[];
  local: boolean;
  computeMsPerToken: number;
  hopMsPerToken: number;
  /** Ring peers lost mid-answer and survived. */
  failovers: AnswerFailover[];
  /** Why the answer ended: the model's own end, the max-tokens setting, or the context's end. */
  end: AnswerEnd;
  /** The model's context length, tokens. */
  contextLength: number;
  /** Result validation (security level k >= 2): what was checked. */
  verification?: AnswerVerification;
  /** A drafted answer: drafted tokens the ring accepted, laps, tokens per lap. */
  speculative?: AnswerSpeculative;
}

/**
 * One turn of the conversation an answer continues: a chat message, or a `system` turn from the
 * SDK (OpenAI's messages). Turns whose answer failed (`meta.error`) are left out of the prompt.
 */
export interface AskTurn {
  role: 'system' | 'user' | 'assistant';
  text: string;
  meta?: { error?: string };
}

export interface AskOptions {
  settings: ChatSettings;
  /** The conversation so far, ending with the user's new message. */
  history: readonly AskTurn[];
  /**
   * Continue the last turn's text as it is, without the chat template (a completion: the SDK's
   * `completions.create`). Absent: chat models get their template, completion models the text.
   */
  raw?: boolean;
  signal: AbortSignal;
  /**
   * The prompt's token ids, already rendered and encoded (the server's API renders every role of a
   * request itself); absent: rendered from `history` here.
   */
  prompt?: readonly number[];
  /**
   * Called with the prompt's length in tokens once it is encoded and the ring (or this tab's model)
   * is ready, just before the first step; again if the request is retried.
   */
  onStarted?: (promptTokens: number) => void;
  /** Called with the full text of the answer so far (and the tokens generated), as tokens stream in. */
  onText?: (text: string, generated: number) => void;
  /** Called when a ring peer is lost mid-answer and again when the answer goes on (failover). */
  onFailover?: (failovers: AnswerFailover[]) => void;
}

export interface AskResult {
  text: string;
  stats: AnswerStats;
  result: GenerateResult;
}

/** The part of an SDK client (shared/api/ringwork-client.ts) the chat sends through. */
export type RingChatClient = Pick<RingworkClient, 'chat'>;

export interface RequesterOptions {
  /**
   * Makes the client the chat's `send` streams through, over this requester (its `ask` and its
   * store's rings). The browser passes the SDK's `createRingworkClient({ via: 'ring' })`; default:
   * the ring transport (shared/api/ring-transport.ts) directly.
   */
  client?: (requester: RingRequesterPort) => RingChatClient;
  /** Connects (lazily, once per connection) and returns the network handle. */
  network: () => Promise<NetworkHandle>;
  /** A fresh, unloaded runner, for running a whole model alone when no ring serves it. */
  createRunner: () => ShardRunner;
  /** Loads a model's tokenizer (cached here per model URL). */
  openTokenizer: (model: ModelDescriptor) => Promise<Tokenizer>;
  /** This peer's own stage, when it contributes too and the ring includes it. */
  localStageLink?: () => PeerLink | undefined;
  /**
   * A link this peer already keeps to `peerId` (its contributor's ring neighbours). Reused rather
   * than dialled again: the other side keeps one link per peer, so a second would replace the first.
   */
  existingLink?: (peerId: string) => PeerLink | undefined;
  /** Memory this peer may use to run a model alone, bytes. */
  localMemoryBytes: () => number;
  /** Where the chat history is kept (browsers: sessionStorage); none: not kept. */
  storage?: HistoryStorage;
  /** A seed per answer (default: random). */
  seed?: () => number;
  /** Uniform [0, 1) draws deciding which steps of a spot-checked answer are re-run (default: Math.random; seeded in tests). */
  spotRandom?: () => number;
  clock?: AppClock;
  logger?: Logger;
  /** How long to wait for the coordinator's first ring answer, ms (default 10 s). */
  ringTimeoutMs?: number;
  /** How long a request that failed before its first token is retried, ms (default 20 s). */
  retryWindowMs?: number;
  /**
   * The same for a validated request (security level k >= 2), ms (default 60 s): its validator
   * rings are planned when it arrives, so their peers load their shards first.
   */
  validatedRetryWindowMs?: number;
  /** Per-step timeout of a remote ring before its laps are known, ms (default 60 s). */
  stepTimeoutMs?: number;
  /**
   * After reporting a stalled ring, how long to wait for the coordinator's re-planned ring before
   * trying the same ring again, ms (default 4 s: its probe of the ring's peers takes up to 3 s).
   */
  stallGraceMs?: number;
  /** How long recovering from one lost ring peer may take before the answer fails, ms (default 90 s). */
  recoveryWindowMs?: number;
  /**
   * Loop mode for plain k = 1 ring answers (default on): the ring's head feeds each token it answers
   * to the first stage itself (shared/ring/ring-protocol.ts). `false` is a tooling switch (the page
   * URL's `loop=0`) that sends every step from this tab, to measure what the loop saves.
   */
  loop?: boolean;
}

export interface Requester {
  readonly store: StoreApi<ChatState>;
  /** Asks the network about the current model now (the chat page opens); safe twice. */
  start(): Promise<void>;
  /** Aborts a running answer and unsubscribes; safe twice. */
  stop(): Promise<void>;
  /** Sends a user message and streams the answer into the store. */
  send(text: string): Promise<void>;
  /** Stops the answer being generated. */
  abort(): void;
  clear(): void;
  setSettings(p: Partial<ChatSettings>): void;
  /** Answers the last message of `history` (retrying before the first token, see below). */
  ask(o: AskOptions): Promise<AskResult>;
}
