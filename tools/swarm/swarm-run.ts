/**
 * One swarm run end to end, through the real product: the real signaling server, N headless
 * Chromium contributor pages (the app's `#/contribute?join=1` declaring a realistic speed and memory
 * for 1/N of the model, so that the planner must use every peer) and a requester page whose chat UI is driven like a person would.
 * Used by `npm run swarm` and `npm run bench:swarm`.
 *
 * Must run inside the loopback-only namespace of tests/e2e/isolated.sh (callers check with
 * `assertLoopbackOnly`). Everything it opens is closed before it returns or throws, and a hard
 * deadline closes the browser so that a stuck ring cannot keep it running.
 */
import { chromium, type Browser, type BrowserContext, type Page } from '@playwright/test';
import { RingworkError } from '../../shared/errors.js';
import type { AnswerFailover } from '../../shared/app/chat-history.js';
import { CHROMIUM, QUIET_FLAGS } from '../../playwright.config.js';
import { NO_SPARE_RENDERER, ourRendererPids, pssBytes, rssBytes } from './renderer-memory.js';
import { spawnServer } from '../testing/spawn-server.js';
import { loadLine, readLoadTimes, snapshot, watchPeers, type PeerWatch } from './swarm-trace.js';
import { summarise, type PerfStat } from '../../shared/util/perf-trace.js';
import { watchDecodeCpu, type DecodeCpuWatch } from './decode-cpu.js';
import { summariseTrace, traceLines, type TraceEvent } from './chrome-trace.js';
import { readFile } from 'node:fs/promises';
import {
  countPromptTokens,
  parseAnswerMeta,
  parseModelArg,
  speedFigures,
  unitBytes,
  waitForProfiles,
  waitForRing,
  waitForStandbys,
} from './swarm-network.js';
import {
  DEFAULT_SWARM_MODEL,
  type FailoverBreakdown,
  type SwarmAsk,
  type SwarmAnswer,
  type SwarmFailover,
  type SwarmOptions,
  type SwarmPageMemory,
  type SwarmPagePerf,
  type SwarmResult,
  type SwarmSpeculative,
  type SwarmStage,
} from './swarm-types.js';

export * from './swarm-types.js';
export { parseAnswerMeta, parseModelArg } from './swarm-network.js';
import {
  ROOMY_SLOW_TFLOPS,
  STANDBY_SLOW_GBPS,
  STANDBY_SLOW_TFLOPS,
  SWARM_TFLOPS,
  swarmMemoryBytes,
} from './swarm-capability.js';

/**
 * What `chromeTrace` records: V8's GC (with each collection's heap sizes) and compile jobs, wasm,
 * and the timeline's events of every thread.
 */
const TRACE_CATEGORIES = [
  'v8',
  'v8.wasm',
  'v8.execute',
  'disabled-by-default-v8.gc',
  'disabled-by-default-v8.compile',
  'devtools.timeline',
  'toplevel',
];

/** Decode steps in the early and the late model-run figures (`stage.modelMs.early` / `.late`). */
const EARLY_LATE = 8;

/** The steps of one failover, from the page's wall-clock marks and the moment of the close. */
function breakdownOf(f: PageFailover, killedAt: number): FailoverBreakdown | undefined {
  const p = f.phases;
  if (!p || f.recoveredAt === undefined || p.ringAt === undefined || p.openedAt === undefined)
    return undefined;
  const firstRingAt = p.firstRingAt ?? p.ringAt;
  const linkedAt = p.linkedAt ?? p.openedAt;
  return {
    detect: Math.max(0, f.detectedAt - killedAt),
    replan: firstRingAt - f.detectedAt,
    retry: p.ringAt - firstRingAt,
    links: linkedAt - p.ringAt,
    open: p.openedAt - linkedAt,
    replay: f.recoveredAt - p.openedAt,
    attempts: p.attempts,
    retriedOn: p.retriedOn ?? [],
  };
}

/** What the chat page shows of a failover (chat-page.tsx `data-failovers`): the chat's record, read back as JSON. */
type PageFailover = Pick<
  AnswerFailover,
  'lostPeer' | 'position' | 'detectedAt' | 'recoveredAt' | 'replayed' | 'phases'
> & {
  cause: string;
};

interface Contributor {
  context: BrowserContext;
  page: Page;
  label: string;
  /** The renderer that appeared when this page opened (undefined when not exactly one did). */
  pid?: number;
  /** Shard loads already logged (`trace`). */
  loadsLogged?: number;
}

