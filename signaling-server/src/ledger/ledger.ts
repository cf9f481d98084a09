/**
 * The ledger of validated work: who served which units for how many steps, whether those steps
 * passed validation, and the credit that follows. Credit is the FLOPs of the units a peer served
 * (the model profile's per-unit FLOPs × steps) in steps whose verdict is `passed`; failed or
 * unvalidated steps are recorded and earn nothing, anonymous stages earn nothing, and a requester's
 * own identity earns nothing for its own requests (so a requester cannot farm credit by serving
 * itself). Verdicts come from the server's validation of the coordinator's chosen validator ring —
 * no client message writes to the ledger.
 *
 * Writes are batched: records queue in memory and are committed together (one transaction, one
 * multi-row insert per table) every `batchMs` or once `maxBatch` rows wait. A record's promise
 * resolves when its transaction committed, so whatever was reported committed survives a crash. When
 * the database fails mid-run the batch stays queued (bounded by `maxPending`), every failure is
 * logged at error level, and the writer retries with back-off until it catches up; callers (the
 * signaling server) never wait on the ledger to serve requests.
 */
import type { TimerHandle } from '../clock.js';
import { openDatabase, type LedgerStore } from './database.js';
import { bad, csvRow, lower, mergeRows, requesterKey, type Waiter, type WorkRow } from './ledger-rows.js';
import type { EvidenceRecord, Ledger, LedgerDeps, SlashRow } from './ledger-types.js';

export type * from './ledger-types.js';

