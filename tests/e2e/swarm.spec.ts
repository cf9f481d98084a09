/**
 * `npm run swarm` end to end: the CLI (real server, N Chromium contributor pages, the chat UI on a
 * requester page) prints exactly llama2.c's text for stories260K, "Once upon a time", 64 steps,
 * temperature 0 — for rings of 1 and 4 peers (2- and 3-peer rings of real tabs are covered by
 * api-swarm.spec.ts, app.spec.ts and lend-memory.spec.ts; each CLI run costs ~25 s of CI). The CLI is run as a child process; under
 * `npm run test:browser` it inherits the loopback-only namespace of tests/e2e/isolated.sh, and
 * dist/ is already built by that script (so `tsx` is run directly, not `npm run swarm`).
 */
import { spawn } from 'node:child_process';
import { loadGolden, repoPath } from '../helpers/golden';
import { test, expect } from '@playwright/test';
import { scaled, TIMEOUTS } from '../helpers/timeouts';

const golden = loadGolden();

function runSwarmCli(
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'tools/cli/swarm.ts', ...args], {
      cwd: repoPath(''),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // The CLI bounds itself (--timeout-s); this only guards against a hang in its own shutdown.
    const timer = setTimeout(() => {
      stderr += `\n[test] killed: no exit within ${timeoutMs} ms (RINGWORK_TIMEOUT_SCALE multiplies this)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('npm run swarm prints the golden text for 1 and 4 peers (loop mode), and for 3 with --no-loop', async () => {
  // Three CLI runs, each with its own bounded budget that fails first with the CLI's own words.
  test.setTimeout(3 * TIMEOUTS.swarmRun + scaled(30_000));
  // Loop mode (the head feeds each token to stage 0) is the default; --no-loop sends every step
  // from the requester page: the same text either way, through real WebRTC.
  for (const [peers, extra] of [
    [1, []],
    [4, []],
    [3, ['--no-loop']],
  ] as const) {
    const started = Date.now();
    const r = await runSwarmCli(
      [
        '--peers',
        String(peers),
        '--prompt',
        'Once upon a time',
        '--steps',
        '64',
        '--temperature',
        '0',
        '--timeout-s',
        String(Math.round((TIMEOUTS.swarmRun - scaled(10_000)) / 1000)),
        ...extra,
      ],
      TIMEOUTS.swarmRun,
    );
    console.log(
      `${peers} peer(s)${extra.length ? ` ${extra.join(' ')}` : ''}: exit ${r.code} in ${((Date.now() - started) / 1000).toFixed(1)} s; ${r.stderr.trim().split('\n').pop()}`,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(golden.text);
    // The ring really was split over every peer.
    const ranges =
      /ring (.*)$/m.exec(
        r.stderr
          .split('\n')
          .filter((l) => l.startsWith('achieved'))
          .pop() ?? '',
      )?.[1] ?? '';
    expect(ranges.split('→').length).toBe(peers);
  }
});

test('npm run swarm --draft q4: the chat drafts, the ring verifies, the text is the golden (undrafted) text — also through a failover', async () => {
  // Two CLI runs: an undisturbed drafted answer, then one whose ring stage 1 is closed mid-answer.
  test.setTimeout(2 * TIMEOUTS.swarmRun + scaled(30_000));
  const base = ['--peers', '3', '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0'];
  const timeoutS = String(Math.round((TIMEOUTS.swarmRun - scaled(10_000)) / 1000));
  for (const extra of [[], ['--kill-stage', '1', '--kill-after', '10']]) {
    const r = await runSwarmCli(
      [...base, '--draft', 'q4', '--draft-k', '4', '--json', '--timeout-s', timeoutS, ...extra],
      TIMEOUTS.swarmRun,
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      text: string;
      accepted: number;
      drafted: number;
      laps: number;
      tokensPerLap: number;
      timings: { decodeTokPerS: number };
      failovers?: { replayed: number; position: number }[];
    };
    console.log(
      `drafted${extra.length ? ', stage 1 killed' : ''}: ${out.accepted}/${out.drafted} accepted, ${out.laps} laps, ` +
        `${out.tokensPerLap.toFixed(2)} tokens/lap, decode ${out.timings.decodeTokPerS} tok/s`,
    );
    // `npm run swarm` without --draft prints the golden text (the test above): drafted, the same.
    expect(out.text + '\n').toBe(golden.text);
    expect(out.accepted).toBeGreaterThan(0);
    expect(out.tokensPerLap).toBeGreaterThan(1);
    expect(out.laps).toBeLessThan(64 - 4);
    if (extra.length) expect(out.failovers?.length, r.stderr).toBeGreaterThanOrEqual(1);
  }
});
