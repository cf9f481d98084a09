/**
 * Churn end to end: `npm run swarm` with `--kill-stage 1 --kill-after 16` — the real server, three
 * Chromium contributor pages and the chat UI; the page holding the ring's middle stage is closed
 * mid-answer. The answer must complete with exactly the golden text, and the chat page must say a
 * failover happened. Run as a child process like swarm.spec.ts (inside tests/e2e/isolated.sh's
 * loopback-only namespace, dist/ already built).
 */
import { spawn } from 'node:child_process';
import { test, expect } from '@playwright/test';
import { loadGolden, repoPath } from '../helpers/golden';
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

test('a middle stage closing mid-answer: the answer completes with the golden text and says it failed over', async () => {
  // One swarm run plus a failover (the survivors load their re-planned shards).
  const budget = TIMEOUTS.swarmRun + scaled(90_000);
  test.setTimeout(budget + scaled(15_000));
  const r = await runSwarmCli(
    [
      '--peers',
      '3',
      '--prompt',
      'Once upon a time',
      '--steps',
      '64',
      '--temperature',
      '0',
      '--kill-stage',
      '1',
      '--kill-after',
      '16',
      '--json',
      '--timeout-s',
      String(Math.round((budget - scaled(10_000)) / 1000)),
    ],
    budget,
  );
  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as {
    text: string;
    failovers: { stage: number; cause: string; detectMs: number; recoveryMs: number; replayed: number }[];
    failoverNote: string;
  };
  console.log(`failovers: ${JSON.stringify(out.failovers)}`);
  expect(out.text + '\n').toBe(golden.text);
  expect(out.failovers).toHaveLength(1);
  expect(out.failovers[0]).toMatchObject({ stage: 1 });
  expect(out.failovers[0]!.replayed).toBeGreaterThan(16);
  expect(out.failovers[0]!.recoveryMs).toBeGreaterThan(0);
  // What a person sees under the answer.
  expect(out.failoverNote).toMatch(/failover: a ring peer .*was lost at position \d+/);
  expect(out.failoverNote).toContain('the answer went on on a re-formed ring');
});
