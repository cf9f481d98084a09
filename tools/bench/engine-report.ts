/**
 * The human-readable report of `npm run bench:engine` ({@link runEngineBench}'s result): one table
 * per model with its variants, ratios and targets, and the position sweep.
 */
import type { EngineBenchResult, PositionRatio } from './engine-bench.js';
import type { Spread } from './measure.js';

const fmtRate = (x: number) =>
  !Number.isFinite(x) ? '-' : x >= 1000 ? Math.round(x).toString() : x >= 10 ? x.toFixed(1) : x.toFixed(2);
const fmtSpread = (s: Spread) =>
  Number.isFinite(s.median) ? `${fmtRate(s.median)} (${fmtRate(s.min)}-${fmtRate(s.max)})` : '-';
const fmtRatio = (x: number | null) => (x === null || !Number.isFinite(x) ? '-' : x.toFixed(3));
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;

/** The human-readable report: one table per model, ratios and targets with PASS/MISS. */
export function formatEngineBenchReport(r: EngineBenchResult): string {
  const s = r.settings;
  const out: string[] = [];
  out.push(
    `Ringwork engine bench - ${r.machine.cpu} (${r.machine.cpus} CPUs), Node ${r.machine.node}, ` +
      `onnxruntime-web ${r.machine.ortWeb}, onnxruntime-node ${r.machine.ortNode ?? 'unavailable'}`,
  );
  const [la0, la1] = r.machine.loadAvg;
  out.push(
    `Load average ${la0.toFixed(1)} at start, ${la1.toFixed(1)} at end (this run included), ${r.machine.cpus} CPUs` +
      // Before the run starts the load is other processes': more than the CPUs means sharing.
      (la0 >= r.machine.cpus
        ? ': CPUs shared with other work, absolute figures are noisy (ratios less so).'
        : '.'),
  );
  out.push(
    `Method: f32 graphs; prefill = one pass over a ${s.promptTokens}-token prompt (x${s.prefillRepeats} per round), ` +
      `decode = ${s.decodeSteps} greedy steps taken in turns of ${s.decodeBlock}; >=${s.warmupRounds} warm-up ` +
      `(>=${(s.minWarmupMs / 1000).toFixed(1)} s) + ${s.rounds} interleaved rounds.`,
  );
  out.push(
    'tok/s: median (min-max); ratios: median of back-to-back pairs; CPU ms/step: the running process, all threads.',
  );
  out.push(
    `Memory copy: ${r.bandwidth.gbps.toFixed(2)} GB/s (${r.bandwidth.method}, ${(r.bandwidth.bytes / 2 ** 20).toFixed(0)} MiB, best of ${r.bandwidth.samples})`,
  );
  for (const m of r.models) {
    const c = m.config;
    out.push('');
    out.push(
      `${m.name} (${m.note}; ${c.numLayers} layers, dim ${c.hiddenSize}, ffn ${c.intermediateSize}, heads ${c.numHeads}/${c.numKvHeads} kv, vocab ${c.vocabSize}): ` +
        `${mb(m.weightBytes)} f32 initializers, ${mb(m.decodeBytesPerToken)} read per decode token`,
    );
    const rows: string[][] = [
      [
        'variant',
        'prefill tok/s',
        'decode tok/s',
        'ms/step (in ORT)',
        'CPU ms/step',
        'load ms',
        'greedy = (a)',
      ],
    ];
    for (const v of m.variants) {
      if (!v.available) {
        rows.push([v.label, `unavailable: ${v.reason ?? ''}`, '', '', '', '', '']);
        continue;
      }
      rows.push([
        v.label,
        fmtSpread(v.prefillTokPerS),
        fmtSpread(v.decodeTokPerS),
        `${v.decodeMsPerStep.toFixed(3)} (${v.decodeOrtMsPerStep.toFixed(3)})`,
        v.decodeCpuMsPerStep.toFixed(3),
        Math.round(v.loadMs).toString(),
        v.id === 'wasm-1t' ? '' : v.sameTokensAsWasm === undefined ? '-' : v.sameTokensAsWasm ? 'yes' : 'no',
      ]);
    }
    rows.push(['(c) memory-bandwidth bound', '', fmtRate(m.boundTokPerS), '', '', '', '']);
    out.push(...table(rows).map((l) => `  ${l}`));
    const t = new Map(m.targets.map((x) => [x.name, x]));
    const verdict = (name: string) => {
      const x = t.get(name);
      return x ? `>= ${x.min.toFixed(2)}  ${x.value === null ? 'n/a' : x.pass ? 'PASS' : 'MISS'}` : '';
    };
    const ratioRows: string[][] = [
      ['ratio', 'value', 'target'],
      [
        'a/b decode (wasm / native, 1 thread)',
        fmtRatio(m.ratios.wasmOverNativeDecode),
        verdict('a/b decode'),
      ],
      ['a/b prefill', fmtRatio(m.ratios.wasmOverNativePrefill), verdict('a/b prefill')],
      ['a/c decode (wasm / bandwidth bound)', fmtRatio(m.ratios.wasmOverBoundDecode), ''],
      ['b/c decode (native / bandwidth bound)', fmtRatio(m.ratios.nativeOverBoundDecode), ''],
      [
        'split/whole decode (wasm 1 thread)',
        fmtRatio(m.ratios.splitOverWholeDecode),
        verdict('split/whole decode'),
      ],
      ['split/whole prefill', fmtRatio(m.ratios.splitOverWholePrefill), verdict('split/whole prefill')],
    ];
    if (m.ratios.wasm2OverWasm1Decode !== null) {
      ratioRows.push([
        'wasm 2 threads / 1 thread (decode, prefill)',
        `${fmtRatio(m.ratios.wasm2OverWasm1Decode)}, ${fmtRatio(m.ratios.wasm2OverWasm1Prefill)}`,
        '',
      ]);
    }
    if (m.ratios.native2OverNative1Decode !== null) {
      ratioRows.push([
        'native 2 threads / 1 thread (decode, prefill)',
        `${fmtRatio(m.ratios.native2OverNative1Decode)}, ${fmtRatio(m.ratios.native2OverNative1Prefill)}`,
        '',
      ]);
    }
    if (m.ratios.fusedOverOpsDecode !== null) {
      ratioRows.push([
        'fused / ops attention, 1 thread (decode by wall, by CPU)',
        `${fmtRatio(m.ratios.fusedOverOpsDecode)}, ${fmtRatio(m.ratios.fusedOverOpsDecodeCpu)}`,
        '',
      ]);
    }
    if (m.ratios.rowsOverConcatDecode !== null) {
      ratioRows.push([
        'rows / concat KV cache, 1 thread (decode by wall, by CPU)',
        `${fmtRatio(m.ratios.rowsOverConcatDecode)}, ${fmtRatio(m.ratios.rowsOverConcatDecodeCpu)}`,
        '',
      ]);
    }
    if (m.ratios.rowsOverConcat2tDecode !== null) {
      ratioRows.push([
        'rows / concat KV cache, 2 threads (decode)',
        fmtRatio(m.ratios.rowsOverConcat2tDecode),
        '',
      ]);
    }
    if (m.ratios.rowsOverConcatNativeDecode !== null) {
      ratioRows.push([
        'rows / concat KV cache, native 1 thread (decode)',
        fmtRatio(m.ratios.rowsOverConcatNativeDecode),
        '',
      ]);
    }
    if (m.ratios.fusedOverOps2tDecode !== null) {
      ratioRows.push([
        'fused / ops attention, 2 threads (decode by wall, by CPU)',
        `${fmtRatio(m.ratios.fusedOverOps2tDecode)}, ${fmtRatio(m.ratios.fusedOverOps2tDecodeCpu)}`,
        '',
      ]);
    }
    out.push(...table(ratioRows).map((l) => `  ${l}`));
    if (m.positions.length > 0) {
      out.push(
        `  Decode step at position p (${s.positionSteps} steps after a fresh prefill of p tokens; median of ${s.positionRounds} rounds): ms (CPU ms); ratios are rates (> 1: rows faster)`,
      );
      const posRows: string[][] = [['variant', ...m.positions.map((p) => `p = ${p}`)]];
      for (const v of m.variants) {
        if (!v.atPosition.length) continue;
        posRows.push([
          v.label,
          ...m.positions.map((p) => {
            const t = v.atPosition.find((x) => x.position === p);
            return t ? `${t.msPerStep.toFixed(3)} (${t.cpuMsPerStep.toFixed(3)})` : '-';
          }),
        ]);
      }
      const ratioAt = (pick: (x: PositionRatio) => number | null) =>
        m.rowsOverConcatAt.map((x) => fmtRatio(pick(x)));
      if (m.rowsOverConcatAt.some((x) => x.wasm1t !== null)) {
        posRows.push(['rows / concat, wasm 1 thread (by wall)', ...ratioAt((x) => x.wasm1t)]);
        posRows.push(['rows / concat, wasm 1 thread (by CPU)', ...ratioAt((x) => x.wasm1tCpu)]);
      }
      if (m.rowsOverConcatAt.some((x) => x.wasm2t !== null))
        posRows.push(['rows / concat, wasm 2 threads', ...ratioAt((x) => x.wasm2t)]);
      if (m.rowsOverConcatAt.some((x) => x.native1t !== null))
        posRows.push(['rows / concat, native 1 thread', ...ratioAt((x) => x.native1t)]);
      out.push(...table(posRows).map((l) => `  ${l}`));
    }
  }
  out.push('');
  out.push(`Total ${(r.totalMs / 1000).toFixed(1)} s.`);
  return out.join('\n');
}

/** Left-aligned first column, right-aligned others. */
function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}
