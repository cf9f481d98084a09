/**
 * Cluster mode's messaging between instances: each instance listens on its own channel only
 * (`rw:ch:inst:<id>`), and everything addressed to an instance within one turn of the event loop
 * goes over as one batch (one PUBLISH, one JSON.parse on the receiving side).
 *
 * Why targeted and batched: broadcasting the coordinator's messages to every instance made every
 * instance parse every message sent to every peer — O(peers) work per re-plan on each instance,
 * the cluster's scaling limit. Now an instance parses only what concerns the peers it holds, and a
 * re-plan that tells 5,000 peers of one instance their assignments is one publish to it.
 */
import type { RingworkErrorJSON } from '../../../shared/errors.js';
import type { ClientMessageOf, ServerMessage, ServerMessageOf } from '../../../shared/protocol/signaling.js';
import type { ForwardedOp } from './coordinator-proxy.js';
import { KEYS, type RedisStore } from './redis-store.js';

/** What one instance sends another. */
export type InstanceMessage =
  /**
   * A signal for a peer held by the receiving instance. `vouched`: the sender's instance found the
   * two introduced from what it knows (the sender's own assignment and rings); the receiver's
   * instance adds what it knows of the receiver.
   */
  | {
      kind: 'signal';
      from: string;
      fromInstance: string;
      vouched: boolean;
      msg: ClientMessageOf<'signal'>;
    }
  | { kind: 'error'; peer: string; error: RingworkErrorJSON }
  | { kind: 'release'; peer: string }
  /** The coordinator's message to a peer the receiving instance holds (null: it forgot the peer). */
  | { kind: 'out'; peer: string; msg: ServerMessage | null }
  /** The server API's frame (opened on instance `from`) for stage `peer`, held by the receiver. */
  | { kind: 'api-link'; from: string; peer: string; msg: ServerMessageOf<'api-link'> }
  /** Stage `peer`'s frame on a link the receiving instance's API opened. */
  | { kind: 'api-link-back'; peer: string; msg: ClientMessageOf<'api-link'> }
  /** The leader asks the holder of `peer` to probe it (an unanswered probe evicts it there). */
  | { kind: 'probe'; peer: string }
  /** A coordinator call forwarded to the leader by the instance holding `args[0]`. */
  | {
      kind: 'coord';
      from: string;
      op: ForwardedOp;
      args: unknown[];
      /** The peer has no session on `from`: the server's own API requester, not listed as a peer. */
      internal?: boolean;
      /**
       * `addPeer` and `setCapability`: the address `from` verified the peer's sign-in for (null: none).
       * The leader's stake gate judges the peer by it; it never comes from the peer's own words.
       */
      address?: string | null;
    };

/** Counters of one instance's bus (shown by `/healthz`, used by the bench to find the hot path). */
export interface BusStats {
  /** PUBLISH calls made (one per batch). */
  published: number;
  /** Messages sent, over all batches. */
  sent: number;
  /** Batches received and parsed. */
  received: number;
  /** Messages received, over all batches. */
  messages: number;
  /** Bytes of JSON parsed. */
  parsedBytes: number;
}

/** The bus. */
export interface ClusterBus {
  /**
   * Queues `msg` for `instance`; the batch goes out at the end of this turn. `onUndelivered` runs
   * when no instance listened (it is gone) or Redis refused the publish.
   */
  post(instance: string, msg: InstanceMessage, onUndelivered?: (e: unknown) => void): void;
  /** Parses one received batch (from the subscriber's `message` event). */
  parse(text: string): InstanceMessage[];
  stats(): BusStats;
}

/** Creates the bus over `store` (the caller subscribes to its own channel and calls parse). */
export function createClusterBus(
  store: Pick<RedisStore, 'publish'>,
  schedule: (fn: () => void) => void = setImmediate,
): ClusterBus {
  const stats: BusStats = { published: 0, sent: 0, received: 0, messages: 0, parsedBytes: 0 };
  const queues = new Map<
    string,
    { msgs: InstanceMessage[]; failed: Array<((e: unknown) => void) | undefined> }
  >();
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    const batches = [...queues];
    queues.clear();
    for (const [instance, q] of batches) {
      stats.published++;
      stats.sent += q.msgs.length;
      const fail = (e: unknown): void => {
        for (const f of q.failed) f?.(e);
      };
      store.publish(KEYS.chInstance(instance), q.msgs).then(
        (n) => {
          if (n === 0) fail(new Error(`instance ${instance} is not listening`));
        },
        (e: unknown) => fail(e),
      );
    }
  };
  return {
    post(instance, msg, onUndelivered) {
      let q = queues.get(instance);
      if (!q) {
        q = { msgs: [], failed: [] };
        queues.set(instance, q);
      }
      q.msgs.push(msg);
      q.failed.push(onUndelivered);
      if (!scheduled) {
        scheduled = true;
        schedule(flush);
      }
    },
    parse(text) {
      stats.received++;
      stats.parsedBytes += text.length;
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        return [];
      }
      const msgs = Array.isArray(v) ? (v as InstanceMessage[]) : [];
      stats.messages += msgs.length;
      return msgs;
    },
    stats: () => ({ ...stats }),
  };
}
