/**
 * `npm run bench:signaling [-- --steps 100,500,1000,2000 --pairs 200 --rounds 5 --samples 200 --json]`
 * `npm run bench:signaling -- --instances 3 [--redis redis://…] [--single-steps 1500,3000|none]`
 *
 * Cluster mode (`--instances N`, or `--redis`): first the one-process series (over `--single-steps`,
 * default the same steps), then N server instances on one Redis (`--redis`, or a throwaway
 * `redis-server` on a free loopback port) with peer i on instance i mod N, so every timed round trip
 * crosses instances both ways; it reports peers held per instance, heap per peer per instance, RSS,
 * Redis `used_memory`, and the p99s side by side. Each series has its own `--deadline-s`; a series
 * stops (and says where) at the step whose peers are no longer welcomed within 30 s.
 *
 * Starts the real signaling server as a child process (`--expose-gc`, test mode, `--allow-any-relay`,
 * per-IP cap raised: every bench peer comes from 127.0.0.1) and grows a fleet of WebSocket peers in
 * steps. Each peer says hello, sends a profile (10% category B with 1 MB, 90% category C: the planner
 * runs over the whole fleet) and heartbeats every 5 s. At each step it measures:
 * - server heap after a full GC, and heap per peer against the empty server (`/api/network?gc=1`);
 * - relay round trips A → server → B → server → A of a trickled ICE candidate, loaded (up to `--pairs`
 *   pairs at once, `--rounds` each) and idle (one pair, `--samples` in sequence), p50/p99.
 * - time to welcome of the step's new peers (the server's 30 s deadline is what stops a series), and the
 *   CPU seconds each server process and the bench client itself used in the step (Linux /proc): the
 *   client shares the cores with the servers, so its share is shown, not hidden.
 * Each step starts with an untimed warm-up pass. The per-connection rate limit is raised for the bench
 * (1000/s): it measures relay cost, not the limiter. Every peer is a socket: this process holds up to
 * its open-file limit less 1024 (`--client-peers`), fleet children (bench/signaling-fleet-child.ts)
 * hold the rest; a server holds its share, so a run needs `ulimit -n` above the one-process series'
 * largest step and above each instance's share (checked at start). Timed round trips and the wait
 * for every profile's answer use this process's peers.
 * `--cpu-prof-dir <dir>` makes each server child write a V8 CPU profile there when it stops.
 * Everything is bounded (`--deadline-s`, default 300): it prints what it has and stops by itself.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { RingworkError } from '../../shared/errors.js';
import type { FleetReply, FleetRequest } from '../bench/signaling-fleet-child.js';
import { openPeer, type BenchPeer } from '../bench/signaling-peer.js';
import { startRedis } from '../testing/redis-server.js';
import { intFlag, runCli, usage } from './cli-util.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** `--cpu-prof-dir`: each server child writes a V8 CPU profile there when it stops. */
let cpuProfDir: string | null = null;

/** One instance's figures at a step. */
interface InstanceFigures {
  peers: number;
  heapMB: number;
  heapPerPeerKB: number;
  rssMB: number;
  /** Cluster mode: messages from other instances received (cumulative) and the JSON parsed for them, MB. */
  busIn?: { messages: number; parsedMB: number };
  /** CPU seconds (user + system) the instance's process used during this step (Linux /proc; NaN elsewhere). */
  cpuS: number;
}

interface StepResult {
  peers: number;
  connectS: number;
  /** Every instance's (one in single-process mode). */
  instances: InstanceFigures[];
  /** Redis `used_memory` (cluster mode), MB. */
  redisMB: number | null;
  loaded: { pairs: number; n: number; p50: number; p99: number };
  idle: { n: number; p50: number; p99: number };
  plans: number;
  /** Time to welcome of this step's new peers, ms. */
  welcome: { p50: number; p99: number };
  /** CPU seconds the bench client (this process and its fleet children) used during this step. */
  clientCpuS: number;
  /** Bench client processes holding peers at the end of the step. */
  clientProcs: number;
  /** Wall seconds of this step (connect, settle, measure). */
  wallS: number;
}

