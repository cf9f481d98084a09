/**
 * A chat's messages and settings, and how the history is kept: only the messages, written when they
 * change (a message sent, an answer completed), never per streamed token.
 */
import type { PersistStorage } from 'zustand/middleware';
import type { AnswerVerification } from './validated-ring.js';
import type { DraftSetting } from './draft-setting.js';

/** One message of a chat; an assistant's carries what its answer cost and who served it. */
export interface ChatMessage {
  role: 'user' | 'assistant';
  text: string;
  meta?: {
    model: string;
    prefillTokPerS?: number;
    decodeTokPerS?: number;
    peers?: string[];
    local?: boolean;
    computeMsPerToken?: number;
    hopMsPerToken?: number;
    error?: string;
    done?: boolean;
    /** Ring peers lost mid-answer and survived (the answer went on on a re-formed ring). */
    failovers?: AnswerFailover[];
    /** Why the answer ended (`context`: it filled the model's context). */
    end?: 'end' | 'max-tokens' | 'context';
    /** The model's context length, tokens. */
    contextLength?: number;
    /** Result validation at security level k >= 2: what was checked (shared/app/validated-ring.ts). */
    verification?: AnswerVerification;
    /** A drafted answer (speculative decoding): drafted tokens the ring accepted, and ring laps. */
    speculative?: AnswerSpeculative;
  };
}

/** What drafting did in one answer (shared/runtime/speculative.ts `SpeculativeStats`). */
export interface AnswerSpeculative {
  /** The draft's weight format and most tokens drafted per lap. */
  format: string;
  k: number;
  /** Drafted tokens the ring confirmed, of those drafted. */
  accepted: number;
  drafted: number;
  /** Verify laps of the ring after the prefill. */
  laps: number;
  /** Tokens produced per lap (accepted drafts + the ring's own token each lap). */
  tokensPerLap: number;
}

/** One failover of an answer, as the chat shows it. */
export interface AnswerFailover {
  /**
   * How the loss was noticed: a link closed, a step missed its deadline, a stage reported it, or
   * the coordinator re-planned the ring (it saw the peer's socket close first).
   */
  cause: 'link-close' | 'deadline' | 'stage-error' | 'replanned';
  lostPeer?: string;
  /** Position of the step that was lost and re-sent. */
  position: number;
  /** Wall-clock (epoch ms) times of detection and of the new ring's first token. */
  detectedAt: number;
  recoveredAt?: number;
  /** Detection to the new ring's first token, ms. */
  recoveryMs?: number;
  /** Positions replayed to rebuild the new ring's KV caches. */
  replayed: number;
  /**
   * Wall-clock (epoch ms) times of the recovery's steps: the first replacement ring, the ring the
   * answer went on with, its links open, its `open` and replay sent; `attempts`: rings tried.
   */
  phases?: {
    firstRingAt?: number;
    ringAt?: number;
    linkedAt?: number;
    openedAt?: number;
    attempts: number;
    /** Error codes that made it try another ring. */
    retriedOn?: string[];
  };
}

/** What the person chose for the next answer. */
export interface ChatSettings {
  model: string;
  temperature: number;
  topP: number;
  maxTokens: number;
  /** Sampler seed; unset: a fresh random seed per answer. */
  seed?: number;
  /** Security level k (1–3: rings that run every step side by side); unset: the server's default. */
  security?: number;
  /**
   * Spot-check mode of security level 2: the validator ring re-runs only a sampled fraction of the
   * steps (at least `f`, or the coordinator's rate for the ring's peers when higher). Unset: every step.
   */
  spot?: { f?: number };
  /**
   * Speculative decoding: this tab drafts with a small copy of the model and the ring verifies
   * several tokens per lap (greedy only; small models only, see draft-setting.ts). Unset: off.
   */
  draft?: DraftSetting;
}

/** A string store for the history (the subset of the Web Storage API used). */
export interface HistoryStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Key of the history in the storage (an array of at most {@link HISTORY_LIMIT} messages). */
export const HISTORY_KEY = 'ringwork.chat.v1';
const HISTORY_LIMIT = 100;

/** Persists only the messages, and only when the array changes (not per streamed token). */
export function historyStorage(s: HistoryStorage): PersistStorage<{ messages: ChatMessage[] }> {
  let last: ChatMessage[] | undefined;
  return {
    getItem(name) {
      try {
        const raw = s.getItem(name);
        const messages = raw ? (JSON.parse(raw) as unknown) : [];
        return {
          state: { messages: Array.isArray(messages) ? (messages as ChatMessage[]) : [] },
          version: 0,
        };
      } catch {
        return null;
      }
    },
    setItem(name, value) {
      if (value.state.messages === last) return;
      last = value.state.messages;
      try {
        s.setItem(name, JSON.stringify(value.state.messages.slice(-HISTORY_LIMIT)));
      } catch {
        /* storage full or blocked: the history just is not kept */
      }
    },
    removeItem: (name) => s.removeItem(name),
  };
}
