/**
 * Unit tests of the HTTP hardening's pure parts: address buckets, forwarded-address trust, the Host
 * allowlist, the keyed rate limiter's bound, and start-time validation of the new flags.
 */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { addressBucket, createClientAddressResolver } from '../../signaling-server/src/client-address';
import { parseCliConfig } from '../../signaling-server/src/config';
import { createHostAllowlist } from '../../signaling-server/src/host-allowlist';
import { createKeyedRateLimiter } from '../../signaling-server/src/rate-limit';

const req = (remoteAddress: string, xff?: string): IncomingMessage =>
  ({ socket: { remoteAddress }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as never;

describe('client address buckets', () => {
  it('puts an IPv6 /64 in one bucket and keeps IPv4 addresses apart', () => {
    expect(addressBucket('2001:db8:1:2::1')).toBe(addressBucket('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    expect(addressBucket('2001:db8:1:2::1')).not.toBe(addressBucket('2001:db8:1:3::1'));
    expect(addressBucket('2001:0db8:0001:0002::1')).toBe(addressBucket('2001:db8:1:2::7'));
    expect(addressBucket('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressBucket('192.0.2.1')).not.toBe(addressBucket('192.0.2.2'));
  });

  it('believes X-Forwarded-For only from a trusted proxy, reading from the right', () => {
    const none = createClientAddressResolver([]);
    expect(none.of(req('198.51.100.1', '203.0.113.9'))).toBe('198.51.100.1');
    const proxy = createClientAddressResolver(['127.0.0.1', '10.0.0.2']);
    expect(proxy.of(req('::ffff:127.0.0.1', '203.0.113.9'))).toBe('203.0.113.9');
    // The client wrote the left part; the proxies appended the right: skip trusted hops only.
    expect(proxy.of(req('127.0.0.1', '6.6.6.6, 203.0.113.9, 10.0.0.2'))).toBe('203.0.113.9');
    expect(proxy.of(req('127.0.0.1', '[2001:db8::5]:443'))).toBe('2001:db8::5');
    // Garbage from a proxy: the proxy itself is the client (nothing better is known).
    expect(proxy.of(req('127.0.0.1', 'not-an-ip'))).toBe('127.0.0.1');
    expect(proxy.of(req('192.0.2.9', '203.0.113.9'))).toBe('192.0.2.9');
  });
});

describe('Host allowlist', () => {
  it('accepts the loopback names on the port and the configured hosts, nothing else', () => {
    const h = createHostAllowlist('127.0.0.1', 8080, ['ringwork.example.org', 'lan.example:9000']);
    for (const ok of [
      '127.0.0.1:8080',
      'localhost:8080',
      '[::1]:8080',
      'LOCALHOST:8080',
      'ringwork.example.org',
    ])
      expect(h.allows(ok), ok).toBe(true);
    expect(h.allows('ringwork.example.org:444')).toBe(true);
    expect(h.allows('lan.example:9000')).toBe(true);
    for (const bad of [
      undefined,
      '',
      'evil.example:8080',
      'localhost:8081',
      'localhost',
      '127.0.0.1.evil.example:8080',
      'lan.example:9001',
      '192.168.1.5:8080',
    ])
      expect(h.allows(bad), String(bad)).toBe(false);
  });

  it('on a wildcard listen address also accepts IP literals on the port (no rebinding without a name)', () => {
    const h = createHostAllowlist('0.0.0.0', 8080, []);
    expect(h.allows('192.168.1.5:8080')).toBe(true);
    expect(h.allows('[fe80::1]:8080')).toBe(true);
    expect(h.allows('192.168.1.5:9999')).toBe(false);
    expect(h.allows('myhost.lan:8080')).toBe(false);
  });
});

describe('keyed rate limiter', () => {
  it('limits per key and keeps at most maxKeys buckets', () => {
    let now = 0;
    const l = createKeyedRateLimiter({
      capacity: 2,
      refillPerSecond: 1,
      clock: { now: () => now },
      maxKeys: 3,
    });
    expect([l.take('a'), l.take('a'), l.take('a')]).toEqual([true, true, false]);
    for (const k of ['b', 'c', 'd', 'e']) l.take(k);
    expect(l.size).toBe(3);
    now = 5000;
    l.prune();
    expect(l.size).toBe(0);
  });
});

describe('new flags are validated at start', () => {
  const bad = (argv: string[]): string => {
    try {
      parseCliConfig(argv, {});
    } catch (e) {
      if (isRingworkError(e, 'INVALID_ARGUMENT')) return e.message;
      throw e;
    }
    throw new Error(`accepted ${argv.join(' ')}`);
  };

  it('rejects malformed values, naming the field', () => {
    expect(bad(['--trust-proxy', 'proxy.example'])).toMatch(/trustProxy/);
    expect(bad(['--allow-host', 'http://x.example/'])).toMatch(/allowedHosts/);
    expect(bad(['--headers-timeout-ms', '5'])).toMatch(/headersTimeoutMs/);
    expect(bad(['--headers-timeout-ms', '20000', '--request-timeout-ms', '10000'])).toMatch(
      /requestTimeoutMs/,
    );
    expect(bad(['--sessions-per-second-per-ip', '0'])).toMatch(/sessionsPerSecondPerIp/);
  });

  it('parses good values and lists', () => {
    const c = parseCliConfig(
      [
        '--allow-host',
        'A.example,b.example:8443',
        '--trust-proxy',
        '127.0.0.1,::1',
        '--network-cache-ms',
        '0',
      ],
      { RINGWORK_TRUST_PROXY: '10.0.0.1' },
    );
    expect(c.allowedHosts).toEqual(['a.example', 'b.example:8443']);
    expect(c.trustProxy).toEqual(['127.0.0.1', '::1']);
    expect(c.limits.networkCacheMs).toBe(0);
    expect(parseCliConfig([], { RINGWORK_TRUST_PROXY: '10.0.0.1' }).trustProxy).toEqual(['10.0.0.1']);
  });
});
