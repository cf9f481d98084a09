/**
 * The ledger's write batch rows and their merge into the audit trail's CSV (COPY) rows.
 */
import { RingworkError } from '../../../shared/errors.js';

/** One stage's record of one session step batch, as queued for the next commit. */
export interface WorkRow {
  session_id: string;
  model: string;
  peer_id: string;
  address: string | null;
  requester: string;
  unit_start: number;
  unit_end: number;
  steps: number;
  flops: number;
  verdict: string;
  credited: boolean;
  evidence_hash: string | null;
  at: number;
  owner: Waiter;
  /** The record's steps on its first row, 0 on the others: usage counts a request's steps once. */
  requestSteps: number;
}

/** A caller waiting for its record: resolved when the last of its queued items committed. */
export interface Waiter {
  resolve: () => void;
  remaining: number;
}

/** Addresses are kept lower-case. */
export const lower = (a: string | undefined): string | undefined => a?.toLowerCase();
/** Requesters are kept by lower-case address (peer ids as they are). */
export const requesterKey = (r: string): string => (r.toLowerCase().startsWith('0x') ? r.toLowerCase() : r);

/** A `LEDGER_BAD_RECORD` error. */
export function bad(message: string, details: Record<string, unknown> = {}): RingworkError {
  return new RingworkError('LEDGER_BAD_RECORD', message, { details });
}

/** A CSV field: text quoted (quotes doubled), null as an unquoted empty field (COPY's NULL). */
export const csvField = (v: string | number | boolean | null): string =>
  v === null ? '' : typeof v === 'string' ? `"${v.replaceAll('"', '""')}"` : String(v);

/** One audit row: the batch's records of one session, stage, units, verdict, requester and evidence. */
export interface MergedRow {
  readonly r: WorkRow;
  steps: number;
  flops: number;
  records: number;
  at: number;
}

/**
 * Merges a batch's work rows that differ only in steps and time: a generation session sends many
 * step records per stage, and the audit trail needs their sums, not one row each (the row count is
 * what bounds the write rate). Credit and usage are unchanged: they are sums too.
 */
export function mergeRows(w: readonly WorkRow[]): MergedRow[] {
  const merged = new Map<string, MergedRow>();
  for (const r of w) {
    const key = `${r.session_id}\u0000${r.peer_id}\u0000${r.unit_start}\u0000${r.unit_end}\u0000${r.verdict}\u0000${r.credited}\u0000${r.requester}\u0000${r.address ?? ''}\u0000${r.evidence_hash ?? ''}\u0000${r.model}`;
    const m = merged.get(key);
    // Steps is an integer column: a merged row stays below 2^31 (another row takes the rest).
    if (m && m.steps + r.steps > 2_000_000_000) merged.set(`${key}#${merged.size}`, m);
    if (m && m.steps + r.steps <= 2_000_000_000) {
      m.steps += r.steps;
      m.flops += r.flops;
      m.records++;
      if (r.at > m.at) m.at = r.at;
    } else merged.set(key, { r, steps: r.steps, flops: r.flops, records: 1, at: r.at });
  }
  return [...merged.values()];
}

/** One merged row as a CSV line of the audit table's COPY. */
export function csvRow({ r, steps, flops, records, at }: MergedRow): string {
  return [
    r.session_id,
    r.model,
    r.peer_id,
    r.address,
    r.requester,
    r.unit_start,
    r.unit_end,
    steps,
    flops,
    r.verdict,
    r.credited,
    r.evidence_hash,
    at,
    records,
  ]
    .map(csvField)
    .join(',');
}
