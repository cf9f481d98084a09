/**
 * Hostile requesters against a ring stage, as a stranger's tab could act over a DataChannel: used
 * by the regression tests of the "hostile tabs" issue and by `npm run bench:hostile`. Each attack
 * speaks the real wire protocol over real links; it only does what the protocol lets anyone do.
 */
import { RING_PROTOCOL_VERSION, parseRingControl } from '../../shared/ring/ring-protocol.js';
import type { MemoryTransportHub } from '../../shared/transport/memory-transport.js';
import { MAX_CHUNK_BYTES, encodeTensorFrames } from '../../shared/transport/tensor-frame.js';
import type { MessageChannelLike, PeerLink } from '../../shared/transport/types.js';
import { GREEDY, connectRequester, type MemoryStage } from './memory-ring.js';

/** What a session-exhaustion attack achieved. */
export interface ExhaustionReport {
  opened: number;
  /** Refusals the stages sent back, by error code. */
  refused: Record<string, number>;
  /** The attacker's link to the first stage (the only one its sessions can be ended on). */
  first: PeerLink;
  /** Closes the attacker's links. */
  close(): Promise<void>;
}

/**
 * `open` + a `promptLength`-token prefill, `sessions` times, never `end`: the attack that used to
 * pin ~90 MiB of KV per session and queue every other requester behind it.
 */
export async function sessionExhaustion(o: {
  hub: MemoryTransportHub;
  stages: MemoryStage[];
  attacker: string;
  sessions: number;
  promptLength: number;
  epoch?: number;
  vocabSize: number;
  /**
   * Keep the pressure on: whenever one of the attacker's sessions gets its token, end it and open
   * a fresh one with another full prefill (the most one identity can make a stage compute).
   */
  sustain?: boolean;
}): Promise<ExhaustionReport> {
  const { transport, first, head } = await connectRequester(o.hub, o.stages, o.attacker);
  const refused: Record<string, number> = {};
  let next = 0;
  let stopped = false;
  const count = (raw: unknown) => {
    try {
      const m = parseRingControl(raw);
      if (m.type === 'error') refused[m.code] = (refused[m.code] ?? 0) + 1;
      if (m.type === 'token' && o.sustain && !stopped && first.isOpen) {
        first.sendControl({ type: 'end', v: RING_PROTOCOL_VERSION, session: m.session, reason: 'again' });
        void attack().catch(() => undefined);
      }
    } catch {
      /* not ours */
    }
  };
  first.onControl(count);
  if (head !== first) head.onControl(count);
  const tokens = Int32Array.from({ length: o.promptLength }, (_, i) => 1 + (i % (o.vocabSize - 1)));
  const attack = () => {
    const session = `${o.attacker}-${next++}`;
    first.sendControl({
      type: 'open',
      v: RING_PROTOCOL_VERSION,
      session,
      epoch: o.epoch ?? 1,
      requester: o.attacker,
      sampler: GREEDY,
    });
    return first.sendTensor({
      session,
      step: 0,
      position: 0,
      kind: 'tokens',
      dtype: 'int32',
      shape: [tokens.length],
      data: tokens,
    });
  };
  const sends: Promise<void>[] = [];
  for (let i = 0; i < o.sessions; i++) sends.push(attack());
  await Promise.all(sends);
  return {
    get opened() {
      return next;
    },
    refused,
    first,
    close: () => {
      stopped = true;
      return transport.close();
    },
  };
}

/**
 * One chunk frame that declares a tensor of `declaredBytes` (shape [1, declaredBytes / 4] float32)
 * but carries only its first 64 KiB: the "frame bomb" that used to make a receiver allocate the
 * declared size at once.
 */
export function frameBomb(declaredBytes: number, session = 'bomb'): ArrayBuffer {
  const [frame] = encodeTensorFrames(
    {
      session,
      step: 0,
      position: 0,
      kind: 'hidden',
      dtype: 'float32',
      shape: [1, MAX_CHUNK_BYTES / 4],
      data: new Float32Array(MAX_CHUNK_BYTES / 4),
    },
    0,
  );
  const dv = new DataView(frame!);
  const sessionLen = dv.getUint8(32);
  dv.setUint16(22, Math.ceil(declaredBytes / MAX_CHUNK_BYTES), true); // chunkCount
  dv.setUint32(24, declaredBytes, true); // totalBytes
  dv.setUint32(34 + sessionLen + 4, declaredBytes / 4, true); // shape[1]
  return frame!;
}

/**
 * A channel to a peer that stopped reading: everything sent stays buffered, so a sender that
 * respects back-pressure waits forever unless it has a deadline.
 */
export function stalledChannel(): MessageChannelLike {
  return {
    readyState: 'open',
    bufferedAmount: 8 * 1024 * 1024,
    bufferedAmountLowThreshold: 0,
    binaryType: 'arraybuffer',
    send() {
      /* the peer never drains */
    },
    close() {
      /* nothing to release */
    },
    addEventListener() {
      /* it never answers */
    },
  };
}

/** Waits until `link` closes; resolves with the error it closed with (if any). */
export function closedWith(link: PeerLink): Promise<unknown> {
  return new Promise((resolve) => link.onClose((c) => resolve(c.error)));
}
