/**
 * Contributing: register a capability, follow the coordinator's assignments — load exactly the
 * assigned shard into a runner, keep links to the ring neighbours and to requesters — and serve
 * generation steps until paused or stopped. A plain object with a zustand vanilla store; the browser
 * injects its WebRTC network, Web Worker runner and device profiler, Node tests in-memory ones.
 */
import { createStore } from 'zustand/vanilla';
import type { ServerMessageOf } from '../protocol/signaling.js';
import { isRingworkError, RingworkError } from '../errors.js';
import { answerProbes, createLinkProber, type LinkProber } from '../ring/link-probe.js';
import { ringErrorControl } from '../ring/ring-protocol.js';
import { toBase64 } from '../ring/stage-commitments.js';
import { createSessionKey, type SessionKey } from '../validation/crypto.js';
import type { StageTamper } from '../validation/test-tampers.js';
import { perfSample } from '../util/perf-trace.js';
import {
  createRingStage,
  stageShardOf,
  type RingStage,
  type RingStageStats,
  type StageShard,
} from '../ring/ring-stage.js';
import type { LoadProgress, LoadRequest, LoadResult, ShardRunner } from '../runtime/shard-runner.js';
import { createMemoryChannelPair } from '../transport/memory-transport.js';
import { createCoalescer } from './coalesce.js';
import { createPeerLink } from '../transport/peer-link.js';
import type { PeerLink } from '../transport/types.js';
import { silentLogger, systemAppClock, type NetworkClosed, type NetworkHandle } from './network-port.js';
import { isFinalError, rejoinDelay } from './rejoin-policy.js';
import { createRingMembership, type MembershipContext, type RingMembership } from './ring-membership.js';
import {
  type ContributeState,
  type Contributor,
  type ContributorOptions,
  type StartOptions,
} from './contributor-types.js';

export type {
  ContributePhase,
  ContributeState,
  Contributor,
  ContributorOptions,
  MeasuredDevice,
  StartOptions,
} from './contributor-types.js';
export { capabilityFrom } from './contributor-types.js';

interface Serving {
  key: string;
  runner: ShardRunner;
  stage?: RingStage;
  /** Bounds the stage derives from the loaded shard (hidden size, context, KV bytes). */
  shard?: StageShard;
  epoch: number;
}

const initialState = (): ContributeState => ({
  phase: 'idle',
  stats: { stepsServed: 0, tokensServed: 0, computeMs: 0, openSessions: 0 },
  dutyCycle: 1,
  autoPause: false,
  rejoins: 0,
});