/** CPU seconds (user + system) of a process so far, from /proc (NaN where there is none). */
function cpuSecondsOf(pid: number | undefined): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** The soft limit on open files of this process (children inherit it), or null where unknown. */
function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : null;
  } catch {
    return null;
  }
}

const quantile = (xs: number[], q: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
};

async function startServer(maxPeers: number, extraArgs: readonly string[] = []): Promise<Instance> {
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      ...(cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfDir] : []),
      '--import',
      'tsx',
      'signaling-server/src/main.ts',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--test-mode',
      '--allow-any-relay',
      '--log-level',
      process.env.RINGWORK_SERVER_LOG_LEVEL ?? 'warn',
      '--max-connections-per-ip',
      String(maxPeers + 100),
      '--max-connections',
      String(maxPeers + 100),
      // Every simulated peer is on loopback, one client address: lift the per-address budgets that
      // would (rightly) treat them as one host.
      '--frames-per-second-per-ip',
      '1000000',
      '--frames-burst-per-ip',
      '1000000',
      '--bytes-per-second-per-ip',
      String(1 << 30),
      '--bytes-burst-per-ip',
      String(1 << 30),
      // Every pair's round trips run back to back: the per-pair relay quota (10/s) would measure the limiter.
      '--connect-burst-per-ip',
      '1000000',
      '--session-burst-per-ip',
      '1000000',
      '--connects-per-second-per-ip',
      '1000000',
      '--sessions-per-second-per-ip',
      '1000000',
      '--relay-pair-per-second',
      '100000',
      '--relay-pair-burst',
      '100000',
      '--rate-burst',
      '1000',
      '--rate-per-second',
      '1000',
      '--heartbeat-ms',
      '5000',
      '--heartbeat-timeout-ms',
      '60000',
      // On a shared, loaded machine a burst of upgrades can wait seconds for the event loop: the
      // bench measures relaying, not the slow-header guard.
      '--headers-timeout-ms',
      '60000',
      '--request-timeout-ms',
      '60000',
      ...extraArgs,
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // As tools/testing/spawn-server.ts: RINGWORK_SERVER_LOG=<file> appends every server's output there.
  const logFile = process.env.RINGWORK_SERVER_LOG;
  if (logFile) {
    const sink = createWriteStream(logFile, { flags: 'a' });
    child.stdout.pipe(sink);
    child.stderr.pipe(sink);
  }
  let out = '';
  let errTail = '';
  child.stderr.on('data', (d: Buffer) => (errTail = (errTail + d.toString()).slice(-4000)));
  const port = await new Promise<number>((resolve, reject) => {
    // Transpiling and starting the server takes over a minute on a machine shared by many jobs.
    const t = setTimeout(() => reject(new Error(`the server did not start in 180 s: ${out}`)), 180_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /RINGWORK_LISTENING (\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    child.stderr.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`the server exited with ${code}: ${out}`));
    });
  });
  return { child, port, tail: () => errTail };
}

/** How many plans an instance's coordinator made (`/api/network`). */
async function network(port: number): Promise<{ plans: number }> {
  const res = await fetch(`http://127.0.0.1:${port}/api/network`);
  return (await res.json()) as { plans: number };
}

let seqCounter = 1;
/** One relay round trip a → b → a, ms. */
function roundTrip(a: BenchPeer, b: BenchPeer): Promise<number> {
  const seq = 1024 + (seqCounter++ % 60_000);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      a.waiting.delete(seq);
      reject(
        new RingworkError('RELAY_TIMEOUT', 'relay round trip timed out after 10 s', { details: { seq } }),
      );
    }, 10_000);
    a.waiting.set(seq, (t) => {
      clearTimeout(timer);
      resolve(t - t0);
    });
    a.ws.send(
      JSON.stringify({
        type: 'signal',
        v: 1,
        to: b.id,
        payload: {
          kind: 'candidate',
          candidate: { candidate: `candidate:1 1 udp 2122260223 127.0.0.1 ${seq} typ host` },
        },
      }),
    );
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** An instance's `/healthz`. */
interface Health {
  peers: number;
  memory: { heapUsedBytes: number; rssBytes: number };
  cluster?: { coordinator: boolean; bus?: { messages: number; parsedBytes: number } };
}

