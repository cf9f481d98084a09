/**
 * `npm run bench:api [-- --tokens 60 --runs 3 --streams 32 --cap 8 --json]`
 *
 * The OpenAI-compatible API against a direct requester on the same ring, side by side in one run.
 * The real server process (no local fallback) and two Node contributors serve stories260K: real
 * ORT runners, signaling over real WebSockets, in-memory links between the stages (memory forces a
 * 2-stage ring). Then, taking turns on that ring:
 *
 * - `direct`: a requester peer of the ring, as the Chat page is (the `ask` loop of
 *   shared/app/requester.ts, its own links to the first stage and the head);
 * - `api`: the SDK's client (shared/api/ringwork-client.ts) streaming `/v1/completions`, which the
 *   server answers by running that same loop over the stages' signaling sockets.
 *
 * For each: time to first token and decode tokens/s (tokens after the first over the time after the
 * first), medians over the runs, and their ratio (target ≥ 0.9×). Both are greedy from the same
 * prompt, so their texts must match. Last, `--streams` API streams are opened at once on a server
 * capped at `--cap`: how many are served and how many refused with 429, and the most the server
 * held at once.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { createRingworkClient } from '../../shared/api/ringwork-client.js';
import { createContributor, type Contributor } from '../../shared/app/contributor.js';
import type { NetworkHandle } from '../../shared/app/network-port.js';
import { createRequester } from '../../shared/app/requester.js';
import { isRingworkError, RingworkError } from '../../shared/errors.js';
import { openLlama2cModel } from '../../shared/model/llama2c.js';
import { createMemoryFileOpener } from '../../shared/model/memory-source.js';
import { profileModel } from '../../shared/model/profile.js';
import { createOrtShardRunner } from '../../shared/runtime/ort-shard-runner.js';
import { createLlama2cTokenizer, parseLlama2cTokenizer } from '../../shared/tokenizer/llama2c-tokenizer.js';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport.js';
import { nodeOrt } from '../../signaling-server/src/model/open-node-model.js';
import {
  createSignalingClient,
  signalingPort,
  type SignalingClient,
} from '../../web/src/network/signaling-client.js';
import { SWARM_TFLOPS, swarmMemoryBytes } from '../swarm/swarm-capability.js';
import { spawnServer, type SpawnedServer } from '../testing/spawn-server.js';
import { intFlag, runCli } from './cli-util.js';

const PROMPT = 'Once upon a time';
const MODEL = 'stories260K';
const KEY = 'rw-bench-api-key-0123456789abcdef';
const ROOT = new URL('../../', import.meta.url);
const bin = new Uint8Array(readFileSync(new URL('public/models/stories260K/stories260K.bin', ROOT)));
const tokBin = new Uint8Array(readFileSync(new URL('public/models/stories260K/tok512.bin', ROOT)));
const opener = () => createMemoryFileOpener({ 'stories260K.bin': bin, 'tok512.bin': tokBin }, 'mem:');
const tokenizer = () => createLlama2cTokenizer(parseLlama2cTokenizer(tokBin, 512, 'tok512.bin'));
const runner = () =>
  createOrtShardRunner({
    ort: nodeOrt(),
    openModel: () => openLlama2cModel(opener(), 'stories260K.bin'),
    probeWebGpu: async () => ({ ok: false, reason: 'node' }),
  });

/** One timed answer. */
interface Run {
  ttftMs: number;
  decodeTokPerS: number;
  tokens: number;
  text: string;
}

