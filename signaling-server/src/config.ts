/**
 * Configuration of the signaling server: one zod schema validates flags, environment and the JSON
 * catalog file at start, so a bad value stops the server with a message that names it instead of
 * surfacing later as a strange runtime failure.
 *
 * Flags win over environment variables, which win over the defaults:
 * `--port`/`PORT`, `--host`/`HOST`, `--root`, `--test-mode`/`RINGWORK_TEST_MODE=1`,
 * `--allow-any-relay` (test mode only), `--model <id>=<path-or-dir>[,...]`/`RINGWORK_MODELS`,
 * `--catalog <file.json>`/`RINGWORK_CATALOG`, `--no-default-model`,
 * `--allow-origin <origin>[,...]`/`RINGWORK_ALLOWED_ORIGINS`, `--allow-host <host[:port]>[,...]`/
 * `RINGWORK_ALLOWED_HOSTS`, `--trust-proxy <addr>[,...]`/`RINGWORK_TRUST_PROXY`, `--objective`,
 * `--stage-overhead-ms`/`RINGWORK_STAGE_OVERHEAD_MS`, `--min-link-mbps`/`RINGWORK_MIN_LINK_MBPS`,
 * `--category-c-below-tflops`, `--log-level`/`LOG_LEVEL`,
 * result validation (`--security-level`/`RINGWORK_SECURITY_LEVEL`, `--model-security <id>=<k>[,...]`,
 * `--validator-networks distinct|any`),
 * identity and ledger (`--require-identity`, `--chain-id`, `--chain-rpc`, `--data-dir`/`RINGWORK_DATA_DIR`,
 * `--database`/`RINGWORK_DATABASE`, `--no-ledger`), stake (`--stake-contract`/`RINGWORK_STAKE_CONTRACT`,
 * `--slasher-key FILE` (alias `--coordinator-key-file`)/`RINGWORK_SLASHER_KEY_FILE`, `--min-stake WEI`/`RINGWORK_MIN_STAKE`,
 * `--model-min-stake <id>=<wei>[,...]`, `--level-min-stake <k>=<wei>[,...]`, `--slash-wei`, `--stake-cache-ms`)
 * and the limits (`--max-connections-per-ip`/`RINGWORK_MAX_CONNECTIONS_PER_IP`,
 * `--max-connections`, `--max-sessions`, `--rate-burst`, `--rate-per-second`, `--heartbeat-ms`,
 * `--heartbeat-timeout-ms`, `--hello-timeout-ms`, `--resume-grace-ms`, `--replan-debounce-ms`,
 * `--max-http-sockets`, `--max-sockets-per-ip`, `--headers-timeout-ms`, `--request-timeout-ms`,
 * `--connects-per-second-per-ip`, `--connect-burst-per-ip`, `--sessions-per-second-per-ip`,
 * `--session-burst-per-ip`, `--network-cache-ms`, `--frames-per-second-per-ip`,
 * `--frames-burst-per-ip`, `--bytes-per-second-per-ip`, `--bytes-burst-per-ip`, `--relay-pair-per-second`,
 * `--relay-pair-burst`, `--hold-back-ms`, `--hold-back-max-ms`).
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { apiConfigSchema } from './api/api-config.js';
import { z } from 'zod';
import { parseWithSchema, RingworkError } from '../../shared/errors.js';
import { DEFAULT_CATEGORY_THRESHOLDS, objectiveSchema } from '../../shared/planner/index.js';

/**
 * Measured with `npm run bench:swarm` on stories260K, whose FLOPs are negligible (~1.4 MFLOP a
 * token), so a token's time is the stages' fixed cost (ORT runs, worker and DataChannel hand-offs):
 * on the project's 2-core machine, quiet, 41 ms a token for 1 stage and 139 ms for 3 (46 ms a stage
 * incl. a loopback hop, for which the default link adds 10 ms); shared with other work, 122 and 417
 * ms (122-139 ms a stage). 65 ms (+ the 10 ms hop) sits at the geometric middle of the two regimes,
 * so the planned single-request speed lands within 2x of the measured one in both; over-charging
 * only makes the planner favour fewer stages. Set it per deployment with `--stage-overhead-ms`.
 */
export const DEFAULT_STAGE_OVERHEAD_MS = 65;

/** Where the command line keeps the embedded ledger database unless told otherwise. */
export const DEFAULT_DATA_DIR = './.ringwork-data';

/** Catalog model ids appear in URLs and messages: keep them to a safe alphabet. */
export const modelIdSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/,
    'a model id is 1-100 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)',
  );