/** One server child and where it listens. */
interface Instance {
  child: ChildProcess;
  port: number;
  /** The tail of its stderr, for the report when it fails. */
  tail: () => string;
}

/**
 * An instance's `/healthz` (`gc`: after a full GC, for heap per peer; O(1) on the server, where a
 * follower's `/api/network` would make the leader serialise every peer). A failed fetch says whether
 * the process is still alive and what it last printed, instead of a bare "fetch failed".
 */
async function health(inst: Instance, gc = false): Promise<Health> {
  try {
    const res = await fetch(`http://127.0.0.1:${inst.port}/healthz${gc ? '?gc=1' : ''}`);
    return (await res.json()) as Health;
  } catch (e) {
    const c = inst.child;
    const state =
      c.exitCode !== null || c.signalCode !== null
        ? `exited (code ${c.exitCode}, signal ${c.signalCode})`
        : 'still running';
    throw new Error(
      `/healthz on port ${inst.port} failed (${String((e as Error).cause ?? e)}); the instance ${state}; its stderr ends: ${inst.tail().slice(-600)}`,
      { cause: e },
    );
  }
}

interface SeriesOptions {
  steps: readonly number[];
  maxPairs: number;
  rounds: number;
  samples: number;
  deadline: number;
  quiet: boolean;
  /** Cluster mode: Redis's `used_memory`, bytes. */
  redisMemory?: () => Promise<number>;
  /**
   * Peers this process holds at most (its open-file limit less a margin); past it, fleet children
   * (signaling-fleet-child.ts) hold the rest, `localMax` each. Timed round trips use this process's peers.
   */
  localMax: number;
}

/** A fleet child process (signaling-fleet-child.ts) and a way to ask it for a batch of peers. */
interface FleetChild {
  child: ChildProcess;
  open(ports: readonly number[], from: number, count: number): Promise<FleetReply>;
}

