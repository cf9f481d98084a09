/**
 * The error contract across the signaling boundary: the real server (in-process, 127.0.0.1) answers
 * with `error` frames built from its RingworkError, and the browser's signaling client (run in Node
 * with `ws`) turns them back into RingworkErrors with the server's own code and details — including a
 * refusal before welcome, which used to surface only as the close that followed it.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { isRingworkError, RingworkError } from '../../shared/errors';
import {
  parseServerFrame,
  signalingErrorFromMessage,
  signalingErrorMessage,
} from '../../shared/protocol/signaling';
import { loadCatalog } from '../../signaling-server/src/catalog';
import { createSignalingServer, type SignalingServer } from '../../signaling-server/src/server';
import { createSignalingClient, type SignalingClient } from '../../web/src/network/signaling-client';

let server: SignalingServer;
let url: string;
const clients: SignalingClient[] = [];

beforeAll(async () => {
  server = createSignalingServer(
    {
      host: '127.0.0.1',
      port: 0,
      testMode: true,
      limits: { maxSessions: 1, replanDebounceMs: 20, heartbeatMs: 10_000, heartbeatTimeoutMs: 60_000 },
    },
    { logger: pino({ level: 'silent' }), catalog: await loadCatalog([]) },
  );
  const { port } = await server.start();
  url = `ws://127.0.0.1:${port}/ws`;
});
afterAll(async () => {
  for (const c of clients) c.stop();
  await server.stop();
});

function client(): SignalingClient {
  const c = createSignalingClient({
    url,
    roles: ['requester'],
    WebSocket: WebSocket,
  });
  clients.push(c);
  return c;
}

describe('errors across the signaling boundary', () => {
  it("a refusal after welcome reaches the client with the server's code and details", async () => {
    const c = client();
    await c.start();
    const error = c.next('error');
    c.send({
      type: 'signal',
      to: 'p_AAAAAAAAAAAAAAAA',
      payload: { kind: 'candidate', candidate: { candidate: '' } },
    });
    const e = signalingErrorFromMessage(await error);
    expect(e).toBeInstanceOf(RingworkError);
    expect(e).toMatchObject({ code: 'PROTOCOL_UNKNOWN_PEER', details: { to: 'p_AAAAAAAAAAAAAAAA' } });
  });

  it("a refusal before welcome rejects start() with the server's code, not a bare close", async () => {
    // maxSessions is 1 and the first client holds it.
    const e = await client()
      .start()
      .catch((x: unknown) => x);
    expect(isRingworkError(e, 'PROTOCOL_NOT_ALLOWED')).toBe(true);
    expect((e as RingworkError).details).toMatchObject({ maxSessions: 1 });
  });

  it('a reply that does not come in time is SIGNALING_REPLY_TIMEOUT', async () => {
    const c = clients[0]!;
    await expect(c.next('ring', 30)).rejects.toMatchObject({
      code: 'SIGNALING_REPLY_TIMEOUT',
      details: { type: 'ring', timeoutMs: 30 },
    });
  });
});

describe('signaling error frames', () => {
  it('round-trip a RingworkError (code, message, details) through the wire format', () => {
    const err = new RingworkError('PROTOCOL_RATE_LIMITED', 'Slow down.', { details: { limit: 50 } });
    const frame = parseServerFrame(JSON.stringify(signalingErrorMessage(err)));
    if (frame.type !== 'error') throw new Error('expected an error frame');
    expect(signalingErrorFromMessage(frame)).toMatchObject({
      code: 'PROTOCOL_RATE_LIMITED',
      message: 'Slow down.',
      details: { limit: 50 },
    });
  });

  it('deliver a code from a newer server as PROTOCOL_UNKNOWN_CODE instead of rejecting the frame', () => {
    const frame = parseServerFrame(
      JSON.stringify({ type: 'error', v: 1, code: 'SERVER_FUTURE_THING', message: 'new', details: { x: 1 } }),
    );
    if (frame.type !== 'error') throw new Error('expected an error frame');
    expect(frame.code).toBe('PROTOCOL_UNKNOWN_CODE');
    expect(signalingErrorFromMessage(frame).details).toEqual({ x: 1, remoteCode: 'SERVER_FUTURE_THING' });
  });

  it('still reject an error frame whose code is not a string', () => {
    expect(() => parseServerFrame(JSON.stringify({ type: 'error', v: 1, code: 7, message: 'm' }))).toThrow(
      expect.objectContaining({ code: 'PROTOCOL_BAD_FRAME' }),
    );
  });
});