/** One catalog entry as configured: where the server reads the model, and where peers fetch it. */
export const catalogEntrySchema = z
  .object({
    id: modelIdSchema,
    /** Local path (llama2.c `.bin` or Hugging Face directory) or http(s) URL the server reads the config from. */
    path: z.string().min(1).max(4096),
    /** URL peers load the model from; derived from `path` when omitted (see catalog.ts). */
    url: z.string().min(1).max(2048).optional(),
    tokenizerUrl: z.string().min(1).max(2048).optional(),
    weightFormat: z.enum(['f32', 'q8', 'q4']).default('f32'),
    /** Context the ring reserves KV memory for; default min(maxPositions, 512). */
    contextLength: z
      .number()
      .int()
      .positive()
      .max(1 << 20)
      .optional(),
    /**
     * `lightweight`: served whole by single peers (replicas; category C peers such as phones serve
     * only these); `sharded` (default): planned into a ring of stronger peers.
     */
    serving: z.enum(['lightweight', 'sharded']).optional(),
  })
  .strict();
export type CatalogEntryConfig = z.infer<typeof catalogEntrySchema>;

const originSchema = z
  .string()
  .max(300)
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === s;
    } catch {
      return false;
    }
  }, 'an origin is scheme://host[:port] with no path, e.g. https://example.org');

/** `name` or `name:port`, `[v6]` or `[v6]:port`: what a Host header may be compared with. */
const hostPatternSchema = z
  .string()
  .max(260)
  .transform((s) => s.trim().toLowerCase())
  .refine(
    (s) => /^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]{0,252}[a-z0-9])?)(:\d{1,5})?$/.test(s),
    'a host is name[:port] or [ipv6][:port], e.g. ringwork.example.org or 192.168.1.5:8080',
  );

const ipAddressSchema = z
  .string()
  .max(64)
  .transform((s) => s.trim())
  .refine((s) => isIP(s) !== 0, 'a proxy is an IPv4 or IPv6 address, e.g. 127.0.0.1 or ::1');

const iceServerSchema = z
  .object({
    urls: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    username: z.string().optional(),
    credential: z.string().optional(),
  })
  .strict();

const int = (min: number, max: number, def: number) => z.number().int().min(min).max(max).default(def);

