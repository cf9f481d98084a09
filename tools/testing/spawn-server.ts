/**
 * Spawns the real signaling server (`signaling-server/src/main.ts`, test mode, free loopback port)
 * for benchmarks, the swarm tool and the browser tests, with extra flags passed through.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { RingworkError } from '../../shared/errors.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A running server: its base URL and how to stop it. */
export interface SpawnedServer {
  url: string;
  /** The server process id (benchmarks read its CPU time). */
  pid: number | undefined;
  stop(): Promise<void>;
}

/**
 * Spawns `signaling-server/src/main.ts` in test mode on a free loopback port with `extraArgs`, and
 * resolves once it prints `RINGWORK_LISTENING <port>`. The server's own output is kept so that a
 * failed start says why. With `RINGWORK_SERVER_LOG=<file>` its whole output (at
 * `RINGWORK_SERVER_LOG_LEVEL`, default warn) is also appended to that file, to see what the
 * coordinator did in a swarm or benchmark run. `RINGWORK_SERVER_NODE_ARGS` adds Node flags (e.g.
 * `--cpu-prof --cpu-prof-dir=prof`: Node refuses `--cpu-prof` in NODE_OPTIONS).
 */
export async function spawnServer(extraArgs: readonly string[] = []): Promise<SpawnedServer> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...(process.env.RINGWORK_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
      '--import',
      'tsx',
      'signaling-server/src/main.ts',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--log-level',
      process.env.RINGWORK_SERVER_LOG_LEVEL ?? 'warn',
      ...extraArgs,
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RINGWORK_TEST_MODE: '1' } },
  );
  if (process.env.RINGWORK_SERVER_LOG) {
    const file = createWriteStream(process.env.RINGWORK_SERVER_LOG, { flags: 'a' });
    child.stdout!.pipe(file);
    child.stderr!.pipe(file);
  }
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new RingworkError('SERVER_INTERNAL', `The server did not start within 120 s: ${out}`));
      // Transpiling and starting the server takes over 30 s on a machine shared by many jobs.
    }, 120_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /RINGWORK_LISTENING (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new RingworkError('SERVER_INTERNAL', `The server exited with ${code}: ${out}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        // A server that ignores SIGTERM must not keep the swarm (and the namespace) alive.
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}
