/**
 * HTTP-side hardening against hostile clients, each attack against the real server process
 * (`signaling-server/src/main.ts` spawned on a free loopback port) and each paired with the honest
 * use that must keep working:
 * - a catalog mount serves its model's files only (no dotfiles, no neighbours, no symlink escapes),
 *   and the web root refuses dotfiles and symlinks leading outside;
 * - the Host header must name the server (DNS rebinding), for HTTP and for the WebSocket upgrade;
 * - `/api/network` is cached and does not list sessions in resume grace;
 * - slow-header sockets are bounded per client and closed after the headers timeout;
 * - X-Forwarded-For counts only from a trusted proxy, and IPv6 clients share a quota per /64;
 * - new connections and new sessions are rate limited per client address.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { scaled, TIMEOUTS } from '../helpers/timeouts';
import { connect, hello, httpGet, upgradeStatus, type TestClient } from './signaling-test-client';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MODEL = path.join(ROOT, 'public/models/stories260K');

interface Spawned {
  port: number;
  stop(): Promise<void>;
}

const children: ChildProcess[] = [];
const clients: TestClient[] = [];

/** Starts the real server (test mode, free loopback port) with `args`; resolves once it listens. */
async function spawnServer(args: readonly string[]): Promise<Spawned> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'signaling-server/src/main.ts',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--test-mode',
      ...args,
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn' } },
  );
  children.push(child);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`the server did not print its port within ${TIMEOUTS.serverStart} ms: ${out}`));
    }, TIMEOUTS.serverStart);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /RINGWORK_LISTENING (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited ${code}: ${out}`));
    });
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function client(port: number, headers?: Record<string, string>): Promise<TestClient> {
  const c = await connect(port, headers ? { headers } : {});
  clients.push(c);
  return c;
}

afterEach(() => {
  for (const c of clients.splice(0)) c.ws.terminate();
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await Promise.all(
    children.map((c) =>
      c.exitCode !== null || c.signalCode !== null
        ? Promise.resolve()
        : new Promise((r) => c.once('exit', r)),
    ),
  );
});

// One server process serves the slow-header caps, the catalog mount and web root, and the Host
// allowlist: the flags are independent and every request of the last two completes its headers at once
// (each spawn costs seconds of transpiling and start-up). /api/network's grace count and the
// per-address quotas need servers of their own.
describe('one server: catalog mount, web root, Host allowlist, headers timeout, socket cap', () => {
  let tmp: string;
  let srv: Spawned;

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(tmpdir(), 'ringwork-hostile-'));
    // A model that sits in a home directory, next to things that must never be published.
    const home = path.join(tmp, 'home');
    mkdirSync(path.join(home, '.ssh'), { recursive: true });
    copyFileSync(path.join(MODEL, 'stories260K.bin'), path.join(home, 'model.bin'));
    copyFileSync(path.join(MODEL, 'tok512.bin'), path.join(home, 'tok512.bin'));
    writeFileSync(path.join(home, '.ssh', 'id_rsa'), 'PRIVATE KEY');
    writeFileSync(path.join(home, '.env'), 'SECRET=1');
    writeFileSync(path.join(home, 'notes.txt'), 'private notes');
    const secret = path.join(tmp, 'secret.txt');
    writeFileSync(secret, 'outside');
    // An allowlisted name that is a symlink out of the model directory.
    symlinkSync(secret, path.join(home, 'tokenizer.bin'));
    // A web root with a dotfile, a symlink out of it, and the page.
    const web = path.join(tmp, 'web');
    mkdirSync(path.join(web, '.git'), { recursive: true });
    writeFileSync(path.join(web, 'index.html'), '<!doctype html><title>ok</title>');
    writeFileSync(path.join(web, '.git', 'config'), '[core]');
    symlinkSync(secret, path.join(web, 'leak.txt'));
    srv = await spawnServer([
      '--model',
      `mine=${path.join(home, 'model.bin')}`,
      '--root',
      web,
      '--allow-host',
      'ringwork.test',
      '--headers-timeout-ms',
      '500',
      '--max-sockets-per-ip',
      '20',
    ]);
  });

  afterAll(async () => {
    await srv.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  // First, on the fresh server: the cap counts every socket of the address, idle keep-alive
  // sockets of the later tests' requests included.
  describe('slow headers and socket caps', () => {
    it('holds at most the per-client socket cap of slow-header sockets, and drops them after the timeout', async () => {
      const sockets: Socket[] = [];
      const closedAt: number[] = [];
      const t0 = Date.now();
      for (let i = 0; i < 60; i++) {
        const s = netConnect(srv.port, '127.0.0.1');
        s.on('error', () => undefined);
        // The server hanging up (FIN or reset) is what frees its side; count each socket once.
        let done = false;
        const hungUp = (): void => {
          if (done) return;
          done = true;
          closedAt.push(Date.now() - t0);
        };
        s.on('end', hungUp);
        // Read (and drop) the server's answer, or 'end' never comes.
        s.resume();
        s.on('close', hungUp);
        s.on('connect', () => s.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: '));
        sockets.push(s);
      }
      // 40 are refused at once (cap 20); the 20 held ones go when their headers time out.
      await vi.waitFor(() => expect(closedAt.length).toBe(60), { timeout: scaled(8000), interval: 50 });
      expect(Math.max(...closedAt)).toBeLessThan(scaled(5000));
      // Honest use right after: the page and the API answer, and say what was refused.
      expect((await httpGet(srv.port, '/healthz')).status).toBe(200);
      const net = JSON.parse((await httpGet(srv.port, '/api/network')).body) as {
        counters: { rejectedRequests: Record<string, number> };
      };
      expect(net.counters.rejectedRequests['per-ip-sockets']).toBe(40);
      for (const s of sockets) s.destroy();
    });
  });

  describe('static files and catalog mounts', () => {
    it('serves the model files, with Range, and the page (honest use)', async () => {
      const weights = await httpGet(srv.port, '/catalog/mine/model.bin', { Range: 'bytes=0-27' });
      expect(weights.status).toBe(206);
      expect(weights.headers['content-range']).toMatch(/^bytes 0-27\//);
      expect((await httpGet(srv.port, '/catalog/mine/tok512.bin')).status).toBe(200);
      const page = await httpGet(srv.port, '/');
      expect(page.status).toBe(200);
      expect(page.body).toContain('<title>ok</title>');
      // The catalog advertises exactly the served URLs.
      const net = JSON.parse((await httpGet(srv.port, '/api/network')).body) as {
        models: Array<{ id: string; descriptor: { url: string; tokenizerUrl?: string } }>;
      };
      const mine = net.models.find((m) => m.id === 'mine');
      expect(mine?.descriptor).toMatchObject({
        url: '/catalog/mine/model.bin',
        tokenizerUrl: '/catalog/mine/tok512.bin',
      });
    });

    it.each([
      '/catalog/mine/.ssh/id_rsa',
      '/catalog/mine/.env',
      '/catalog/mine/%2eenv',
      '/catalog/mine/%2Essh%2Fid_rsa',
      '/catalog/mine/notes.txt',
      '/catalog/mine/',
      '/catalog/mine/tokenizer.bin',
      '/catalog/mine/..%2Fsecret.txt',
      '/.git/config',
      '/%2egit/config',
      '/leak.txt',
    ])('refuses %s', async (p) => {
      const r = await httpGet(srv.port, p);
      expect(r.status).toBe(404);
      expect(r.body).not.toMatch(/PRIVATE KEY|SECRET=1|private notes|outside|\[core\]/);
    });
  });

  describe('Host header allowlist', () => {
    it('answers the loopback names and the allowed host (honest use)', async () => {
      for (const host of [
        `127.0.0.1:${srv.port}`,
        `localhost:${srv.port}`,
        `[::1]:${srv.port}`,
        'ringwork.test',
      ]) {
        expect((await httpGet(srv.port, '/api/network', { Host: host })).status, host).toBe(200);
      }
      const c = await client(srv.port, { Host: 'ringwork.test' });
      const w = await hello(c);
      expect(w.peerId).toBeTruthy();
    });

    it('refuses a rebinding name with a typed 421, for HTTP and for /ws', async () => {
      for (const host of [
        `evil.example:${srv.port}`,
        'evil.example',
        `localhost.evil.example:${srv.port}`,
        `127.0.0.1:1`,
      ]) {
        const r = await httpGet(srv.port, '/api/network', { Host: host });
        expect(r.status, host).toBe(421);
        expect((JSON.parse(r.body) as { error: { code: string } }).error.code).toBe('HTTP_HOST_NOT_ALLOWED');
        expect(r.body).not.toContain('"peers"');
      }
      expect(await upgradeStatus(srv.port, { headers: { Host: `evil.example:${srv.port}` } })).toBe(421);
      // Same-origin for the rebinding page: Origin matches its Host, and still it is refused.
      expect(
        await upgradeStatus(srv.port, {
          origin: `http://evil.example:${srv.port}`,
          headers: { Host: `evil.example:${srv.port}` },
        }),
      ).toBe(421);
    });
  });
});