/** Limits and timings. Defaults suit production; tests shorten the timeouts. */
export const limitsSchema = z
  .object({
    /** Open WebSocket connections allowed from one remote address. */
    maxConnectionsPerIp: int(1, 1_000_000, 16),
    /** Open WebSocket connections in total. */
    maxConnections: int(1, 1_000_000, 10_000),
    /**
     * Sessions kept (connected or waiting to resume). When full, the session that has waited longest
     * to resume is dropped; if every session is connected, new hellos are refused.
     */
    maxSessions: int(1, 10_000_000, 20_000),
    /** Token bucket per connection: burst size and sustained frames per second. */
    rateBurst: int(1, 1_000_000, 200),
    ratePerSecond: z.number().positive().max(1_000_000).default(50),
    /** Frames dropped by the rate limiter (since the client last calmed down) before disconnecting. */
    maxDroppedFrames: int(1, 1_000_000, 100),
    /**
     * Times a connection may run into a budget (each time it is paused) before it is disconnected
     * (1008), unless its budgets refilled halfway in between: a large-frame flood is cut after this
     * many pauses, a small-frame one usually earlier by `maxDroppedFrames`.
     */
    maxThrottles: int(1, 1_000_000, 5),
    /** Error replies a connection may provoke in a burst (refills 1/s) before it is disconnected. */
    maxProtocolErrors: int(1, 1_000_000, 50),
    /** Interval the peers are told to heartbeat at. */
    heartbeatMs: int(10, 600_000, 5_000),
    /** A connected peer silent for this long is removed. */
    heartbeatTimeoutMs: int(20, 3_600_000, 15_000),
    /** A connection that has not said hello within this time is closed. */
    helloTimeoutMs: int(10, 600_000, 10_000),
    /** A peer whose socket closed keeps its session (and ring place) this long to resume. */
    resumeGraceMs: int(0, 3_600_000, 15_000),
    /** Re-plans are debounced by this much, and never delayed by more than replanMaxWaitMs. */
    replanDebounceMs: int(0, 60_000, 200),
    replanMaxWaitMs: int(0, 600_000, 2_000),
    /** A slow reader whose unsent output exceeds this is disconnected (bounded memory per peer). */
    maxBufferedBytes: int(1024, 1 << 30, 1 << 20),
    /**
     * Sockets not (yet) upgraded to a WebSocket, in total: the HTTP server's `maxConnections` is this
     * plus `maxConnections`, so plain HTTP clients cannot crowd out peers, nor peers the app.
     */
    maxHttpSockets: int(1, 1_000_000, 1024),
    /**
     * Open sockets (HTTP and WebSocket) from one client address bucket (an IPv4 address, an IPv6
     * /64); default `maxConnectionsPerIp` + 64. Trusted proxies are exempt (their clients are limited
     * by their forwarded address at the request).
     */
    maxSocketsPerIp: z.number().int().min(1).max(1_000_000).optional(),
    /** A request must send its headers within this, and all of itself within requestTimeoutMs. */
    headersTimeoutMs: int(100, 600_000, 10_000),
    requestTimeoutMs: int(100, 3_600_000, 30_000),
    /**
     * WebSocket connections one client address bucket may open: bursts (default
     * max(32, maxConnectionsPerIp)) and sustained per second.
     */
    connectBurstPerIp: z.number().int().min(1).max(10_000_000).optional(),
    connectsPerSecondPerIp: z.number().positive().max(1_000_000).default(4),
    /** New sessions (hello without resume) per client address bucket: bursts (same default) and per second. */
    sessionBurstPerIp: z.number().int().min(1).max(10_000_000).optional(),
    sessionsPerSecondPerIp: z.number().positive().max(1_000_000).default(2),
    /** `/api/network` is rebuilt at most this often (0: every request); a GET flood then costs a copy. */
    networkCacheMs: int(0, 60_000, 1000),
    /**
     * Frame bytes one connection may send: bursts and sustained per second. Checked before parsing,
     * so a flood of large frames costs the server a byte count, not a JSON parse each.
     */
    bytesBurst: int(64 * 1024, 1 << 30, 512 * 1024),
    bytesPerSecond: int(1024, 1 << 30, 128 * 1024),
    /** The same for all connections of one client address bucket together. */
    bytesBurstPerIp: int(64 * 1024, 1 << 30, 2 * 1024 * 1024),
    bytesPerSecondPerIp: int(1024, 1 << 30, 512 * 1024),
    /**
     * Frames all connections of one client address bucket may send together: bursts and per second
     * (per connection: `rateBurst`, `ratePerSecond`). Over any of these budgets the sender's socket
     * is paused (not read) until the budget refills, see frame-gate.ts.
     */
    framesBurstPerIp: int(1, 10_000_000, 400),
    framesPerSecondPerIp: z.number().positive().max(10_000_000).default(100),
    /**
     * After a connection is cut for flooding (1008), its address bucket's new WebSocket upgrades are
     * held back this long (doubling per further cut, up to `holdBackMaxMs`; 0 turns it off), before
     * the handshake: a flooder cannot reconnect at once and flood again. See frame-gate.ts.
     */
    holdBackMs: int(0, 3_600_000, 1_000),
    holdBackMaxMs: int(0, 3_600_000, 60_000),
    /**
     * Relay quotas per (sender, receiver) pair: signals in a burst and per second, connection ids
     * open at once, and the largest SDP relayed. A sender over quota gets PROTOCOL_RATE_LIMITED.
     */
    relayPairBurst: int(1, 100_000, 60),
    relayPairPerSecond: z.number().positive().max(100_000).default(10),
    relayConnIdsPerPair: int(1, 10_000, 4),
    maxSdpBytes: int(1024, 48 * 1024, 16 * 1024),
    /**
     * Signal bytes relayed to one receiver from everyone together: bursts and per second. Over it the
     * senders are refused; the receiver is never cut for someone else's flood.
     */
    relayInboundBurstBytes: int(16 * 1024, 1 << 30, 512 * 1024),
    relayInboundBytesPerSecond: int(1024, 1 << 30, 128 * 1024),
    /** A receiver with more unsent output than this is "busy": signals to it are refused at the sender. */
    relayBusyBytes: int(1024, 1 << 30, 256 * 1024),
    /** `peer-unreachable` reports one peer may send: burst, and one more every this many ms. */
    reportBurst: int(1, 1000, 4),
    reportRefillMs: int(1, 3_600_000, 10_000),
    /** How long the server waits for its own probe (a WebSocket ping) of an accused peer. */
    probeTimeoutMs: int(10, 60_000, 3_000),
    /** A contributor's capability changes take effect at most this often (re-plan hysteresis). */
    profileMinIntervalMs: int(0, 3_600_000, 30_000),
    /** A peer serves a ready assignment this long before it counts as verified. */
    verifyAfterMs: int(0, 3_600_000, 60_000),
    /** The share of a model's bytes one unverified peer may hold while the others can carry the rest. */
    maxUnverifiedShare: z.number().positive().max(1).default(0.5),
    /** Memory believed of a peer before it has served anything, bytes. */
    initialTrustedMemoryBytes: int(1, 2 ** 50, 4 * 1024 ** 3),
  })
  .strict()
  .refine((l) => l.heartbeatTimeoutMs > l.heartbeatMs, {
    message: 'heartbeatTimeoutMs must exceed heartbeatMs',
    path: ['heartbeatTimeoutMs'],
  })
  .refine((l) => l.requestTimeoutMs >= l.headersTimeoutMs, {
    message: 'requestTimeoutMs must be at least headersTimeoutMs',
    path: ['requestTimeoutMs'],
  });
