import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PeerCapability } from '../../shared/protocol/signaling.js';
import {
  createFleet,
  effectiveCapability,
  median,
  newEvidence,
} from '../../signaling-server/src/peer-trust.js';

const cap = (tflops: number, bandwidthGBps: number): PeerCapability => ({
  tflops,
  bandwidthGBps,
  memoryBytes: 1e9,
  backend: 'wasm',
  mobile: false,
});

describe('createFleet', () => {
  it("gives each peer the medians of the others' claims, as a fresh median over them would", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 1, max: 9 })), {
          minLength: 1,
          maxLength: 30,
        }),
        fc.nat(),
        (pairs, pick) => {
          const claims = pairs.map(([t, b]) => cap(t / 2, b));
          const self = claims[pick % claims.length]!;
          const others = claims.filter((c) => c !== self);
          const got = createFleet(claims).without(self);
          expect(got.count).toBe(others.length);
          expect(got.tflops).toBe(median(others.map((c) => c.tflops)));
          expect(got.bandwidthGBps).toBe(median(others.map((c) => c.bandwidthGBps)));
          // The whole fleet's medians (a newcomer's comparison), the same on a second ask.
          const fleet = createFleet(claims);
          for (let k = 0; k < 2; k++) {
            expect(fleet.without(null).tflops).toBe(median(claims.map((c) => c.tflops)));
            expect(fleet.without(null).bandwidthGBps).toBe(median(claims.map((c) => c.bandwidthGBps)));
          }
        },
      ),
    );
  });

  it('caps a claim the same way from precomputed medians as from the list of other claims', () => {
    const others = [cap(2, 10), cap(3, 20), cap(4, 30)];
    const claim = cap(1000, 1e6);
    const fromList = effectiveCapability(claim, newEvidence(), others);
    const fromFleet = effectiveCapability(
      claim,
      newEvidence(),
      createFleet([...others, claim]).without(claim),
    );
    expect(fromFleet).toEqual(fromList);
    // The claim is capped by the fleet (or the class floor), never taken at its word.
    expect(fromList.tflops).toBeLessThan(1000);
  });
});
