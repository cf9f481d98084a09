/**
 * Graceful leave and pause on the coordinator (fake timers): a withdrawing contributor's ring stays
 * while it drains, it is planned out when it says `withdrawn` or its drain time is up, a paused peer
 * is told why (the pause is named) and comes back on `resume`.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import {
  serverMessageSchema,
  type PeerCapability,
  type ServerMessage,
  type ServerMessageOf,
} from '../../shared/protocol/signaling';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import { createCoordinator } from '../../signaling-server/src/coordinator';

const pid = (name: string): string => `p_${name.padEnd(16, '0')}`;
const cap = (memoryBytes: number): PeerCapability => ({
  tflops: 10,
  bandwidthGBps: 100,
  memoryBytes,
  backend: 'wasm',
  mobile: false,
});

let stories: CatalogModel;
beforeAll(async () => {
  [stories] = (await loadCatalog([])) as [CatalogModel];
});
beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

function setup(names: string[], memory: number) {
  const inbox = new Map<string, ServerMessage[]>();
  const co = createCoordinator({
    catalog: [stories],
    send: (peer, msg) => {
      serverMessageSchema.parse(msg);
      inbox.set(peer, [...(inbox.get(peer) ?? []), msg]);
    },
    debounceMs: 100,
    maxWaitMs: 500,
  });
  co.start();
  const ids = names.map(pid);
  for (const id of ids) {
    co.addPeer(id, ['contributor']);
    co.setCapability(id, cap(memory));
  }
  const req = pid('req');
  co.addPeer(req, ['requester']);
  co.flush();
  co.requestRing(req, stories.descriptor.id);
  const last = <T extends ServerMessage['type']>(peer: string, type: T) =>
    (inbox.get(peer) ?? []).filter((m): m is ServerMessageOf<T> => m.type === type).at(-1);
  return { co, ids, req, last };
}

describe('graceful withdrawal', () => {
  it('keeps the ring while a peer drains, then re-plans without it once it says withdrawn', () => {
    const { co, ids, req, last } = setup(['a', 'b', 'c'], 1_300_000);
    const ring = co.getRing(stories.descriptor.id)!;
    const leaving = ring.stages[0]!.peer;
    co.withdraw(leaving, 'leave', 10_000);
    vi.advanceTimersByTime(5_000);
    // Open sessions are still on this ring: nothing moved under them.
    expect(co.pending).toBe(false);
    expect(co.getRing(stories.descriptor.id)).toBe(ring);
    expect(co.snapshot().peers.find((p) => p.id === leaving)?.withdrawal).toMatchObject({
      mode: 'leave',
      state: 'draining',
    });
    co.withdrawn(leaving);
    vi.advanceTimersByTime(100);
    const next = co.getRing(stories.descriptor.id)!;
    expect(next.stages.map((s) => s.peer)).not.toContain(leaving);
    expect(next.stages.map((s) => s.peer).sort()).toEqual(ids.filter((p) => p !== leaving).sort());
    expect(last(req, 'ring')?.epoch).toBe(next.epoch);
  });

  it('the drain time bounds it: without withdrawn the peer is planned out when the time is up', () => {
    const { co } = setup(['a', 'b', 'c'], 1_300_000);
    const paused = co.getRing(stories.descriptor.id)!.stages[1]!.peer;
    co.withdraw(paused, 'pause', 3_000);
    vi.advanceTimersByTime(2_999);
    expect(co.pending).toBe(false);
    vi.advanceTimersByTime(1 + 100);
    expect(co.getRing(stories.descriptor.id)!.stages.map((s) => s.peer)).not.toContain(paused);
  });

  it('names the pause: to the paused peer, and in no-ring when its capacity is missing; resume brings it back', () => {
    const { co, ids, req, last } = setup(['solo'], 4_000_000);
    const solo = ids[0]!;
    expect(co.getRing(stories.descriptor.id)?.stages.map((s) => s.peer)).toEqual([solo]);
    co.withdraw(solo, 'pause', 1_000);
    co.withdrawn(solo);
    vi.advanceTimersByTime(100);
    expect(co.getRing(stories.descriptor.id)).toBeNull();
    expect(last(solo, 'unassigned')?.reason).toMatch(/paused by its owner/);
    expect(last(req, 'no-ring')?.reason).toMatch(/1 contributor is paused/);
    co.resume(solo);
    vi.advanceTimersByTime(100);
    expect(co.getRing(stories.descriptor.id)?.stages.map((s) => s.peer)).toEqual([solo]);
    expect(last(req, 'ring')?.stages.map((s) => s.peer)).toEqual([solo]);
  });

  it('only a contributor may withdraw (typed error)', () => {
    const { co, req } = setup(['a'], 4_000_000);
    try {
      co.withdraw(req, 'pause', 1000);
      expect.unreachable();
    } catch (e) {
      expect(isRingworkError(e, 'PROTOCOL_NOT_ALLOWED')).toBe(true);
    }
  });
});