describe('/api/network', () => {
  let srv: Spawned;
  beforeAll(async () => {
    srv = await spawnServer(['--network-cache-ms', '400', '--resume-grace-ms', '60000']);
  });
  afterAll(() => srv.stop());

  it('is cached briefly and does not list sessions in resume grace', async () => {
    type Net = { now: number; peers: Array<{ id: string }>; sessionsInGrace: number };
    const get = async (): Promise<Net> => JSON.parse((await httpGet(srv.port, '/api/network')).body) as Net;
    const first = await get();
    expect((await get()).now).toBe(first.now);
    const live = await client(srv.port);
    const liveId = (await hello(live)).peerId;
    const gone: string[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await client(srv.port);
      gone.push((await hello(c)).peerId);
      c.ws.terminate();
      await c.closed;
    }
    // After the cache window, the live peer is listed and the five grace sessions only counted.
    await vi.waitFor(
      async () => {
        const n = await get();
        expect(n.now).not.toBe(first.now);
        expect(n.sessionsInGrace).toBe(5);
      },
      { timeout: scaled(5000), interval: 100 },
    );
    const n = await get();
    expect(n.peers.map((p) => p.id)).toEqual([liveId]);
    for (const id of gone) expect(n.peers.some((p) => p.id === id)).toBe(false);
  });
});

