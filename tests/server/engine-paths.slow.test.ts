import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelProfileSchema } from '../../shared/model/profile';
import { convertToHf } from '../../tools/model/convert';
import { openNodeModel } from '../../signaling-server/src/model/open-node-model';
import { parseLlama2cTokenizer } from '../../shared/tokenizer/llama2c-tokenizer';
import { loadGolden, repoPath } from '../helpers/golden';
import { greedy } from '../helpers/greedy';
import { readFileSync } from 'node:fs';
import { scaled } from '../helpers/timeouts';

const run = promisify(execFile);
const golden = loadGolden();
const BIN = 'public/models/stories260K/stories260K.bin';
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ringwork-engine-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('llama2.c path and Hugging Face path', () => {
  it('the converted safetensors model (rotate-half RoPE, tokenizer.json) gives the same tokens as the llama2.c file', async () => {
    const { source } = await openNodeModel({ url: BIN });
    const tok = parseLlama2cTokenizer(
      new Uint8Array(readFileSync(repoPath('public/models/stories260K/tok512.bin'))),
      512,
      'tok512.bin',
    );
    const hfDir = join(dir, 'stories260K-hf');
    await convertToHf(source, tok, hfDir);
    const hf = await openNodeModel({ url: hfDir });
    expect(hf.source.format).toBe('safetensors');
    expect(hf.source.config.ropeLayout).toBe('half');
    for (const splits of [[], [3], [2, 4]]) {
      const a = await greedy(BIN, splits, 64, 'Once upon a time');
      const b = await greedy(hfDir, splits, 64, 'Once upon a time');
      expect(b.tokens).toEqual(a.tokens);
      expect(b.text).toBe(a.text);
      expect(a.text).toBe(golden.text);
    }
  });
});

describe('models by URL (HTTP Range against the real static server code)', () => {
  it('generate over http://127.0.0.1 gives the golden text and fetches only the model and tokenizer bytes', async () => {
    const { createServer } = await import('node:http');
    const { serveStatic } = await import('../../signaling-server/src/static-files');
    let served = 0;
    const server = createServer((req, res) => {
      res.on('finish', () => (served += Number(res.getHeader('content-length') ?? 0)));
      void serveStatic(repoPath('public'), req, res).then((ok) => ok || res.writeHead(404).end());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const url = `http://127.0.0.1:${port}/models/stories260K/stories260K.bin`;
      const r = await greedy(url, [3], 64, 'Once upon a time');
      expect(r.text).toBe(golden.text);
      // Two runners each fetch their own tensors; the tokenizer is read once; plus headers/probes.
      const modelBytes = 1_056_540;
      expect(served).toBeLessThan(modelBytes * 1.05 + 2 * 6227 + 4096);
    } finally {
      server.close();
    }
  });
});

describe('CLIs', () => {
  const tsx = ['--import', 'tsx'];
  it(
    'generate --split 2,4 prints exactly the golden text; --json adds ids and stage ranges',
    async () => {
      const args = [
        ...tsx,
        'tools/cli/generate.ts',
        '--model',
        BIN,
        '--prompt',
        'Once upon a time',
        '--steps',
        '64',
        '--temperature',
        '0',
        '--split',
        '2,4',
      ];
      const { stdout } = await run(process.execPath, args, { cwd: repoPath('') });
      expect(stdout).toBe(golden.text);
      const j = await run(process.execPath, [...args, '--json'], { cwd: repoPath('') });
      const parsed = JSON.parse(j.stdout) as {
        tokens: number[];
        stages: { range: number[] }[];
        timings: { decodeTokPerS: number };
      };
      expect(parsed.tokens).toEqual(golden.sequenceTokens);
      expect(parsed.stages.map((s) => s.range)).toEqual([
        [0, 2],
        [2, 4],
        [4, 7],
      ]);
      expect(parsed.timings.decodeTokPerS).toBeGreaterThan(0);
    },
    scaled(90_000),
  );

  it(
    'generate names the missing file and exits 1 without a stack trace',
    async () => {
      const err = await run(
        process.execPath,
        [...tsx, 'tools/cli/generate.ts', '--model', 'no/such/model.bin', '--steps', '4'],
        { cwd: repoPath('') },
      ).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(err?.code).toBe(1);
      expect(err?.stderr).toMatch(/error \[FILE_READ_FAILED\].*model\.bin/);
      expect(err?.stderr).not.toMatch(/\n\s+at /);
    },
    scaled(30_000),
  );

  it(
    'model-profile --json prints a schema-valid profile with one entry per unit',
    async () => {
      const { stdout } = await run(
        process.execPath,
        [...tsx, 'tools/cli/model-profile.ts', '--model', BIN, '--json'],
        { cwd: repoPath('') },
      );
      const p = modelProfileSchema.parse(JSON.parse(stdout));
      expect(p.layers.map((l) => l.name)).toEqual([
        'embed',
        'block.0',
        'block.1',
        'block.2',
        'block.3',
        'block.4',
        'head',
      ]);
      // A block: wq 64x64, wk/wv 32x64, wo 64x64, w1/w3 172x64, w2 64x172, two norms; f32.
      expect(p.layers[1]!.weightBytes).toBe((64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 3 + 64 * 2) * 4);
      expect(p.layers[1]!.kvBytesPerToken).toBe(2 * 32 * 4);
      // The head samples: only a token id (4 bytes) leaves it.
      expect(p.layers[6]!.outBytesPerToken).toBe(4);
    },
    scaled(30_000),
  );
});