function startFleetChild(): FleetChild {
  const child = fork(fileURLToPath(new URL('../bench/signaling-fleet-child.ts', import.meta.url)), [], {
    cwd: ROOT,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return {
    child,
    open: (ports, from, count) =>
      new Promise((resolve, reject) => {
        const onExit = (code: number | null): void =>
          reject(new Error(`the fleet child exited (code ${code}) before answering`));
        child.once('exit', onExit);
        child.once('message', (m: FleetReply) => {
          child.off('exit', onExit);
          resolve(m);
        });
        const req: FleetRequest = { type: 'open', ports: [...ports], from, count };
        child.send(req);
      }),
  };
}

/**
 * Grows a fleet over `ports` (peer i on instance i mod n) and measures each step. With several
 * instances, pair i is peers 2i and 2i+1, which are on different instances: every timed round trip
 * crosses instances both ways (A → its instance → Redis → B's instance → B, and back).
 */
async function runSeries(
  insts: readonly Instance[],
  o: SeriesOptions,
): Promise<{ results: StepResult[]; stoppedAt: string | null }> {
  const ports = insts.map((i) => i.port);
  const peers: BenchPeer[] = [];
  const fleet: FleetChild[] = [];
  /** Peers held by the fleet children, and the welcome times of those opened in this step. */
  let remote = 0;
  let remoteWelcomes: number[];
  const results: StepResult[] = [];
  // Where the fleet stopped growing (a peer not welcomed in time): the series ends there.
  let stoppedAt: string | null = null;
  try {
    const bases: number[] = [];
    for (const inst of insts) {
      await health(inst, true);
      bases.push((await health(inst, true)).memory.heapUsedBytes);
    }
    for (const target of o.steps) {
      if (Date.now() > o.deadline) break;
      const t0 = performance.now();
      const cpu0 = insts.map((i) => cpuSecondsOf(i.child.pid));
      const clientCpu0 = process.cpuUsage();
      const fleetCpu0 = fleet.reduce((a, c) => a + cpuSecondsOf(c.child.pid), 0);
      const firstNew = peers.length;
      remoteWelcomes = [];
      while (peers.length + remote < target && Date.now() < o.deadline) {
        const start = peers.length + remote;
        if (peers.length < o.localMax) {
          const batch = Math.min(100, target - start, o.localMax - peers.length);
          const opened = await Promise.allSettled(
            Array.from({ length: batch }, (_, i) => openPeer(ports[(start + i) % ports.length]!, start + i)),
          );
          for (const r of opened) if (r.status === 'fulfilled') peers.push(r.value);
          const failed = opened.find((r) => r.status === 'rejected');
          if (failed) {
            stoppedAt = `${peers.length + remote} peers (${String(failed.reason)})`;
            break;
          }
          continue;
        }
        // Past this process's limit: the current fleet child (a fresh one when the last is full).
        const k = Math.floor(remote / o.localMax);
        while (fleet.length <= k) fleet.push(startFleetChild());
        const batch = Math.min(100, target - start, o.localMax - (remote % o.localMax));
        const reply = await fleet[k]!.open(ports, start, batch);
        remote += reply.opened;
        remoteWelcomes.push(...reply.welcomeMs);
        if (reply.failed) {
          stoppedAt = `${peers.length + remote} peers (${reply.failed})`;
          break;
        }
      }
      if (stoppedAt !== null) break;
      const connectS = (performance.now() - t0) / 1000;
      // Wait (bounded) until the coordinator has answered every profile.
      const settleBy = Math.min(o.deadline, Date.now() + 60_000);
      while (peers.some((p) => !p.planned) && Date.now() < settleBy)
        await new Promise((r) => setTimeout(r, 50));
      const unplanned = peers.filter((p) => !p.planned).length;
      if (unplanned > 0 && !o.quiet)
        process.stderr.write(`  ${unplanned} peer(s) got no answer to their profile within 60 s\n`);
      const instances: InstanceFigures[] = [];
      let plans = 0;
      for (const [k, inst] of insts.entries()) {
        await health(inst, true);
        const h = await health(inst, true);
        const held = h.peers;
        const bus = h.cluster?.bus;
        // Plans are the active coordinator's (its own /api/network: no cluster-wide snapshot).
        if (insts.length === 1 || h.cluster?.coordinator) plans = (await network(inst.port)).plans;
        instances.push({
          peers: held,
          heapMB: h.memory.heapUsedBytes / 2 ** 20,
          heapPerPeerKB: held > 0 ? (h.memory.heapUsedBytes - bases[k]!) / held / 1024 : NaN,
          rssMB: h.memory.rssBytes / 2 ** 20,
          ...(bus ? { busIn: { messages: bus.messages, parsedMB: bus.parsedBytes / 2 ** 20 } } : {}),
          cpuS: NaN,
        });
      }
      const redisMB = o.redisMemory ? (await o.redisMemory()) / 2 ** 20 : null;
      const pairs = Math.min(o.maxPairs, Math.floor(peers.length / 2));
      const loadedPass = async (n: number, into: number[]): Promise<void> => {
        await Promise.all(
          Array.from({ length: pairs }, async (_, i) => {
            for (let r = 0; r < n; r++) into.push(await roundTrip(peers[2 * i]!, peers[2 * i + 1]!));
          }),
        );
      };
      // Untimed warm-up: the first relays of a step pay for JIT compilation, not for relaying.
      await loadedPass(10, []);
      const loaded: number[] = [];
      await loadedPass(o.rounds, loaded);
      const idle: number[] = [];
      for (let i = 0; i < o.samples && Date.now() < o.deadline; i++)
        idle.push(await roundTrip(peers[0]!, peers[1]!));
      const welcomes = [...peers.slice(firstNew).map((p) => p.welcomeMs), ...remoteWelcomes];
      // Children started during the step count from zero.
      const fleetCpu = fleet.reduce((a, c) => a + cpuSecondsOf(c.child.pid), 0) - fleetCpu0;
      const clientCpu = process.cpuUsage(clientCpu0);
      insts.forEach((inst, k) => (instances[k]!.cpuS = cpuSecondsOf(inst.child.pid) - cpu0[k]!));
      results.push({
        peers: peers.length + remote,
        connectS,
        welcome: { p50: quantile(welcomes, 0.5), p99: quantile(welcomes, 0.99) },
        clientCpuS: (clientCpu.user + clientCpu.system) / 1e6 + fleetCpu,
        clientProcs: 1 + fleet.length,
        wallS: (performance.now() - t0) / 1000,
        instances,
        redisMB,
        loaded: { pairs, n: loaded.length, p50: quantile(loaded, 0.5), p99: quantile(loaded, 0.99) },
        idle: { n: idle.length, p50: quantile(idle, 0.5), p99: quantile(idle, 0.99) },
        plans,
      });
      if (!o.quiet)
        process.stderr.write(`  ${ports.length} instance(s): ${peers.length + remote} peers measured\n`);
    }
  } finally {
    for (const p of peers) {
      p.closed = true;
      if (p.heartbeat) clearInterval(p.heartbeat);
      p.ws.terminate();
    }
    // A child closes its peers and exits when its IPC channel goes.
    for (const c of fleet) if (c.child.connected) c.child.disconnect();
  }
  return { results, stoppedAt };
}

/** Redis's `used_memory` in bytes (INFO memory). */
async function redisUsedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? NaN);
}

