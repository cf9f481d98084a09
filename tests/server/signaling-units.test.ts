/**
 * Units of the signaling server: configuration (flags, env, zod validation), the loopback ICE filter,
 * token buckets, the session registry, and `npm start`'s entry point as a child process.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingworkError } from '../../shared/errors';
import { candidateAddress, createIceFilter, isLoopbackAddress } from '../../signaling-server/src/ice-filter';
import { DEFAULT_STAGE_OVERHEAD_MS, parseCliConfig, resolveConfig } from '../../signaling-server/src/config';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { createPeerRegistry } from '../../signaling-server/src/peer-registry';
import { createTokenBucket } from '../../signaling-server/src/rate-limit';
import { scaled } from '../helpers/timeouts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function configError(f: () => unknown): RingworkError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(RingworkError);
    expect((e as RingworkError).code).toBe('INVALID_ARGUMENT');
    return e as RingworkError;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

describe('configuration', () => {
  it('has safe defaults', () => {
    const c = resolveConfig({});
    expect(c).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      testMode: false,
      allowAnyRelay: false,
      objective: 'throughput',
    });
    expect(c.limits).toMatchObject({ maxConnectionsPerIp: 16, rateBurst: 200, replanDebounceMs: 200 });
  });

  it('reads flags over env, env over defaults', () => {
    const c = parseCliConfig(['--port', '0', '--host', '127.0.0.1', '--max-connections-per-ip', '5000'], {
      PORT: '9999',
      HOST: '0.0.0.0',
      RINGWORK_TEST_MODE: '1',
      RINGWORK_ALLOWED_ORIGINS: 'https://a.example,https://b.example',
    });
    expect(c).toMatchObject({
      port: 0,
      host: '127.0.0.1',
      testMode: true,
      allowedOrigins: ['https://a.example', 'https://b.example'],
    });
    expect(c.limits.maxConnectionsPerIp).toBe(5000);
    expect(parseCliConfig([], { PORT: '9999' }).port).toBe(9999);
  });

  it('reads the per-stage overhead the planner charges (flag over env over the measured default)', () => {
    expect(resolveConfig({}).stageOverheadMs).toBe(DEFAULT_STAGE_OVERHEAD_MS);
    expect(parseCliConfig([], { RINGWORK_STAGE_OVERHEAD_MS: '25' }).stageOverheadMs).toBe(25);
    expect(
      parseCliConfig(['--stage-overhead-ms', '0'], { RINGWORK_STAGE_OVERHEAD_MS: '25' }).stageOverheadMs,
    ).toBe(0);
    expect(configError(() => parseCliConfig(['--stage-overhead-ms=-1'], {})).message).toMatch(
      /stageOverheadMs/,
    );
  });

  it('reads the minimum link bandwidth the planner keeps to (flag over env; default none)', () => {
    expect(resolveConfig({}).minLinkMbps).toBe(0);
    expect(parseCliConfig([], { RINGWORK_MIN_LINK_MBPS: '20' }).minLinkMbps).toBe(20);
    expect(parseCliConfig(['--min-link-mbps', '5'], { RINGWORK_MIN_LINK_MBPS: '20' }).minLinkMbps).toBe(5);
    expect(configError(() => parseCliConfig(['--min-link-mbps=-1'], {})).message).toMatch(/minLinkMbps/);
  });

  it('rejects bad values, unknown flags and --allow-any-relay outside test mode', () => {
    expect(configError(() => parseCliConfig(['--port', 'http'], {})).message).toMatch(/port/);
    expect(configError(() => parseCliConfig(['--port', '70000'], {})).message).toMatch(/port/);
    configError(() => parseCliConfig(['--frobnicate'], {}));
    expect(configError(() => parseCliConfig(['--allow-any-relay'], {})).message).toMatch(/test mode/);
    expect(parseCliConfig(['--allow-any-relay', '--test-mode'], {}).allowAnyRelay).toBe(true);
    expect(
      configError(() => parseCliConfig(['--allow-origin', 'https://x.example/path'], {})).message,
    ).toMatch(/origin/);
    expect(
      configError(() => parseCliConfig(['--heartbeat-ms', '5000', '--heartbeat-timeout-ms', '100'], {}))
        .message,
    ).toMatch(/heartbeat/);
    expect(configError(() => parseCliConfig(['--model', 'nopath'], {})).message).toMatch(/<id>=<path/);
    expect(configError(() => parseCliConfig(['--model', '../x=y'], {})).message).toMatch(/model id/);
    expect(configError(() => parseCliConfig(['--model', 'a=x,a=y'], {})).message).toMatch(/duplicate/);
  });

  describe('the model catalog', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'ringwork-catalog-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('embeds stories260K by default with context min(maxPositions, 512)', async () => {
      const [m] = await loadCatalog([]);
      expect(m!.descriptor).toEqual({
        id: 'stories260K',
        url: '/models/stories260K/stories260K.bin',
        tokenizerUrl: '/models/stories260K/tok512.bin',
        weightFormat: 'f32',
        contextLength: 512,
        units: 7,
        serving: 'lightweight',
      });
      expect(m!.mount?.prefix).toBe('/models/stories260K/');
      expect(m!.totalBytes).toBe(
        m!.profile.layers.reduce((a, l) => a + l.weightBytes + l.kvBytesPerToken * 512, 0),
      );
    });

    it('adds --model entries and JSON catalog files, mounting files outside public/', async () => {
      const file = path.join(dir, 'catalog.json');
      const bin = path.join(ROOT, 'public/models/stories260K/stories260K.bin');
      await writeFile(
        file,
        JSON.stringify({ models: [{ id: 'copy', path: bin, contextLength: 128, weightFormat: 'q8' }] }),
      );
      const c = parseCliConfig(['--catalog', file, '--model', `other=${bin}`, '--no-default-model'], {});
      const cat = await loadCatalog(c.models, {
        defaultModel: c.defaultModel,
        publicDir: path.join(dir, 'nothing'),
      });
      expect(cat.map((m) => m.descriptor.id)).toEqual(['copy', 'other']);
      expect(cat[0]!.descriptor).toMatchObject({
        contextLength: 128,
        weightFormat: 'q8',
        url: '/catalog/copy/stories260K.bin',
      });
      // The mount serves the model's files only: the checkpoint and its tokenizer names.
      expect(cat[0]!.mount).toEqual({
        prefix: '/catalog/copy/',
        dir: path.dirname(bin),
        files: new Set(['stories260K.bin', 'tokenizer.bin', 'tok512.bin']),
      });
      expect(cat[1]!.descriptor.tokenizerUrl).toBe('/catalog/other/tok512.bin');
      await expect(
        loadCatalog([{ id: 'missing', path: path.join(dir, 'nope.bin'), weightFormat: 'f32' }]),
      ).rejects.toMatchObject({
        code: 'FILE_READ_FAILED',
      });
    });
  });
});

describe('loopback ICE filter', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.255.0.9', true],
    ['::1', true],
    ['0:0:0:0:0:0:0:1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['128.0.0.1', false],
    ['10.0.0.1', false],
    ['192.168.0.1', false],
    ['::', false],
    ['fe80::1', false],
    ['::2', false],
    ['127.0.0.256', false],
    ['localhost', false],
    ['abcd.local', false],
    ['', false],
  ])('%s → %s', (addr, loop) => {
    expect(isLoopbackAddress(addr)).toBe(loop);
  });

  it('reads the address field of candidate lines', () => {
    expect(candidateAddress('candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host')).toBe('127.0.0.1');
    expect(candidateAddress('a=candidate:1 1 UDP 2122260223 ::1 5000 typ host')).toBe('::1');
    expect(candidateAddress('candidate:1 1 udp')).toBeNull();
    expect(candidateAddress('m=audio')).toBeNull();
  });

  it('keeps loopback and end-of-candidates, drops the rest and counts', () => {
    const f = createIceFilter();
    const cand = (c: string) => ({ kind: 'candidate' as const, candidate: { candidate: c } });
    expect(f.filter(cand('candidate:1 1 udp 1 127.0.0.1 5000 typ host'))).not.toBeNull();
    expect(f.filter(cand(''))).not.toBeNull();
    expect(f.filter(cand('candidate:1 1 udp 1 1.2.3.4 5000 typ host'))).toBeNull();
    const out = f.filter({
      kind: 'sdp',
      sdp: {
        type: 'offer',
        sdp: 'v=0\na=candidate:1 1 udp 1 1.2.3.4 1 typ host\na=candidate:1 1 udp 1 127.0.0.1 1 typ host\n',
      },
    });
    expect(out).toEqual({
      kind: 'sdp',
      sdp: { type: 'offer', sdp: 'v=0\r\na=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\n' },
    });
    expect(f.counts()).toEqual({ candidates: 1, sdpLines: 1, total: 2 });
  });
});

describe('token bucket', () => {
  it('allows a burst, then refills at the configured rate', () => {
    let now = 0;
    const b = createTokenBucket({ capacity: 3, refillPerSecond: 2, clock: { now: () => now } });
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    now += 499;
    expect(b.take()).toBe(false);
    now += 1;
    expect(b.take()).toBe(true);
    now += 60_000;
    expect(b.level()).toBe(3);
    now -= 10_000; // a clock stepping back mints nothing
    expect(b.level()).toBe(3);
  });
});

describe('peer registry', () => {
  it('assigns ids and tokens, resumes with the token only, and rotates it', () => {
    const reg = createPeerRegistry({ clock: { now: () => 1 } });
    const { session, token } = reg.create(['contributor']);
    expect(session.id).toMatch(/^p_[A-Za-z0-9_-]{16}$/);
    expect(token).toMatch(/^[A-Za-z0-9_-]{32,128}$/);
    expect(() => reg.resume(session.id, token.replace(/^./, token[0] === 'A' ? 'B' : 'A'))).toThrowError(
      expect.objectContaining({ code: 'PROTOCOL_BAD_TOKEN' }) as Error,
    );
    const r = reg.resume(session.id, token);
    expect(r.session).toBe(session);
    expect(r.token).not.toBe(token);
    expect(() => reg.resume(session.id, token)).toThrowError(
      expect.objectContaining({ code: 'PROTOCOL_BAD_TOKEN' }) as Error,
    );
    expect(() => reg.resume('p_unknown000000000', r.token)).toThrowError(
      expect.objectContaining({ code: 'PROTOCOL_BAD_TOKEN' }) as Error,
    );
    expect(reg.remove(session.id)).toBe(true);
    expect(() => reg.resume(session.id, r.token)).toThrowError(
      expect.objectContaining({ code: 'PROTOCOL_BAD_TOKEN' }) as Error,
    );
  });
});

describe('npm start entry point', () => {
  it('prints RINGWORK_LISTENING, answers /healthz and exits 0 on SIGTERM', async () => {
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
        '--log-level',
        'warn',
        // Not test mode: the embedded ledger would default to ./.ringwork-data in the repo.
        '--no-ledger',
      ],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const port = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no RINGWORK_LISTENING line: ${out}`)), scaled(40_000));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /RINGWORK_LISTENING (\d+)/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    const health = (await res.json()) as { ok: boolean; memory: { heapUsedBytes: number; rssBytes: number } };
    expect(health.ok).toBe(true);
    // The bench reads each instance's memory here (O(1); /api/network would build the whole snapshot).
    expect(health.memory.heapUsedBytes).toBeGreaterThan(0);
    expect(health.memory.rssBytes).toBeGreaterThanOrEqual(health.memory.heapUsedBytes);
    const code = await new Promise<number | null>((resolve) => {
      child.once('exit', (c) => resolve(c));
      child.kill('SIGTERM');
    });
    expect(code).toBe(0);
  });

  it('exits 2 with a message naming the bad flag', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'signaling-server/src/main.ts', '--port', 'eighty'],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(err).toMatch(/port/);
  });
});
