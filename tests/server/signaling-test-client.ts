/**
 * A WebSocket test client for the signaling server: every frame the server sends is parsed with the
 * protocol's own `parseServerFrame`, so a test also fails when the server emits an invalid frame.
 */
import { request } from 'node:http';
import { WebSocket } from 'ws';
import { parseServerFrame, type ServerMessage, type ServerMessageOf } from '../../shared/protocol/signaling';

/** A connected test client. */
export interface TestClient {
  readonly ws: WebSocket;
  /** Every message received so far, in order. */
  readonly messages: ServerMessage[];
  /** Frames the server sent that do not parse (must stay empty). */
  readonly violations: string[];
  /** Resolves when the socket closes. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Sends an object (as JSON), a raw string, or binary. */
  send(frame: unknown): void;
  /** The next not-yet-consumed message of `type` (waits up to `timeoutMs`). */
  next<T extends ServerMessage['type']>(type: T, timeoutMs?: number): Promise<ServerMessageOf<T>>;
  /** Resolves true if a message of `type` arrives within `ms` (it is not consumed). */
  receives(type: ServerMessage['type'], ms: number): Promise<boolean>;
  close(): void;
}

/** Connects to `ws://host:port/ws` (or `path`). */
export function connect(
  port: number,
  opts: {
    origin?: string;
    path?: string;
    /** False: never answer the server's pings (a peer whose socket is dead though its frames were not). */
    autoPong?: boolean;
    headers?: Record<string, string>;
  } = {},
): Promise<TestClient> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${opts.path ?? '/ws'}`, {
    ...(opts.origin ? { origin: opts.origin } : {}),
    ...(opts.autoPong === false ? { autoPong: false } : {}),
    ...(opts.headers ? { headers: opts.headers } : {}),
  });
  const messages: ServerMessage[] = [];
  const consumed = new Set<number>();
  const violations: string[] = [];
  const waiters: Array<() => void> = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? '<binary>' : data.toString();
    try {
      messages.push(parseServerFrame(text));
    } catch (e) {
      violations.push(`${(e as Error).message}: ${text.slice(0, 200)}`);
    }
    wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      wake();
    });
  });
  ws.on('error', () => undefined);
  const find = (type: string): number => messages.findIndex((m, i) => m.type === type && !consumed.has(i));
  const client: TestClient = {
    ws,
    messages,
    violations,
    closed,
    send(frame) {
      if (ws.readyState !== WebSocket.OPEN) return;
      if (typeof frame === 'string' || Buffer.isBuffer(frame)) ws.send(frame);
      else ws.send(JSON.stringify(frame));
    },
    async next(type, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = find(type);
        if (i >= 0) {
          consumed.add(i);
          return messages[i] as never;
        }
        const left = deadline - Date.now();
        if (left <= 0 || ws.readyState === WebSocket.CLOSED) {
          throw new Error(
            `no "${type}" message within ${timeoutMs} ms (state ${ws.readyState}); got: ${messages.map((m) => m.type).join(', ')}`,
          );
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
    async receives(type, ms) {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        if (find(type) >= 0) return true;
        await new Promise((r) => setTimeout(r, 10));
      }
      return find(type) >= 0;
    },
    close() {
      ws.close();
    },
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client));
    ws.once('unexpected-response', (_req, res) =>
      reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)),
    );
    ws.once('error', reject);
  });
}

/** Attempts a connection that should be refused; resolves with the HTTP status (or 0 if it opened). */
export function upgradeStatus(
  port: number,
  opts: { origin?: string; path?: string; headers?: Record<string, string> } = {},
): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${opts.path ?? '/ws'}`, {
      ...(opts.origin ? { origin: opts.origin } : {}),
      ...(opts.headers ? { headers: opts.headers } : {}),
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? -1);
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      resolve(0);
      ws.close();
    });
    ws.on('error', () => resolve(-1));
  });
}

/** GETs a path on the server; resolves with status and body. */
export function httpGet(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** True when `/healthz` answers 200 {ok:true}. */
export async function healthy(port: number): Promise<boolean> {
  const r = await httpGet(port, '/healthz');
  return r.status === 200 && (JSON.parse(r.body) as { ok?: boolean }).ok === true;
}

/** Says hello and returns the welcome. */
export async function hello(
  c: TestClient,
  roles: Array<'contributor' | 'requester'> = ['contributor', 'requester'],
  extra: Record<string, unknown> = {},
): Promise<ServerMessageOf<'welcome'>> {
  c.send({ type: 'hello', v: 1, roles, ...extra });
  return c.next('welcome');
}

/** A capability that the default cost model files as category B with `memoryBytes`. */
export function capability(memoryBytes: number, tflops = 10): Record<string, unknown> {
  return { tflops, bandwidthGBps: 100, memoryBytes, backend: 'wasm' };
}
