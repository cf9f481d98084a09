/** `npm run plan`: formats in and out, errors without stack traces, re-planning. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRingworkError, type RingworkError } from '../../shared/errors.js';
import { planSchema } from '../../shared/planner/index.js';
import { runPlan } from '../../tools/cli/plan.js';
import { scaled } from '../helpers/timeouts';

const run = promisify(execFile);
const TSX = path.resolve('node_modules/.bin/tsx');
const MODEL_BIN = 'public/models/stories260K/stories260K.bin';

let dir: string;
let modelJson: string;
const file = (name: string): string => path.join(dir, name);

async function write(name: string, value: unknown): Promise<string> {
  const p = file(name);
  await writeFile(p, typeof value === 'string' ? value : JSON.stringify(value));
  return p;
}

async function failure(argv: string[]): Promise<RingworkError> {
  const err = await runPlan(argv).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRingworkError(err), String(err)).toBe(true);
  return err as RingworkError;
}

const peersFile = {
  peers: [
    { id: 'a', tflops: 10.4, bandwidthGBps: 400, memoryBytes: 2_000_000, category: 'B' },
    { id: 'b', tflops: 82.6, bandwidthGBps: 1008, memoryBytes: 2_500_000 },
    { id: 'c', tflops: 2.6, bandwidthGBps: 68, memoryBytes: 1_000_000 },
  ],
  links: [{ from: 'a', to: 'b', rttMs: 12, mbps: 200 }],
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ringwork-plan-'));
  // The model profile exactly as `npm run model-profile -- --json` prints it.
  const { stdout } = await run(TSX, ['tools/cli/model-profile.ts', '--model', MODEL_BIN, '--json']);
  modelJson = await write('model.json', stdout);
  await write('peers.json', peersFile);
}, scaled(120_000));

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('npm run plan', () => {
  it(
    'prints a plan in the documented JSON format (end to end)',
    async () => {
      const { stdout } = await run(TSX, [
        'tools/cli/plan.ts',
        '--model',
        modelJson,
        '--peers',
        file('peers.json'),
        '--objective',
        'throughput',
        '--context',
        '256',
        '--json',
      ]);
      const plan = planSchema.parse(JSON.parse(stdout));
      expect(plan.objective.kind).toBe('throughput');
      expect(plan.ring[0]!.layers[0]).toBe(0);
      expect(plan.ring[plan.ring.length - 1]!.layers[1]).toBe(7); // embed + 5 blocks + head
      for (let i = 1; i < plan.ring.length; i++)
        expect(plan.ring[i]!.layers[0]).toBe(plan.ring[i - 1]!.layers[1]);
      expect(plan.excluded.find((e) => e.peer === 'c')!.reason).toMatch(/^category C/);
      expect(plan.contextTokens).toBe(256);
    },
    scaled(60_000),
  );

  it(
    'reports bad input as one line with a code and exit 1, no stack trace',
    async () => {
      const bad = await write('bad-peers.json', {
        peers: [{ id: 'a', tflops: -3, bandwidthGBps: 1, memoryBytes: 1, gpu: 1 }],
      });
      const err = await run(TSX, [
        'tools/cli/plan.ts',
        '--model',
        modelJson,
        '--peers',
        bad,
        '--objective',
        'latency',
      ]).then(
        () => null,
        (e: { code: number; stderr: string }) => e,
      );
      expect(err).not.toBeNull();
      expect(err!.code).toBe(1);
      expect(err!.stderr).toMatch(/^error \[PLAN_BAD_INPUT\]: Invalid peers file/);
      expect(err!.stderr).toContain('peers[0].tflops');
      expect(err!.stderr).toContain('gpu');
      expect(err!.stderr).not.toMatch(/\n\s+at /);
    },
    scaled(60_000),
  );

  it('prints a readable table by default and runs the exo baseline on request', async () => {
    const text = await runPlan([
      '--model',
      modelJson,
      '--peers',
      file('peers.json'),
      '--objective',
      'latency',
      '--context',
      '256',
    ]);
    expect(text).toMatch(/latency [\d.]+ ms\/token \(optimal\)/);
    expect(text).toContain('excluded c: category C');
    const exo = JSON.parse(
      await runPlan([
        '--model',
        modelJson,
        '--peers',
        file('peers.json'),
        '--objective',
        'latency',
        '--context',
        '256',
        '--algorithm',
        'exo',
        '--json',
      ]),
    );
    expect(exo.algorithm).toBe('exo');
  });

  it('rejects unknown fields, negative numbers, an empty fleet, bad JSON and bad flags', async () => {
    const args = (peers: string, ...more: string[]): string[] => [
      '--model',
      modelJson,
      '--peers',
      peers,
      '--objective',
      'latency',
      ...more,
    ];
    let e = await failure(args(await write('p1.json', { peers: [], links: [] })));
    expect(e.code).toBe('PLAN_BAD_INPUT');
    expect(e.message).toContain('the fleet is empty');
    e = await failure(
      args(await write('p2.json', { peers: [{ id: 'a', tflops: 1, bandwidthGBps: 1, memoryBytes: -1 }] })),
    );
    expect(e.message).toContain('peers[0].memoryBytes');
    e = await failure(args(await write('p3.json', { ...peersFile, extra: true })));
    expect(e.message).toMatch(/Unrecognized key.*extra/);
    e = await failure(args(await write('p4.json', '{"peers": [')));
    expect(e.code).toBe('PLAN_BAD_INPUT');
    expect(e.message).toContain('not valid JSON');
    e = await failure(args(file('missing.json')));
    expect(e.code).toBe('FILE_READ_FAILED');
    e = await failure(['--model', modelJson, '--peers', file('peers.json'), '--objective', 'speed']);
    expect(e.code).toBe('INVALID_ARGUMENT');
    e = await failure([
      '--model',
      modelJson,
      '--peers',
      file('peers.json'),
      '--objective',
      'latency',
      '--context',
      '-4',
    ]);
    expect(e.message).toContain('--context');
    e = await failure([
      '--model',
      modelJson,
      '--peers',
      file('peers.json'),
      '--objective',
      'latency',
      '--colour',
    ]);
    expect(e.code).toBe('INVALID_ARGUMENT');
    const badModel = await write('m.json', {
      name: 'x',
      layers: [{ name: 'embed', flopsPerToken: 0, weightBytes: 0, kvBytesPerToken: 0 }],
    });
    e = await failure(['--model', badModel, '--peers', file('peers.json'), '--objective', 'latency']);
    expect(e.message).toContain('layers[0].outBytesPerToken');
  });

  it('says how much memory is missing when nothing fits', async () => {
    const e = await failure([
      '--model',
      modelJson,
      '--peers',
      file('peers.json'),
      '--objective',
      'latency',
      '--context',
      '100000',
    ]);
    expect(e.code).toBe('PLAN_INFEASIBLE');
    expect(e.message).toMatch(/MB of memory is missing/);
    expect(e.details.missingBytes).toBeGreaterThan(0);
  });

  it('re-plans against a previous plan and reports the units moved', async () => {
    const first = await runPlan([
      '--model',
      modelJson,
      '--peers',
      file('peers.json'),
      '--objective',
      'throughput',
      '--context',
      '256',
      '--json',
    ]);
    const prev = await write('prev.json', first);
    const grown = await write('grown.json', {
      peers: [...peersFile.peers, { id: 'd', tflops: 30, bandwidthGBps: 900, memoryBytes: 2_000_000 }],
    });
    const again = JSON.parse(
      await runPlan([
        '--model',
        modelJson,
        '--peers',
        grown,
        '--objective',
        'throughput',
        '--context',
        '256',
        '--previous',
        prev,
        '--json',
      ]),
    );
    expect(typeof again.layersMoved).toBe('number');
    expect(again.algorithm).toMatch(/^ringwork/);
  });
});
