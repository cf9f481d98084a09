/**
 * Smoke test of the engine benchmark's measurement functions on tiny settings: structure and
 * sanity (rates positive, ratios finite), never timing targets, which belong to `npm run
 * bench:engine` on a quiet machine.
 */
import { describe, expect, it } from 'vitest';
import { SYNTH_PRESETS } from '../../tools/model/synth';
import { measureInterleaved, pairedRatio, runEngineBench } from '../../tools/bench/engine-bench';
import { formatEngineBenchReport } from '../../tools/bench/engine-report';
import { decodeBytesPerToken, fixedPrompt, splitEvenly, spread } from '../../tools/bench/measure';
import { measureCopyBandwidth } from '../../tools/bench/memory-bandwidth';
import { existsSync } from 'node:fs';
import { loadOrtNode, NATIVE_MISSING } from '../../tools/bench/ort-native';
import type { BenchVariant } from '../../tools/bench/variants';

const STORIES260K = { url: 'public/models/stories260K/stories260K.bin' };
/** onnxruntime-node is optional (`npm run setup:native`): both outcomes are asserted. */
const nativeInstalled = existsSync('node_modules/onnxruntime-node/package.json');

describe('bench helpers', () => {
  it('splits units evenly and validates the part count', () => {
    expect(splitEvenly({ numLayers: 5 }, 3)).toEqual([
      [0, 2],
      [2, 5],
      [5, 7],
    ]);
    expect(splitEvenly({ numLayers: 6 }, 3)).toEqual([
      [0, 3],
      [3, 5],
      [5, 8],
    ]);
    expect(splitEvenly({ numLayers: 6 }, 1)).toEqual([[0, 8]]);
    expect(() => splitEvenly({ numLayers: 1 }, 4)).toThrow(/Cannot split 3 units/);
  });

  it('builds a fixed prompt inside the vocabulary', () => {
    const p = fixedPrompt({ vocabSize: 512, bosTokenId: 1 }, 32);
    expect(p).toHaveLength(32);
    expect(p[0]).toBe(1);
    for (const t of p.slice(1)) expect(t >= 3 && t < 512).toBe(true);
    expect(fixedPrompt({ vocabSize: 512, bosTokenId: 1 }, 32)).toEqual(p);
  });

  it('counts decode bytes without the embedding table but with the KV cache', () => {
    const c = SYNTH_PRESETS.stories15M;
    const emb = c.vocabSize * c.hiddenSize * 4;
    const weights = 2 * emb + 1000;
    const kvPerPos = 2 * c.numLayers * c.numKvHeads * c.headDim * 4;
    expect(decodeBytesPerToken(c, weights, 0)).toBe(emb + 1000 + c.hiddenSize * 4);
    expect(decodeBytesPerToken(c, weights, 10) - decodeBytesPerToken(c, weights, 0)).toBe(10 * kvPerPos);
  });

  it('summarises samples', () => {
    expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3 });
    expect(spread([4, 1, 2, 3]).median).toBe(2.5);
    expect(Number.isNaN(spread([]).median)).toBe(true);
  });

  it('measures a positive, finite copy bandwidth', () => {
    const bw = measureCopyBandwidth({ bytes: 1 << 20, repeats: 2 });
    expect(bw.samples).toHaveLength(4);
    expect(bw.gbps).toBeGreaterThan(0);
    expect(Number.isFinite(bw.gbps)).toBe(true);
    expect(bw.gbps).toBe(Math.max(...bw.samples.map((s) => s.gbps)));
  });
});

