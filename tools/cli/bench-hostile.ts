/**
 * `npm run bench:hostile [-- --steps 20] [--sessions 250] [--prompt 500] [--rounds 3]
 * [--budget-sessions 8] [--per-requester 4] [--model public/models/stories260K/stories260K.bin]
 * [--phase-s 8] [--flood-sockets 15] [--flood-addresses one-64|distinct] [--floods offers,frames,rumours]
 * [--only relay-floods,session-exhaustion] [--json]`
 *
 * What hostile tabs can do, in one run: honest relay and heartbeat round trips on the real server
 * alone vs during each flood class (target: p99 ≤ max(2× alone, alone + 5 ms)), an honest request's
 * time alone vs during a session-exhaustion attack (target ≤ 2×) and each stage's KV memory under
 * the attack against its budget. A MISS is a finding, not a failure: the exit code is 0.
 */
import { parseArgs } from 'node:util';
import { isRingworkError } from '../../shared/errors.js';
import { HOSTILE_SECTIONS, formatHostileReport, type HostileBenchOptions } from '../bench/hostile-bench.js';
import { FLOOD_KINDS, type FloodKind } from '../bench/hostile-flooder.js';

const USAGE = `Usage: npm run bench:hostile -- [--steps N] [--sessions N] [--prompt N] [--rounds N]
  [--budget-sessions N] [--per-requester N] [--model PATH] [--phase-s N] [--flood-sockets N]
  [--flood-addresses one-64|distinct] [--floods ${FLOOD_KINDS.join(',')}] [--only NAME,...] [--json]
Sections: ${HOSTILE_SECTIONS.map((s) => s.name).join(', ')}`;

function int(name: string, v: string | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${name} must be an integer >= ${min}, got "${v}".\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string' },
      sessions: { type: 'string' },
      prompt: { type: 'string' },
      rounds: { type: 'string' },
      'budget-sessions': { type: 'string' },
      'per-requester': { type: 'string' },
      model: { type: 'string' },
      'phase-s': { type: 'string' },
      'flood-sockets': { type: 'string' },
      'flood-addresses': { type: 'string' },
      floods: { type: 'string' },
      only: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const addresses = values['flood-addresses'] ?? 'one-64';
  if (addresses !== 'one-64' && addresses !== 'distinct') {
    process.stderr.write(`--flood-addresses must be one-64 or distinct, got "${addresses}".\n${USAGE}\n`);
    process.exit(2);
  }
  const floods = values.floods?.split(',');
  const badFlood = floods?.filter((k) => !(FLOOD_KINDS as readonly string[]).includes(k));
  if (badFlood?.length) {
    process.stderr.write(`Unknown flood class(es): ${badFlood.join(', ')}\n${USAGE}\n`);
    process.exit(2);
  }
  const o: HostileBenchOptions = {
    modelPath: values.model ?? 'public/models/stories260K/stories260K.bin',
    steps: int('steps', values.steps, 20, 2),
    attackSessions: int('sessions', values.sessions, 250, 1),
    attackPrompt: int('prompt', values.prompt, 500, 1),
    rounds: int('rounds', values.rounds, 3, 1),
    budgetSessions: int('budget-sessions', values['budget-sessions'], 8, 1),
    maxSessionsPerRequester: int('per-requester', values['per-requester'], 4, 1),
    floodPhaseMs: int('phase-s', values['phase-s'], 8, 1) * 1000,
    floodSockets: int('flood-sockets', values['flood-sockets'], 15, 1),
    floodAddresses: addresses,
    ...(floods ? { floodKinds: floods as FloodKind[] } : {}),
    log,
  };
  const only = values.only?.split(',');
  const unknown = only?.filter((n) => !HOSTILE_SECTIONS.some((s) => s.name === n));
  if (unknown?.length) {
    process.stderr.write(`Unknown section(s): ${unknown.join(', ')}\n${USAGE}\n`);
    process.exit(2);
  }
  const results = [];
  for (const s of HOSTILE_SECTIONS) {
    if (only && !only.includes(s.name)) continue;
    log(`${s.name}...`);
    results.push(await s.run(o));
  }
  if (values.json) {
    process.stderr.write(formatHostileReport(results));
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  } else process.stdout.write(formatHostileReport(results));
}

main().catch((e: unknown) => {
  process.stderr.write(
    isRingworkError(e)
      ? `error [${e.code}]: ${e.message}\n`
      : `${String(e instanceof Error ? e.stack : e)}\n`,
  );
  process.exit(1);
});
