/**
 * Operator simulations and tests may declare a capability instead of measuring one:
 * `#/contribute?join=1&tflops=0.000001&gbps=100&memory=4000000000` joins straight away; without
 * `join=1` the declared capability waits for the Contribute button (and its memory to lend).
 */
import { classifyDevice } from '../../../shared/device/device-class';
import type { PeerCapability } from '../../../shared/protocol/signaling';

/**
 * Whether this browser is a phone or tablet: a declared capability declares speed and memory, not the
 * device class, so a phone that declares one is still a phone (category C, lightweight models).
 */
function isMobileDevice(): boolean {
  const nav = navigator as Navigator & { userAgentData?: { mobile?: boolean }; deviceMemory?: number };
  const media = (q: string) => (typeof matchMedia === 'function' ? matchMedia(q).matches : undefined);
  return (
    classifyDevice({
      uaMobile: typeof nav.userAgentData?.mobile === 'boolean' ? nav.userAgentData.mobile : undefined,
      userAgent: nav.userAgent,
      pointerCoarse: media('(pointer: coarse)'),
      anyPointerFine: media('(any-pointer: fine)'),
      maxTouchPoints: nav.maxTouchPoints,
      deviceMemoryGB: typeof nav.deviceMemory === 'number' ? nav.deviceMemory : undefined,
    }).class === 'mobile'
  );
}

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
            mobile: isMobileDevice(),
            label: 'declared',
          },
        }
      : {}),
  };
}