describe('client addresses: X-Forwarded-For and IPv6 /64 buckets', () => {
  it('ignores X-Forwarded-For from an untrusted socket', async () => {
    const srv = await spawnServer(['--max-connections-per-ip', '1']);
    try {
      await client(srv.port, { 'X-Forwarded-For': '203.0.113.1' });
      // A forged header does not buy a fresh quota: the socket address is the client.
      expect(await upgradeStatus(srv.port, { headers: { 'X-Forwarded-For': '203.0.113.2' } })).toBe(429);
    } finally {
      await srv.stop();
    }
  });

  it('counts forwarded clients from a trusted proxy, IPv6 by /64', async () => {
    const srv = await spawnServer(['--max-connections-per-ip', '1', '--trust-proxy', '127.0.0.1']);
    try {
      const a = await client(srv.port, { 'X-Forwarded-For': '2001:db8:1:2::1' });
      expect(a.ws.readyState).toBe(a.ws.OPEN);
      // A second address in the same /64 is the same client.
      expect(await upgradeStatus(srv.port, { headers: { 'X-Forwarded-For': '2001:db8:1:2:ffff::9' } })).toBe(
        429,
      );
      // Other clients behind the proxy keep working: another /64, an IPv4 client.
      await client(srv.port, { 'X-Forwarded-For': '2001:db8:1:3::1' });
      await client(srv.port, { 'X-Forwarded-For': '198.51.100.7, 127.0.0.1' });
      // The client cannot spoof its way past the proxy's own entry (rightmost non-proxy hop counts).
      expect(
        await upgradeStatus(srv.port, { headers: { 'X-Forwarded-For': '192.0.2.55, 198.51.100.7' } }),
      ).toBe(429);
    } finally {
      await srv.stop();
    }
  });

  it('9. session churn from many addresses of one IPv6 /64 cannot push a resumable session out of a full table', async () => {
    const srv = await spawnServer([
      '--trust-proxy',
      '127.0.0.1',
      '--max-sessions',
      '8',
      '--session-burst-per-ip',
      '4',
      '--sessions-per-second-per-ip',
      '0.01',
      '--resume-grace-ms',
      '60000',
    ]);
    try {
      // The victim drops its socket: its session waits in resume grace, the first to go when full.
      const v = await client(srv.port, { 'X-Forwarded-For': '198.51.100.7' });
      const victim = await hello(v);
      v.ws.terminate();
      await v.closed;
      // The attacker churns hellos, every one from a fresh address of its /64 (issue: 2,400 in 1.95 s).
      let created = 0;
      let refused = 0;
      for (let i = 1; i <= 24; i++) {
        const c = await client(srv.port, { 'X-Forwarded-For': `2001:db8:9:9::${i.toString(16)}` });
        c.send({ type: 'hello', v: 1, roles: ['requester'] });
        await vi.waitFor(() =>
          expect(c.messages.some((m) => m.type === 'welcome' || m.type === 'error')).toBe(true),
        );
        const err = c.messages.find((m) => m.type === 'error');
        if (err?.type === 'error') {
          expect(err.code).toBe('PROTOCOL_RATE_LIMITED');
          refused++;
        } else created++;
        c.ws.terminate();
        await c.closed;
      }
      // One /64 is one client: its burst of new sessions, the rest refused — the table never fills.
      expect(created).toBe(4);
      expect(refused).toBe(20);
      const back = await client(srv.port, { 'X-Forwarded-For': '198.51.100.7' });
      const w = await hello(back, ['contributor', 'requester'], {
        resume: { peerId: victim.peerId, token: victim.token },
      });
      expect(w.resumed).toBe(true);
      expect(w.peerId).toBe(victim.peerId);
    } finally {
      await srv.stop();
    }
  });
});