describe('measureInterleaved', () => {
  /** A variant whose decode takes `msPerStep` per step and prefill `prefillMs`, without ORT. */
  const fake = (
    id: string,
    msPerStep: number,
    prefillMs: number,
    log: string[],
  ): { id: string; variant: BenchVariant } => ({
    id,
    variant: {
      id,
      label: id,
      ranges: [[0, 3]],
      weightBytes: 0,
      loadMs: 0,
      async start() {
        let open = true;
        const tokens: number[] = [];
        return {
          prefill: async () => {
            log.push(`${id}:prefill`);
            tokens.push(7);
            return prefillMs;
          },
          decode: async (steps: number) => {
            expect(open).toBe(true);
            log.push(`${id}:decode${steps}`);
            for (let i = 0; i < steps; i++) tokens.push(7);
            return {
              steps,
              ms: steps * msPerStep,
              ortMs: steps * msPerStep * 0.9,
              cpuMs: steps * msPerStep * 0.5,
            };
          },
          tokens: async () => [...tokens],
          close: async () => {
            open = false;
          },
        };
      },
      dispose: async () => undefined,
    },
  });

  it('interleaves decode blocks, rotates the order and pairs samples', async () => {
    const log: string[] = [];
    const variants = [fake('a', 2, 10, log), fake('b', 4, 40, log)];
    const samples = await measureInterleaved(
      variants,
      { prompt: [1, 2, 3], vocabSize: 8 },
      { decodeSteps: 5, decodeBlock: 2, prefillRepeats: 2, rounds: 2, warmupRounds: 1, minWarmupMs: 0 },
    );
    // 3 rounds (1 warm-up) x (2 prefills + 3 decode blocks) x 2 variants.
    expect(log).toHaveLength(3 * 5 * 2);
    // Blocks of 2, 2 and the remaining 1 step, alternating variants, order rotating per block.
    expect(log.slice(4, 10)).toEqual([
      'a:decode2',
      'b:decode2',
      'b:decode2',
      'a:decode2',
      'a:decode1',
      'b:decode1',
    ]);
    expect(samples.prefillMs.get('a')).toEqual([10, 10, 10, 10]);
    expect(samples.decode.get('b')!.map((d) => d.steps)).toEqual([2, 2, 1, 2, 2, 1]);
    expect(samples.tokens.get('a')).toHaveLength(6);
    expect(pairedRatio(samples, 'a', 'b', 'decode')).toBe(2);
    expect(pairedRatio(samples, 'a', 'b', 'decode-cpu')).toBe(2);
    expect(pairedRatio(samples, 'a', 'b', 'prefill')).toBe(4);
    expect(pairedRatio(samples, 'a', 'missing', 'decode')).toBeNull();
  });
});

