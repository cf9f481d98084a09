import { describe, expect, it, vi } from 'vitest';
import { createNeighbourLinks, type NeighbourLinks } from '../../shared/ring/neighbour-links';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';

function ring(ids: string[]) {
  const hub = createMemoryTransportHub();
  const nodes = new Map<string, NeighbourLinks>();
  const lost: string[] = [];
  for (const id of ids) {
    const n = createNeighbourLinks({ transport: hub.transport(id), selfId: id });
    n.onLost((peer, why) => lost.push(`${id}->${peer}: ${why}`));
    nodes.set(id, n);
  }
  const assign = (order: string[]) => {
    order.forEach((id, i) => {
      const k = order.length;
      nodes.get(id)!.update(k > 1 ? order[(i - 1 + k) % k]! : null, k > 1 ? order[(i + 1) % k]! : null);
    });
  };
  return { hub, nodes, lost, assign };
}

const openBoth = (r: ReturnType<typeof ring>, order: string[]) =>
  order.every((id) => r.nodes.get(id)!.next()?.isOpen && r.nodes.get(id)!.prev()?.isOpen);

describe('neighbour links', () => {
  it('a 3-ring dials next, accepts prev; re-assignment to a 2-ring reuses one link per pair', async () => {
    const r = ring(['a', 'b', 'c']);
    r.assign(['a', 'b', 'c']);
    await vi.waitFor(() => expect(openBoth(r, ['a', 'b', 'c'])).toBe(true));
    // c leaves the ring: a and b now neighbour each other in both directions.
    r.assign(['a', 'b']);
    r.nodes.get('c')!.update(null, null);
    await vi.waitFor(() => {
      expect(openBoth(r, ['a', 'b'])).toBe(true);
      expect(r.nodes.get('c')!.get('a')).toBeUndefined();
    });
    expect(r.nodes.get('a')!.next()).toBe(r.nodes.get('a')!.prev());
    expect(r.nodes.get('c')!.get('a')).toBeUndefined();
    expect(r.lost).toEqual([]);
  });

  it('growing a 2-ring into a 3-ring keeps the link that is still needed (regression: it was closed as a stale next)', async () => {
    const r = ring(['g', 'h', 'z']);
    r.assign(['h', 'g']);
    await vi.waitFor(() => expect(openBoth(r, ['h', 'g'])).toBe(true));
    r.assign(['h', 'z', 'g']);
    await vi.waitFor(() => expect(openBoth(r, ['h', 'z', 'g'])).toBe(true));
    expect(r.lost).toEqual([]);
  });

  it('whenNext resolves once the link being dialled opens; at once without a dial; undefined after its wait', async () => {
    const hub = createMemoryTransportHub();
    const a = createNeighbourLinks({ transport: hub.transport('a'), selfId: 'a' });
    // No next stage, or one nobody dials: nothing to wait for.
    expect(await a.whenNext(60_000)).toBeUndefined();
    // Re-planned onto a new next stage: while the dial is in flight, whenNext waits for it.
    const b2 = createNeighbourLinks({ transport: hub.transport('b2'), selfId: 'b2' });
    b2.update('a', null);
    const t0 = Date.now();
    a.update('b', 'b2');
    expect(a.next()).toBeUndefined();
    const link = await a.whenNext(60_000);
    expect(link?.remoteId).toBe('b2');
    expect(link?.isOpen).toBe(true);
    expect(Date.now() - t0).toBeLessThan(30_000);
    // Open already: at once.
    expect(await a.whenNext(1)).toBe(link);
    // A next stage that cannot be reached: undefined (its dial failed; nothing to wait for).
    a.update('b', 'nobody');
    expect(await a.whenNext(60_000)).toBeUndefined();
    a.close();
    b2.close();
  });

  it('a neighbour that goes away is reported lost', async () => {
    const r = ring(['a', 'b', 'c']);
    r.assign(['a', 'b', 'c']);
    await vi.waitFor(() => expect(openBoth(r, ['a', 'b', 'c'])).toBe(true));
    r.nodes.get('b')!.close();
    await vi.waitFor(() => expect(r.lost.sort()).toEqual(['a->b: link closed', 'c->b: link closed']));
  });
});
