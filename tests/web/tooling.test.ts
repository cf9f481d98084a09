import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { RingworkError } from '../../shared/errors';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import { requireTestModeServer, toolingFromUrl } from '../../web/src/app/tooling';

const servers: SignalingServer[] = [];
const urls: Record<'test' | 'production', string> = { test: '', production: '' };

beforeAll(async () => {
  for (const mode of ['test', 'production'] as const) {
    const server = createSignalingServer(
      { host: '127.0.0.1', port: 0, testMode: mode === 'test', limits: { networkCacheMs: 0 } },
      { logger: pino({ level: 'silent' }), catalog: await loadCatalog([]) },
    );
    servers.push(server);
    urls[mode] = `http://127.0.0.1:${(await server.start()).port}/`;
  }
});
afterAll(async () => {
  for (const s of servers) await s.stop();
});

async function refusal(p: Promise<void>): Promise<RingworkError> {
  try {
    await p;
  } catch (e) {
    return e as RingworkError;
  }
  throw new Error('expected a refusal');
}

describe('tooling-only modes (null compute) are refused outside a test-mode server', () => {
  it('allows them with the real server in test mode', async () => {
    await expect(requireTestModeServer('null compute', urls.test)).resolves.toBeUndefined();
  });

  it('refuses them with TOOLING_ONLY on a production server', async () => {
    const e = await refusal(requireTestModeServer('null compute', urls.production));
    expect(e).toBeInstanceOf(RingworkError);
    expect(e.code).toBe('TOOLING_ONLY');
    expect(e.details).toEqual({ mode: 'null compute' });
  });

  it('refuses them when no server answers', async () => {
    const e = await refusal(requireTestModeServer('null compute', 'http://127.0.0.1:1/'));
    expect(e.code).toBe('TOOLING_ONLY');
  });
});

describe("a page's tooling switches from its URL", () => {
  afterEach(() => vi.unstubAllGlobals());
  const at = (hash: string) => {
    vi.stubGlobal('location', { hash, search: '' });
    return toolingFromUrl();
  };

  it("warmup=MS sets the shard worker's engine warm-up within 0..5000 ms; anything else is ignored", () => {
    expect(at('#/contribute?join=1&warmup=0').warmUpMs).toBe(0);
    expect(at('#/contribute?join=1&warmup=900').warmUpMs).toBe(900);
    expect(at('#/contribute?join=1&warmup=5000').warmUpMs).toBe(5000);
    for (const bad of ['5001', '-1', '1.5', 'x', ''])
      expect(at(`#/contribute?join=1&warmup=${bad}`), bad).not.toHaveProperty('warmUpMs');
    expect(at('#/contribute?join=1&threads=2')).not.toHaveProperty('warmUpMs');
  });

  it("loop=0 turns the requester's loop mode off; it is on otherwise", () => {
    expect(at('#/chat?loop=0').loop).toBe(false);
    expect(at('#/chat?perf=1&loop=0').loop).toBe(false);
    expect(at('#/chat').loop).toBe(true);
    expect(at('#/chat?loop=1').loop).toBe(true);
  });
});
