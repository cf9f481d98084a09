/**
 * Browser harness for the contract suites (tests/contracts): runs the transport contract on the
 * WebRTC transport (N signaling clients in this page, each with its own transport, signaling through
 * the real server) and the shard-runner contract on the Web Worker runner. Playwright
 * (tests/e2e/contracts.spec.ts) runs one case per test and reads back the outcome.
 */
import { isRingworkError } from '../../../shared/errors';
import type { ContractCase } from '../../../tests/contracts/check';
import { contract as runnerContract, type ContractGolden } from '../../../tests/contracts/shard-runner';
import { contract as transportContract, type TransportFixture } from '../../../tests/contracts/transport';
import { createWorkerShardRunner } from '../engine/worker-shard-runner';
import { createSignalingClient } from '../network/signaling-client';
import { createWebRtcTransport } from '../network/webrtc-transport';

function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** `n` WebRTC transports, each over its own signaling session (the server must allow any relay). */
async function webRtcFixture(n: number): Promise<TransportFixture> {
  const clients = Array.from({ length: n }, () =>
    createSignalingClient({ url: wsUrl(), roles: ['requester'] }),
  );
  try {
    const welcomes = await Promise.all(clients.map((c) => c.start()));
    const transports = clients.map((signaling, i) =>
      createWebRtcTransport({
        signaling,
        iceServers: welcomes[i]!.iceServers,
        connectTimeoutMs: 10_000,
      }),
    );
    return {
      transports,
      // Well-formed (p_ + 16 characters) and never issued: the server's ids are random.
      unknownPeerId: `p_${'nobody'.padEnd(16, '0')}`,
      async teardown() {
        await Promise.all(transports.map((t) => t.close()));
        clients.forEach((c) => c.stop());
      },
    };
  } catch (e) {
    clients.forEach((c) => c.stop());
    throw e;
  }
}

/** Golden values as Playwright can pass them (plain arrays). */
export interface GoldenInput {
  tokens: number[];
  logits: number[];
  hidden: number[];
  positions: number;
  nLayers: number;
  dim: number;
  vocab: number;
}

const suites = new Map<string, ContractCase[]>();

/** Builds the suites: `g` is the reference the runner must match, `scale` stretches every budget. */
function configure(g: GoldenInput, scale = 1): void {
  suites.set('transport', transportContract(webRtcFixture, { scale }));
  const golden: ContractGolden = {
    ...g,
    logits: Float32Array.from(g.logits),
    hidden: Float32Array.from(g.hidden),
  };
  suites.set(
    'shard-runner',
    runnerContract({
      create: async () => ({ runner: createWorkerShardRunner(), teardown: async () => undefined }),
      model: { url: '/models/stories260K/stories260K.bin' },
      golden,
      scale,
    }),
  );
}

/** What one case did, in a form that survives `page.evaluate`. */
export type CaseOutcome =
  { ok: true; ms: number } | { ok: false; ms: number; error: string; code?: string; stack?: string };

function names(suite: string): string[] {
  return (suites.get(suite) ?? []).map((c) => c.name);
}

async function run(suite: string, name: string): Promise<CaseOutcome> {
  const c = suites.get(suite)?.find((x) => x.name === name);
  if (!c) return { ok: false, ms: 0, error: `no case "${name}" in suite "${suite}"` };
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      c.run(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${c.timeoutMs} ms`)), c.timeoutMs);
      }),
    ]);
    return { ok: true, ms: performance.now() - t0 };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    return {
      ok: false,
      ms: performance.now() - t0,
      error: `${err.name}: ${err.message}`,
      ...(isRingworkError(e) ? { code: e.code } : {}),
      ...(err.stack ? { stack: err.stack } : {}),
    };
  } finally {
    clearTimeout(timer);
    document.getElementById('out')!.textContent += `${suite} / ${name}: done\n`;
  }
}

declare global {
  interface Window {
    ringworkContracts: { configure: typeof configure; names: typeof names; run: typeof run };
  }
}
window.ringworkContracts = { configure, names, run };