/** Creates a contributor (idle until {@link Contributor.start}). */
export function createContributor(o: ContributorOptions): Contributor {
  const clock = o.clock ?? systemAppClock;
  const log = o.logger ?? silentLogger;
  const store = createStore<ContributeState>(() => initialState());
  const set = (p: Partial<ContributeState>) => store.setState(p);
  const get = () => store.getState();
  /**
   * The stage's counters reach the store at most every `statsEveryMs` (the latest always; a
   * session opening or ending, a refusal or an error at once): a page re-renders on each delivery.
   */
  const stageStats = createCoalescer<RingStageStats>({
    everyMs: o.statsEveryMs ?? 0,
    clock,
    deliver: (stats) => set({ stats: { ...get().stats, ...stats } }),
    urgent: (last, next) =>
      !last ||
      last.openSessions !== next.openSessions ||
      last.refusedOpens !== next.refusedOpens ||
      last.lastError !== next.lastError,
  });

  let net: NetworkHandle | undefined;
  let membership: RingMembership | undefined;
  let serving: Serving | undefined;
  let starting: Promise<void> | undefined;
  /** Stage-side end of the in-memory link to this peer's own requester. */
  let selfLink: PeerLink | undefined;
  /** Unsubscribes from the current connection's end. */
  let offClosed: (() => void) | undefined;
  /** Aborts the running rejoin loop (stop, or a final verdict); set while one runs. */
  let rejoining: AbortController | undefined;
  /** Measures the links to the ring neighbours and reports them (`link-report`) for proximity. */
  let prober: LinkProber | undefined;

  /** Test-only dishonesty (the validation e2e), asked for once; undefined for honest contributors. */
  let testTamper: Promise<StageTamper> | undefined;
  const tamperOf = async (): Promise<StageTamper | undefined> =>
    o.testTamper ? (testTamper ??= o.testTamper()) : undefined;

  // Result validation: this tab's signing key for ring commitments (none where WebCrypto is missing).
  let validationKey: SessionKey | undefined;
  void createSessionKey().then(
    (k) => {
      validationKey = k;
      if (get().capability) send({ type: 'validation-key', key: toBase64(k.publicKeyRaw) });
    },
    () => undefined,
  );
  const send = (m: Parameters<NetworkHandle['signaling']['send']>[0]) => {
    try {
      net?.signaling.send(m);
    } catch (e) {
      log.warn({ err: e, type: m.type }, 'signaling send failed');
    }
  };

  /**
   * While a shard loads — or after a re-plan left this peer out of every ring (unassigned, standby)
   * — there is no stage: answer session opens on the link with a typed error so a requester that
   * raced the re-plan retries instead of waiting out its step deadline.
   */
  const notServingYet = (link: PeerLink): void => {
    const off = link.onControl((raw) => {
      if (serving?.stage) return off();
      const m = raw as { type?: string; session?: unknown };
      if (m.type === 'open' && typeof m.session === 'string') {
        try {
          link.sendControl(
            ringErrorControl(
              m.session,
              net?.peerId ?? '?',
              new RingworkError(
                'RING_STAGE_NOT_SERVING',
                'serves no stage now (loading its shard, or planned out of the ring)',
              ),
            ),
          );
        } catch {
          /* link gone */
        }
      }
    });
  };

  /**
   * A runner started (and warmed: ONNX Runtime's wasm compiled and instantiated) when the peer
   * joins, for its first shard: a fresh page's first load was nearly all that start-up (7.5–9 s
   * idle), paid when it was assigned — by a failover onto it, say — and now while it waits.
   */
  let spare: ShardRunner | undefined;
  const takeRunner = (): ShardRunner => {
    const r = spare ?? o.createRunner();
    spare = undefined;
    return r;
  };

  const stopServing = async (): Promise<void> => {
    const s = serving;
    serving = undefined;
    // No stage from now on: a requester's open (one that raced the re-plan) is answered, not dropped.
    for (const l of membership?.links.all() ?? []) notServingYet(l);
    await s?.stage?.stop();
    stageStats.flush();
    await s?.runner.dispose();
  };

  /**
   * Ends the stage but keeps its runner for the next shard: a re-planned survivor (a failover
   * without a standby) then only builds its new graph, instead of starting a worker and compiling
   * ONNX Runtime's wasm again — most of the recovery time on a busy device.
   */
  const stopStageKeepRunner = async (): Promise<ShardRunner | undefined> => {
    const s = serving;
    serving = undefined;
    await s?.stage?.stop();
    return s?.runner;
  };

  /**
   * Where a shard load's time went (why a standby or a re-planned survivor is slow to be ready):
   * perf-trace samples (`perf=1` pages; tools/swarm reads them) and one info log line. `stop` is
   * ending the previous stage, `worker` the runner's start-up and messaging (a fresh runner starts
   * its worker and ONNX Runtime), the rest the runner's own phases.
   */
  const recordLoadTimes = (t0: number, tLoad: number, load: LoadResult, fresh: boolean): void => {
    const end = clock.now();
    const ms: Record<string, number> = {
      total: end - t0,
      stop: tLoad - t0,
      worker: Math.max(0, end - tLoad - load.loadMs),
      ...load.phasesMs,
    };
    for (const [k, v] of Object.entries(ms)) perfSample(`load.${k}`, v);
    log.info({ ms, freshRunner: fresh, bytesFetched: load.bytesFetched }, 'shard loaded');
  };

  /**
   * Makes sure `a`'s units are loaded in `serving` (loading them when they are not). False when a
   * newer assignment superseded this one meanwhile (it follows in the membership queue).
   */
  const ensureLoaded = async (
    a: ServerMessageOf<'assignment'> | ServerMessageOf<'standby'>,
    ctx: MembershipContext,
  ): Promise<boolean> => {
    const key = `${a.model.url}|${a.range.join('-')}|${a.model.weightFormat}|${a.model.contextLength}`;
    // A shard whose load was superseded (a newer assignment arrived meanwhile) stays loaded when
    // the load finished; one that never loaded is loaded again rather than failing the assignment.
    if (serving?.key !== key || !serving.shard) {
      const t0 = clock.now();
      // stop() detaches the old stage at once: answer "not serving" from then on, not nothing.
      const stopping = stopStageKeepRunner();
      for (const l of membership?.links.all() ?? []) notServingYet(l);
      const kept = await stopping;
      const entry: Serving = { key, runner: kept ?? takeRunner(), epoch: a.epoch };
      serving = entry;
      set({
        phase: 'loading',
        download: { bytesDone: 0, bytesTotal: 0, fetched: 0, startedAt: clock.now() },
      });
      send({ type: 'assignment-status', epoch: a.epoch, state: 'loading' });
      const request: LoadRequest = {
        model: { url: a.model.url, tokenizerUrl: a.model.tokenizerUrl },
        range: a.range,
        weightFormat: a.model.weightFormat,
        contextLength: a.model.contextLength,
        // One logits row per decode step, as `last`; and as many as a speculative `verify` step asks.
        logits: 'rows',
        backend: 'auto',
      };
      const onProgress = (p: LoadProgress) => {
        const d = get().download;
        if (p.phase === 'fetch' && d) {
          set({
            download: { ...d, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, fetched: p.bytesFetched },
          });
        }
      };
      let load: LoadResult;
      const tLoad = clock.now();
      try {
        load = await entry.runner.load(request, { onProgress });
      } catch (e) {
        // A kept runner that cannot take the new shard (its worker died, say): one fresh runner.
        if (!kept || serving !== entry || isRingworkError(e, 'ABORTED')) throw e;
        log.warn({ err: e }, 'the kept runner failed to load the new shard; starting a fresh one');
        await kept.dispose().catch(() => undefined);
        entry.runner = o.createRunner();
        load = await entry.runner.load(request, { onProgress });
      }
      recordLoadTimes(t0, tLoad, load, !kept);
      if (serving !== entry) return false; // replaced by another shard while loading
      // Kept even when superseded: a re-plan that only renumbers the epoch (same units) must find
      // the shard loaded — dropping it made the next assignment fail as "not loaded", and a failed
      // load takes the model away from this peer for good.
      serving.shard = stageShardOf(load, a.model.contextLength);
      const d = get().download!;
      set({
        backend: load.backend,
        backendReason: load.backendReason,
        download: { ...d, fetched: load.bytesFetched, finishedAt: clock.now() },
      });
      if (!ctx.isCurrent()) return false; // superseded while loading: the newer assignment follows
    }
    return true;
  };

  const onAssignment = async (a: ServerMessageOf<'assignment'>, ctx: MembershipContext): Promise<void> => {
    set({
      assignment: {
        model: a.model.id,
        range: a.range,
        units: a.model.units,
        prev: a.prev,
        next: a.next,
        epoch: a.epoch,
        weightFormat: a.model.weightFormat,
        ...(a.model.serving ? { serving: a.model.serving } : {}),
      },
      unassignedReason: undefined,
      standby: undefined,
    });
    if (get().phase === 'paused' || get().phase === 'draining') return;
    try {
      // Swapped in from standby: the units are loaded already, only the stage is new.
      if (!(await ensureLoaded(a, ctx)) || !serving) return;
      const tamper = await tamperOf();
      if (!ctx.isCurrent() || !serving) return;
      // A new epoch means a new ring: sessions of the old one end with it.
      if (!serving.stage || serving.epoch !== a.epoch) {
        // stop() detaches the old stage at once; the new one is attached before the old one's
        // sessions are freed, so a message arriving meanwhile (a failover's open) finds a handler.
        const stopping = serving.stage?.stop();
        serving.epoch = a.epoch;
        const links = membership!.links;
        // Dial the new next stage now, while the old stage stops: the new stage's first open (a
        // failover's) waits for that link (whenNext) instead of failing.
        links.update(a.prev, a.next);
        if (!serving.shard) throw new RingworkError('RUNNER_NOT_LOADED', 'the shard is not loaded');
        serving.stage = createRingStage({
          peerId: net!.peerId,
          runner: serving.runner,
          shard: serving.shard,
          prev: () => links.prev(),
          epoch: a.epoch,
          isFirst: a.range[0] === 0,
          isHead: a.range[1] === a.model.units,
          next: () => links.next(),
          whenNext: (ms) => links.whenNext(ms),
          nextPeer: a.next,
          linkTo: (peer) => (peer === net?.peerId && selfLink?.isOpen ? selfLink : links.get(peer)),
          dutyCycle: () => get().dutyCycle,
          onStats: (stats) => stageStats.push(stats),
          range: [a.range[0], a.range[1]],
          validation: validationKey ? { key: validationKey, ...tamper } : undefined,
        });
        // Links opened while the old stage served (neighbours, requesters) carry on with the new one.
        for (const l of links.all()) serving.stage.attach(l);
        if (selfLink?.isOpen) serving.stage.attach(selfLink);
        await stopping;
        if (!ctx.isCurrent() || !serving) return;
      }
      membership?.links.update(a.prev, a.next);
      send({ type: 'assignment-status', epoch: a.epoch, state: 'ready' });
      set({ phase: 'serving' });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      log.error({ err: e, epoch: a.epoch }, 'assignment failed');
      set({ phase: 'error', error: message });
      send({ type: 'assignment-status', epoch: a.epoch, state: 'failed', message: message.slice(0, 2000) });
    }
  };

  const onUnassigned = async (u: ServerMessageOf<'unassigned'>): Promise<void> => {
    membership?.links.update(null, null);
    await stopServing();
    if (get().phase !== 'paused' && get().phase !== 'draining')
      set({ phase: 'unassigned', unassignedReason: u.reason, assignment: undefined, standby: undefined });
    else set({ unassignedReason: u.reason, assignment: undefined, standby: undefined });
  };

  /**
   * A standby replica: the units of a live stage loaded ahead and kept, with no stage and no ring
   * links (its KV caches stay empty); an assignment of the same units later serves at once.
   */
  const onStandby = async (m: ServerMessageOf<'standby'>, ctx: MembershipContext): Promise<void> => {
    membership?.links.update(null, null);
    set({
      standby: { model: m.model.id, range: m.range, epoch: m.epoch },
      assignment: undefined,
      unassignedReason: undefined,
    });
    if (get().phase === 'paused' || get().phase === 'draining') return;
    try {
      if (!(await ensureLoaded(m, ctx)) || !serving) return;
      // Backing up, not serving: a stage this peer ran before ends (its ring moved on without it).
      const stage = serving.stage;
      serving.stage = undefined;
      for (const l of membership?.links.all() ?? []) notServingYet(l);
      await stage?.stop();
      if (!ctx.isCurrent()) return;
      send({ type: 'assignment-status', epoch: m.epoch, state: 'ready' });
      set({ phase: 'standby' });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      log.error({ err: e, epoch: m.epoch }, 'standby load failed');
      set({ phase: 'error', error: message });
      send({ type: 'assignment-status', epoch: m.epoch, state: 'failed', message: message.slice(0, 2000) });
    }
  };

  /** Follows the coordinator's assignments on `n` (links, stage) — one membership per session. */
  const follow = (n: NetworkHandle): RingMembership =>
    createRingMembership({
      network: n,
      connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
      logger: log,
      onLink: (link) => {
        answerProbes(link);
        if (serving?.stage) serving.stage.attach(link);
        else notServingYet(link);
      },
      onAssignment,
      onUnassigned: (u) => onUnassigned(u),
      onStandby,
    });

  /** The profile the coordinator should plan with, and the pause if this peer is paused. */
  const announce = (): void => {
    const c = get();
    if (!c.capability) return;
    // The key first: rings planned from this profile then carry it to requesters.
    if (validationKey) send({ type: 'validation-key', key: toBase64(validationKey.publicKeyRaw) });
    send({ type: 'profile', capability: c.capability });
    // A new session after a rejoin: the coordinator knows nothing of the pause, so say it again.
    if (c.phase === 'paused') {
      send({ type: 'withdraw', mode: 'pause', drainMs: 0 });
      send({ type: 'withdrawn' });
    }
  };

  /** Everything a contributor holds on the network, released (stop, or a final verdict). */
  const leave = async (): Promise<void> => {
    rejoining?.abort();
    rejoining = undefined;
    prober?.stop();
    prober = undefined;
    offClosed?.();
    offClosed = undefined;
    const m = membership;
    membership = undefined;
    starting = undefined;
    m?.stop();
    selfLink?.close();
    selfLink = undefined;
    const idle = spare;
    spare = undefined;
    await Promise.all([stopServing(), idle?.dispose()]);
    net?.close?.();
    net = undefined;
  };

  /** A "do not come back" verdict (banned, wrong protocol version): leave and say why. */
  const giveUp = async (e: RingworkError): Promise<void> => {
    log.warn({ code: e.code }, 'not rejoining: the server said not to come back');
    await leave();
    set({ phase: 'error', error: e.message, errorCode: e.code, rejoin: undefined, assignment: undefined });
  };

  /**
   * Takes a new connection after a rejoin. A resumed session keeps everything (the server re-sends
   * the assignment; ring links are peer-to-peer and outlive the signaling socket). A new session is
   * a new peer id the ring does not know: its links and stage belong to the old id and are rebuilt,
   * the profile is announced again — but the loaded shard stays, so an assignment of the same units
   * of the same model serves at once, with no download.
   */
  const adopt = (n: NetworkHandle): void => {
    const old = net;
    net = n;
    watch(n);
    set({ peerId: n.peerId, rejoin: undefined, rejoins: get().rejoins + 1 });
    if (!get().capability) return; // still joining: join() follows whichever connection is current
    const resumed = n.resumed === true && old?.peerId === n.peerId && old.signaling === n.signaling;
    if (resumed && membership) return;
    membership?.stop();
    selfLink?.close();
    selfLink = undefined;
    if (serving && !serving.shard) {
      void stopServing(); // a load cut short: it starts over when assigned again
    } else if (serving?.stage) {
      const stage = serving.stage;
      serving.stage = undefined; // rebuilt (new id, new links) by the next assignment
      void stage.stop();
    }
    membership = follow(n);
    if (get().phase !== 'paused') set({ phase: 'waiting', assignment: undefined, error: undefined });
    announce();
  };

  /** Comes back after the connection ended: back-off with jitter until `network()` answers. */
  const rejoin = async (info: NetworkClosed): Promise<void> => {
    if (o.rejoin === false || rejoining || !net) return;
    if (info.error && isFinalError(info.error)) return giveUp(info.error);
    const ac = new AbortController();
    rejoining = ac;
    const reason = info.error?.code ?? (info.code !== undefined ? `closed (${info.code})` : 'closed');
    log.info({ reason }, 'connection ended; rejoining');
    try {
      for (let attempt = 0; ; attempt++) {
        const delayMs = rejoinDelay(attempt, o.rejoin ?? {}, o.random);
        set({ rejoin: { attempt: attempt + 1, delayMs, reason } });
        await clock.sleep(delayMs, ac.signal);
        if (ac.signal.aborted) return;
        let n: NetworkHandle;
        try {
          n = await o.network();
        } catch (e) {
          if (ac.signal.aborted) return;
          if (isRingworkError(e) && isFinalError(e)) {
            rejoining = undefined;
            return await giveUp(e);
          }
          log.warn({ err: e, attempt: attempt + 1 }, 'rejoin attempt failed');
          continue;
        }
        if (ac.signal.aborted) return;
        adopt(n);
        return;
      }
    } finally {
      if (rejoining === ac) rejoining = undefined;
    }
  };

  function watch(n: NetworkHandle): void {
    offClosed?.();
    offClosed = n.onClosed?.((info) => {
      if (net === n) void rejoin(info);
    });
  }

  const join = async (opts: StartOptions): Promise<void> => {
    set({ phase: 'connecting', error: undefined, errorCode: undefined });
    try {
      const lend = opts.lendMemoryBytes;
      if (lend !== undefined && !(Number.isFinite(lend) && lend > 0))
        throw new RingworkError(
          'INVALID_ARGUMENT',
          `Memory to lend must be a positive number of bytes, got ${String(lend)}.`,
          { details: { lendMemoryBytes: lend } },
        );
      net = await o.network();
      watch(net);
      opts.signal?.throwIfAborted();
      set({ peerId: net.peerId });
      let capability = opts.capability;
      if (!capability) {
        if (!o.measure) throw new Error('no capability given and no device profiler to measure one');
        set({ phase: 'profiling' });
        const m = await o.measure(opts.signal ?? new AbortController().signal);
        set({ profile: m.profile, backend: m.profile.backend, backendReason: m.profile.backendReason });
        capability = m.capability;
      }
      if (!net) throw new RingworkError('ABORTED', 'The contributor was stopped while joining.');
      const usableMemoryBytes = capability.memoryBytes;
      if (lend !== undefined)
        capability = { ...capability, memoryBytes: Math.floor(Math.min(usableMemoryBytes, lend)) };
      set({
        capability,
        usableMemoryBytes,
        phase: 'waiting',
        stats: { ...get().stats, joinedAt: clock.wallNow() },
      });
      // Measured (the profiler has the cores to itself): start the runtime for the first shard now.
      if (o.prewarm !== false && !serving && !spare) {
        spare = o.createRunner();
        void spare.warm?.();
      }
      // `net` may be a newer connection than the first one (it dropped while the device was measured).
      membership = follow(net);
      // While the connection is down this is dropped: the rejoin announces it again.
      announce();
      if ((o.probeIntervalMs ?? 30_000) > 0 && !prober) {
        prober = createLinkProber({
          links: () =>
            [membership?.links.prev(), membership?.links.next()].filter(
              (l): l is PeerLink => l !== undefined,
            ),
          report: (links) =>
            send({
              type: 'link-report',
              links: links.map((l) => ({
                peer: l.peer,
                rttMs: Math.min(60_000, l.rttMs),
                mbps: Math.min(1_000_000, l.mbps),
              })),
            }),
          intervalMs: o.probeIntervalMs ?? 30_000,
        });
        prober.start();
      }
    } catch (e) {
      set({
        phase: 'error',
        error: e instanceof Error ? e.message : String(e),
        ...(isRingworkError(e) ? { errorCode: e.code } : {}),
      });
      throw e;
    }
  };

  const drainMs = o.drainMs ?? 30_000;
  /**
   * Tells the coordinator this peer is going, lets the stage finish its open sessions (bounded by
   * `drainMs`; new opens are refused with a retryable code), then says it is done.
   */
  const withdraw = async (mode: 'leave' | 'pause'): Promise<void> => {
    const since = clock.now();
    set({ phase: 'draining', draining: { mode, since, deadline: since + drainMs } });
    send({ type: 'withdraw', mode, drainMs });
    const stage = serving?.stage;
    const openSessions = stage?.stats.openSessions ?? 0;
    if (stage) {
      const timeUp = new AbortController();
      await Promise.race([stage.drain(), clock.sleep(drainMs, timeUp.signal)]);
      timeUp.abort();
    }
    send({ type: 'withdrawn' });
    set({ draining: undefined, lastDrain: { mode, openSessions, ms: clock.now() - since } });
  };

  return {
    store,
    start(opts = {}) {
      starting ??= join(opts).catch((e: unknown) => {
        starting = undefined;
        throw e;
      });
      return starting;
    },
    async stop() {
      await leave();
      if (get().phase !== 'idle')
        set({
          phase: 'idle',
          assignment: undefined,
          download: undefined,
          rejoin: undefined,
          draining: undefined,
        });
    },
    async leave() {
      const c = get();
      if (net && c.capability && c.phase !== 'draining' && c.phase !== 'paused') await withdraw('leave');
      await this.stop();
    },
    async pause() {
      const c = get();
      if (!net || !c.capability || c.phase === 'paused' || c.phase === 'draining') return;
      await withdraw('pause');
      set({ phase: 'paused' });
      membership?.links.update(null, null);
      await stopServing();
    },
    resume() {
      const c = get();
      if (!net || !c.capability || c.phase !== 'paused') return;
      set({ phase: 'waiting', unassignedReason: undefined });
      send({ type: 'resume' });
      membership?.reapply();
    },
    setDutyCycle: (d) => set({ dutyCycle: Math.min(1, Math.max(0.05, d)) }),
    setAutoPause: (on) => set({ autoPause: on }),
    localStageLink() {
      if (!serving?.stage || !net) return undefined;
      const [a, b] = createMemoryChannelPair();
      selfLink?.close();
      selfLink = createPeerLink(net.peerId, b);
      serving.stage.attach(selfLink);
      return createPeerLink(net.peerId, a);
    },
    openLink(peerId) {
      const l = membership?.links.get(peerId);
      return l?.isOpen ? l : undefined;
    },
    settled: () => membership?.settled() ?? Promise.resolve(),
  };
}
