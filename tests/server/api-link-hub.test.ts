/**
 * The API's links to ring stages over their signaling sockets: the server's hub
 * (signaling-server/src/api/api-link-hub.ts) and a contributor's acceptor (shared/app/api-links.ts),
 * wired through the real signaling schemas (every frame serialised and parsed as on the socket).
 */
import { describe, expect, it, vi } from 'vitest';
import { acceptApiLinks } from '../../shared/app/api-links';
import type { SignalingPort } from '../../shared/app/network-port';
import { isRingworkError } from '../../shared/errors';
import {
  parseClientFrame,
  parseServerFrame,
  SIGNALING_VERSION,
  type ServerMessage,
} from '../../shared/protocol/signaling';
import { createListeners, type Listeners } from '../../shared/transport/emitter';
import type { PeerLink } from '../../shared/transport/types';
import { createApiLinkHub, type ApiLinkHub } from '../../signaling-server/src/api/api-link-hub';

const STAGE = 'p_stage00000000000';
const REQUESTER = 'api-req0000000001';

interface Wire {
  hub: ApiLinkHub;
  /** Links the stage accepted. */
  accepted: PeerLink[];
  /** Server → stage frames, as sent. */
  toStage: ServerMessage[];
  /** Makes the stage's socket go away (deliveries fail). */
  cut(): void;
  stage: ReturnType<typeof acceptApiLinks>;
}

function wire(o: { maxLinks?: number; framesPerSecond?: number } = {}): Wire {
  const listeners = new Map<string, Listeners<unknown>>();
  const toStage: ServerMessage[] = [];
  let up = true;
  const port: SignalingPort = {
    send(m) {
      // As the socket does: serialised, then parsed by the server's schema.
      const parsed = parseClientFrame(JSON.stringify({ ...m, v: SIGNALING_VERSION }));
      if (parsed.type === 'api-link') queueMicrotask(() => hub.receive(STAGE, parsed));
    },
    on(type, h) {
      let l = listeners.get(type);
      if (!l) listeners.set(type, (l = createListeners()));
      return l.add(h as (m: unknown) => void);
    },
  };
  const hub: ApiLinkHub = createApiLinkHub({
    deliver(peer, msg) {
      if (!up || peer !== STAGE) return false;
      toStage.push(msg);
      const parsed = parseServerFrame(JSON.stringify(msg));
      queueMicrotask(() => listeners.get(parsed.type)?.emit(parsed));
      return true;
    },
    connectTimeoutMs: 2000,
    ...(o.framesPerSecond ? { framesPerSecondPerPeer: o.framesPerSecond } : {}),
  });
  const accepted: PeerLink[] = [];
  const stage = acceptApiLinks({
    signaling: port,
    onLink: (l) => accepted.push(l),
    ...(o.maxLinks ? { maxLinks: o.maxLinks } : {}),
  });
  return { hub, accepted, toStage, cut: () => (up = false), stage };
}

