/** Node-side model files: the local file opener, the synthesizer and its CLI. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingworkError, type ErrorCode } from '../../shared/errors';
import { parseHfConfig } from '../../shared/model/hf-config';
import { openSafetensorsModel } from '../../shared/model/safetensors';
import { requiredTensorNames } from '../../shared/model/tensor-names';
import { tensorByteLength } from '../../shared/model/safetensors-writer';
import { createNodeFileOpener } from '../../signaling-server/src/model/file-source';
import { SYNTH_PRESETS, synthTensor, synthTensorSpecs, synthesizeModel } from '../../tools/model/synth';

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

function sameFloats(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((v, i) => v === y[i]);
}

const TINY = SYNTH_PRESETS['test-tiny'];
let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ringwork-files-'));
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('createNodeFileOpener', () => {
  it('reads exact byte ranges and counts them', async () => {
    const dir = path.join(root, 'opener');
    await synthesizeModel({ preset: 'test-tiny', outDir: dir });
    const bytes = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff);
    await writeFile(path.join(dir, 'blob.bin'), bytes);
    const opener = createNodeFileOpener(dir);
    const src = opener.open('blob.bin');
    expect(src.name).toBe(path.join(dir, 'blob.bin'));
    expect(await src.size()).toBe(4096);
    expect(Array.from(await src.read(1000, 50))).toEqual(Array.from(bytes.subarray(1000, 1050)));
    expect((await src.read(4096, 0)).byteLength).toBe(0);
    expect(src.bytesRead).toBe(50);
    expect(opener.bytesRead).toBe(50);
  });

  it('missing file -> FILE_READ_FAILED with the path; short read -> MODEL_TRUNCATED; no escaping the root', async () => {
    const dir = path.join(root, 'opener');
    const opener = createNodeFileOpener(dir);
    const missing = path.join(dir, 'nope.safetensors');
    const e = await expectError(
      opener.open('nope.safetensors').read(0, 8),
      'FILE_READ_FAILED',
      missing,
      'does not exist',
    );
    expect(e.details).toMatchObject({ file: missing, notFound: true });
    await expectError(opener.open('nope.safetensors').size(), 'FILE_READ_FAILED', missing);
    await expectError(opener.open('blob.bin').read(4000, 200), 'MODEL_TRUNCATED', path.join(dir, 'blob.bin'));
    await expectError(
      opener.open('../outside.bin').read(0, 1),
      'FILE_READ_FAILED',
      'outside the model directory',
    );
    const ctl = new AbortController();
    ctl.abort();
    await expectError(opener.open('blob.bin').read(0, 10, ctl.signal), 'ABORTED');
  });

  it('opens a synthesized model from disk and reads only one shard of it', async () => {
    const dir = path.join(root, 'opener');
    const opener = createNodeFileOpener(dir);
    const model = await openSafetensorsModel(opener);
    expect(model.config).toEqual(TINY);
    const opened = opener.bytesRead;
    const names = requiredTensorNames(TINY, [2, 5]);
    for (const n of names) expect(sameFloats(await model.readTensor(n), synthTensor(TINY, n, 1))).toBe(true);
    expect(opener.bytesRead - opened).toBe(names.reduce((a, n) => a + model.tensors.get(n)!.byteLength, 0));
  });

  it('a directory with neither model.safetensors nor an index -> error naming both', async () => {
    const dir = path.join(root, 'config-only');
    await synthesizeModel({ preset: 'test-tiny', outDir: dir });
    await rm(path.join(dir, 'model.safetensors'));
    await expectError(
      openSafetensorsModel(createNodeFileOpener(dir)),
      'FILE_READ_FAILED',
      'model.safetensors.index.json',
      path.join(dir, 'model.safetensors'),
    );
  });
});

describe('synthesizeModel', () => {
  it('writes config, weights and tokenizer files, byte-identical for the same seed', async () => {
    const a = path.join(root, 'det-a');
    const b = path.join(root, 'det-b');
    const c = path.join(root, 'det-c');
    const ra = await synthesizeModel({ preset: 'test-tiny', outDir: a, seed: 5 });
    await synthesizeModel({ preset: 'test-tiny', outDir: b, seed: 5 });
    await synthesizeModel({ preset: 'test-tiny', outDir: c, seed: 6 });
    expect(ra.files.sort()).toEqual([
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect((await readdir(a)).sort()).toEqual(ra.files);
    const wa = await readFile(path.join(a, 'model.safetensors'));
    expect(wa.equals(await readFile(path.join(b, 'model.safetensors')))).toBe(true);
    expect(wa.equals(await readFile(path.join(c, 'model.safetensors')))).toBe(false);
    expect(ra.weightBytes).toBe(wa.byteLength);
    const config = JSON.parse(await readFile(path.join(a, 'config.json'), 'utf8')) as unknown;
    expect(parseHfConfig(config, 'config.json')).toEqual(TINY);
    const tok = JSON.parse(await readFile(path.join(a, 'tokenizer.json'), 'utf8')) as {
      model: { vocab: object };
    };
    expect(Object.keys(tok.model.vocab)).toHaveLength(TINY.vocabSize);
    const tokConfig = JSON.parse(await readFile(path.join(a, 'tokenizer_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(tokConfig.bos_token).toBe('<s>');
  });

  it('values do not depend on sharding; f16 files hold the f16-rounded values; norms are 1', async () => {
    const dir = path.join(root, 'sharded-f16');
    const r = await synthesizeModel({
      preset: 'test-tiny',
      outDir: dir,
      seed: 3,
      dtype: 'f16',
      maxShardBytes: 50_000,
    });
    expect(r.weightFiles.length).toBeGreaterThan(2);
    expect(r.files).toContain('model.safetensors.index.json');
    const model = await openSafetensorsModel(createNodeFileOpener(dir));
    expect(model.files).toEqual(r.weightFiles);
    for (const name of model.tensors.keys()) {
      const t = await model.readTensor(name);
      expect(model.tensors.get(name)!.dtype).toBe('F16');
      expect(sameFloats(t, synthTensor(TINY, name, 3, 'F16')), name).toBe(true);
      if (name.endsWith('norm.weight')) expect(t.every((v) => v === 1)).toBe(true);
    }
    // Same tensor, unsharded f32, same seed: equal up to f16 rounding.
    const one = synthTensor(TINY, 'model.layers.2.mlp.down_proj.weight', 3);
    const half = await model.readTensor('model.layers.2.mlp.down_proj.weight');
    expect(one.every((v, i) => Math.abs(v - half[i]!) <= Math.abs(v) * 2 ** -11 + 2 ** -24)).toBe(true);
    // Re-synthesizing into the same dir without sharding removes the stale index.
    await synthesizeModel({ preset: 'test-tiny', outDir: dir, seed: 3 });
    expect((await readdir(dir)).includes('model.safetensors.index.json')).toBe(false);
  });

  it('initialises weights with a sane scale (std ~0.02, zero mean, bounded)', () => {
    const w = synthTensor(SYNTH_PRESETS['smollm2-135m'], 'model.layers.0.mlp.gate_proj.weight', 1);
    let sum = 0;
    let sq = 0;
    let max = 0;
    for (const v of w) {
      sum += v;
      sq += v * v;
      max = Math.max(max, Math.abs(v));
    }
    const mean = sum / w.length;
    const std = Math.sqrt(sq / w.length - mean * mean);
    expect(Math.abs(mean)).toBeLessThan(1e-4);
    expect(std).toBeGreaterThan(0.019);
    expect(std).toBeLessThan(0.021);
    expect(max).toBeLessThan(0.05);
    const down = synthTensor(SYNTH_PRESETS['smollm2-135m'], 'model.layers.0.mlp.down_proj.weight', 1);
    const downStd = Math.sqrt(down.reduce((a, v) => a + v * v, 0) / down.length);
    expect(downStd).toBeCloseTo(0.02 / Math.sqrt(60), 3);
  });

  it('presets have the real shapes (parameter counts of the published checkpoints)', () => {
    const params = (name: keyof typeof SYNTH_PRESETS) =>
      synthTensorSpecs(SYNTH_PRESETS[name]).reduce((a, s) => a + tensorByteLength(s) / 4, 0);
    expect(params('stories15M')).toBe(15_191_712); // tied: the embedding counts once
    expect(Math.round(params('smollm2-135m') / 1e6)).toBe(135);
    expect(Math.round(params('smollm2-360m') / 1e6)).toBe(362);
    expect(Math.round(params('tinyllama-1.1b') / 1e6)).toBe(1100);
    expect(SYNTH_PRESETS['smollm2-135m']).toMatchObject({
      numKvHeads: 3,
      headDim: 64,
      ropeTheta: 100000,
      maxPositions: 8192,
      tiedEmbeddings: true,
    });
    expect(SYNTH_PRESETS['tinyllama-1.1b']).toMatchObject({
      numKvHeads: 4,
      tiedEmbeddings: false,
      maxPositions: 2048,
    });
  });

  it('refuses unknown presets and dtypes', async () => {
    await expectError(
      synthesizeModel({ preset: 'gpt2' as 'test-tiny', outDir: path.join(root, 'x') }),
      'INVALID_ARGUMENT',
      'gpt2',
      'test-tiny',
    );
    await expectError(
      synthesizeModel({ preset: 'test-tiny', outDir: path.join(root, 'x'), dtype: 'f8' as 'f16' }),
      'INVALID_ARGUMENT',
      'f8',
    );
  });
});

describe('npm run synth (CLI)', () => {
  it('writes a sharded bf16 model that loads', async () => {
    const out = path.join(root, 'cli');
    const run = promisify(execFile);
    const { stdout } = await run(
      process.execPath,
      [
        '--import',
        'tsx',
        'tools/cli/synth.ts',
        '--preset',
        'test-tiny',
        '--out',
        out,
        '--seed',
        '9',
        '--dtype',
        'bf16',
        '--max-shard-bytes',
        '60000',
      ],
      { cwd: path.resolve(__dirname, '../..') },
    );
    expect(stdout).toContain('Wrote test-tiny');
    const model = await openSafetensorsModel(createNodeFileOpener(out));
    expect(model.files.length).toBeGreaterThan(1);
    const name = 'model.layers.0.self_attn.q_proj.weight';
    expect(sameFloats(await model.readTensor(name), synthTensor(TINY, name, 9, 'BF16'))).toBe(true);
    expect((await stat(path.join(out, 'tokenizer.json'))).size).toBeGreaterThan(0);
  });

  it('exits 2 with usage on bad arguments', async () => {
    const run = promisify(execFile);
    const err = await run(
      process.execPath,
      ['--import', 'tsx', 'tools/cli/synth.ts', '--preset', 'nope', '--out', root],
      {
        cwd: path.resolve(__dirname, '../..'),
      },
    ).then(
      () => undefined,
      (e: { code?: number; stderr?: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain('Unknown preset "nope"');
    expect(err?.stderr).toContain('smollm2-135m');
  });
});
