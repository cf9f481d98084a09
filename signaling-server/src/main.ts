/**
 * `npm start`: serves the built web app (with COOP/COEP for wasm threads) and the embedded model
 * files with Range support, plus `GET /healthz`. WebRTC signaling and the coordinator are added
 * by the signaling-server issue.
 */
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { serveStatic } from './static-files.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT ?? '8080' },
    host: { type: 'string', default: process.env.HOST ?? '127.0.0.1' },
    root: { type: 'string', default: 'dist' },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be an integer 0..65535, got "${values.port}".`);
  process.exit(2);
}
const log = pino({ name: 'ringwork' });
const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ ok: true }));
    return;
  }
  serveStatic(values.root!, req, res)
    .then((served) => {
      if (!served) res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    })
    .catch((e: unknown) => {
      log.error({ err: e, url: req.url }, 'static file error');
      if (!res.headersSent) res.writeHead(500).end();
    });
});
server.listen(port, values.host, () => {
  const addr = server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  log.info({ url: `http://${values.host}:${actual}/` }, 'Ringwork is serving');
  // Machine-readable line for test harnesses that start the server on port 0.
  console.log(`RINGWORK_LISTENING ${actual}`);
});
const stop = () => server.close(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
