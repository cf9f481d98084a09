/**
 * Mobile-or-desktop classification from facts the page can read. Pure, so the same rule runs in
 * tests and in the profiler worker (which receives the page-side facts, since workers have no
 * `matchMedia`).
 */

/** Facts about the host device, each undefined where the browser does not expose it. */
export interface DeviceFacts {
  /** `navigator.userAgentData.mobile` (UA client hints; Chromium only). */
  uaMobile?: boolean | undefined;
  /** `navigator.userAgent`, for browsers without client hints (Safari, Firefox). */
  userAgent?: string | undefined;
  /** `matchMedia('(pointer: coarse)')`: the primary pointer is a finger. */
  pointerCoarse?: boolean | undefined;
  /** `matchMedia('(any-pointer: fine)')`: some pointer is a mouse or a stylus. */
  anyPointerFine?: boolean | undefined;
  /** `navigator.maxTouchPoints`. */
  maxTouchPoints?: number | undefined;
  /** `navigator.deviceMemory`, GB (rounded and capped at 8 by the browser). */
  deviceMemoryGB?: number | undefined;
}

/** Which fact decided the class; kept in the profile so a surprising class can be explained. */
export type DeviceClassBasis = 'ua-client-hints' | 'user-agent' | 'pointer' | 'device-memory' | 'default';

/** The class of the device and the fact that decided it. */
export interface DeviceClassification {
  class: 'mobile' | 'desktop';
  basis: DeviceClassBasis;
}

const MOBILE_UA = /Android|iPhone|iPad|iPod|Mobile|Silk|Kindle|Opera Mini/i;

/**
 * Classifies the device, most reliable signal first: UA client hints, then the UA string (an iPad
 * on iPadOS claims to be a Mac, so a Mac with touch points counts as mobile), then a coarse-only
 * pointer, then a small `deviceMemory` on a touch device. Anything else is a desktop.
 */
export function classifyDevice(f: DeviceFacts): DeviceClassification {
  if (typeof f.uaMobile === 'boolean') {
    return { class: f.uaMobile ? 'mobile' : 'desktop', basis: 'ua-client-hints' };
  }
  if (f.userAgent) {
    if (MOBILE_UA.test(f.userAgent)) return { class: 'mobile', basis: 'user-agent' };
    if (/Macintosh/.test(f.userAgent) && (f.maxTouchPoints ?? 0) > 1) {
      return { class: 'mobile', basis: 'user-agent' };
    }
  }
  if (f.pointerCoarse === true && f.anyPointerFine !== true) return { class: 'mobile', basis: 'pointer' };
  if (f.deviceMemoryGB !== undefined && f.deviceMemoryGB <= 2 && (f.maxTouchPoints ?? 0) > 0) {
    return { class: 'mobile', basis: 'device-memory' };
  }
  return { class: 'desktop', basis: 'default' };
}