const parseSteps = (flag: string, text: string): number[] => {
  const steps = text.split(',').map((s) => intFlag(flag, s.trim(), 0, 2));
  if (steps.some((s, i) => i > 0 && s <= steps[i - 1]!))
    throw usage(`--${flag} must be increasing, e.g. 100,500,1000,2000`);
  // The open-file limit is checked in main; this only bounds a typo.
  if (steps.at(-1)! > 100_000) throw usage(`--${flag}: at most 100000 peers`);
  return steps;
};

runCli(async () => {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '100,500,1000,2000' },
      'single-steps': { type: 'string' },
      instances: { type: 'string' },
      redis: { type: 'string' },
      pairs: { type: 'string' },
      rounds: { type: 'string' },
      samples: { type: 'string' },
      'deadline-s': { type: 'string' },
      json: { type: 'boolean', default: false },
      'cpu-prof-dir': { type: 'string' },
      'client-peers': { type: 'string' },
    },
  });
  cpuProfDir = values['cpu-prof-dir'] ?? null;
  const steps = parseSteps('steps', values.steps);
  const instances = intFlag('instances', values.instances, 1, 1);
  if (instances > 8) throw usage('--instances: at most 8');
  if (values.redis !== undefined && !/^rediss?:\/\/\S+$/.test(values.redis))
    throw usage('--redis takes a redis:// URL');
  const cluster = instances > 1 || values.redis !== undefined;
  // Cluster mode also measures one process first, for the side-by-side figures ("none" skips it).
  const singleSteps =
    !cluster || values['single-steps'] === undefined
      ? steps
      : values['single-steps'] === 'none'
        ? []
        : parseSteps('single-steps', values['single-steps']);
  // Each series (one process, then the cluster) gets its own deadline.
  const deadlineMs = intFlag('deadline-s', values['deadline-s'], 300, 10) * 1000;
  const series = {
    maxPairs: intFlag('pairs', values.pairs, 200, 1),
    rounds: intFlag('rounds', values.rounds, 5, 1),
    samples: intFlag('samples', values.samples, 200, 1),
    deadline: 0,
    quiet: values.json,
  };

  // Every peer is a socket in this process, and the one-process server holds all of them too.
  // Open files: the one-process server holds every peer of its series, each cluster instance its
  // share; the bench holds up to its limit less a margin and fleet children hold the rest.
  const limit = openFileLimit() ?? Infinity;
  const need = Math.max(
    singleSteps.at(-1) ?? 0,
    cluster ? Math.ceil(steps.at(-1)! / instances) : steps.at(-1)!,
  );
  if (need + 512 > limit)
    throw usage(
      `a server would hold ${need} sockets, more than this shell allows (ulimit -n = ${limit}); raise it (ulimit -n ${need + 1024}) or take fewer steps`,
    );
  const localMax =
    values['client-peers'] !== undefined
      ? intFlag('client-peers', values['client-peers'], 0, 2)
      : Math.max(1000, limit - 1024);
  if (localMax > limit - 256) throw usage(`--client-peers: at most ${limit - 256} (ulimit -n = ${limit})`);

  let single: StepResult[] = [];
  let singleStop: string | null = null;
  let clusterStop: string | null = null;
  if (singleSteps.length > 0) {
    const inst = await startServer(singleSteps.at(-1)!);
    try {
      ({ results: single, stoppedAt: singleStop } = await runSeries([inst], {
        ...series,
        steps: singleSteps,
        deadline: Date.now() + deadlineMs,
        localMax,
      }));
    } finally {
      await stopChild(inst.child);
    }
  }
  let clustered: StepResult[] = [];
  let redisNote = '';
  if (cluster) {
    // Without --redis: a throwaway redis-server on a free loopback port, no persistence.
    const own = values.redis === undefined ? await startRedis() : null;
    const url = values.redis ?? own!.url;
    redisNote = own ? `throwaway redis-server on 127.0.0.1:${own.port}` : url;
    const children: Instance[] = [];
    const admin = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await admin.connect();
      for (let k = 0; k < instances; k++)
        children.push(await startServer(steps.at(-1)!, ['--redis', url, '--instance-id', `bench-${k}`]));
      ({ results: clustered, stoppedAt: clusterStop } = await runSeries(children, {
        ...series,
        steps,
        deadline: Date.now() + deadlineMs,
        localMax,
        redisMemory: () => redisUsedMemory(admin),
      }));
    } finally {
      await Promise.all(children.map((c) => stopChild(c.child)));
      admin.disconnect();
      await own?.kill();
    }
  }

  if (values.json) {
    process.stdout.write(
      JSON.stringify({ single, singleStop, cluster: clustered, clusterStop, instances }, null, 2) + '\n',
    );
    return;
  }
  const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const out = (line: string) => process.stdout.write(line + '\n');
  const rtt = (r: StepResult) =>
    `${f(r.loaded.p50)} / ${f(r.loaded.p99)} (${r.loaded.pairs} x ${series.rounds})`.padEnd(26) +
    ` | ${f(r.idle.p50)} / ${f(r.idle.p99)} (${r.idle.n})`;
  if (single.length > 0) {
    out(
      'signaling relay bench, one process (server in a child process, 127.0.0.1; RTT = A -> server -> B -> server -> A)',
    );
    out(
      ' peers  connect s  heap MB  heap/peer KB  rss MB  plans | loaded RTT ms p50 / p99 (pairs x rounds) | idle RTT ms p50 / p99 (n)',
    );
    for (const r of single) {
      const i = r.instances[0]!;
      out(
        `${String(r.peers).padStart(6)} ${f(r.connectS).padStart(10)} ${f(i.heapMB, 1).padStart(8)} ${f(i.heapPerPeerKB, 1).padStart(13)} ${f(i.rssMB, 0).padStart(7)} ${String(r.plans).padStart(6)} | ` +
          `${f(r.loaded.p50)} / ${f(r.loaded.p99)} (${r.loaded.pairs} x ${series.rounds})`.padEnd(42) +
          ` | ${f(r.idle.p50)} / ${f(r.idle.p99)} (${r.idle.n})`,
      );
    }
  }
  if (singleStop) out(`one process: the fleet stopped growing at ${singleStop}`);
  if (clusterStop) out(`cluster: the fleet stopped growing at ${clusterStop}`);
  if (clustered.length > 0) {
    out('');
    out(
      `cluster: ${instances} instances on ${redisNote}; peer i on instance i mod ${instances}; every timed round trip crosses instances (A -> inst -> Redis -> inst -> B, and back)`,
    );
    out(
      ' peers  connect s  peers per instance    heap/peer KB per instance  rss MB per instance  redis MB  plans | cross RTT ms p50 / p99 (pairs x rounds) | idle cross RTT p50 / p99 (n)',
    );
    for (const r of clustered) {
      out(
        `${String(r.peers).padStart(6)} ${f(r.connectS).padStart(10)}  ${r.instances
          .map((i) => i.peers)
          .join('/')
          .padEnd(20)} ${r.instances
          .map((i) => f(i.heapPerPeerKB, 1))
          .join('/')
          .padEnd(26)} ${r.instances
          .map((i) => f(i.rssMB, 0))
          .join('/')
          .padEnd(20)} ${f(r.redisMB ?? NaN, 1).padStart(8)} ${String(r.plans).padStart(6)} | ${rtt(r)}`,
      );
    }
    out('');
    out(' peers | messages from other instances, cumulative per instance (JSON parsed, MB)');
    for (const r of clustered)
      out(
        `${String(r.peers).padStart(6)} | ${r.instances
          .map((i) => (i.busIn ? `${i.busIn.messages} (${f(i.busIn.parsedMB, 1)})` : '-'))
          .join(' / ')}`,
      );
    if (single.length > 0) {
      out('');
      out(
        ' peers | loaded RTT p99 ms: one process / cluster (ratio) | heap/peer KB: one process / cluster mean per instance',
      );
      for (const r of clustered) {
        const s = single.find((x) => x.peers === r.peers);
        if (!s) continue;
        const meanHeap = r.instances.reduce((a, i) => a + i.heapPerPeerKB, 0) / r.instances.length;
        out(
          `${String(r.peers).padStart(6)} | ${f(s.loaded.p99)} / ${f(r.loaded.p99)} (${f(r.loaded.p99 / s.loaded.p99)}x)`.padEnd(
            58,
          ) + ` | ${f(s.instances[0]!.heapPerPeerKB, 1)} / ${f(meanHeap, 1)}`,
        );
      }
    }
  }
  // Connecting and CPU: the bench client shares the cores with the servers, so its own CPU is shown.
  const cpuTable = (name: string, rs: readonly StepResult[]): void => {
    if (rs.length === 0) return;
    out('');
    out(
      `${name}: peers | welcome ms p50 / p99 (this step's new peers) | server CPU s per instance | client CPU s (processes) | step wall s`,
    );
    for (const r of rs)
      out(
        `${String(r.peers).padStart(6)} | ${`${f(r.welcome.p50, 0)} / ${f(r.welcome.p99, 0)}`.padEnd(45)} | ${r.instances
          .map((i) => f(i.cpuS, 1))
          .join(' / ')
          .padEnd(25)} | ${`${f(r.clientCpuS, 1)} (${r.clientProcs})`.padStart(23)} | ${f(r.wallS, 1)}`,
      );
  };
  cpuTable('one process', single);
  cpuTable('cluster', clustered);
  // Where each curve bends: the first step past the issue's relay target, and where growth stopped.
  const bend = (name: string, rs: readonly StepResult[], stop: string | null): void => {
    if (rs.length === 0 && stop === null) return;
    const over = rs.find((r) => r.loaded.p99 >= 50);
    out(
      `${name}: ${rs.at(-1)?.peers ?? 0} peers held and measured; ` +
        (over ? `loaded p99 first >= 50 ms at ${over.peers} peers` : 'loaded p99 < 50 ms at every step') +
        (stop ? `; stopped growing at ${stop}` : ''),
    );
  };
  out('');
  bend('one process', single, singleStop);
  bend('cluster', clustered, clusterStop);
});
