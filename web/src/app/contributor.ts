/**
 * Contributing from a tab: profile the device, register its capability, follow the coordinator's
 * assignments — download exactly the assigned shard (cached), run it in a Web Worker, keep links to
 * the ring neighbours and to requesters — and serve generation steps until paused or left.
 */
import type { DeviceProfile } from '../../../shared/device/profile';
import { createNeighbourLinks, type NeighbourLinks } from '../../../shared/ring/neighbour-links';
import {
  createRingStage,
  stageShardOf,
  type RingStage,
  type StageShard,
} from '../../../shared/ring/ring-stage';
import type { PeerCapability, ServerMessageOf } from '../../../shared/protocol/signaling';
import type { ShardRunner } from '../../../shared/runtime/shard-runner';
import { createMemoryChannelPair } from '../../../shared/transport/memory-transport';
import { createPeerLink } from '../../../shared/transport/peer-link';
import type { PeerLink } from '../../../shared/transport/types';
import { createWorkerShardRunner } from '../engine/worker-shard-runner';
import { createProfilerClient } from '../profiler/profiler-client';
import { getNetwork, type TabNetwork } from './network';
import { useApp } from './store';

/** The planner's view of a measured device. */
export function capabilityFrom(p: DeviceProfile): PeerCapability {
  return {
    tflops: p.tflops,
    bandwidthGBps: p.bandwidthGBps,
    memoryBytes: Math.floor(p.memoryBytes),
    category: p.category,
    backend: p.backend,
    mobile: p.device.class === 'mobile',
    label:
      p.gpu && !p.gpu.isFallbackAdapter ? p.gpu.adapter.description || p.gpu.adapter.vendor : 'CPU (wasm)',
  };
}

interface Serving {
  key: string;
  runner: ShardRunner;
  stage?: RingStage;
  /** Bounds the stage derives from the loaded shard (hidden size, context, KV bytes). */
  shard?: StageShard;
  epoch: number;
}

let net: TabNetwork | undefined;
let links: NeighbourLinks | undefined;
let serving: Serving | undefined;
let offs: (() => void)[] = [];
let lastAssignment: ServerMessageOf<'assignment'> | undefined;
let queue: Promise<void> = Promise.resolve();
const set = (p: Parameters<ReturnType<typeof useApp.getState>['patchContribute']>[0]) =>
  useApp.getState().patchContribute(p);

/**
 * Joins the network as a contributor. `capability` overrides the measured profile (operators'
 * simulations and tests); otherwise the device is profiled first.
 */
export async function joinNetwork(opts: { capability?: PeerCapability } = {}): Promise<void> {
  if (links) return;
  set({ phase: 'connecting', error: undefined });
  try {
    net = await getNetwork();
    set({ peerId: net.peerId });
    let capability = opts.capability;
    if (!capability) {
      set({ phase: 'profiling' });
      const profiler = createProfilerClient();
      try {
        const profile = await profiler.profile({ serverUrl: location.origin });
        set({ profile, backend: profile.backend, backendReason: profile.backendReason });
        capability = capabilityFrom(profile);
      } finally {
        profiler.dispose();
      }
    }
    set({
      capability,
      phase: 'waiting',
      stats: { ...useApp.getState().contribute.stats, joinedAt: Date.now() },
    });
    links = createNeighbourLinks({ transport: net.transport, selfId: net.peerId, connectTimeoutMs: 10_000 });
    links.onLink((link) => (serving?.stage ? serving.stage.attach(link) : notServingYet(link)));
    links.onLost((peer, why) => {
      try {
        net?.client.send({ type: 'peer-unreachable', peer, reason: why });
      } catch {
        /* signaling down: the server notices on its own */
      }
    });
    offs = [
      // Assignments are applied one at a time, in order; one that a newer one supersedes while it
      // loads stops there (otherwise a slow load of epoch n could overwrite the stage of epoch n+1).
      net.client.on('assignment', (a) => {
        lastAssignment = a;
        queue = queue.then(() => onAssignment(a));
      }),
      net.client.on('unassigned', (u) => {
        lastAssignment = undefined;
        queue = queue.then(() => onUnassigned(u.reason));
      }),
    ];
    net.client.send({ type: 'profile', capability });
  } catch (e) {
    set({ phase: 'error', error: e instanceof Error ? e.message : String(e) });
    throw e;
  }
}