describe('per-client connection and session rates', () => {
  it('refuses new connections past the burst (429) and new sessions past theirs, while resuming works', async () => {
    const srv = await spawnServer([
      '--connect-burst-per-ip',
      '6',
      '--connects-per-second-per-ip',
      '0.01',
      '--session-burst-per-ip',
      '3',
      '--sessions-per-second-per-ip',
      '0.01',
    ]);
    try {
      const sessions: Array<{ id: string; token: string }> = [];
      for (let i = 0; i < 3; i++) {
        const c = await client(srv.port);
        const w = await hello(c);
        sessions.push({ id: w.peerId, token: w.token });
        c.ws.terminate();
        await c.closed;
      }
      // Fourth new session: refused with a typed error.
      const c4 = await client(srv.port);
      c4.send({ type: 'hello', v: 1, roles: ['contributor'] });
      const err = await c4.next('error');
      expect(err.code).toBe('PROTOCOL_RATE_LIMITED');
      // Honest reconnect: resuming an existing session is not a new session.
      const c5 = await client(srv.port);
      const s = sessions[0]!;
      const w = await hello(c5, ['contributor', 'requester'], { resume: { peerId: s.id, token: s.token } });
      expect(w.resumed).toBe(true);
      // Connections: 5 used so far, one more allowed, then refused.
      await client(srv.port);
      expect(await upgradeStatus(srv.port)).toBe(429);
      expect((await httpGet(srv.port, '/healthz')).status).toBe(200);
    } finally {
      await srv.stop();
    }
  });
});