/** Times tokens as they arrive: `tick(n)` when the n-th generated token is seen. */
function timer() {
  const t0 = performance.now();
  let first = 0;
  let last = 0;
  let n = 0;
  return {
    tick(count: number) {
      const t = performance.now();
      if (n === 0) first = t;
      last = t;
      n = count;
    },
    done(text: string): Run {
      return {
        ttftMs: first - t0,
        decodeTokPerS: n > 1 && last > first ? ((n - 1) * 1000) / (last - first) : 0,
        tokens: n,
        text,
      };
    },
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function health(url: string): Promise<number> {
  const r = await fetch(`${url}/healthz`);
  return ((await r.json()) as { apiStreams: number }).apiStreams;
}

runCli(async () => {
  const { values } = parseArgs({
    options: {
      tokens: { type: 'string' },
      runs: { type: 'string' },
      streams: { type: 'string' },
      cap: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const tokens = intFlag('tokens', values.tokens, 60, 2);
  const runs = intFlag('runs', values.runs, 3, 1);
  const streams = intFlag('streams', values.streams, 32, 1);
  const cap = intFlag('cap', values.cap, 8, 1);
  const log = (m: string) => process.stderr.write(`${m}\n`);

  const dir = mkdtempSync(join(tmpdir(), 'ringwork-bench-api-'));
  writeFileSync(join(dir, 'keys.txt'), `${KEY}\n`);
  const server: SpawnedServer = await spawnServer([
    '--api-keys',
    join(dir, 'keys.txt'),
    '--category-c-below-tflops',
    '0',
    '--api-max-streams',
    String(cap),
    '--api-max-streams-per-key',
    '10000',
    '--api-requests-per-minute',
    '1000000',
    '--max-sockets-per-ip',
    '4000',
    '--max-http-sockets',
    '4000',
  ]);
  const sockets: SignalingClient[] = [];
  const contributors: Contributor[] = [];
  const hub = createMemoryTransportHub();
  const ws = `${server.url.replace('http', 'ws')}/ws`;
  /** A signaling connection and this process's in-memory transport under the peer id it gets. */
  const network = (roles: ('contributor' | 'requester')[]) => {
    const s = createSignalingClient({ url: ws, roles, WebSocket: WebSocket });
    sockets.push(s);
    let net: NetworkHandle | undefined;
    return async (): Promise<NetworkHandle> => {
      if (net) return net;
      const welcome = await s.start();
      net = { signaling: signalingPort(s), transport: hub.transport(welcome.peerId), peerId: welcome.peerId };
      return net;
    };
  };
  try {
    const profile = profileModel(MODEL, (await openLlama2cModel(opener(), 'stories260K.bin')).config, {
      format: 'f32',
      contextTokens: 512,
    });
    const memoryBytes = swarmMemoryBytes(
      profile.layers.map((l) => l.weightBytes + l.kvBytesPerToken * 512),
      2,
    );
    // onnxruntime-web's first-time initialisation does not tolerate two sessions created at once:
    // one runner loads and goes first.
    const warm = runner();
    await warm.load({
      model: { url: 'mem:stories260K.bin' },
      range: [0, 1],
      weightFormat: 'f32',
      contextLength: 8,
      logits: 'last',
      backend: 'wasm',
    });
    await warm.dispose();
    for (let i = 0; i < 2; i++) {
      const c = createContributor({
        network: network(['contributor']),
        createRunner: runner,
        connectTimeoutMs: 5000,
        probeIntervalMs: 0,
        rejoin: false,
      });
      contributors.push(c);
      await c.start({
        capability: { tflops: SWARM_TFLOPS, bandwidthGBps: 100, memoryBytes, backend: 'wasm', mobile: false },
      });
    }
    const rw = createRingworkClient({ server: server.url, apiKey: KEY });
    log('waiting for a ring of the two contributors to serve stories260K…');
    const deadline = Date.now() + 120_000;
    while (!(await rw.models.list()).data.find((m) => m.id === MODEL)?.ringwork.ringServing) {
      if (Date.now() > deadline)
        throw new RingworkError('NO_RING', 'No ring served stories260K within 120 s.');
      await new Promise((r) => setTimeout(r, 250));
    }

    const tok = tokenizer();
    const prompt = tok.encode(PROMPT, { bos: true });
    const requester = createRequester({
      network: network(['requester']),
      createRunner: () => {
        throw new RingworkError('NO_RING', 'The benchmark measures the ring, not a local run.');
      },
      openTokenizer: async () => tokenizer(),
      localMemoryBytes: () => 0,
      seed: () => 1,
      retryWindowMs: 60_000,
    });
    const direct = async (): Promise<Run> => {
      const t = timer();
      const r = await requester.ask({
        settings: { model: MODEL, temperature: 0, topP: 1, maxTokens: tokens, seed: 1 },
        history: [{ role: 'user', text: PROMPT }],
        prompt,
        signal: new AbortController().signal,
        onText: (_text, n) => {
          if (n > 0) t.tick(n);
        },
      });
      // A completion model's text starts with the prompt as printed.
      return t.done(r.text.startsWith(PROMPT) ? r.text.slice(PROMPT.length) : r.text);
    };
    const api = async (): Promise<Run> => {
      const t = timer();
      let text = '';
      let n = 0;
      for await (const c of await rw.completions.create({
        model: MODEL,
        prompt: PROMPT,
        max_tokens: tokens,
        temperature: 0,
        stream: true,
      })) {
        const piece = c.choices[0]?.text ?? '';
        if (piece !== '') {
          text += piece;
          t.tick(++n);
        }
      }
      return t.done(text);
    };
    // One of each first, unmeasured: the ring's sessions, links and tokenizers warm up.
    await direct();
    await api();
    const measured: { direct: Run[]; api: Run[] } = { direct: [], api: [] };
    for (let i = 0; i < runs; i++) {
      measured.direct.push(await direct());
      measured.api.push(await api());
      log(`run ${i + 1}/${runs} done`);
    }
    await requester.stop();
    const summary = (rs: Run[]) => ({
      ttftMs: median(rs.map((r) => r.ttftMs)),
      decodeTokPerS: median(rs.map((r) => r.decodeTokPerS)),
      tokens: median(rs.map((r) => r.tokens)),
    });
    const d = summary(measured.direct);
    const a = summary(measured.api);
    const sameText = measured.api.every((r) => r.text === measured.direct[0]!.text);

    // Concurrent streams: all opened at once against the server-wide cap.
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await health(server.url));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const outcomes = await Promise.all(
      Array.from({ length: streams }, async () => {
        try {
          let got = 0;
          for await (const c of await rw.completions.create({
            model: MODEL,
            prompt: PROMPT,
            max_tokens: 20,
            temperature: 0,
            stream: true,
          }))
            if (c.choices[0]?.text) got++;
          return got > 0 ? 'served' : 'empty';
        } catch (e) {
          return isRingworkError(e) ? e.code : 'failed';
        }
      }),
    );
    sampling = false;
    await sampler;
    const count = (k: string) => outcomes.filter((o) => o === k).length;
    const concurrent = {
      opened: streams,
      cap,
      served: count('served'),
      refused429: count('API_RATE_LIMITED'),
      other: streams - count('served') - count('API_RATE_LIMITED'),
      peakHeld: peak,
    };
    const result = {
      model: MODEL,
      tokens,
      runs,
      direct: d,
      api: a,
      ratio: d.decodeTokPerS > 0 ? a.decodeTokPerS / d.decodeTokPerS : 0,
      sameText,
      concurrent,
    };
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const row = (name: string, s: ReturnType<typeof summary>) =>
      `${name.padEnd(28)} ${s.ttftMs.toFixed(0).padStart(8)} ${s.decodeTokPerS.toFixed(1).padStart(14)} ${String(s.tokens).padStart(7)}`;
    process.stdout.write(
      [
        `stories260K, 2-stage ring of Node contributors, ${tokens} tokens greedy, median of ${runs} runs`,
        `${'path'.padEnd(28)} ${'TTFT ms'.padStart(8)} ${'decode tok/s'.padStart(14)} ${'tokens'.padStart(7)}`,
        row('direct requester (Chat page)', d),
        row('API (SDK, SSE stream)', a),
        `API / direct decode tok/s: ${result.ratio.toFixed(2)}x (target >= 0.9x); same text: ${sameText ? 'yes' : 'NO'}`,
        `concurrent streams: ${streams} opened against a cap of ${cap}: ${concurrent.served} served, ` +
          `${concurrent.refused429} refused with 429, ${concurrent.other} other; at most ${peak} held at once`,
        '',
      ].join('\n'),
    );
  } finally {
    for (const c of contributors) await c.stop().catch(() => undefined);
    for (const s of sockets) s.stop();
    await server.stop();
  }
});
