/**
 * Test-mode ICE confinement: test traffic may only ever go to 127.0.0.0/8 or ::1. The browsers are
 * already confined (network namespace, flags), and as a second line the signaling server drops every
 * ICE candidate whose address is not loopback, both in trickled `candidate` messages and in
 * `a=candidate` lines inside SDP, and counts what it dropped (shown in `/api/network`).
 */
import type { SignalPayload } from '../../shared/protocol/signaling.js';

/** True for an IPv4 address in 127.0.0.0/8 or the IPv6 loopback (also IPv4-mapped loopback). */
export function isLoopbackAddress(address: string): boolean {
  let a = address.trim().toLowerCase();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a.replace(/^::ffff:/, ''));
  if (v4) return v4.slice(1).every((o) => Number(o) <= 255) && v4[1] === '127';
  if (!a.includes(':') || !/^[0-9a-f:]+$/.test(a)) return false;
  // Expand "::" and compare with ::1 group by group ("0:0:0:0:0:0:0:1", "::0001" are all ::1).
  const halves = a.split('::');
  if (halves.length > 2) return false;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (fill < 0) return false;
  const groups = [...head, ...Array<string>(fill).fill('0'), ...tail];
  if (groups.length !== 8 || groups.some((g) => g.length === 0 || g.length > 4)) return false;
  return groups.every((g, i) => parseInt(g, 16) === (i === 7 ? 1 : 0));
}

/**
 * The connection address of an ICE candidate line (`candidate:<foundation> <component> <transport>
 * <priority> <address> <port> typ ...`, with or without the `a=` prefix), or null when malformed.
 */
export function candidateAddress(line: string): string | null {
  const body = line.trim().replace(/^a=/, '');
  if (!body.startsWith('candidate:')) return null;
  const fields = body.slice('candidate:'.length).split(/\s+/);
  return fields.length >= 8 ? (fields[4] ?? null) : null;
}

/** Counters of dropped candidates. */
export interface IceDropCounts {
  /** Trickled `candidate` messages dropped. */
  candidates: number;
  /** `a=candidate` lines removed from SDP. */
  sdpLines: number;
}

/** The test-mode filter with its counters. */
export interface IceFilter {
  /**
   * Returns the payload to forward (SDP with non-loopback candidate lines removed), or null when the
   * whole payload must be dropped (a non-loopback trickled candidate).
   */
  filter(payload: SignalPayload): SignalPayload | null;
  counts(): IceDropCounts & { total: number };
}

/** Creates a loopback-only ICE filter. */
export function createIceFilter(): IceFilter {
  const dropped: IceDropCounts = { candidates: 0, sdpLines: 0 };
  return {
    filter(payload) {
      if (payload.kind === 'candidate') {
        const c = payload.candidate.candidate;
        // The empty candidate is the end-of-candidates marker; it carries no address.
        if (c.trim() === '') return payload;
        const addr = candidateAddress(c);
        if (addr !== null && isLoopbackAddress(addr)) return payload;
        dropped.candidates++;
        return null;
      }
      const lines = payload.sdp.sdp.split(/\r?\n/);
      const kept = lines.filter((line) => {
        if (!/^a=candidate:/i.test(line.trim())) return true;
        const addr = candidateAddress(line);
        if (addr !== null && isLoopbackAddress(addr)) return true;
        dropped.sdpLines++;
        return false;
      });
      if (kept.length === lines.length) return payload;
      return { kind: 'sdp', sdp: { type: payload.sdp.type, sdp: kept.join('\r\n') } };
    },
    counts: () => ({ ...dropped, total: dropped.candidates + dropped.sdpLines }),
  };
}