async function openPage(
  browser: Browser,
  url: string,
  path: string,
  label: string,
  log: (m: string) => void,
): Promise<Contributor> {
  const context = await browser.newContext();
  // Without media permission Chromium gathers ICE candidates only on the default-route address,
  // which does not exist in the loopback-only namespace, and the DataChannels never open.
  await context.grantPermissions(['camera', 'microphone'], { origin: url });
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`[${label}] ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource'))
      log(`[${label}] ${m.text()}`);
  });
  page.on('requestfailed', (r) => {
    if (!r.url().endsWith('.safetensors.index.json'))
      log(`[${label}] request failed: ${r.url()} (${r.failure()?.errorText ?? '?'})`);
  });
  page.on('response', (r) => {
    // The loader probes for a sharded checkpoint's index first; its 404 is expected, as is the
    // ledger's for an account nothing was credited to yet (the page polls it every 10 s).
    if (
      r.status() >= 400 &&
      !r.url().endsWith('.safetensors.index.json') &&
      !(r.status() === 404 && r.url().includes('/api/ledger/account/'))
    )
      log(`[${label}] HTTP ${r.status()} ${r.url()}`);
  });
  const before = ourRendererPids();
  await page.goto(`${url}${path}`);
  const fresh = [...ourRendererPids()].filter((p) => !before.has(p));
  return { context, page, label, ...(fresh.length === 1 ? { pid: fresh[0]! } : {}) };
}

/** Runs one swarm: see the module comment. Throws a RingworkError naming what failed. */
export async function runSwarm(o: SwarmOptions): Promise<SwarmResult> {
  const log = o.log ?? (() => undefined);
  const started = Date.now();
  const deadline = started + o.timeoutMs;
  const left = () => Math.max(1000, deadline - Date.now());
  const model = o.model ? parseModelArg(o.model) : undefined;
  const modelId = model?.id ?? DEFAULT_SWARM_MODEL;
  // Only the asked-for model in the catalog: with two, the planner would share the peers out.
  // The pages are CPU tabs (category C by speed, which by policy take models only whole): this
  // fleet lets them take shards, as a fleet of such tabs would have to.
  const server = await spawnServer([
    '--category-c-below-tflops',
    '0',
    ...(model
      ? [
          '--model',
          `${model.id}=${model.path}`,
          ...(model.id === DEFAULT_SWARM_MODEL ? [] : ['--no-default-model']),
        ]
      : []),
  ]);
  let browser: Browser | undefined;
  const watch: PeerWatch | undefined = o.trace ? watchPeers(server.url, log, started) : undefined;
  let hardStopped = false;
  const hardStop = setTimeout(() => {
    hardStopped = true;
    void browser?.close();
  }, o.timeoutMs);
  try {
    const snap0 = await snapshot(server.url);
    const descriptor = snap0.models.find((m) => m.id === modelId)?.descriptor;
    if (!descriptor)
      throw new RingworkError('INVALID_ARGUMENT', `The server's catalog has no model "${modelId}".`);
    const promptTokens = await countPromptTokens(server.url, descriptor, o.prompt);
    if (o.steps > descriptor.contextLength) {
      throw new RingworkError(
        'INVALID_ARGUMENT',
        `--steps ${o.steps} exceeds ${modelId}'s served context of ${descriptor.contextLength} positions.`,
      );
    }
    // The requester runs min(context, promptTokens - 1 + maxNewTokens) positions (requester.ts):
    // this makes that exactly `steps`, llama2.c's count.
    const maxNewTokens = o.maxNewTokens ?? o.steps - promptTokens + 1;
    if (maxNewTokens < 1) {
      throw new RingworkError(
        'INVALID_ARGUMENT',
        `--steps ${o.steps} leaves no room after the ${promptTokens} prompt tokens (BOS included).`,
      );
    }

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        ...QUIET_FLAGS,
        '--enable-unsafe-webgpu',
        '--allow-loopback-in-peer-connection',
        NO_SPARE_RENDERER,
        ...(o.jsFlags ? [`--js-flags=${o.jsFlags}`] : []),
      ],
    });
    log(`server ${server.url}, Chromium ${browser.version()}; ${o.peers} contributor page(s) for ${modelId}`);
    if (o.peers > descriptor.units) {
      throw new RingworkError(
        'INVALID_ARGUMENT',
        `--peers ${o.peers}: ${modelId} has only ${descriptor.units} plannable units, so no ring can have more stages.`,
      );
    }
    // One at a time, so that each page's renderer process can be told apart for the memory figures.
    // Each declares memory for 1/n of the model, so no ring exists until the n-th joins: no page
    // loads a shard of an epoch that is re-planned under it (an assignment arriving mid-load could
    // leave a page serving the older epoch; seen with 4 peers when every step formed a ring).
    // With `kill`, the survivors must carry the model on their own, so the pages declare the old
    // slow-but-roomy capability instead (every peer used by speed, any subset fits) and each waits
    // for its ring: a failover run is no speed figure.
    const units = await unitBytes(server.url, descriptor);
    // Any kill counts, also one in a later answer (bench:churn's first answer is undisturbed):
    // with memory for 1/n each, the survivors of a loss could never re-form the ring.
    const forced = !o.kill && !(o.more ?? []).some((q) => q.kill);
    const capability = forced
      ? `tflops=${SWARM_TFLOPS}&gbps=100&memory=${swarmMemoryBytes(
          units.map((u) => u.weight + u.kv),
          o.peers,
        )}`
      : `tflops=${ROOMY_SLOW_TFLOPS}&gbps=100&memory=4000000000`;
    const tooling =
      `${o.nullCompute ? '&nullCompute=1' : ''}${o.perf || o.trace ? '&perf=1' : ''}` +
      (o.threads !== undefined ? `&threads=${o.threads}` : '') +
      (o.warmUpMs !== undefined ? `&warmup=${o.warmUpMs}` : '');
    /** With `trace`: each page's shard loads not logged yet, broken down (swarm-trace.ts). */
    const logLoads = async () => {
      if (!o.trace) return;
      for (const c of contributors) {
        const loads = await readLoadTimes(c.page).catch(() => []);
        for (const ms of loads.slice(c.loadsLogged ?? 0)) log(`[${c.label}] shard load: ${loadLine(ms)}`);
        c.loadsLogged = loads.length;
      }
    };
    const contributors: Contributor[] = [];
    let stages: SwarmStage[] = [];
    let opened = 0;
    const standbys = o.standbys ?? 0;
    /** Standby peers, loaded, as of the last wait (a kill of a stage they back up is a swap). */
    let standbyPeers = new Set<string>();
    const addContributor = async () => {
      const i = opened++;
      contributors.push(
        await openPage(
          browser!,
          server.url,
          `/#/contribute?join=1&${capability}${tooling}`,
          `contributor ${i}`,
          log,
        ),
      );
      if (forced && contributors.length < o.peers) {
        await waitForProfiles(server.url, contributors.length, Date.now() + Math.min(60_000, left()));
        return;
      }
      // A page's first shard load compiles the wasm runtime; on a loaded machine that takes minutes.
      stages = await waitForRing(
        server.url,
        modelId,
        // Standby pages are never stages: a refill with standbys still makes a ring of `peers`.
        Math.min(contributors.length, o.peers),
        Date.now() + Math.min(180_000, left()),
      );
      await logLoads();
    };
    for (let i = 0; i < o.peers; i++) await addContributor();
    log(`ring: ${stages.map((s) => `${s.peer.slice(0, 8)} [${s.range[0]}, ${s.range[1]})`).join(' → ')}`);
    // Standby pages join after the ring formed; their declared speed keeps them out of it.
    for (let i = 0; i < standbys; i++) {
      const k = opened++;
      contributors.push(
        await openPage(
          browser,
          server.url,
          `/#/contribute?join=1&tflops=${STANDBY_SLOW_TFLOPS}&gbps=${STANDBY_SLOW_GBPS}&memory=4000000000${tooling}`,
          `standby ${k}`,
          log,
        ),
      );
    }
    if (standbys > 0) {
      standbyPeers = await waitForStandbys(server.url, modelId, Date.now() + Math.min(180_000, left()));
      log(`standbys: ${[...standbyPeers].map((p) => p.slice(0, 8)).join(', ')}`);
      await logLoads();
    }

    const chatQuery = [...(o.perf ? ['perf=1'] : []), ...(o.loop === false ? ['loop=0'] : [])].join('&');
    const chatPage = await openPage(
      browser,
      server.url,
      `/#/chat${chatQuery ? `?${chatQuery}` : ''}`,
      'requester',
      log,
    );
    const chat = chatPage.page;
    /** With `perf`: the first answer's decode CPU per process (decode-cpu.ts). */
    let cpuWatch: DecodeCpuWatch | undefined;
    /** With `chromeTrace`: whether the (first) answer was traced, and its summary. */
    let traced = false;
    /** While the `warmAnswers` run: nothing is measured. */
    let warming = (o.warmAnswers ?? 0) > 0;
    let chromeTrace: SwarmResult['chromeTrace'];
    await chat.getByTestId('tab-chat').click();
    if (modelId !== DEFAULT_SWARM_MODEL) {
      // The model list fills from /api/network; pick ours once it is there.
      const select = chat.getByRole('combobox', { name: 'Model' });
      await select.locator(`option[value="${modelId}"]`).waitFor({ state: 'attached', timeout: left() });
      await select.selectOption(modelId);
    }
    await chat
      .getByTestId('ring-status')
      .filter({ hasText: `${modelId} is served by a ring of ${o.peers} peer` })
      .waitFor({ timeout: Math.min(30_000, left()) });
    // The requester page joining can trigger a re-plan (a new epoch for the same layout); asking
    // before every stage has taken it up gets "epoch is stale" from a stage, so wait for it again.
    const settled = await waitForRing(server.url, modelId, o.peers, Date.now() + Math.min(30_000, left()));
    if (JSON.stringify(settled) !== JSON.stringify(stages)) {
      log(
        `re-planned: ${settled.map((s) => `${s.peer.slice(0, 8)} [${s.range[0]}, ${s.range[1]})`).join(' → ')}`,
      );
      stages.splice(0, stages.length, ...settled);
    }
    /** Asks once in the chat (closing a stage's page mid-answer with `kill`) and reads the answer. */
    const askOnce = async (q: SwarmAsk): Promise<SwarmAnswer> => {
      await chat.getByTestId('temperature').fill(String(q.temperature));
      if (q.seed !== undefined) await chat.getByTestId('seed').fill(String(q.seed));
      // The chat's "Draft locally" setting: enabled once the temperature (as typed) is 0.
      const draftBox = chat.getByTestId('draft');
      if (q.draft) {
        // It is offered once the page knows the model's size (the network snapshot) and the
        // temperature it reads is 0: wait for that a while, then say why not.
        await chat
          .waitForFunction(
            () => !document.querySelector<HTMLInputElement>('[data-testid="draft"]')?.disabled,
            null,
            { timeout: Math.min(15_000, left()) },
          )
          .catch(() => undefined);
        if (await draftBox.isDisabled()) {
          throw new RingworkError(
            'SPECULATIVE_UNSUPPORTED',
            `The chat does not offer drafting: ${await chat.getByTestId('draft-why').textContent()}`,
          );
        }
        await draftBox.check();
        await chat.getByTestId('draft-k').selectOption(String(q.draft.k));
      } else if (await draftBox.isChecked()) await draftBox.uncheck();
      let victim: { stage: number; peer: string; page: Contributor } | undefined;
      if (q.kill) {
        const st = stages[q.kill.stage];
        if (!st) {
          throw new RingworkError(
            'INVALID_ARGUMENT',
            `--kill-stage ${q.kill.stage}: the ring has ${stages.length} stages (0-based).`,
          );
        }
        for (const c of contributors) {
          const short = ((await c.page.locator('dt:text-is("Peer id") + dd').textContent()) ?? '').trim();
          if (st.peer.slice(2, 8) === short) victim = { stage: q.kill.stage, peer: st.peer, page: c };
        }
        if (!victim) throw new RingworkError('NO_RING', `No contributor page serves stage ${q.kill.stage}.`);
      }
      await chat.getByTestId('max-tokens').fill(String(maxNewTokens));
      await chat.getByTestId('prompt').fill(o.prompt);
      log(`asking: ${promptTokens} prompt tokens, ${maxNewTokens} new tokens at most`);
      if (o.perf && !cpuWatch && !warming) {
        // Renderer pid → page, as the perf figures name them.
        const pages = new Map<number, string>(chatPage.pid ? [[chatPage.pid, 'requester']] : []);
        for (const c of contributors) {
          const short = ((await c.page.locator('dt:text-is("Peer id") + dd').textContent()) ?? '').trim();
          const i = stages.findIndex((st) => st.peer.slice(2, 8) === short);
          if (c.pid) pages.set(c.pid, i >= 0 ? `stage ${i}` : c.label);
        }
        cpuWatch = await watchDecodeCpu(chat, { pages, ...(server.pid ? { serverPid: server.pid } : {}) });
      }
      const tracing = o.chromeTrace !== undefined && !traced && !warming;
      /** Decode steps the requester page has emitted so far (with `perf`; see decode-cpu.ts). */
      const emitted = () =>
        chat.evaluate(
          () =>
            (
              (globalThis as Record<string, unknown>).__ringworkPerf as
                { samples: Record<string, number[]> } | undefined
            )?.samples['requester.emitMs']?.length,
        );
      const emittedBefore = tracing ? await emitted() : undefined;
      if (tracing) {
        traced = true;
        await browser!.startTracing(undefined, { path: o.chromeTrace, categories: TRACE_CATEGORIES });
      }
      await chat.getByTestId('send').click();
      const answer = chat.getByTestId('answer').last();
      const done = answer.getByTestId('answer-meta').or(answer.getByTestId('answer-error'));
      let killedAt = 0;
      let killedAfter = 0;
      if (q.kill && victim) {
        // The answer streams `data-tokens` (generated so far); close the stage's page at N.
        const after = q.kill.after;
        const handle = await chat.waitForFunction(
          (n) => {
            const all = document.querySelectorAll('[data-testid="answer"]');
            const a = all[all.length - 1] as HTMLElement | undefined;
            if (!a) return false;
            if (a.querySelector('[data-testid="answer-meta"], [data-testid="answer-error"]')) return -1;
            const t = Number(a.dataset.tokens ?? '0');
            return t >= n ? t : false;
          },
          after,
          { timeout: left(), polling: 5 },
        );
        killedAfter = (await handle.jsonValue()) as number;
        if (killedAfter < 0) {
          throw new RingworkError(
            'INVALID_ARGUMENT',
            `The answer ended before ${after} tokens were generated: nothing left to kill (lower --kill-after).`,
          );
        }
        killedAt = Date.now();
        await victim.page.context.close();
        contributors.splice(contributors.indexOf(victim.page), 1);
        log(
          `closed the page of stage ${victim.stage} (${victim.peer.slice(0, 8)}) after ${killedAfter} tokens`,
        );
      }
      // While the answer recovers, log the coordinator's view whenever it changes (ms since the
      // close): where a slow recovery spends its time (re-plan, shard loads, standby swap).
      let watching = killedAt > 0;
      const trace = (async () => {
        let last = '';
        while (watching) {
          const snap = await snapshot(server.url).catch(() => undefined);
          const ring = snap?.rings.find((r) => r.model === modelId);
          const line = ring
            ? `ring e${ring.epoch}: ` +
              ring.stages
                .map((s) => {
                  const st = snap!.peers.find((p) => p.id === s.peer)?.status;
                  return `${s.peer.slice(0, 8)} [${s.range[0]}, ${s.range[1]}) ${st?.state ?? '-'}@e${st?.epoch ?? '?'}`;
                })
                .join(' → ')
            : 'no ring';
          if (line !== last) log(`+${Date.now() - killedAt} ms ${line}`);
          last = line;
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      await done.waitFor({ timeout: left() }).finally(() => (watching = false));
      await trace;
      if (tracing) {
        await browser!.stopTracing();
        // Without `perf` the page keeps no count: the most the answer could have generated.
        const after = await emitted();
        const tokens =
          after !== undefined && emittedBefore !== undefined ? after - emittedBefore : maxNewTokens;
        const pages = new Map<number, string>(chatPage.pid ? [[chatPage.pid, 'requester']] : []);
        for (const c of contributors) {
          const short = ((await c.page.locator('dt:text-is("Peer id") + dd').textContent()) ?? '').trim();
          const i = stages.findIndex((st) => st.peer.slice(2, 8) === short);
          if (c.pid) pages.set(c.pid, i >= 0 ? `stage ${i}` : c.label);
        }
        const raw = JSON.parse(await readFile(o.chromeTrace!, 'utf8')) as
          { traceEvents: TraceEvent[] } | TraceEvent[];
        const summary = summariseTrace(Array.isArray(raw) ? raw : raw.traceEvents, pages);
        for (const p of summary) for (const l of traceLines(p, tokens)) log(l);
        chromeTrace = { path: o.chromeTrace!, tokens, pages: summary };
      }
      if (await answer.getByTestId('answer-error').count()) {
        throw new RingworkError(
          'NO_RING',
          `The chat answered with an error: ${await answer.getByTestId('answer-error').textContent()}`,
        );
      }
      const text = (await answer.getByTestId('answer-text').textContent()) ?? '';
      const timings = parseAnswerMeta((await answer.getByTestId('answer-meta').textContent()) ?? '');
      let speculative: SwarmSpeculative | undefined;
      if (q.draft) {
        const note = answer.getByTestId('answer-draft');
        if (!(await note.count()))
          throw new RingworkError('SPECULATIVE_UNSUPPORTED', 'The drafted answer shows no draft figures.');
        const n = async (a: string) => Number(await note.getAttribute(`data-${a}`));
        speculative = {
          format: q.draft.format,
          k: q.draft.k,
          accepted: await n('accepted'),
          drafted: await n('drafted'),
          laps: await n('laps'),
          tokensPerLap: await n('tokens-per-lap'),
        };
      }
      let failovers: SwarmFailover[] | undefined;
      let failoverNote: string | undefined;
      if (q.kill && victim) {
        const note = answer.getByTestId('answer-failover');
        const raw = (await note.count()) ? await note.getAttribute('data-failovers') : null;
        const seen = raw ? (JSON.parse(raw) as PageFailover[]) : [];
        if (raw) failoverNote = (await note.textContent()) ?? '';
        if (seen.length === 0) {
          throw new RingworkError(
            'NO_RING',
            `Stage ${victim.stage}'s page was closed after ${killedAfter} tokens but the answer shows no failover.`,
          );
        }
        // A standby took over when the lost stage's units are now served by a former standby.
        const after = await snapshot(server.url);
        const ringNow = after.rings.find((r) => r.model === modelId);
        const viaStandby = !!ringNow?.stages.some((s) => standbyPeers.has(s.peer));
        failovers = seen.map((f) => {
          const breakdown = breakdownOf(f, killedAt);
          return {
            stage: victim.stage,
            peer: victim.peer,
            killedAfter,
            cause: f.cause,
            position: f.position,
            replayed: f.replayed,
            detectMs: Math.max(0, f.detectedAt - killedAt),
            recoveryMs: Math.max(0, (f.recoveredAt ?? NaN) - killedAt),
            viaStandby,
            ...(breakdown ? { breakdown } : {}),
          };
        });
      }
      return {
        text,
        stages: [...stages],
        timings,
        ...(speculative ? { speculative } : {}),
        ...(failovers ? { failovers } : {}),
        ...(failoverNote !== undefined ? { failoverNote } : {}),
      };
    };
    for (let i = 0; i < (o.warmAnswers ?? 0); i++) {
      await askOnce({ temperature: o.temperature, ...(o.seed !== undefined ? { seed: o.seed } : {}) });
      log(`warm answer ${i + 1} of ${o.warmAnswers} done`);
    }
    warming = false;
    const first = await askOnce({
      temperature: o.temperature,
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.draft ? { draft: o.draft } : {}),
      ...(o.kill ? { kill: o.kill } : {}),
    });
    const { text, timings, speculative, failovers, failoverNote } = first;
    const cpu = await cpuWatch?.report();
    const speed = await speedFigures(server.url, modelId);
    let perf: SwarmPagePerf[] | undefined;
    if (o.perf) {
      const read = async (p: Page, page: string): Promise<SwarmPagePerf> => {
        const samples = await p.evaluate(
          () =>
            (
              (globalThis as Record<string, unknown>).__ringworkPerf as
                { samples: Record<string, number[]> } | undefined
            )?.samples ?? {},
        );
        const stats: Record<string, PerfStat> = {};
        for (const [name, list] of Object.entries(samples)) stats[name] = summarise(list);
        // The model's run early and late in the answer (after the prompt's step): a gap between
        // them is the engine still warming up (V8 tiering its wasm up) while it serves.
        const model = samples['stage.modelMs'];
        if (model && model.length > 2 * EARLY_LATE) {
          stats['stage.modelMs.early'] = summarise(model.slice(1, 1 + EARLY_LATE));
          stats['stage.modelMs.late'] = summarise(model.slice(-EARLY_LATE));
        }
        return { page, stats };
      };
      perf = [await read(chat, 'requester')];
      for (const c of contributors) {
        const short = ((await c.page.locator('dt:text-is("Peer id") + dd').textContent()) ?? '').trim();
        const i = stages.findIndex((s) => s.peer.slice(2, 8) === short);
        const st = stages[i];
        perf.push(await read(c.page, st ? `stage ${i} [${st.range[0]},${st.range[1]})` : `page ${short}`));
      }
      perf.sort((a, b) =>
        a.page === 'requester' ? -1 : b.page === 'requester' ? 1 : a.page.localeCompare(b.page),
      );
    }
    let more: SwarmAnswer[] | undefined;
    let moreError: string | undefined;
    for (const q of o.more ?? []) {
      try {
        // Replace the closed pages, and wait for the full ring again (the coordinator re-plans).
        while (contributors.length < o.peers + standbys) await addContributor();
        // Every survivor may reload a re-planned shard: allow more than a first join takes.
        stages = await waitForRing(server.url, modelId, o.peers, Date.now() + Math.min(180_000, left()));
        if (standbys > 0) {
          // The fresh page took the lost stage's units from the standby that stood in (a re-plan
          // leaves the slow standby out again), which goes back to backing that stage up.
          standbyPeers = await waitForStandbys(server.url, modelId, Date.now() + Math.min(180_000, left()));
          stages = await waitForRing(server.url, modelId, o.peers, Date.now() + Math.min(60_000, left()));
          await logLoads();
        }
        (more ??= []).push(await askOnce(q));
        o.onAnswer?.(more[more.length - 1]!, more.length, first);
      } catch (e) {
        // The answers so far still count; the caller reports where the series stopped.
        moreError = e instanceof Error ? e.message : String(e);
        log(`stopped after ${more?.length ?? 0} further answers: ${moreError}`);
        break;
      }
    }

    let memory: SwarmPageMemory[] | undefined;
    if (o.measureMemory) {
      memory = [];
      for (const c of contributors) {
        const cdp = await c.context.newCDPSession(c.page);
        await cdp.send('Performance.enable');
        const { metrics } = await cdp.send('Performance.getMetrics');
        const heap = metrics.find((m) => m.name === 'JSHeapUsedSize')?.value;
        // The contribute page shows a short form of its peer id (format.ts shortId: characters 2-8).
        const short = (await c.page.locator('dt:text-is("Peer id") + dd').textContent()) ?? '';
        const stage = stages.find((s) => s.peer.slice(2, 8) === short.trim());
        if (!stage)
          throw new RingworkError('NO_RING', `Contributor page ${short} serves no stage of the ring.`);
        const slice = units.slice(stage.range[0], stage.range[1]);
        const rss = c.pid !== undefined ? rssBytes(c.pid) : undefined;
        const pss = c.pid !== undefined ? pssBytes(c.pid) : undefined;
        memory.push({
          peer: stage.peer,
          range: stage.range,
          ...(rss !== undefined ? { rssBytes: rss } : {}),
          ...(pss !== undefined ? { pssBytes: pss } : {}),
          ...(heap !== undefined ? { jsHeapUsedBytes: heap } : {}),
          weightBytes: slice.reduce((a, u) => a + u.weight, 0),
          kvBytes: slice.reduce((a, u) => a + u.kv, 0),
        });
      }
    }
    return {
      model: modelId,
      contextLength: descriptor.contextLength,
      text,
      promptTokens,
      maxNewTokens,
      stages,
      timings,
      ...(speculative ? { speculative } : {}),
      ...(memory ? { memory } : {}),
      ...(speed ? { speed } : {}),
      ...(perf ? { perf } : {}),
      ...(cpu ? { cpu } : {}),
      ...(chromeTrace ? { chromeTrace } : {}),
      ...(failovers ? { failovers } : {}),
      ...(failoverNote !== undefined ? { failoverNote } : {}),
      ...(more ? { more } : {}),
      ...(moreError !== undefined ? { moreError } : {}),
      elapsedS: (Date.now() - started) / 1000,
    };
  } catch (e) {
    if (hardStopped) {
      throw new RingworkError(
        'ABORTED',
        `The swarm did not finish within ${Math.round(o.timeoutMs / 1000)} s.`,
        {
          cause: e,
        },
      );
    }
    throw e;
  } finally {
    clearTimeout(hardStop);
    await watch?.stop();
    await browser?.close().catch(() => undefined);
    await server.stop();
  }
}
