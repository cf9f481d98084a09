/**
 * Operator simulations and tests may declare a capability instead of measuring one:
 * `#/contribute?join=1&tflops=0.000001&gbps=100&memory=4000000000` joins straight away; without
 * `join=1` the declared capability waits for the Contribute button (and its memory to lend).
 */
import type { PeerCapability } from '../../../shared/protocol/signaling';

/** The capability the URL declares, if any, and whether to join at once. */
export function declaredFromUrl(): { capability?: PeerCapability; join: boolean } {
  const q = new URLSearchParams(location.hash.split('?')[1] ?? location.search);
  const tflops = Number(q.get('tflops'));
  return {
    join: q.get('join') === '1',
    ...(Number.isFinite(tflops) && tflops > 0
      ? {
          capability: {
            tflops,
            bandwidthGBps: Number(q.get('gbps') ?? 100),
            memoryBytes: Number(q.get('memory') ?? 4e9),
            backend: 'wasm',
            mobile: false,
            label: 'declared',
          },
        }
      : {}),
  };
}