/** Creates the ledger over an open (migrated) database. */
export function createLedger(deps: LedgerDeps): Ledger {
  const { db, clock, logger } = deps;
  const batchMs = deps.batchMs ?? 50;
  const maxBatch = deps.maxBatch ?? 10_000;
  const maxPending = deps.maxPending ?? 1_000_000;
  const retryMs = deps.retryMs ?? 200;
  const maxRetryMs = deps.maxRetryMs ?? 10_000;

  let work: WorkRow[] = [];
  let sessions: Array<{ peer_id: string; address: string; at: number; owner: Waiter }> = [];
  let evidence: Array<EvidenceRecord & { at: number; owner: Waiter }> = [];
  let timer: TimerHandle | null = null;
  let flushing: Promise<void> | null = null;
  let retryDelay = retryMs;
  let stopped: Promise<void> | null = null;
  const counters = { committedRows: 0, batches: 0, failures: 0, dropped: 0 };
  let degraded = false;
  let lastError: string | undefined;
  /** Addresses this process has written to `identities` (a cache; cleared when large). */
  const known = new Set<string>();

  const pendingCount = (): number => work.length + sessions.length + evidence.length;

  /** A waiter for `items` queued items, and the promise it resolves. */
  const waiter = (items: number): { owner: Waiter; done: Promise<void> } => {
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    return { owner: { resolve, remaining: items }, done };
  };
  const settle = (owner: Waiter): void => {
    if (--owner.remaining === 0) owner.resolve();
  };

  const schedule = (delay: number): void => {
    if (timer || stopped) return;
    timer = clock.setTimeout(() => {
      timer = null;
      void flush();
    }, delay);
    (timer as { unref?: () => void }).unref?.();
  };

  const afterEnqueue = (): void => {
    // Bounded memory while the database is down: the oldest rows go, loudly.
    if (work.length > maxPending) {
      const drop = work.length - maxPending;
      // A dropped row's caller is released (the drop is counted and logged), never left hanging.
      for (const r of work.slice(0, drop)) settle(r.owner);
      work = work.slice(drop);
      counters.dropped += drop;
      logger.error(
        { dropped: drop, total: counters.dropped },
        'ledger queue full: oldest step records dropped',
      );
    }
    if (pendingCount() >= maxBatch && !degraded) void flush();
    else schedule(degraded ? retryDelay : batchMs);
  };

  /** One batch in one transaction. */
  const commit = async (w: WorkRow[], s: typeof sessions, ev: typeof evidence): Promise<void> => {
    const now = clock.now();
    await db.transaction(async (tx) => {
      // Identities: sessions refresh last_seen; addresses of work rows are inserted once (the
      // process remembers which it wrote, so a busy ledger does not rewrite them every batch).
      const seen = new Set<string>(s.map((x) => x.address));
      const fresh = new Set<string>();
      for (const r of w) if (r.address && !known.has(r.address) && !seen.has(r.address)) fresh.add(r.address);
      if (seen.size > 0) {
        await tx.query(
          `INSERT INTO identities (address, first_seen, last_seen)
           SELECT a, $2, $2 FROM unnest($1::text[]) AS a
           ON CONFLICT (address) DO UPDATE SET last_seen = EXCLUDED.last_seen`,
          [[...seen], now],
        );
      }
      if (fresh.size > 0) {
        await tx.query(
          `INSERT INTO identities (address, first_seen, last_seen)
           SELECT a, $2, $2 FROM unnest($1::text[]) AS a ON CONFLICT (address) DO NOTHING`,
          [[...fresh], now],
        );
      }
      if (s.length > 0) {
        await tx.query(
          `INSERT INTO sessions_served (peer_id, address, started_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])`,
          [s.map((x) => x.peer_id), s.map((x) => x.address), s.map((x) => x.at)],
        );
      }
      if (ev.length > 0) {
        await tx.query(
          `INSERT INTO evidence (hash, session_id, verdict, payload, at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bigint[])
           ON CONFLICT (hash) DO NOTHING`,
          [
            ev.map((e) => e.hash),
            ev.map((e) => e.sessionId),
            ev.map((e) => e.verdict),
            ev.map((e) => JSON.stringify(e.payload)),
            ev.map((e) => e.at),
          ],
        );
      }
      if (w.length === 0) return;
      const merged = mergeRows(w);
      if (db.dialect === 'postgres') {
        // A server through `pg`: one multi-row INSERT from column arrays (no blob COPY there).
        await tx.query(
          `INSERT INTO validated_work (session_id, model, peer_id, address, requester, unit_start, unit_end,
             steps, flops, verdict, credited, evidence_hash, at, records)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
             $7::int[], $8::int[], $9::float8[], $10::text[], $11::bool[], $12::text[], $13::bigint[], $14::int[])`,
          [
            merged.map((m) => m.r.session_id),
            merged.map((m) => m.r.model),
            merged.map((m) => m.r.peer_id),
            merged.map((m) => m.r.address),
            merged.map((m) => m.r.requester),
            merged.map((m) => m.r.unit_start),
            merged.map((m) => m.r.unit_end),
            merged.map((m) => m.steps),
            merged.map((m) => m.flops),
            merged.map((m) => m.r.verdict),
            merged.map((m) => m.r.credited),
            merged.map((m) => m.r.evidence_hash),
            merged.map((m) => m.at),
            merged.map((m) => m.records),
          ],
        );
      } else {
        // COPY is the bulk path of Postgres: one CSV blob per batch, parsed by PGlite.
        await tx.query(
          `COPY validated_work (session_id, model, peer_id, address, requester, unit_start, unit_end,
             steps, flops, verdict, credited, evidence_hash, at, records) FROM '/dev/blob' WITH (FORMAT csv)`,
          [],
          { blob: new Blob([merged.map(csvRow).join('\n')]) },
        );
      }
      // Credit and usage aggregated per batch: one upsert row per address / requester.
      const credit = new Map<string, { flops: number; steps: number }>();
      const usage = new Map<string, { flops: number; steps: number }>();
      for (const r of w) {
        if (r.credited && r.address) {
          const c = credit.get(r.address) ?? { flops: 0, steps: 0 };
          c.flops += r.flops;
          c.steps += r.steps;
          credit.set(r.address, c);
        }
        const u = usage.get(r.requester) ?? { flops: 0, steps: 0 };
        u.flops += r.flops;
        u.steps += r.requestSteps;
        usage.set(r.requester, u);
      }
      if (credit.size > 0) {
        const rows = [...credit];
        await tx.query(
          `INSERT INTO credits (address, flops, validated_steps, updated_at)
           SELECT a, f, s, $4 FROM unnest($1::text[], $2::float8[], $3::bigint[]) AS t(a, f, s)
           ON CONFLICT (address) DO UPDATE SET flops = credits.flops + EXCLUDED.flops,
             validated_steps = credits.validated_steps + EXCLUDED.validated_steps, updated_at = EXCLUDED.updated_at`,
          [rows.map(([a]) => a), rows.map(([, c]) => c.flops), rows.map(([, c]) => c.steps), now],
        );
      }
      const urows = [...usage];
      await tx.query(
        `INSERT INTO requester_usage (requester, steps, flops, updated_at)
         SELECT r, s, f, $4 FROM unnest($1::text[], $2::bigint[], $3::float8[]) AS t(r, s, f)
         ON CONFLICT (requester) DO UPDATE SET steps = requester_usage.steps + EXCLUDED.steps,
           flops = requester_usage.flops + EXCLUDED.flops, updated_at = EXCLUDED.updated_at`,
        [urows.map(([r]) => r), urows.map(([, u]) => u.steps), urows.map(([, u]) => u.flops), now],
      );
    });
  };

  const flushOnce = async (): Promise<void> => {
    if (pendingCount() === 0) return;
    const w = work.slice(0, maxBatch);
    const s = sessions;
    const ev = evidence;
    work = work.slice(w.length);
    sessions = [];
    evidence = [];
    try {
      await commit(w, s, ev);
      for (const x of s) known.add(x.address);
      for (const r of w) if (r.address) known.add(r.address);
      if (known.size > 1_000_000) known.clear();
    } catch (e) {
      // Put the batch back in front: order and content are kept for the retry.
      work = w.concat(work);
      sessions = s.concat(sessions);
      evidence = ev.concat(evidence);
      counters.failures++;
      lastError = e instanceof Error ? e.message : String(e);
      logger.error(
        { err: e, pending: pendingCount(), failures: counters.failures, retryInMs: retryDelay },
        'ledger commit failed; records kept and retried',
      );
      if (!degraded) degraded = true;
      const delay = retryDelay;
      retryDelay = Math.min(maxRetryMs, retryDelay * 2);
      schedule(delay);
      throw e;
    }
    if (degraded) {
      logger.warn({ pending: pendingCount() }, 'ledger database reachable again; catching up');
      degraded = false;
    }
    retryDelay = retryMs;
    counters.committedRows += w.length + s.length + ev.length;
    counters.batches++;
    for (const x of w) settle(x.owner);
    for (const x of s) settle(x.owner);
    for (const x of ev) settle(x.owner);
  };

  /** Commits queued batches, one at a time; resolves when the queue is empty or a commit failed. */
  const flush = (): Promise<void> => {
    flushing ??= (async () => {
      // Yield first: the finally below must run after `flushing` holds this promise, not during it.
      await Promise.resolve();
      try {
        while (pendingCount() > 0) await flushOnce();
      } catch {
        /* logged in flushOnce; the retry is scheduled */
      } finally {
        flushing = null;
      }
    })();
    return flushing;
  };

  return {
    recordSteps(r) {
      if (stopped) throw bad('The ledger is stopped.');
      if (!Number.isInteger(r.steps) || r.steps <= 0 || r.steps > 1_000_000)
        throw bad('steps must be a positive integer (at most 1,000,000).', { steps: r.steps });
      if (r.stages.length === 0 || r.stages.length > 1000) throw bad('A record needs 1-1000 stages.');
      const now = clock.now();
      const { owner, done } = waiter(r.stages.length);
      const requesterAddress = lower(r.requester.address);
      const requester = requesterAddress ?? r.requester.peerId;
      const rows: WorkRow[] = r.stages.map((s, i) => {
        const [a, b] = s.units;
        const perStep = deps.flopsOf(r.model, s.units);
        if (perStep === undefined || !Number.isFinite(perStep) || perStep < 0)
          throw bad(`Units [${a}, ${b}) are not a range of model "${r.model}".`, {
            model: r.model,
            units: [a, b],
          });
        const address = lower(s.address) ?? null;
        // A requester's own identity (or session) never earns credit for its own requests.
        const own = s.peerId === r.requester.peerId || (address !== null && address === requesterAddress);
        return {
          session_id: r.sessionId,
          model: r.model,
          peer_id: s.peerId,
          address,
          requester,
          unit_start: a,
          unit_end: b,
          steps: r.steps,
          flops: perStep * r.steps,
          verdict: r.verdict,
          credited: r.verdict === 'passed' && address !== null && !own,
          evidence_hash: r.evidenceHash ?? null,
          at: now,
          owner,
          requestSteps: i === 0 ? r.steps : 0,
        };
      });
      for (const row of rows) work.push(row);
      afterEnqueue();
      return done;
    },
    recordSession(peerId, address) {
      if (stopped) throw bad('The ledger is stopped.');
      const { owner, done } = waiter(1);
      sessions.push({ peer_id: peerId, address: address.toLowerCase(), at: clock.now(), owner });
      afterEnqueue();
      return done;
    },
    recordEvidence(e) {
      if (stopped) throw bad('The ledger is stopped.');
      if (!/^[0-9a-fA-Fx]{16,130}$/.test(e.hash)) throw bad('An evidence hash is 16-130 hex characters.');
      const { owner, done } = waiter(1);
      evidence.push({ ...e, at: clock.now(), owner });
      afterEnqueue();
      return done;
    },
    async recordPenalty(p) {
      if (!p.evidenceHash) throw bad('A penalty needs the evidence it rests on.');
      await flush();
      const known = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM evidence WHERE hash = $1', [
        p.evidenceHash,
      ]);
      if (known.rows[0]?.n !== 1)
        throw bad('A penalty must name recorded evidence.', { evidenceHash: p.evidenceHash });
      await db.query(
        'INSERT INTO penalties (address, reason, evidence_hash, amount, at) VALUES ($1, $2, $3, $4, $5)',
        [p.address.toLowerCase(), p.reason, p.evidenceHash, p.amount ?? 0, clock.now()],
      );
    },
    async recordSlash(x) {
      if (!/^0x[0-9a-f]{64}$/.test(x.evidenceHash)) throw bad('A slash names a 0x sha256 evidence hash.');
      await flush();
      await db.query(
        `INSERT INTO slashes (evidence_hash, address, state, tx_hash, attempts, last_error, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (evidence_hash) DO UPDATE SET state = EXCLUDED.state, tx_hash = EXCLUDED.tx_hash,
           attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, at = EXCLUDED.at`,
        [
          x.evidenceHash,
          x.address.toLowerCase(),
          x.state,
          x.txHash ?? null,
          x.attempts,
          x.lastError?.slice(0, 2000) ?? null,
          clock.now(),
        ],
      );
    },
    async slashes(address) {
      const r = await db.query<{
        evidence_hash: string;
        address: string;
        state: SlashRow['state'];
        tx_hash: string | null;
        attempts: number;
        last_error: string | null;
      }>(
        'SELECT evidence_hash, address, state, tx_hash, attempts, last_error FROM slashes WHERE address = $1 ORDER BY at DESC LIMIT 100',
        [address.toLowerCase()],
      );
      return r.rows.map((x) => ({
        evidenceHash: x.evidence_hash,
        address: x.address,
        state: x.state,
        txHash: x.tx_hash ?? undefined,
        attempts: x.attempts,
        lastError: x.last_error ?? undefined,
      }));
    },
    flush,
    async leaderboard(limit = 20) {
      const n = Math.max(1, Math.min(1000, Math.floor(limit)));
      const r = await db.query<{ address: string; flops: number; validated_steps: string | number }>(
        'SELECT address, flops, validated_steps FROM credits ORDER BY flops DESC, address LIMIT $1',
        [n],
      );
      return r.rows.map((x) => ({
        address: x.address,
        flops: x.flops,
        validatedSteps: Number(x.validated_steps),
      }));
    },
    async account(address) {
      const a = address.toLowerCase();
      const c = await db.query<{ flops: number; validated_steps: string | number }>(
        'SELECT flops, validated_steps FROM credits WHERE address = $1',
        [a],
      );
      const s = await db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM sessions_served WHERE address = $1',
        [a],
      );
      return {
        address: a,
        flops: c.rows[0]?.flops ?? 0,
        validatedSteps: Number(c.rows[0]?.validated_steps ?? 0),
        sessions: s.rows[0]?.n ?? 0,
      };
    },
    async usage(requester) {
      const r = await db.query<{
        steps: string | number;
        flops: number;
        requests: string | number;
        tokens: string | number;
      }>('SELECT steps, flops, requests, tokens FROM requester_usage WHERE requester = $1', [
        requesterKey(requester),
      ]);
      const row = r.rows[0];
      return {
        steps: Number(row?.steps ?? 0),
        flops: row?.flops ?? 0,
        requests: Number(row?.requests ?? 0),
        tokens: Number(row?.tokens ?? 0),
      };
    },
    async recordRequest(u) {
      if (!u.requester || u.requester.length > 200 || !Number.isSafeInteger(u.tokens) || u.tokens < 0)
        throw bad('A request needs a requester and a whole, non-negative token count.', { ...u });
      await db.query(
        `INSERT INTO requester_usage (requester, steps, flops, requests, tokens, updated_at)
         VALUES ($1, 0, 0, 1, $2, $3)
         ON CONFLICT (requester) DO UPDATE SET requests = requester_usage.requests + 1,
           tokens = requester_usage.tokens + EXCLUDED.tokens, updated_at = EXCLUDED.updated_at`,
        [requesterKey(u.requester), u.tokens, deps.clock.now()],
      );
    },
    async recordApiUsage(u) {
      const ok = (n: number) => Number.isSafeInteger(n) && n >= 0;
      if (!u.principal || u.principal.length > 200 || !ok(u.promptTokens) || !ok(u.completionTokens))
        throw bad('API usage needs a principal and whole, non-negative token counts.', { ...u });
      await db.query(
        `INSERT INTO api_usage (principal, requests, prompt_tokens, completion_tokens, updated_at)
         VALUES ($1, 1, $2, $3, $4)
         ON CONFLICT (principal) DO UPDATE SET requests = api_usage.requests + 1,
           prompt_tokens = api_usage.prompt_tokens + EXCLUDED.prompt_tokens,
           completion_tokens = api_usage.completion_tokens + EXCLUDED.completion_tokens,
           updated_at = EXCLUDED.updated_at`,
        [u.principal, u.promptTokens, u.completionTokens, deps.clock.now()],
      );
    },
    async apiUsage(principal) {
      const r = await db.query<{
        requests: string | number;
        prompt_tokens: string | number;
        completion_tokens: string | number;
      }>('SELECT requests, prompt_tokens, completion_tokens FROM api_usage WHERE principal = $1', [
        principal,
      ]);
      const row = r.rows[0];
      return {
        principal,
        requests: Number(row?.requests ?? 0),
        promptTokens: Number(row?.prompt_tokens ?? 0),
        completionTokens: Number(row?.completion_tokens ?? 0),
      };
    },
    async penalties(address) {
      const r = await db.query<{
        reason: string;
        evidence_hash: string;
        amount: string;
        at: string | number;
      }>(
        'SELECT reason, evidence_hash, amount::text AS amount, at FROM penalties WHERE address = $1 ORDER BY id DESC LIMIT 100',
        [address.toLowerCase()],
      );
      return r.rows.map((x) => ({
        reason: x.reason,
        evidenceHash: x.evidence_hash,
        amount: Number(x.amount),
        at: Number(x.at),
      }));
    },
    stats: () => ({
      pending: pendingCount(),
      ...counters,
      degraded,
      ...(lastError !== undefined ? { lastError } : {}),
    }),
    stop() {
      stopped ??= (async () => {
        if (timer) clock.clearTimeout(timer);
        timer = null;
        await flush();
        if (pendingCount() > 0)
          logger.error(
            { pending: pendingCount() },
            'ledger stopped with uncommitted records (database down)',
          );
        await db.close();
      })();
      return stopped;
    },
  };
}

/** Opens the store (migrating it) and creates the ledger; `LEDGER_UNAVAILABLE` when it cannot. */
export async function openLedger(store: LedgerStore, deps: Omit<LedgerDeps, 'db'>): Promise<Ledger> {
  return createLedger({ ...deps, db: await openDatabase(store) });
}
