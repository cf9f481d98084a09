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

let config: SignalingConfig;
try {
  config = parseCliConfig(process.argv.slice(2), process.env);
} catch (e) {
  process.stderr.write(`usage error: ${e instanceof Error ? e.message : String(e)}\n`);
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
