/**
 * A tab's measured profile and the operator's category threshold: the README's "to see a model
 * sharded on one machine" starts the server with `--category-c-below-tflops 0` and opens three
 * Contribute tabs that each lend 0.8 MB. Their capability comes from the page's profile
 * (`capabilityFrom`), whose own category uses the default thresholds (a desktop CPU is C there);
 * the coordinator must categorise with the server's thresholds, so the three tabs form a ring, while
 * a phone stays C whatever the threshold.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { capabilityFrom } from '../../shared/app/contributor';
import type { DeviceProfile } from '../../shared/device/profile';
import { serverMessageSchema, type ServerMessage } from '../../shared/protocol/signaling';
import { loadCatalog, type CatalogModel } from '../../signaling-server/src/catalog';
import { createCoordinator, type Coordinator } from '../../signaling-server/src/coordinator';

const DEBOUNCE = 200;
const LENT = 800_000;
const pid = (name: string): string => `p_${name.padEnd(16, '0')}`;

/** What headless Chromium measures on a desktop CPU (wasm; SwiftShader is only a fallback adapter). */
function cpuTabProfile(deviceClass: 'desktop' | 'mobile'): DeviceProfile {
  return {
    schemaVersion: 1,
    backend: 'wasm',
    backendReason: 'WebGPU adapter "google swiftshader" is a fallback (software) adapter.',
    tflops: 0.006,
    bandwidthGBps: 26,
    memoryBytes: 4 * 2 ** 30,
    memoryBasis: 'wasm-estimate',
    // The page's own guess with the default thresholds (C below 5 TFLOPS).
    category: 'C',
    categoryThresholds: { aAboveTflops: 20, cBelowTflops: 5 },
    gpu: null,
    cpu: { gflops: 6, threads: 2, matmulShape: { m: 256, k: 1024, n: 1024 }, bandwidthGBps: 26 },
    device: { class: deviceClass, classBasis: 'ua-client-hints', deviceMemoryGB: 8, hardwareConcurrency: 2 },
    network: { rttMs: 0.4, rttSamples: 5, throughputMbps: 900, throughputBytes: 1 << 20 },
    spread: { samples: 5, matmulRelSpread: 0.08, bandwidthRelSpread: 0.1, cpuMatmulRelSpread: 0.08 },
    notes: [],
    phaseMs: { 'cpu-matmul': 800 },
    durationMs: 3100,
    measuredAt: '2025-11-22T10:00:00.000Z',
  };
}

let stories: CatalogModel;
beforeAll(async () => {
  [stories] = (await loadCatalog([])) as [CatalogModel];
});
beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** Three tabs lending 0.8 MB each, on a coordinator with the given C threshold; their last messages. */
function threeTabs(cBelowTflops: number, deviceClass: 'desktop' | 'mobile') {
  const inbox = new Map<string, ServerMessage[]>();
  const co: Coordinator = createCoordinator({
    catalog: [stories],
    send: (peer, msg) => {
      serverMessageSchema.parse(msg);
      inbox.set(peer, [...(inbox.get(peer) ?? []), msg]);
    },
    debounceMs: DEBOUNCE,
    maxWaitMs: 1000,
    liveness: () => ({ connected: true, lastSeen: Date.now() }),
    plannerOptions: { categoryThresholds: { aAboveTflops: 20, cBelowTflops } },
  });
  co.start();
  const ids = ['a', 'b', 'c'].map(pid);
  for (const id of ids) {
    co.addPeer(id, ['contributor']);
    co.setCapability(id, { ...capabilityFrom(cpuTabProfile(deviceClass)), memoryBytes: LENT });
  }
  vi.advanceTimersByTime(DEBOUNCE + 1000);
  const last = (id: string) => (inbox.get(id) ?? []).filter((m) => m.type === 'assignment').at(-1);
  const result = ids.map((id) => ({ id, assignment: last(id) }));
  co.stop();
  return result;
}

describe('category of a measured tab', () => {
  it('claims no category of its own: the server decides with its thresholds', () => {
    expect(capabilityFrom(cpuTabProfile('desktop')).category).toBeUndefined();
    expect(capabilityFrom(cpuTabProfile('mobile')).mobile).toBe(true);
  });

  it('with --category-c-below-tflops 0, three desktop CPU tabs lending 0.8 MB form a 3-stage ring', () => {
    const tabs = threeTabs(0, 'desktop');
    const ranges = tabs.map((t) => (t.assignment?.type === 'assignment' ? t.assignment.range : undefined));
    expect(ranges.every((r) => r !== undefined)).toBe(true);
    const sorted = (ranges as [number, number][]).sort((x, y) => x[0] - y[0]);
    expect(sorted[0]![0]).toBe(0);
    expect(sorted[2]![1]).toBe(stories.descriptor.units);
    for (let i = 1; i < 3; i++) expect(sorted[i]![0]).toBe(sorted[i - 1]![1]);
  });

  it('with the default threshold they stay category C and take no shard; a phone never does', () => {
    for (const [threshold, cls] of [
      [5, 'desktop'],
      [0, 'mobile'],
    ] as const) {
      for (const t of threeTabs(threshold, cls)) expect(t.assignment).toBeUndefined();
    }
  });
});
