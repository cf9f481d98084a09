/**
 * The Host header allowlist. A DNS-rebinding page (evil.example resolving to 127.0.0.1 after load)
 * is same-origin with itself, so the Origin check waves it through; what gives it away is its Host
 * header, which names the attacker's domain. Only names the operator listed, and the loopback names
 * of the listening port, are served.
 */
import { isIP } from 'node:net';

/** Answers whether a request's Host header names this server. */
export interface HostAllowlist {
  allows(host: string | undefined): boolean;
}

/** Splits `name[:port]` / `[v6][:port]` (lower-cased); null when malformed. */
export function splitHost(host: string): { name: string; port: number | null } | null {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(host.trim().toLowerCase());
  if (!m?.[1]) return null;
  return { name: m[1], port: m[2] !== undefined ? Number(m[2]) : null };
}

const unbracket = (name: string): string => name.replace(/^\[(.*)\]$/, '$1');
const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/**
 * Builds the allowlist for a server listening on `listenHost:port`: the listen address, localhost,
 * 127.0.0.1 and [::1] on that port, plus `extra` entries (`name` = any port, `name:port` = exact).
 * A server listening on every interface also accepts IP-literal hosts on its port: rebinding needs
 * a DNS name, and LAN clients reach such a server by its address.
 */
export function createHostAllowlist(
  listenHost: string,
  port: number,
  extra: readonly string[],
): HostAllowlist {
  const listen = unbracket(listenHost.toLowerCase());
  const wildcard = WILDCARDS.has(listen);
  const local = new Set(['localhost', '127.0.0.1', '::1']);
  if (!wildcard) local.add(listen);
  const anyPort = new Set<string>();
  const exact = new Set<string>();
  for (const e of extra) {
    const h = splitHost(e);
    if (!h) continue;
    if (h.port === null) anyPort.add(unbracket(h.name));
    else exact.add(`${unbracket(h.name)}:${h.port}`);
  }
  // A Host without a port means the scheme's default; the server's own names need the real port.
  const onOurPort = (p: number | null): boolean => p === port || (p === null && port === 80);
  return {
    allows(host) {
      if (host === undefined) return false;
      const h = splitHost(host);
      if (!h) return false;
      const name = unbracket(h.name);
      if (anyPort.has(name)) return true;
      if (h.port !== null && exact.has(`${name}:${h.port}`)) return true;
      if (!onOurPort(h.port)) return false;
      return local.has(name) || (wildcard && isIP(name) !== 0);
    },
  };
}
