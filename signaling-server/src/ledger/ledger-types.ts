/**
 * The ledger's public types: the records it takes, the rows it answers, its interface and what it
 * is built from (ledger.ts builds it).
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { SqlDb } from './database.js';

/** The units one stage served in a record. */
export interface StageWork {
  readonly peerId: string;
  /** The signed-in address of the stage's session; absent: anonymous (earns nothing). */
  readonly address?: string | undefined;
  /** Units `[start, end)` of the model. */
  readonly units: readonly [number, number];
}

/** Steps of one generation session, as validation judged them. */
export interface StepRecord {
  readonly sessionId: string;
  readonly model: string;
  readonly requester: { readonly peerId: string; readonly address?: string | undefined };
  readonly stages: readonly StageWork[];
  /** Decode steps (tokens) the stages served in this record. */
  readonly steps: number;
  /** The validator's verdict on these steps; only `passed` earns credit. */
  readonly verdict: 'passed' | 'failed' | 'unvalidated';
  /** Hash of the signed evidence (validation commitments) the verdict rests on. */
  readonly evidenceHash?: string | undefined;
}

/** Validation evidence, kept so a penalty can name it. */
export interface EvidenceRecord {
  readonly hash: string;
  readonly sessionId: string;
  readonly verdict: string;
  readonly payload: Record<string, unknown>;
}

/** One answered API request, as `/v1` counts it. */
export interface ApiUsage {
  readonly principal: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
}

/** An API principal's usage so far. */
export interface ApiUsageTotals {
  readonly principal: string;
  readonly requests: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
}

/** A requester's usage so far. */
export interface RequesterUsage {
  /** Decode steps of its requests that passed validation (security level ≥ 2). */
  readonly steps: number;
  /** FLOPs of those steps. */
  readonly flops: number;
  /** Answers it got from rings. */
  readonly requests: number;
  /** Tokens those answers generated. */
  readonly tokens: number;
}

/** One leaderboard row. */
export interface CreditRow {
  readonly address: string;
  readonly flops: number;
  readonly validatedSteps: number;
}

/** One recorded penalty. */
export interface PenaltyRow {
  readonly reason: string;
  readonly evidenceHash: string;
  readonly amount: number;
  readonly at: number;
}

/** One on-chain slash, as the ledger records it (stake/slasher.ts). */
export interface SlashRow {
  readonly evidenceHash: string;
  readonly address: string;
  /** `pending` until the transaction landed (`sent`); `failed` while retries go on. */
  readonly state: 'pending' | 'sent' | 'failed';
  readonly txHash?: string | undefined;
  readonly attempts: number;
  readonly lastError?: string | undefined;
}

/** The ledger's counters. */
export interface LedgerStats {
  /** Stage rows waiting to be committed. */
  readonly pending: number;
  readonly committedRows: number;
  readonly batches: number;
  readonly failures: number;
  /** Rows dropped because the queue was full while the database was down. */
  readonly dropped: number;
  /** True while the database is failing (the writer retries). */
  readonly degraded: boolean;
  readonly lastError?: string;
}

/** The ledger. */
export interface Ledger {
  /** Queues a record; resolves once committed. Throws `LEDGER_BAD_RECORD` at once for invalid input. */
  recordSteps(record: StepRecord): Promise<void>;
  /** A signaling session presented `address`. */
  recordSession(peerId: string, address: string): Promise<void>;
  recordEvidence(evidence: EvidenceRecord): Promise<void>;
  /** A penalty must name recorded evidence; `LEDGER_BAD_RECORD` otherwise. */
  recordPenalty(p: { address: string; reason: string; evidenceHash: string; amount?: number }): Promise<void>;
  /** Records (or updates) the slash of a proven deviation; its evidence must be recorded. */
  recordSlash(s: SlashRow): Promise<void>;
  /** Slashes recorded against an address, newest first. */
  slashes(address: string): Promise<SlashRow[]>;
  /** Commits everything queued so far. */
  flush(): Promise<void>;
  leaderboard(limit?: number): Promise<CreditRow[]>;
  /** Credit, validated steps and sessions of one address (zeros when unknown). */
  account(address: string): Promise<CreditRow & { sessions: number }>;
  /**
   * What a requester (address, or peer id when anonymous) used: validated steps and their FLOPs
   * (from validation), answers on rings and their tokens (its ring-lap reports); zeros when unknown.
   */
  usage(requester: string): Promise<RequesterUsage>;
  /** One answer a requester got from a ring: `tokens` generated. `LEDGER_BAD_RECORD` for bad counts. */
  recordRequest(u: { requester: string; tokens: number }): Promise<void>;
  /** Adds one answered API request to its principal's usage (`api-access.ts`: `key:<hash prefix>`). */
  recordApiUsage(u: ApiUsage): Promise<void>;
  /** An API principal's usage so far (zeros when unknown). */
  apiUsage(principal: string): Promise<ApiUsageTotals>;
  /** Penalties recorded against an address (or an anonymous session id), newest first. */
  penalties(address: string): Promise<PenaltyRow[]>;
  stats(): LedgerStats;
  /** Commits what is queued and closes the database; safe twice. */
  stop(): Promise<void>;
}

/** What the ledger is built from. */
export interface LedgerDeps {
  readonly db: SqlDb;
  readonly clock: Clock;
  readonly logger: Logger;
  /** FLOPs per decode step of units `[start, end)` of `model`; undefined for an unknown model or range. */
  readonly flopsOf: (model: string, units: readonly [number, number]) => number | undefined;
  readonly batchMs?: number;
  readonly maxBatch?: number;
  readonly maxPending?: number;
  /** First retry delay after a failed commit, doubling to `maxRetryMs`. */
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
}