describe('API links over the signaling socket', () => {
  it('carry control messages both ways and tensors split into base64 pieces', async () => {
    const w = wire();
    const server = await w.hub.connect(STAGE, REQUESTER);
    expect(w.accepted).toHaveLength(1);
    const stage = w.accepted[0]!;
    // The stage sees the requester's id: the head answers on this link by it.
    expect(stage.remoteId).toBe(REQUESTER);
    const controls: unknown[] = [];
    stage.onControl((m) => controls.push(m));
    server.sendControl({ type: 'open', v: 1, session: 's1' });
    const tensors: Int32Array[] = [];
    stage.onTensor((t) => tensors.push(t.data as Int32Array));
    // 40,000 token ids = 160 KB: three tensor chunks, each sent as two or more pieces.
    const ids = Int32Array.from({ length: 40_000 }, (_, i) => (i * 7919) % 32_000);
    await server.sendTensor({
      session: 's1',
      step: 0,
      position: 0,
      kind: 'tokens',
      dtype: 'int32',
      shape: [ids.length],
      data: ids,
      trace: [],
    });
    await vi.waitFor(() => expect(tensors).toHaveLength(1));
    expect(Array.from(tensors[0]!)).toEqual(Array.from(ids));
    expect(controls).toEqual([{ type: 'open', v: 1, session: 's1' }]);
    expect(
      w.toStage.filter((m) => m.type === 'api-link' && m.frame.kind === 'binary').length,
    ).toBeGreaterThan(3);
    const back: unknown[] = [];
    server.onControl((m) => back.push(m));
    stage.sendControl({ type: 'token', v: 1, session: 's1', token: 42 });
    await vi.waitFor(() => expect(back).toEqual([{ type: 'token', v: 1, session: 's1', token: 42 }]));
  });

  it('closing either end closes the other; a closed link is forgotten on both sides', async () => {
    const w = wire();
    const a = await w.hub.connect(STAGE, REQUESTER);
    const b = await w.hub.connect(STAGE, 'api-req0000000002');
    expect(w.hub.size).toBe(2);
    const stageClosed: string[] = [];
    for (const l of w.accepted) l.onClose(() => stageClosed.push(l.remoteId));
    a.close();
    await vi.waitFor(() => expect(stageClosed).toEqual([REQUESTER]));
    const serverClosed: string[] = [];
    b.onClose((c) => serverClosed.push(c.reason));
    w.accepted[1]!.close();
    await vi.waitFor(() => expect(serverClosed).toEqual(['remote']));
    expect(w.hub.size).toBe(0);
    expect(w.stage.size).toBe(0);
  });

  it('a stage holds at most maxLinks: the next connect is refused with a typed error', async () => {
    const w = wire({ maxLinks: 2 });
    await w.hub.connect(STAGE, 'api-a');
    await w.hub.connect(STAGE, 'api-b');
    const e = await w.hub.connect(STAGE, 'api-c').catch((x: unknown) => x);
    expect(isRingworkError(e) && e.code).toBe('TRANSPORT_PEER_UNREACHABLE');
    expect(w.stage.size).toBe(2);
  });

  it('a stage without a socket fails the connect at once; a lost socket closes its links', async () => {
    const w = wire();
    const link = await w.hub.connect(STAGE, REQUESTER);
    const closed: string[] = [];
    link.onClose((c) => closed.push(c.reason));
    w.cut();
    w.hub.peerGone(STAGE);
    expect(closed).toEqual(['remote']);
    const e = await w.hub.connect(STAGE, REQUESTER).catch((x: unknown) => x);
    expect(isRingworkError(e) && e.code).toBe('TRANSPORT_PEER_UNREACHABLE');
    expect(w.hub.size).toBe(0);
  });

  it('frames for a link nobody opened are answered with close, and none is accepted without a requester', async () => {
    const w = wire();
    w.hub.receive(STAGE, { type: 'api-link', v: 1, link: 'nope', frame: { kind: 'text', text: '{}' } });
    expect(w.toStage).toEqual([
      { type: 'api-link', v: 1, link: 'nope', frame: { kind: 'close', reason: 'unknown link' } },
    ]);
    // An open without a requester id is not a link (the schema refuses a peer id as one, too).
    expect(() =>
      parseServerFrame(
        JSON.stringify({
          type: 'api-link',
          v: 1,
          link: 'x',
          frame: { kind: 'open', requester: 'p_stage00000000000' },
        }),
      ),
    ).toThrow();
  });

  it("the stage's api-link frames have their own budget, only while the server holds links to it", async () => {
    const w = wire({ framesPerSecond: 5 });
    const frame = Buffer.from(
      JSON.stringify({ type: 'api-link', v: 1, link: 'x', frame: { kind: 'close' } }),
    );
    expect(w.hub.admitFrame(STAGE, frame)).toBe(false); // no links: the frame gate decides
    await w.hub.connect(STAGE, REQUESTER);
    const other = Buffer.from(JSON.stringify({ type: 'heartbeat', v: 1, sentAt: 1 }));
    expect(w.hub.admitFrame(STAGE, other)).toBe(false); // not an api-link frame
    let admitted = 0;
    for (let i = 0; i < 50; i++) if (w.hub.admitFrame(STAGE, frame)) admitted++;
    // Burst of twice the rate, then the gate's budget applies again.
    expect(admitted).toBeGreaterThanOrEqual(9);
    expect(admitted).toBeLessThanOrEqual(11);
  });
});