export type Limits = z.infer<typeof limitsSchema>;

/** The whole server configuration. */
export const signalingConfigSchema = z
  .object({
    port: z.number().int().min(0).max(65535).default(8080),
    host: z.string().min(1).max(255).default('127.0.0.1'),
    /** Directory of the built web app (served with COOP/COEP). */
    root: z.string().min(1).default('dist'),
    /** Loopback-only ICE filtering and the test hooks. */
    testMode: z.boolean().default(false),
    /** Bench/test hook: relay between any two known peers. Rejected unless testMode. */
    allowAnyRelay: z.boolean().default(false),
    /** Include the embedded stories260K model. */
    defaultModel: z.boolean().default(true),
    models: z.array(catalogEntrySchema).max(100).default([]),
    /** Origins allowed to open the WebSocket besides the server's own. */
    allowedOrigins: z.array(originSchema).max(100).default([]),
    /**
     * Host header values accepted besides the defaults (the listen address, localhost, 127.0.0.1 and
     * [::1], each with the listening port): `name` (any port) or `name:port`. Anything else is
     * refused (421), which stops DNS-rebinding pages from reaching the API under their own name.
     */
    allowedHosts: z.array(hostPatternSchema).max(100).default([]),
    /**
     * Addresses of reverse proxies whose `X-Forwarded-For` is believed. From anyone else the header
     * is ignored and the socket address is the client's.
     */
    trustProxy: z.array(ipAddressSchema).max(100).default([]),
    objective: objectiveSchema.default('throughput'),
    /** Result validation: the security level of a request that asks for none (`--security-level`). */
    securityLevel: z.number().int().min(1).max(3).default(1),
    /** Result validation: per model id, the lowest level any request gets (`--model-security id=k`). */
    modelSecurity: z.record(z.string().min(1).max(200), z.number().int().min(1).max(3)).default({}),
    /**
     * Whether validator rings must be on networks (IPv6 /64, IPv4 address) other than the primary
     * ring's (`--validator-networks distinct|any`). Default: distinct, but any in test mode, where
     * every tab connects from 127.0.0.1.
     */
    validatorNetworks: z.enum(['distinct', 'any']).optional(),
    /**
     * Fixed milliseconds the planner charges per ring stage per token (the cost model's
     * `stageOverheadMs`): an ORT run's dispatch, worker hand-offs and a loopback/LAN hop's framing,
     * which a small model's token costs besides its FLOPs. See {@link DEFAULT_STAGE_OVERHEAD_MS}.
     */
    stageOverheadMs: z.number().min(0).max(10_000).default(DEFAULT_STAGE_OVERHEAD_MS),
    /**
     * Measured links below this many Mbit/s are not planned on, and a peer whose every measured link
     * is below it is left out of rings, saying why (ring-planning.ts; `--min-link-mbps`). 0: no minimum.
     */
    minLinkMbps: z.number().min(0).max(1_000_000).default(0),
    /**
     * Peers below this many TFLOPS are category C, which take a model only whole (eligibility.ts).
     * 0 lets every peer take a shard: simulations of many CPU tabs (`npm run swarm`) use it so that
     * pages declaring their real wasm speed can still be split over.
     */
    categoryCBelowTflops: z
      .number()
      .min(0)
      .max(DEFAULT_CATEGORY_THRESHOLDS.aAboveTflops)
      .default(DEFAULT_CATEGORY_THRESHOLDS.cBelowTflops),
    /** Passed to peers in `welcome`; empty means host candidates only (LAN / loopback). */
    iceServers: z.array(iceServerSchema).max(20).default([]),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    limits: limitsSchema.prefault({}),
    /** The OpenAI-compatible API under `/v1` (api/api-config.ts). */
    api: apiConfigSchema.prefault({}),
    /**
     * Cluster mode (cluster/cluster-node.ts): the Redis server several instances share state through
     * (`redis://host:port[/db]`). Absent: one process, everything in memory.
     */
    redis: z
      .string()
      .regex(/^rediss?:\/\/\S+$/, 'a redis:// or rediss:// URL')
      .max(500)
      .optional(),
    /** This instance's name in the cluster (default: random); shown by `/healthz` and `/api/network`. */
    instanceId: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/)
      .optional(),
    /** The coordinator lease (ms): a lapsed lease is taken over within about this long. */
    clusterLeaseMs: z.number().int().min(500).max(60_000).default(3000),
    /** Refuse a `hello` without a signed-in identity token (`AUTH_IDENTITY_REQUIRED`); default anonymous allowed. */
    requireIdentity: z.boolean().default(false),
    /** EIP-155 chain id sign-in messages must name. */
    chainId: z
      .number()
      .int()
      .positive()
      .max(2 ** 53)
      .default(1),
    /** JSON-RPC URL of that chain: sign-ins by smart accounts (EIP-1271/ERC-6492) are verified through it. */
    chainRpc: z.url({ protocol: /^https?$/ }).optional(),
    /**
     * The chain's JSON-RPC URL as pages may use it (`--chain-rpc-public`): `/api/stake` tells the
     * Contribute page, which sends a browser-kept key's `stake()` through it. Never `chainRpc`
     * itself (it may hold a provider's key); absent: only an injected wallet can stake from the page.
     */
    chainRpcPublic: z.url({ protocol: /^https?$/ }).optional(),
    /**
     * The ledger (credits for validated work): `dataDir` is an embedded PGlite database directory,
     * `database` a `postgres://` URL (same SQL). Neither: no ledger (the programmatic default; the
     * command line defaults to `./.ringwork-data` outside test mode).
     */
    dataDir: z.string().min(1).max(4096).optional(),
    /**
     * Stake (stake/): the RingworkStake contract on the `chainRpc` chain. With it, ring membership of
     * a model whose minimum (`minStakeWei`, per model `modelMinStakeWei`) is above 0 needs that much
     * active stake; decimal wei strings (amounts pass 2^53).
     */
    stakeContract: z
      .string()
      .regex(/^0x[0-9a-fA-F]{40}$/, 'a contract address is 0x + 40 hex digits')
      .optional(),
    /** File holding the slasher's private key (0x + 64 hex): the key the contract lets slash. */
    slasherKeyFile: z.string().min(1).max(4096).optional(),
    minStakeWei: z
      .string()
      .regex(/^\d{1,78}$/, 'a minimum stake is a whole number of wei')
      .default('0'),
    modelMinStakeWei: z
      .record(z.string(), z.string().regex(/^\d{1,78}$/, 'a whole number of wei'))
      .default({}),
    /**
     * Per security level 1–3 (`--level-min-stake 2=WEI,3=WEI`): every peer in a ring serving a
     * level-k request (primary or validator) needs the largest of these at or below k, on top of
     * the model's minimum; decimal wei like `minStakeWei`.
     */
    levelMinStakeWei: z
      .record(z.string(), z.string().regex(/^\d{1,78}$/, 'a whole number of wei'))
      .default({}),
    /** Wei taken per proven deviation; absent: all of the peer's stake. */
    slashWei: z
      .string()
      .regex(/^\d{1,78}$/, 'a whole number of wei')
      .optional(),
    /** How long a stake read is trusted before it is read again (ms). */
    stakeCacheMs: z.number().int().min(0).max(3_600_000).default(15_000),
    database: z
      .string()
      .max(4096)
      .regex(/^postgres(ql)?:\/\//, 'a database is a postgres:// URL')
      .optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.allowAnyRelay && !c.testMode)
      ctx.addIssue({
        code: 'custom',
        path: ['allowAnyRelay'],
        message: 'allowAnyRelay (--allow-any-relay) is a bench hook and requires test mode (--test-mode)',
      });
    if (c.stakeContract && !c.chainRpc)
      ctx.addIssue({
        code: 'custom',
        path: ['stakeContract'],
        message: '--stake-contract needs the chain it lives on: --chain-rpc URL',
      });
    if (
      !c.stakeContract &&
      (c.slasherKeyFile ||
        c.minStakeWei !== '0' ||
        Object.keys(c.modelMinStakeWei).length ||
        Object.keys(c.levelMinStakeWei).length)
    )
      ctx.addIssue({
        code: 'custom',
        path: ['stakeContract'],
        message: '--slasher-key and --min-stake need the stake contract: --stake-contract ADDR',
      });
    for (const k of Object.keys(c.levelMinStakeWei))
      if (!/^[1-3]$/.test(k))
        ctx.addIssue({
          code: 'custom',
          path: ['levelMinStakeWei', k],
          message: `"${k}" is not a security level: --level-min-stake takes k=WEI with k 1, 2 or 3`,
        });
    const seen = new Set<string>();
    c.models.forEach((m, i) => {
      if (seen.has(m.id))
        ctx.addIssue({ code: 'custom', path: ['models', i, 'id'], message: `duplicate model id "${m.id}"` });
      seen.add(m.id);
    });
  });