describe('runEngineBench (tiny settings)', () => {
  it('loads onnxruntime-node where installed, and says in one line how to get it where not', async () => {
    const native = await loadOrtNode();
    if (nativeInstalled) expect(native.ok, native.ok ? '' : native.reason).toBe(true);
    else {
      expect(native).toEqual({ ok: false, reason: NATIVE_MISSING });
      expect(NATIVE_MISSING).toContain('npm run setup:native');
      expect(NATIVE_MISSING).not.toContain('\n');
    }
  });

  it('measures wasm, native and split variants of stories260K and reports them', async () => {
    const result = await runEngineBench({
      models: [{ name: 'stories260K', note: 'real', model: STORIES260K }],
      promptTokens: 4,
      decodeSteps: 4,
      decodeBlock: 2,
      prefillRepeats: 1,
      rounds: 1,
      warmupRounds: 1,
      minWarmupMs: 0,
      splitParts: 3,
      wasmThreads2: false,
      nativeThreads2: false,
      // stories260K's head size (8) is one the fused kernel refuses: no fused variants.
      fusedAttention: true,
      kvCompare: true,
      // 5000 lies past stories260K's 512 positions: lowered to 510 (510 + 2 steps = 512).
      positions: [4, 5000],
      positionSteps: 2,
      positionRounds: 1,
      bandwidth: { bytes: 1 << 20, repeats: 1 },
    });
    expect(result.bandwidth.gbps).toBeGreaterThan(0);
    expect(result.models).toHaveLength(1);
    const m = result.models[0]!;
    expect(m.variants.map((v) => v.id)).toEqual([
      'wasm-1t',
      'wasm-1t-concat',
      'native-1t',
      'native-1t-concat',
      'wasm-split-1t',
    ]);
    expect(m.variants.map((v) => v.kvCache)).toEqual(['rows', 'concat', 'rows', 'concat', 'rows']);
    expect(m.positions).toEqual([4, 510]);
    for (const v of m.variants) {
      if (v.id.startsWith('native') && !nativeInstalled) {
        expect(v.available).toBe(false);
        expect(v.reason).toBe(NATIVE_MISSING);
        continue;
      }
      expect(v.available, v.reason).toBe(true);
      expect(v.weightBytes).toBeGreaterThan(0);
      expect(v.prefillTokPerS.median).toBeGreaterThan(0);
      expect(v.decodeTokPerS.median).toBeGreaterThan(0);
      expect(v.decodeBlocks.reduce((a, b) => a + b.steps, 0)).toBe(4);
      expect(v.decodeOrtMsPerStep).toBeLessThanOrEqual(v.decodeMsPerStep);
      expect(v.decodeCpuMsPerStep).toBeGreaterThan(0);
      expect(v.attention).toBe('ops');
      // Every whole-model variant is timed at each position; the split is not.
      expect(v.atPosition.map((t) => t.position)).toEqual(v.id === 'wasm-split-1t' ? [] : [4, 510]);
      for (const t of v.atPosition) expect(t.msPerStep).toBeGreaterThan(0);
    }
    // Same graphs but for the KV contract: the same greedy tokens.
    expect(m.variants.find((v) => v.id === 'wasm-1t-concat')!.sameTokensAsWasm).toBe(true);
    expect(m.rowsOverConcatAt.map((x) => x.position)).toEqual([4, 510]);
    for (const x of m.rowsOverConcatAt) {
      expect(x.wasm1t!).toBeGreaterThan(0);
      expect(x.wasm2t).toBeNull();
      if (nativeInstalled) expect(x.native1t!).toBeGreaterThan(0);
    }
    expect(m.ratios.fusedOverOpsDecode).toBeNull();
    expect(m.variants.find((v) => v.id === 'wasm-split-1t')!.ranges).toEqual([
      [0, 2],
      [2, 5],
      [5, 7],
    ]);
    // The stages together hold the whole model's weights (each stage adds its own RoPE tables).
    const split = m.variants.find((v) => v.id === 'wasm-split-1t')!;
    expect(split.weightBytes).toBeGreaterThanOrEqual(m.variants[0]!.weightBytes);
    // Two more stages, each with its own cos and sin tables (512 positions x headDim/2 floats).
    const rope = 2 * 512 * (8 / 2) * 4;
    expect(split.weightBytes).toBeLessThanOrEqual(m.variants[0]!.weightBytes + 2 * rope);
    expect(m.decodeBytesPerToken).toBeGreaterThan(0);
    expect(m.decodeBytesPerToken).toBeLessThan(m.weightBytes + 1e6);
    expect(m.boundTokPerS).toBeGreaterThan(0);
    for (const key of [
      'wasmOverNativeDecode',
      'wasmOverNativePrefill',
      'wasmOverBoundDecode',
      'splitOverWholeDecode',
      'rowsOverConcatDecode',
      'rowsOverConcatNativeDecode',
    ] as const) {
      if (key.includes('Native') && !nativeInstalled) {
        expect(m.ratios[key], key).toBeNull();
        continue;
      }
      expect(Number.isFinite(m.ratios[key]), key).toBe(true);
      expect(m.ratios[key]!).toBeGreaterThan(0);
    }
    expect(m.ratios.wasm2OverWasm1Decode).toBeNull();
    expect(m.targets.map((t) => t.name)).toEqual([
      'a/b decode',
      'a/b prefill',
      'split/whole decode',
      'split/whole prefill',
    ]);
    for (const t of m.targets) expect(t.pass).toBe(t.value! >= t.min);

    const report = formatEngineBenchReport(result);
    expect(report).toContain('stories260K');
    expect(report).toMatch(nativeInstalled ? /a\/b decode .* (PASS|MISS)/ : /a\/b decode .* n\/a/);
    if (!nativeInstalled) expect(report).toContain(NATIVE_MISSING);
    expect(report).toMatch(/split\/whole decode .* (PASS|MISS)/);
    expect(report).toMatch(/p = 4 +p = 510/);
    expect(report).toContain('rows / concat, wasm 1 thread (by wall)');
    expect(JSON.parse(JSON.stringify(result)).models[0].name).toBe('stories260K');
  });
});
