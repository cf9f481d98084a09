/**
 * The safetensors loader over real HTTP: a node:http server on 127.0.0.1 serves synthesized
 * models from a temp dir with Range support (or, for one test, without it).
 */
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingworkError, type ErrorCode } from '../../shared/errors';
import { toHfConfig } from '../../shared/model/hf-config';
import { createHttpFileOpener, joinUrl, type FetchLike } from '../../shared/model/http-source';
import { openSafetensorsModel, readJsonFile } from '../../shared/model/safetensors';
import { requiredTensorNames } from '../../shared/model/tensor-names';
import { writeSafetensors } from '../../shared/model/safetensors-writer';
import type { ModelConfig } from '../../shared/model/types';
import { SYNTH_PRESETS, synthTensor, synthTensorSpecs, synthesizeModel } from '../../tools/model/synth';

interface TestServer {
  origin: string;
  /** Body bytes the server actually sent, across all requests. */
  bytesSent: number;
  requests: { method: string; url: string; range: string | undefined; status: number }[];
  close(): Promise<void>;
}

/** A static file server over `dir`; with `ignoreRange` it always answers 200 with the whole file. */
async function serveDir(dir: string, opts: { ignoreRange?: boolean } = {}): Promise<TestServer> {
  const state: TestServer = { origin: '', bytesSent: 0, requests: [], close: async () => {} };
  const server: Server = createServer((req, res) => {
    res.on('error', () => {}); // clients abort bodies they refuse; that is expected here
    const urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = path.join(dir, path.normalize(urlPath));
    const range = req.headers.range;
    const log = (status: number) =>
      state.requests.push({ method: req.method ?? 'GET', url: urlPath, range, status });
    stat(file).then(
      (st) => {
        if (!st.isFile()) throw new Error('not a file');
        const size = st.size;
        const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
        let start = 0;
        let end = size - 1;
        let status = 200;
        if (m && !opts.ignoreRange) {
          start = Number(m[1]);
          end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
          if (start >= size) {
            log(416);
            res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
            return;
          }
          status = 206;
        }
        log(status);
        const headers: Record<string, string | number> = {
          'Content-Length': end - start + 1,
          'Accept-Ranges': opts.ignoreRange ? 'none' : 'bytes',
        };
        if (status === 206) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
        res.writeHead(status, headers);
        if (req.method === 'HEAD' || size === 0) {
          res.end();
          return;
        }
        const stream = createReadStream(file, { start, end });
        stream.on('data', (chunk) => (state.bytesSent += chunk.length));
        stream.pipe(res);
        res.on('close', () => stream.destroy());
      },
      () => {
        log(404);
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}

async function expectError(
  p: Promise<unknown>,
  code: ErrorCode,
  ...mentions: string[]
): Promise<RingworkError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(RingworkError);
  const re = err as RingworkError;
  expect(re.code, re.message).toBe(code);
  for (const m of mentions) expect(re.message).toContain(m);
  return re;
}

function expectSameFloats(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  expect(
    a.findIndex((v, i) => v !== b[i]),
    `${what}: first mismatching element`,
  ).toBe(-1);
}

const TINY = SYNTH_PRESETS['test-tiny'];
const SEED = 42;
/** Bigger than test-tiny so that config and header bytes are small next to one shard's weights. */
const MEDIUM: ModelConfig = {
  ...TINY,
  hiddenSize: 256,
  intermediateSize: 512,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 64,
  vocabSize: 2000,
};

let root: string;
let server: TestServer;
let noRange: TestServer;
const url = (dir: string) => `${server.origin}/${dir}/`;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ringwork-http-'));
  const dirs = (name: string) => path.join(root, name);
  await synthesizeModel({ preset: 'test-tiny', outDir: dirs('tiny'), seed: SEED });
  await synthesizeModel({ preset: 'test-tiny', outDir: dirs('tiny-bf16'), seed: SEED, dtype: 'bf16' });
  await synthesizeModel({ preset: 'test-tiny', outDir: dirs('sharded'), seed: SEED, maxShardBytes: 120_000 });
  await synthesizeModel({ preset: MEDIUM, outDir: dirs('medium'), seed: SEED });

  // Broken variants, each a copy of the tiny model with one defect.
  const variant = async (name: string) => {
    await mkdir(dirs(name));
    for (const f of ['config.json', 'model.safetensors'])
      await copyFile(path.join(dirs('tiny'), f), path.join(dirs(name), f));
    return dirs(name);
  };
  const truncated = await variant('truncated');
  await truncate(
    path.join(truncated, 'model.safetensors'),
    (await stat(path.join(truncated, 'model.safetensors'))).size - 1000,
  );
  const lfs = await variant('lfs-pointer');
  await writeFile(
    path.join(lfs, 'model.safetensors'),
    'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 600856\n',
  );
  const badJson = await variant('bad-json');
  const garbage = new TextEncoder().encode(
    '{"model.embed_tokens.weight": {"dtype": "F32", "shape": [300, 64], oops',
  );
  const bytes = new Uint8Array(8 + garbage.byteLength + 64);
  new DataView(bytes.buffer).setUint32(0, garbage.byteLength, true);
  bytes.set(garbage, 8);
  await writeFile(path.join(badJson, 'model.safetensors'), bytes);
  const gpt2 = await variant('gpt2');
  await writeFile(
    path.join(gpt2, 'config.json'),
    JSON.stringify({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: 64 }),
  );
  const missing = await variant('missing');
  const dropped = 'model.layers.1.mlp.up_proj.weight';
  const kept = synthTensorSpecs(TINY).filter((s) => s.name !== dropped);
  const chunks = writeSafetensors(kept.map((s) => ({ ...s, data: synthTensor(TINY, s.name, SEED) })));
  await writeFile(path.join(missing, 'model.safetensors'), Buffer.concat(chunks));
  await writeFile(path.join(missing, 'config.json'), JSON.stringify(toHfConfig(TINY)));

  server = await serveDir(root);
  noRange = await serveDir(root, { ignoreRange: true });
});

afterAll(async () => {
  await server?.close();
  await noRange?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('safetensors over HTTP Range', () => {
  it('(a) parses config and tensors; every value equals what the synthesizer wrote (f32 and bf16)', async () => {
    for (const [dir, dtype] of [
      ['tiny', 'F32'],
      ['tiny-bf16', 'BF16'],
    ] as const) {
      const model = await openSafetensorsModel(createHttpFileOpener(url(dir)));
      expect(model.format).toBe('safetensors');
      expect(model.config).toEqual(TINY);
      expect([...model.tensors.keys()]).toEqual(requiredTensorNames(TINY));
      for (const name of model.tensors.keys()) {
        expect(model.tensors.get(name)!.dtype).toBe(dtype);
        expectSameFloats(
          await model.readTensor(name),
          synthTensor(TINY, name, SEED, dtype),
          `${dir} ${name}`,
        );
      }
    }
    // Every ranged GET was answered 206 (the size probes read one byte each).
    expect(server.requests.filter((r) => r.range && r.status === 200)).toEqual([]);
  });

  it('(b) a shard of units [1,3) fetches exactly its tensor bytes after opening (ratio 1.000), and <= 1.05x including config, index probe and header reads from a cold opener', async () => {
    const opener = createHttpFileOpener(url('medium'));
    const sentBefore = server.bytesSent;
    const model = await openSafetensorsModel(opener);
    const openBytes = opener.bytesRead;
    const names = requiredTensorNames(model.config, [1, 3]);
    const tensorBytes = names.reduce((a, n) => a + model.tensors.get(n)!.byteLength, 0);
    for (const n of names) await model.readTensor(n);
    const shardBytes = opener.bytesRead - openBytes;
    const ratioAfterOpen = shardBytes / tensorBytes;
    const ratioTotal = opener.bytesRead / tensorBytes;
    // The client's counter matches what went over the wire.
    expect(server.bytesSent - sentBefore).toBe(opener.bytesRead);
    expect(model.bytesRead).toBe(opener.bytesRead);
    expect(ratioAfterOpen).toBe(1);
    expect(ratioTotal).toBeLessThanOrEqual(1.05);
    // Sanity: the shard is a small part of the model file.
    const fileBytes = (await stat(path.join(root, 'medium', 'model.safetensors'))).size;
    expect(tensorBytes).toBeLessThan(fileBytes / 2);
    console.info(
      `[byte accounting] units [1,3) of dim 256 / vocab 2000 / 4 layers: tensors ${tensorBytes} B, fetched after open ${shardBytes} B (ratio ${ratioAfterOpen.toFixed(4)}), open cost ${openBytes} B, total ${opener.bytesRead} B (ratio ${ratioTotal.toFixed(4)}), model file ${fileBytes} B`,
    );
  });

  it('(c) reads a sharded checkpoint through model.safetensors.index.json', async () => {
    const model = await openSafetensorsModel(createHttpFileOpener(url('sharded')));
    expect(model.files.length).toBeGreaterThan(1);
    expect(model.files[0]).toBe(`model-00001-of-0000${model.files.length}.safetensors`);
    const usedFiles = new Set([...model.tensors.values()].map((t) => t.file));
    expect(usedFiles.size).toBe(model.files.length);
    for (const name of model.tensors.keys())
      expectSameFloats(await model.readTensor(name), synthTensor(TINY, name, SEED), name);
  });

  it('reads tokenizer.json with readJsonFile', async () => {
    const tok = (await readJsonFile(createHttpFileOpener(url('tiny')), 'tokenizer.json')) as {
      model: { vocab: Record<string, number> };
    };
    expect(Object.keys(tok.model.vocab)).toHaveLength(TINY.vocabSize);
  });

  it('honours an aborted signal', async () => {
    const ctl = new AbortController();
    ctl.abort();
    await expectError(
      openSafetensorsModel(createHttpFileOpener(url('tiny')), { signal: ctl.signal }),
      'ABORTED',
    );
  });
});

describe('typed errors over HTTP', () => {
  it('garbage instead of weights (a Git LFS pointer) -> MODEL_BAD_MAGIC naming the URL', async () => {
    const e = await expectError(
      openSafetensorsModel(createHttpFileOpener(url('lfs-pointer'))),
      'MODEL_BAD_MAGIC',
      `${url('lfs-pointer')}model.safetensors`,
      'Git LFS',
    );
    expect(e.details.file).toBe(`${url('lfs-pointer')}model.safetensors`);
  });

  it('a header that is not JSON -> MODEL_BAD_HEADER naming the URL', async () => {
    await expectError(
      openSafetensorsModel(createHttpFileOpener(url('bad-json'))),
      'MODEL_BAD_HEADER',
      `${url('bad-json')}model.safetensors`,
      'not valid JSON',
    );
  });

  it('a truncated file -> MODEL_TRUNCATED naming the URL', async () => {
    const e = await expectError(
      openSafetensorsModel(createHttpFileOpener(url('truncated'))),
      'MODEL_TRUNCATED',
      `${url('truncated')}model.safetensors`,
      'truncated',
    );
    expect(e.details.tensor).toBe('lm_head.weight'); // the last tensor is the one cut off
  });

  it('a missing tensor -> MODEL_MISSING_TENSOR naming the tensor and the URL', async () => {
    const e = await expectError(
      openSafetensorsModel(createHttpFileOpener(url('missing'))),
      'MODEL_MISSING_TENSOR',
      'model.layers.1.mlp.up_proj.weight',
      `${url('missing')}model.safetensors`,
    );
    expect(e.details.missing).toEqual(['model.layers.1.mlp.up_proj.weight']);
  });

  it('an unsupported architecture -> MODEL_UNSUPPORTED_ARCHITECTURE naming config.json', async () => {
    await expectError(
      openSafetensorsModel(createHttpFileOpener(url('gpt2'))),
      'MODEL_UNSUPPORTED_ARCHITECTURE',
      `${url('gpt2')}config.json`,
      'gpt2',
      'llama',
    );
  });

  it('a URL that 404s -> FETCH_HTTP_STATUS naming the URL', async () => {
    const e = await expectError(
      openSafetensorsModel(createHttpFileOpener(url('no-such-model'))),
      'FETCH_HTTP_STATUS',
      `${url('no-such-model')}config.json`,
      '404',
    );
    expect(e.details.status).toBe(404);
  });

  it('a server that ignores Range (200 + whole body) -> FETCH_RANGE_IGNORED naming the URL, without downloading the file', async () => {
    const base = `${noRange.origin}/medium/`;
    const opener = createHttpFileOpener(base);
    const e = await expectError(
      openSafetensorsModel(opener),
      'FETCH_RANGE_IGNORED',
      `${base}model.safetensors`,
      'Range',
    );
    expect(e.details).toMatchObject({ offset: 0, length: 8, status: 200 });
    // config.json was read whole (a 200 for the full range is fine); the weights were refused.
    const weights = (await stat(path.join(root, 'medium', 'model.safetensors'))).size;
    expect(opener.bytesRead).toBeLessThan(10_000);
    expect(opener.bytesRead).toBeLessThan(weights / 100);
  });

  it('an unreachable server -> FETCH_FAILED naming the URL', async () => {
    const dead = await serveDir(root);
    const base = `${dead.origin}/tiny/`;
    await dead.close();
    await expectError(
      readJsonFile(createHttpFileOpener(base), 'config.json'),
      'FETCH_FAILED',
      `${base}config.json`,
    );
  });

  it('a range past the end of the file -> MODEL_TRUNCATED', async () => {
    const src = createHttpFileOpener(url('tiny')).open('config.json');
    const size = await src.size();
    await expectError(src.read(size - 4, 10), 'MODEL_TRUNCATED', `${url('tiny')}config.json`);
    await expectError(src.read(size + 5, 10), 'MODEL_TRUNCATED', `${url('tiny')}config.json`);
  });
});

describe('createHttpFileOpener with an injected fetch', () => {
  it('joins Hugging Face resolve URLs and sends Range headers', async () => {
    const calls: { url: string; headers: Record<string, string> | undefined }[] = [];
    const fake: FetchLike = async (u, init) => {
      calls.push({ url: u, headers: init?.headers });
      const body = new Uint8Array([1, 2, 3, 4]);
      return {
        ok: true,
        status: 206,
        headers: { get: (h: string) => (h.toLowerCase() === 'content-range' ? 'bytes 10-13/5000' : null) },
        arrayBuffer: async () => body.buffer,
      };
    };
    const base = 'https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main';
    const opener = createHttpFileOpener(base, { fetch: fake });
    const src = opener.open('model.safetensors');
    expect(src.name).toBe(`${base}/model.safetensors`);
    expect(Array.from(await src.read(10, 4))).toEqual([1, 2, 3, 4]);
    expect(calls[0]).toEqual({ url: `${base}/model.safetensors`, headers: { Range: 'bytes=10-13' } });
    expect(await src.size()).toBe(5000);
    expect(calls[1]!.headers).toEqual({ Range: 'bytes=0-0' });
    expect(opener.bytesRead).toBe(8);
    expect(joinUrl('https://h.co/r/resolve/main/?download=true', 'sub dir/a.json')).toBe(
      'https://h.co/r/resolve/main/sub%20dir/a.json?download=true',
    );
  });

  it('accepts a 200 when the requested range is the whole file, refuses it otherwise', async () => {
    const body = new Uint8Array(100);
    const fake: FetchLike = async () => ({
      ok: true,
      status: 200,
      headers: { get: (h: string) => (h.toLowerCase() === 'content-length' ? '100' : null) },
      arrayBuffer: async () => body.buffer,
    });
    const src = createHttpFileOpener('http://example.test/m/', { fetch: fake }).open('f.bin');
    expect(await src.size()).toBe(100);
    expect((await src.read(0, 100)).byteLength).toBe(100);
    await expectError(src.read(0, 8), 'FETCH_RANGE_IGNORED', 'http://example.test/m/f.bin');
    await expectError(src.read(50, 50), 'FETCH_RANGE_IGNORED', 'http://example.test/m/f.bin');
  });
});
