/**
 * Page-side device facts. Workers have no `matchMedia` and no `getBattery`, so the profiler client
 * gathers these in the page and hands them to the worker with the request.
 */
import type { DeviceFacts } from '../../../shared/device/device-class';

/** Everything the page knows about the device that the worker cannot find out itself. */
export interface PageFacts extends DeviceFacts {
  hardwareConcurrency: number;
  battery?: { charging: boolean; level: number } | undefined;
}

/** Non-standard or Chromium-only navigator members (not in TypeScript's DOM lib). */
interface ExtendedNavigator {
  userAgentData?: { mobile?: boolean };
  deviceMemory?: number;
  getBattery?: () => Promise<{ charging: boolean; level: number }>;
}

/** Reads the battery, giving up after `timeoutMs`: a battery that never answers must not stall profiling. */
async function readBattery(nav: ExtendedNavigator, timeoutMs: number): Promise<PageFacts['battery']> {
  if (typeof nav.getBattery !== 'function') return undefined;
  let timer: number | undefined;
  try {
    const b = await Promise.race([
      nav.getBattery.call(navigator),
      new Promise<undefined>((resolve) => (timer = window.setTimeout(resolve, timeoutMs))),
    ]);
    if (!b || typeof b.level !== 'number' || !Number.isFinite(b.level)) return undefined;
    return { charging: Boolean(b.charging), level: Math.min(1, Math.max(0, b.level)) };
  } catch {
    // Permissions policy can block the Battery API; that is just "not available".
    return undefined;
  } finally {
    window.clearTimeout(timer);
  }
}

/** Collects the page-side facts (call from a Window, not a worker). */
export async function collectPageFacts(opts: { batteryTimeoutMs?: number } = {}): Promise<PageFacts> {
  const nav = navigator as Navigator & ExtendedNavigator;
  const media = (q: string) => (typeof matchMedia === 'function' ? matchMedia(q).matches : undefined);
  const mem = nav.deviceMemory;
  return {
    uaMobile: typeof nav.userAgentData?.mobile === 'boolean' ? nav.userAgentData.mobile : undefined,
    userAgent: nav.userAgent,
    pointerCoarse: media('(pointer: coarse)'),
    anyPointerFine: media('(any-pointer: fine)'),
    maxTouchPoints: nav.maxTouchPoints,
    deviceMemoryGB: typeof mem === 'number' && mem > 0 ? mem : undefined,
    hardwareConcurrency: Math.max(1, nav.hardwareConcurrency || 1),
    battery: await readBattery(nav, opts.batteryTimeoutMs ?? 250),
  };
}