/** A validated configuration (all defaults filled in). */
export type SignalingConfig = z.infer<typeof signalingConfigSchema>;
/** What callers may pass: any subset, validated and completed by {@link resolveConfig}. */
export type SignalingConfigInput = z.input<typeof signalingConfigSchema>;

/** Validates a configuration object; throws `INVALID_ARGUMENT` naming every bad field. */
export function resolveConfig(input: SignalingConfigInput | SignalingConfig = {}): SignalingConfig {
  return parseWithSchema(signalingConfigSchema, input, 'INVALID_ARGUMENT', 'signaling server configuration');
}

/** Parses `id=path[,id=path...]` model lists. */
export function parseModelList(spec: string): Array<{ id: string; path: string }> {
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((item) => {
      const eq = item.indexOf('=');
      if (eq <= 0 || eq === item.length - 1) {
        throw new RingworkError('INVALID_ARGUMENT', `--model expects <id>=<path-or-dir>, got "${item}".`, {
          details: { item },
        });
      }
      return { id: item.slice(0, eq), path: item.slice(eq + 1) };
    });
}

/** Reads a JSON catalog file: an array of entries or `{ "models": [...] }`. */
export function readCatalogFile(file: string): unknown[] {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `Cannot read the catalog file ${file}: ${(e as Error).message}`,
      {
        details: { file },
        cause: e,
      },
    );
  }
  if (Array.isArray(data)) return data;
  if (typeof data === 'object' && data !== null && Array.isArray((data as { models?: unknown }).models)) {
    return (data as { models: unknown[] }).models;
  }
  throw new RingworkError(
    'INVALID_ARGUMENT',
    `The catalog file ${file} must hold an array of models or {"models": [...]}.`,
    {
      details: { file },
    },
  );
}

