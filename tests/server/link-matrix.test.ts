/**
 * The proximity matrix's planner input: `links` walks the reports instead of every pair of peers,
 * and must give exactly what the all-pairs walk gave (same pairs, same figures, same order).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LinkInput } from '../../shared/planner/index.js';
import { createLinkMatrix, type LinkMatrix } from '../../signaling-server/src/link-matrix.js';

/** The former all-pairs walk over sorted ids, kept here as the reference. */
function allPairs(matrix: LinkMatrix, peers: readonly string[]): LinkInput[] {
  const byPair = new Map(matrix.edges().map((e) => [`${e.a}|${e.b}`, e]));
  const ids = [...new Set(peers)].sort();
  const out: LinkInput[] = [];
  for (let i = 0; i < ids.length; i++)
    for (let j = i + 1; j < ids.length; j++) {
      const e = byPair.get(`${ids[i]}|${ids[j]}`);
      if (e) out.push({ from: e.a, to: e.b, rttMs: e.rttMs, mbps: e.mbps });
    }
  return out;
}

describe('link matrix: links for the planner', () => {
  it('equals the all-pairs walk for any reports and any subset of peers', () => {
    const names = Array.from({ length: 12 }, (_, i) => `p_${String.fromCharCode(65 + i)}${i % 3}`);
    const report = fc.record({
      reporter: fc.nat(11),
      entries: fc.array(
        fc.record({ peer: fc.nat(11), rttMs: fc.nat(400), mbps: fc.integer({ min: 1, max: 900 }) }),
        {
          maxLength: 6,
        },
      ),
      at: fc.nat(10 * 60_000),
    });
    fc.assert(
      fc.property(
        fc.array(report, { maxLength: 20 }),
        fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
        (reports, pick) => {
          let now = 0;
          const matrix = createLinkMatrix({ now: () => now, maxPeersPerReporter: 4 });
          for (const r of [...reports].sort((a, b) => a.at - b.at)) {
            now = r.at;
            matrix.report(
              names[r.reporter]!,
              r.entries.map((e) => ({ peer: names[e.peer]!, rttMs: e.rttMs, mbps: e.mbps })),
              () => true,
            );
          }
          // Some reports are stale by now (older than 5 minutes): neither walk may count them.
          now = 10 * 60_000;
          const peers = names.filter((_, i) => pick[i]);
          expect(matrix.links(peers)).toEqual(allPairs(matrix, peers));
        },
      ),
    );
  });

  it('a pair counts only when both ends are among the planned peers', () => {
    const matrix = createLinkMatrix({ now: () => 0 });
    matrix.report(
      'p_a',
      [
        { peer: 'p_b', rttMs: 30, mbps: 100 },
        { peer: 'p_c', rttMs: 5, mbps: 50 },
      ],
      () => true,
    );
    expect(matrix.links(['p_a', 'p_b'])).toEqual([{ from: 'p_a', to: 'p_b', rttMs: 30, mbps: 100 }]);
    expect(matrix.links(['p_b', 'p_c'])).toEqual([]);
  });
});