async function onAssignment(a: ServerMessageOf<'assignment'>): Promise<void> {
  if (lastAssignment !== a) return; // superseded before it started
  const { patchContribute } = useApp.getState();
  patchContribute({
    assignment: {
      model: a.model.id,
      range: a.range,
      units: a.model.units,
      prev: a.prev,
      next: a.next,
      epoch: a.epoch,
      weightFormat: a.model.weightFormat,
    },
    unassignedReason: undefined,
  });
  if (useApp.getState().contribute.phase === 'paused') return;
  const key = `${a.model.url}|${a.range.join('-')}|${a.model.weightFormat}|${a.model.contextLength}`;
  try {
    if (serving?.key !== key) {
      await stopServing();
      for (const l of links?.all() ?? []) notServingYet(l);
      const runner = createWorkerShardRunner();
      serving = { key, runner, epoch: a.epoch };
      set({
        phase: 'loading',
        download: { bytesDone: 0, bytesTotal: 0, fetched: 0, startedAt: performance.now() },
      });
      net?.client.send({ type: 'assignment-status', epoch: a.epoch, state: 'loading' });
      const load = await runner.load(
        {
          model: { url: a.model.url, tokenizerUrl: a.model.tokenizerUrl },
          range: a.range,
          weightFormat: a.model.weightFormat,
          contextLength: a.model.contextLength,
          logits: 'last',
          backend: 'auto',
        },
        {
          onProgress: (p) => {
            if (p.phase === 'fetch') {
              set({
                download: {
                  ...useApp.getState().contribute.download!,
                  bytesDone: p.bytesDone,
                  bytesTotal: p.bytesTotal,
                  fetched: p.bytesFetched,
                },
              });
            }
          },
        },
      );
      if (serving?.runner !== runner || lastAssignment !== a) return; // superseded while loading
      serving.shard = stageShardOf(load, a.model.contextLength);
      set({
        backend: load.backend,
        backendReason: load.backendReason,
        download: {
          ...useApp.getState().contribute.download!,
          fetched: load.bytesFetched,
          finishedAt: performance.now(),
        },
      });
    }
    // A new epoch means a new ring: sessions of the old one end with it.
    if (!serving.stage || serving.epoch !== a.epoch) {
      await serving.stage?.stop();
      serving.epoch = a.epoch;
      if (!serving.shard) throw new Error('the shard is not loaded');
      serving.stage = createRingStage({
        peerId: net!.peerId,
        runner: serving.runner,
        shard: serving.shard,
        prev: () => links?.prev(),
        epoch: a.epoch,
        isFirst: a.range[0] === 0,
        isHead: a.range[1] === a.model.units,
        next: () => links?.next(),
        linkTo: (peer) => (selfLinks.get(peer)?.isOpen ? selfLinks.get(peer) : links?.get(peer)),
        dutyCycle: () => useApp.getState().contribute.dutyCycle,
        onStats: (stats) => set({ stats: { ...useApp.getState().contribute.stats, ...stats } }),
      });
      // Links opened while the old stage served (neighbours, requesters) carry on with the new one.
      for (const l of links?.all() ?? []) serving.stage.attach(l);
    }
    links?.update(a.prev, a.next);
    net?.client.send({ type: 'assignment-status', epoch: a.epoch, state: 'ready' });
    set({ phase: 'serving' });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    set({ phase: 'error', error: message });
    net?.client.send({
      type: 'assignment-status',
      epoch: a.epoch,
      state: 'failed',
      message: message.slice(0, 2000),
    });
  }
}

/**
 * While a shard loads there is no stage: answer session opens on a new link with a typed error so
 * a requester that raced the re-plan retries instead of waiting.
 */
function notServingYet(link: PeerLink): void {
  const off = link.onControl((raw) => {
    if (serving?.stage) return off();
    const m = raw as { type?: string; session?: unknown };
    if (m.type === 'open' && typeof m.session === 'string') {
      try {
        link.sendControl({
          type: 'error',
          v: 1,
          session: m.session,
          code: 'RING_STAGE_NOT_SERVING',
          message: 'not serving yet: loading its shard',
          at: net?.peerId ?? '?',
        });
      } catch {
        /* link gone */
      }
    }
  });
}

async function onUnassigned(reason: string): Promise<void> {
  if (lastAssignment !== undefined) return; // an assignment came after it
  links?.update(null, null);
  await stopServing();
  if (useApp.getState().contribute.phase !== 'paused')
    set({ phase: 'unassigned', unassignedReason: reason, assignment: undefined });
}

async function stopServing(): Promise<void> {
  const s = serving;
  serving = undefined;
  await s?.stage?.stop();
  await s?.runner.dispose();
}

/**
 * Pauses: stops serving and tells the coordinator this peer is unavailable (memory 0), so the ring
 * is re-planned around it. Resume re-announces the capability.
 */
export async function pause(): Promise<void> {
  const c = useApp.getState().contribute;
  if (!net || !c.capability || c.phase === 'paused') return;
  set({ phase: 'paused' });
  net.client.send({ type: 'profile', capability: { ...c.capability, memoryBytes: 0 } });
  links?.update(null, null);
  await stopServing();
}

export function resume(): void {
  const c = useApp.getState().contribute;
  if (!net || !c.capability || c.phase !== 'paused') return;
  set({ phase: 'waiting' });
  net.client.send({ type: 'profile', capability: c.capability });
  const a = lastAssignment;
  if (a) queue = queue.then(() => onAssignment(a));
}

/** Leaves the network: frees the shard, closes links and the signaling connection. */
export async function leave(): Promise<void> {
  offs.forEach((f) => f());
  offs = [];
  links?.close();
  links = undefined;
  await stopServing();
  net?.client.stop();
  net = undefined;
  set({ phase: 'idle', assignment: undefined, download: undefined });
}

/** Stage-side ends of in-memory links to this tab's own requester, by requester id. */
const selfLinks = new Map<string, PeerLink>();

/**
 * A link from this tab's requester to this tab's own stage, when the ring it asks includes itself
 * (a tab may contribute and chat at once): an in-memory pipe, no WebRTC to oneself.
 */
export function localStageLink(): PeerLink | undefined {
  if (!serving?.stage || !net) return undefined;
  const [a, b] = createMemoryChannelPair();
  const stageEnd = createPeerLink(net.peerId, b);
  selfLinks.get(net.peerId)?.close();
  selfLinks.set(net.peerId, stageEnd);
  serving.stage.attach(stageEnd);
  return createPeerLink(net.peerId, a);
}
