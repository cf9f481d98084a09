/**
 * Who a request comes from, for per-client limits. Strangers are untrusted: `X-Forwarded-For` is
 * believed only when the socket belongs to a configured proxy (anyone can write the header), and
 * limits count per address *bucket* — an IPv4 address, or an IPv6 /64 — because one IPv6 host
 * typically owns a whole /64 and could otherwise take a fresh quota per address.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

/** Drops the IPv4-mapped IPv6 prefix (`::ffff:1.2.3.4` → `1.2.3.4`) so one host has one spelling. */
export function normalizeAddress(addr: string): string {
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(addr);
  return (m?.[1] ?? addr).toLowerCase();
}

/** Expands an IPv6 address into its 8 groups (numbers); null when it is not IPv6. */
function ipv6Groups(addr: string): number[] | null {
  if (isIP(addr) !== 6) return null;
  let text = addr.split('%')[0] ?? addr;
  // A trailing embedded IPv4 (::1.2.3.4) is two groups.
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const h = parse(head);
  const t = tail === undefined ? [] : parse(tail);
  const zeros = 8 - h.length - t.length;
  return [...h, ...new Array<number>(Math.max(0, zeros)).fill(0), ...t];
}

/**
 * The bucket per-client limits count against: an IPv4 address as is, an IPv6 address as its /64
 * (`2001:db8:1:2::/64`). Anything else (a unix socket, `unknown`) is its own bucket.
 */
export function addressBucket(addr: string): string {
  const a = normalizeAddress(addr);
  const g = ipv6Groups(a);
  if (!g) return a;
  return `${g
    .slice(0, 4)
    .map((x) => x.toString(16))
    .join(':')}::/64`;
}

/** `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80` or `::1` → the bare address; null when it is none. */
function bareAddress(entry: string): string | null {
  let s = entry.trim();
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(s);
  if (bracket?.[1]) s = bracket[1];
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(s)) s = s.slice(0, s.lastIndexOf(':'));
  return isIP(s) !== 0 ? normalizeAddress(s) : null;
}

/** Resolves client addresses against a list of trusted proxies. */
export interface ClientAddressResolver {
  /** The client's address: the socket's, or (from a trusted proxy) the forwarded one. */
  of(req: IncomingMessage): string;
  /** True when `addr` is a configured proxy (exempt from per-socket caps). */
  isTrusted(addr: string): boolean;
}

/** Creates a resolver that believes `X-Forwarded-For` only from `trustProxy` addresses. */
export function createClientAddressResolver(trustProxy: readonly string[]): ClientAddressResolver {
  const trusted = new Set(trustProxy.map(normalizeAddress));
  const isTrusted = (addr: string): boolean => trusted.has(normalizeAddress(addr));
  return {
    isTrusted,
    of(req) {
      const socketAddr = normalizeAddress(req.socket.remoteAddress ?? 'unknown');
      if (!isTrusted(socketAddr)) return socketAddr;
      const raw = req.headers['x-forwarded-for'];
      const hops = (Array.isArray(raw) ? raw.join(',') : (raw ?? '')).split(',');
      // Proxies append: walk from the right past our own proxies; the first other hop is the client.
      // Entries further left were written by the client itself and mean nothing.
      let client = socketAddr;
      for (let i = hops.length - 1; i >= 0; i--) {
        const hop = bareAddress(hops[i] ?? '');
        if (hop === null) break;
        client = hop;
        if (!trusted.has(hop)) break;
      }
      return client;
    },
  };
}
