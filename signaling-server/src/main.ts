/**
 * `npm start`: the Ringwork signaling server. Serves the built web app (`dist/`, with COOP/COEP for
 * wasm threads) and the catalog's model files with Range support, `GET /healthz`, `GET /api/network`
 * and the WebSocket endpoint `/ws` (signaling + coordinator). Flags and environment: see config.ts.
 *
 * Prints `RINGWORK_LISTENING <port>` once listening: test harnesses that start it with `--port 0`
 * read the port from that line. SIGINT/SIGTERM close every connection and exit 0.
 */
import { isRingworkError } from '../../shared/errors.js';
import { parseCliConfig, type SignalingConfig } from './config.js';
import { createSignalingServer } from './server.js';

/** `--help`: what a newcomer reaches for first; every flag is in the README (one place to keep). */
const HELP = `usage: npm start -- [flags]     (the built app: tsx signaling-server/src/main.ts [flags])

Serves the web app, the models, the OpenAI-compatible API (/v1) and the signaling WebSocket (/ws).
Common flags:
  --port N, --host ADDR             where to listen (PORT, HOST; default 127.0.0.1:8080)
  --model id=path, --catalog FILE   more models besides the embedded stories260K
  --category-c-below-tflops T       0 lets CPU-class tabs take shards (default 5)
  --api-keys FILE, --api-anonymous, --api-local-fallback     the OpenAI-compatible API
  --data-dir DIR, --database URL, --no-ledger                 the ledger (default ./.ringwork-data)
  --redis URL                       one instance of a cluster sharing state through Redis
  --test-mode                       loopback-only ICE candidates and test-only page features
Every flag, its environment variable and its default: README.md, "Signaling server and
coordinator", and the sections on the API, cluster mode, identity and stake.
`;

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(HELP);
  process.exit(0);
}

let config: SignalingConfig;
try {
  config = parseCliConfig(argv, process.env);
} catch (e) {
  process.stderr.write(
    `usage error: ${e instanceof Error ? e.message : String(e)}\n(npm start -- --help lists the common flags)\n`,
  );
  process.exit(2);
}

const server = createSignalingServer(config);
try {
  const { port } = await server.start();
  // Machine-readable line for test harnesses that start the server on port 0.
  console.log(`RINGWORK_LISTENING ${port}`);
} catch (e) {
  process.stderr.write(
    isRingworkError(e)
      ? `error [${e.code}]: ${e.message}\n`
      : `${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
  );
  process.exit(1);
}

const shutdown = (signal: string): void => {
  // A second signal while stopping means "now".
  process.once(signal, () => process.exit(130));
  server.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGINT', () => shutdown('SIGINT'));
process.once('SIGTERM', () => shutdown('SIGTERM'));