const dropUndefined = (o: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
const truthy = (s: string | undefined): boolean => s !== undefined && /^(1|true|yes|on)$/i.test(s.trim());
// Non-numeric text becomes NaN so that zod reports "expected number" against the right field.
const num = (s: string | undefined): number | undefined =>
  s === undefined || s.trim() === '' ? undefined : Number(s);
const list = (values: readonly string[] | undefined, env: string | undefined): string[] =>
  (values && values.length > 0 ? values : env ? [env] : [])
    .flatMap((v) => v.split(','))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

/**
 * Builds the configuration from command-line flags and environment variables. Throws
 * `INVALID_ARGUMENT` for unknown flags and invalid values.
 */
export function parseCliConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): SignalingConfig {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        root: { type: 'string' },
        'test-mode': { type: 'boolean' },
        'allow-any-relay': { type: 'boolean' },
        model: { type: 'string', multiple: true },
        catalog: { type: 'string' },
        'no-default-model': { type: 'boolean' },
        'allow-origin': { type: 'string', multiple: true },
        'allow-host': { type: 'string', multiple: true },
        'trust-proxy': { type: 'string', multiple: true },
        objective: { type: 'string' },
        'security-level': { type: 'string' },
        'model-security': { type: 'string', multiple: true },
        'validator-networks': { type: 'string' },
        'stage-overhead-ms': { type: 'string' },
        'min-link-mbps': { type: 'string' },
        'category-c-below-tflops': { type: 'string' },
        'log-level': { type: 'string' },
        'max-connections-per-ip': { type: 'string' },
        'max-connections': { type: 'string' },
        'max-sessions': { type: 'string' },
        'rate-burst': { type: 'string' },
        'rate-per-second': { type: 'string' },
        'heartbeat-ms': { type: 'string' },
        'heartbeat-timeout-ms': { type: 'string' },
        'hello-timeout-ms': { type: 'string' },
        'resume-grace-ms': { type: 'string' },
        'replan-debounce-ms': { type: 'string' },
        'max-http-sockets': { type: 'string' },
        'max-sockets-per-ip': { type: 'string' },
        'headers-timeout-ms': { type: 'string' },
        'request-timeout-ms': { type: 'string' },
        'connects-per-second-per-ip': { type: 'string' },
        'connect-burst-per-ip': { type: 'string' },
        'session-burst-per-ip': { type: 'string' },
        'sessions-per-second-per-ip': { type: 'string' },
        'frames-per-second-per-ip': { type: 'string' },
        'frames-burst-per-ip': { type: 'string' },
        'bytes-per-second-per-ip': { type: 'string' },
        'bytes-burst-per-ip': { type: 'string' },
        'relay-pair-per-second': { type: 'string' },
        'relay-pair-burst': { type: 'string' },
        'hold-back-ms': { type: 'string' },
        'hold-back-max-ms': { type: 'string' },
        'network-cache-ms': { type: 'string' },
        'max-unverified-share': { type: 'string' },
        'api-keys': { type: 'string' },
        'api-anonymous': { type: 'boolean' },
        'api-local-fallback': { type: 'boolean' },
        'api-max-streams': { type: 'string' },
        'api-max-streams-per-key': { type: 'string' },
        'api-requests-per-minute': { type: 'string' },
        'api-tokens-per-hour': { type: 'string' },
        redis: { type: 'string' },
        'instance-id': { type: 'string' },
        'cluster-lease-ms': { type: 'string' },
        'require-identity': { type: 'boolean' },
        'chain-id': { type: 'string' },
        'chain-rpc': { type: 'string' },
        'chain-rpc-public': { type: 'string' },
        'data-dir': { type: 'string' },
        database: { type: 'string' },
        'no-ledger': { type: 'boolean' },
        'stake-contract': { type: 'string' },
        'slasher-key': { type: 'string' },
        // The issue's name for the same key: the coordinator's key is the one the contract lets slash.
        'coordinator-key-file': { type: 'string' },
        'min-stake': { type: 'string' },
        'model-min-stake': { type: 'string', multiple: true },
        'level-min-stake': { type: 'string', multiple: true },
        'slash-wei': { type: 'string' },
        'stake-cache-ms': { type: 'string' },
      },
    }));
  } catch (e) {
    throw new RingworkError('INVALID_ARGUMENT', (e as Error).message, { cause: e });
  }
  const str = (k: string): string | undefined => values[k] as string | undefined;
  const models: unknown[] = [];
  const catalogFile = str('catalog') ?? env.RINGWORK_CATALOG;
  if (catalogFile) models.push(...readCatalogFile(catalogFile));
  for (const spec of list(values.model as string[] | undefined, env.RINGWORK_MODELS))
    models.push(...parseModelList(spec));
  const limits: Record<string, number | undefined> = {
    maxConnectionsPerIp: num(str('max-connections-per-ip') ?? env.RINGWORK_MAX_CONNECTIONS_PER_IP),
    maxConnections: num(str('max-connections')),
    maxSessions: num(str('max-sessions')),
    rateBurst: num(str('rate-burst')),
    ratePerSecond: num(str('rate-per-second')),
    heartbeatMs: num(str('heartbeat-ms')),
    heartbeatTimeoutMs: num(str('heartbeat-timeout-ms')),
    helloTimeoutMs: num(str('hello-timeout-ms')),
    resumeGraceMs: num(str('resume-grace-ms')),
    replanDebounceMs: num(str('replan-debounce-ms')),
    maxHttpSockets: num(str('max-http-sockets')),
    maxSocketsPerIp: num(str('max-sockets-per-ip')),
    headersTimeoutMs: num(str('headers-timeout-ms')),
    requestTimeoutMs: num(str('request-timeout-ms')),
    connectsPerSecondPerIp: num(str('connects-per-second-per-ip')),
    connectBurstPerIp: num(str('connect-burst-per-ip')),
    sessionBurstPerIp: num(str('session-burst-per-ip')),
    sessionsPerSecondPerIp: num(str('sessions-per-second-per-ip')),
    framesPerSecondPerIp: num(str('frames-per-second-per-ip')),
    framesBurstPerIp: num(str('frames-burst-per-ip')),
    bytesPerSecondPerIp: num(str('bytes-per-second-per-ip')),
    bytesBurstPerIp: num(str('bytes-burst-per-ip')),
    relayPairPerSecond: num(str('relay-pair-per-second')),
    relayPairBurst: num(str('relay-pair-burst')),
    holdBackMs: num(str('hold-back-ms')),
    holdBackMaxMs: num(str('hold-back-max-ms')),
    networkCacheMs: num(str('network-cache-ms')),
    maxUnverifiedShare: num(str('max-unverified-share')),
  };
  for (const k of Object.keys(limits)) if (limits[k] === undefined) delete limits[k];
  const raw: Record<string, unknown> = {
    port: num(str('port') ?? env.PORT),
    host: str('host') ?? env.HOST,
    root: str('root'),
    testMode: values['test-mode'] === true || truthy(env.RINGWORK_TEST_MODE),
    allowAnyRelay: values['allow-any-relay'] === true,
    defaultModel: values['no-default-model'] !== true,
    models,
    allowedOrigins: list(values['allow-origin'] as string[] | undefined, env.RINGWORK_ALLOWED_ORIGINS),
    allowedHosts: list(values['allow-host'] as string[] | undefined, env.RINGWORK_ALLOWED_HOSTS),
    trustProxy: list(values['trust-proxy'] as string[] | undefined, env.RINGWORK_TRUST_PROXY),
    objective: str('objective'),
    securityLevel: num(str('security-level') ?? env.RINGWORK_SECURITY_LEVEL),
    modelSecurity: modelSecurityOf(values['model-security'] as string[] | undefined),
    validatorNetworks: str('validator-networks'),
    stageOverheadMs: num(str('stage-overhead-ms') ?? env.RINGWORK_STAGE_OVERHEAD_MS),
    minLinkMbps: num(str('min-link-mbps') ?? env.RINGWORK_MIN_LINK_MBPS),
    categoryCBelowTflops: num(str('category-c-below-tflops')),
    logLevel: str('log-level') ?? env.LOG_LEVEL,
    limits,
    api: dropUndefined({
      keysFile: str('api-keys') ?? env.RINGWORK_API_KEYS,
      anonymous: values['api-anonymous'] === true || undefined,
      localFallback: values['api-local-fallback'] === true || undefined,
      maxConcurrentStreams: num(str('api-max-streams')),
      maxStreamsPerKey: num(str('api-max-streams-per-key')),
      requestsPerMinute: num(str('api-requests-per-minute')),
      tokensPerHour: num(str('api-tokens-per-hour')),
    }),
    redis: str('redis') ?? env.RINGWORK_REDIS_URL,
    instanceId: str('instance-id') ?? env.RINGWORK_INSTANCE_ID,
    clusterLeaseMs: num(str('cluster-lease-ms')),
  };
  const database = str('database') ?? env.RINGWORK_DATABASE;
  // The embedded ledger is on by default for a real deployment; test mode (many servers at once)
  // keeps it off unless a directory is named, so parallel test servers never share one.
  const dataDir =
    str('data-dir') ??
    env.RINGWORK_DATA_DIR ??
    (values['no-ledger'] === true || database !== undefined || raw.testMode === true
      ? undefined
      : DEFAULT_DATA_DIR);
  Object.assign(raw, {
    requireIdentity: values['require-identity'] === true || truthy(env.RINGWORK_REQUIRE_IDENTITY),
    chainId: num(str('chain-id') ?? env.RINGWORK_CHAIN_ID),
    chainRpc: str('chain-rpc') ?? env.RINGWORK_CHAIN_RPC,
    chainRpcPublic: str('chain-rpc-public'),
    dataDir: values['no-ledger'] === true ? undefined : dataDir,
    database: values['no-ledger'] === true ? undefined : database,
    stakeContract: str('stake-contract') ?? env.RINGWORK_STAKE_CONTRACT,
    slasherKeyFile: str('slasher-key') ?? str('coordinator-key-file') ?? env.RINGWORK_SLASHER_KEY_FILE,
    minStakeWei: str('min-stake') ?? env.RINGWORK_MIN_STAKE,
    modelMinStakeWei: modelMinStakeOf(values['model-min-stake'] as string[] | undefined),
    levelMinStakeWei: modelMinStakeOf(values['level-min-stake'] as string[] | undefined),
    slashWei: str('slash-wei'),
    stakeCacheMs: num(str('stake-cache-ms')),
  });
  for (const k of Object.keys(raw)) if (raw[k] === undefined) delete raw[k];
  return resolveConfig(raw);
}

/**
 * `--model-min-stake id=WEI[,id=WEI]` → `{ id: 'WEI' }`, and `--level-min-stake k=WEI[,k=WEI]` the
 * same way (bad entries are left for the schema to name).
 */
function modelMinStakeOf(flags: string[] | undefined): Record<string, string> | undefined {
  if (!flags?.length) return undefined;
  const out: Record<string, string> = {};
  for (const part of flags.flatMap((f) => f.split(','))) {
    const at = part.lastIndexOf('=');
    out[at > 0 ? part.slice(0, at).trim() : part.trim()] = at > 0 ? part.slice(at + 1).trim() : '';
  }
  return out;
}

/** `--model-security id=k[,id=k]` → `{ id: k }` (bad entries are left for the schema to name). */
function modelSecurityOf(flags: string[] | undefined): Record<string, unknown> | undefined {
  if (!flags?.length) return undefined;
  const out: Record<string, unknown> = {};
  for (const part of flags.flatMap((f) => f.split(','))) {
    const at = part.lastIndexOf('=');
    const id = at > 0 ? part.slice(0, at).trim() : part.trim();
    out[id] = at > 0 ? Number(part.slice(at + 1)) : Number.NaN;
  }
  return out;
}
