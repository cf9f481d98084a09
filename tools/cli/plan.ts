/**
 * `npm run plan -- --model <model-profile.json> --peers <peers.json> --objective latency|throughput
 * [--context 2048] [--json] [--algorithm ringwork|exo] [--previous <plan.json>] [--exhaustive-limit 8]`
 *
 * Plans a ring (which peers, in which order, which units each) under the default cost model. With
 * `--previous`, re-plans stably against that plan and reports the units moved. Bad input (unknown
 * fields, negative numbers, an empty fleet, unreadable JSON) is a one-line `error [CODE]: ...`.
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { RingworkError } from '../../shared/errors.js';
import { modelProfileSchema } from '../../shared/model/profile.js';
import {
  objectiveSchema,
  parseOrThrow,
  peersFileSchema,
  planExo,
  planRingwork,
  planSchema,
  replan,
  type Plan,
  type PlanInput,
} from '../../shared/planner/index.js';
import { runCli } from './cli-util.js';

const USAGE =
  'npm run plan -- --model <model-profile.json> --peers <peers.json> --objective latency|throughput [--context 2048] [--json] [--algorithm ringwork|exo] [--previous <plan.json>] [--exhaustive-limit 8]';

function badArg(message: string): RingworkError {
  return new RingworkError('INVALID_ARGUMENT', `${message} Usage: ${USAGE}`);
}

async function readJson(path: string, flag: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new RingworkError(
      'FILE_READ_FAILED',
      `Cannot read ${flag} file "${path}": ${(e as Error).message}`,
      {
        details: { path },
        cause: e,
      },
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new RingworkError(
      'PLAN_BAD_INPUT',
      `${flag} file "${path}" is not valid JSON: ${(e as Error).message}`,
      {
        details: { path },
        cause: e,
      },
    );
  }
}

function intArg(name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw badArg(`--${name} must be an integer >= ${min}, got "${value}".`);
  return n;
}

/** Runs the CLI on `argv` (without node and script) and returns what it prints. */
export async function runPlan(argv: readonly string[]): Promise<string> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        model: { type: 'string' },
        peers: { type: 'string' },
        objective: { type: 'string' },
        context: { type: 'string' },
        json: { type: 'boolean', default: false },
        algorithm: { type: 'string', default: 'ringwork' },
        previous: { type: 'string' },
        'exhaustive-limit': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw badArg(`${(e as Error).message}.`);
  }
  const modelPath = values.model as string | undefined;
  const peersPath = values.peers as string | undefined;
  if (!modelPath || !peersPath || values.objective === undefined) {
    throw badArg('--model, --peers and --objective are required.');
  }
  const objective = objectiveSchema.safeParse(values.objective);
  if (!objective.success)
    throw badArg(`--objective must be latency or throughput, got "${String(values.objective)}".`);
  const algorithm = values.algorithm as string;
  if (algorithm !== 'ringwork' && algorithm !== 'exo') {
    throw badArg(`--algorithm must be ringwork or exo, got "${algorithm}".`);
  }
  const contextTokens = intArg('context', values.context as string | undefined, 2048, 1);
  const limitArg = values['exhaustive-limit'] as string | undefined;
  const exhaustiveLimit = limitArg === undefined ? undefined : intArg('exhaustive-limit', limitArg, 8, 0);

  const profile = parseOrThrow(
    modelProfileSchema,
    await readJson(modelPath, '--model'),
    `model profile "${modelPath}"`,
  );
  const fleet = parseOrThrow(
    peersFileSchema,
    await readJson(peersPath, '--peers'),
    `peers file "${peersPath}"`,
  );
  const options = exhaustiveLimit === undefined ? undefined : { exhaustiveLimit };
  const input: PlanInput = {
    profile,
    peers: fleet.peers,
    links: fleet.links,
    objective: objective.data,
    contextTokens,
    options,
  };

  let plan: Plan;
  if (values.previous !== undefined) {
    if (algorithm === 'exo')
      throw badArg('--previous re-plans with Ringwork; it cannot be combined with --algorithm exo.');
    const prevPath = values.previous as string;
    const previous = parseOrThrow(
      planSchema,
      await readJson(prevPath, '--previous'),
      `previous plan "${prevPath}"`,
    );
    plan = replan(previous, profile, fleet, objective.data, contextTokens, options).plan;
  } else plan = algorithm === 'exo' ? planExo(input) : planRingwork(input);

  return values.json
    ? `${JSON.stringify(plan, null, 2)}\n`
    : formatPlan(
        plan,
        profile.layers.map((l) => l.name),
      );
}

const msOf = (s: number): string => `${(s * 1e3).toFixed(3)} ms`;
const gbOf = (b: number): string => `${(b / 1e9).toFixed(3)} GB`;

/** The human-readable plan. */
export function formatPlan(plan: Plan, unitNames: readonly string[]): string {
  const lines: string[] = [];
  const quality = plan.optimal
    ? 'optimal'
    : plan.algorithm === 'exo'
      ? 'exo baseline'
      : `within ${((plan.objective.value / plan.lowerBound - 1) * 100).toFixed(2)}% of the lower bound ${msOf(plan.lowerBound)}`;
  lines.push(
    `${plan.model}: ${unitNames.length} units, KV for ${plan.contextTokens} tokens, ${plan.algorithm}, ${plan.objective.kind} ${msOf(plan.objective.value)}/token (${quality})`,
  );
  lines.push('  #  peer                      units                      compute        hop     memory');
  plan.ring.forEach((s, i) => {
    const [a, b] = s.layers;
    const range = `[${a}, ${b}) ${unitNames[a]}..${unitNames[b - 1]}`;
    lines.push(
      `${String(i + 1).padStart(3)}  ${s.peer.padEnd(24)}  ${range.padEnd(24)} ${msOf(s.computeS).padStart(12)} ${msOf(s.hopS).padStart(10)} ${gbOf(s.memoryBytes).padStart(10)}`,
    );
  });
  const p = plan.predicted;
  lines.push(
    `predicted: latency ${msOf(p.latencyS)}/token, throughput period ${msOf(p.throughputS)} (${p.tokensPerSecond.toFixed(2)} tokens/s)${plan.memoryOk ? '' : ', EXCEEDS MEMORY'}`,
  );
  if (plan.layersMoved !== undefined)
    lines.push(`units moved against the previous plan: ${plan.layersMoved}`);
  for (const e of plan.excluded) lines.push(`excluded ${e.peer}: ${e.reason}`);
  return `${lines.join('\n')}\n`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runCli(async () => {
    process.stdout.write(await runPlan(process.argv.slice(2)));
  });
}
