/**
 * Credits from validation: the bridge from the coordinator's validation hooks
 * (`onValidatedWork`, `onDeviant`, validation-registry.ts) to the ledger. Validated work is credited
 * to the signed-in address of the stage that served it — the FLOPs of its units from the model
 * profile × steps — never to the requester's own identities; a proven deviation becomes recorded
 * evidence (keyed by the hash of its canonical JSON) and a penalty, and is handed on to the stake
 * slasher when one is configured.
 *
 * Only the server's validation decides: nothing a client sends reaches the ledger directly. Work the
 * bridge cannot attribute (no requester named, the stage's assignment does not match the units the
 * hook reports) is recorded as `unvalidated` (earning nothing) and logged, never guessed.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { EvidenceRecord as DeviationEvidence } from '../../../shared/validation/evidence.js';
import type { PeerAssignment } from '../coordinator-types.js';
import type { DeviantEvent, ValidationRegistry } from '../validation-registry.js';
import type { Ledger, StageWork, StepRecord } from './ledger.js';

/**
 * What the validation hook may say about the work besides `(peer, units, steps)`: the requester
 * whose validation it was, the model and the stage's unit range. Fields are optional so the bridge
 * works with any version of the hook; without a requester nothing is credited.
 */
export interface ValidatedWorkContext {
  readonly requester?: string;
  readonly model?: string;
  readonly ringId?: string;
  readonly range?: readonly [number, number];
}

/** A proven deviant handed to the stake slasher (stake/). */
export interface DeviantToSlash {
  readonly peerId: string;
  /** The deviant's signed-in address; undefined for an anonymous session (nothing to slash). */
  readonly address: string | undefined;
  /** 0x-prefixed sha256 of the evidence's canonical JSON (what `slash` records on chain). */
  readonly evidenceHash: `0x${string}`;
  readonly evidence: DeviationEvidence;
}

/** What the bridge is built from. */
export interface ValidationCreditDeps {
  readonly ledger: Pick<Ledger, 'recordSteps' | 'recordEvidence' | 'recordPenalty'>;
  readonly validation: Pick<ValidationRegistry, 'onValidatedWork' | 'onDeviant'>;
  /** The coordinator's current assignment of a peer (model and unit range of the work it serves). */
  readonly assignmentOf: (peer: string) => PeerAssignment | null;
  /** The address signed in on a live signaling session, if any. */
  readonly addressOf: (peer: string) => string | undefined;
  readonly logger: Pick<Logger, 'warn' | 'error'>;
  /** Called for each proven deviant once its evidence and penalty are recorded (stake slashing). */
  readonly onDeviant?: (d: DeviantToSlash) => void | Promise<void>;
}

/** JSON with object keys sorted, so equal evidence hashes equally whatever the field order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The evidence hash the ledger and the stake contract use: 0x + sha256 of the canonical JSON. */
export function evidenceHash(e: DeviationEvidence): `0x${string}` {
  return `0x${createHash('sha256').update(canonicalJson(e)).digest('hex')}`;
}

/** Subscribes the ledger to the validation hooks; returns the unsubscribe. */
export function connectValidationCredit(deps: ValidationCreditDeps): () => void {
  const { ledger, logger } = deps;
  const failed = (what: string) => (e: unknown) => logger.error({ err: e }, `ledger: ${what} not recorded`);

  /**
   * The hook fires once per stage of one validation, synchronously: the stages of one validation are
   * gathered in a microtask into one record, so the requester's usage counts its steps once.
   */
  const gathering = new Map<string, { record: Omit<StepRecord, 'stages'>; stages: StageWork[] }>();
  const emit = (): void => {
    for (const { record, stages } of gathering.values()) {
      try {
        ledger.recordSteps({ ...record, stages }).catch(failed('validated work'));
      } catch (e) {
        failed('validated work')(e);
      }
    }
    gathering.clear();
  };

  const onWork = (peer: string, units: number, steps: number, ctx?: ValidatedWorkContext): void => {
    const a = deps.assignmentOf(peer);
    const model = ctx?.model ?? (a && a.kind !== 'unassigned' ? a.model : undefined);
    const range = ctx?.range ?? (a && a.kind === 'assigned' && a.model === model ? a.range : undefined);
    if (model === undefined || range === undefined || range[1] - range[0] !== units) {
      // The stage moved since (re-plan) or the hook named units we cannot place: no guessed credit.
      logger.warn({ peer, units, steps, model, range }, 'ledger: validated work not attributable; skipped');
      return;
    }
    const requester = ctx?.requester;
    const sessionId = ctx?.ringId ?? (a && a.kind !== 'unassigned' ? a.ringId : 'unknown');
    const key = `${requester ?? ''}|${model}|${sessionId}|${steps}`;
    let g = gathering.get(key);
    if (!g) {
      g = {
        record: {
          sessionId,
          model,
          requester: requester
            ? { peerId: requester, address: deps.addressOf(requester) }
            : { peerId: 'unknown-requester' },
          steps,
          // Without the requester the "never your own identities" rule cannot be applied: no credit.
          verdict: requester ? 'passed' : 'unvalidated',
        },
        stages: [],
      };
      if (gathering.size === 0) queueMicrotask(emit);
      gathering.set(key, g);
    }
    g.stages.push({ peerId: peer, address: deps.addressOf(peer), units: [range[0], range[1]] });
  };

  const onDeviant = async (e: DeviantEvent): Promise<void> => {
    const hash = evidenceHash(e.evidence);
    const address = deps.addressOf(e.peer);
    await ledger.recordEvidence({
      hash,
      sessionId: `${e.evidence.model}:${e.evidence.ring}`,
      verdict: 'proven',
      payload: { peer: e.peer, reporter: e.reporter, address: address ?? null, evidence: e.evidence },
    });
    // Anonymous deviants are penalised under their session id (nothing to slash on chain).
    await ledger.recordPenalty({ address: address ?? e.peer, reason: e.evidence.reason, evidenceHash: hash });
    await deps.onDeviant?.({ peerId: e.peer, address, evidenceHash: hash, evidence: e.evidence });
  };

  const offWork = deps.validation.onValidatedWork(onWork);
  const offDeviant = deps.validation.onDeviant((e) => void onDeviant(e).catch(failed('deviation')));
  return () => {
    offWork();
    offDeviant();
  };
}
