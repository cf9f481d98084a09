/**
 * The requester's view of the coordinator's rings: one `ring-request` per model (and security
 * level) subscribes, and every later change of that model's ring is pushed into the chat store's
 * `rings`. Waiting for a ring answer, for a change of it, and replacing a lost ring (reporting the
 * stall, waiting for the re-planned ring) all read that store.
 */
import type { StoreApi } from 'zustand/vanilla';
import { RingworkError } from '../errors.js';
import type { ServerMessageOf } from '../protocol/signaling.js';
import type { RingLoss, RingTarget } from '../ring/failover-pipeline.js';
import type { NetworkHandle } from './network-port.js';
import type { ChatState, RingAnswer } from './requester-types.js';

/** Options of {@link createRingFollower}. */
export interface RingFollowerOptions {
  store: StoreApi<ChatState>;
  /** How long to wait for the coordinator's first ring answer, ms (default 10 s). */
  ringTimeoutMs?: number;
  /** After reporting a stalled ring, how long to wait for its re-planned ring, ms (default 4 s). */
  stallGraceMs?: number;
}

/** Follows the coordinator's ring answers for the models this requester asked about. */
export interface RingFollower {
  /** Asks for `model`'s ring at level `k` (and spot checks) once per connection; later changes are pushed. */
  subscribe(net: NetworkHandle, model: string, k?: number, spot?: { f?: number }): void;
  /** Subscribes the current connection (if any) to `model` too. */
  follow(model: string): void;
  /**
   * The model's ring answer at security level `k` or above (default 1): the one held, or the next to
   * arrive (bounded by `ringTimeoutMs`).
   */
  ringFor(model: string, signal: AbortSignal, k?: number): Promise<RingAnswer>;
  /** Resolves once the model's ring answer differs from `key`, or after `ms` (never rejects but on abort). */
  ringChange(model: string, key: string, ms: number, signal: AbortSignal): Promise<void>;
  /** After a loss: reports the stall, waits for the re-planned ring (see below) and returns its target. */
  replaceRing(
    net: NetworkHandle,
    model: string,
    loss: RingLoss,
    signal: AbortSignal,
    targetOf: (r: ServerMessageOf<'ring'>) => RingTarget,
  ): Promise<RingTarget>;
  /** Unsubscribes; safe twice. */
  stop(): void;
}

/** Creates a {@link RingFollower} over the chat store. */
export function createRingFollower(o: RingFollowerOptions): RingFollower {
  const { store } = o;
  const set = (p: Partial<ChatState>) => store.setState(p);
  const get = () => store.getState();

  /** Per connection: the models subscribed to, and the unsubscribe functions. */
  let subscribed: { net: NetworkHandle; models: Set<string>; offs: (() => void)[] } | undefined;
  const subscribe = (net: NetworkHandle, model: string, k?: number, spot?: { f?: number }): void => {
    if (subscribed?.net !== net) {
      subscribed?.offs.forEach((f) => f());
      // A new connection (a reconnect): what the old one heard may be stale.
      set({ rings: {} });
      const put = (id: string, m: RingAnswer) => set({ rings: { ...get().rings, [id]: m } });
      subscribed = {
        net,
        models: new Set(),
        offs: [
          net.signaling.on('ring', (m) => put(m.model.id, m)),
          net.signaling.on('no-ring', (m) => put(m.model, m)),
        ],
      };
    }
    // A new security level is a new request (the coordinator answers with its validator rings).
    // Spot checks are a mode of k = 2 only (the wire refuses them with any other level).
    const spotAsked = k === 2 ? spot : undefined;
    const key = k === undefined ? model : `${model}@${k}${spotAsked ? `s${spotAsked.f ?? ''}` : ''}`;
    if (subscribed.models.has(key)) return;
    subscribed.models.add(key);
    if (k !== undefined)
      set({ rings: Object.fromEntries(Object.entries(get().rings).filter(([m]) => m !== model)) });
    // One request subscribes: the coordinator pushes every later change of this model's ring.
    net.signaling.send({
      type: 'ring-request',
      model,
      ...(k !== undefined
        ? { security: { v: 1 as const, k, degrade: false, ...(spotAsked ? { spot: spotAsked } : {}) } }
        : {}),
    });
  };

  const ringFor = (model: string, signal: AbortSignal, k = 1): Promise<RingAnswer> => {
    // An answer to an earlier, lower-level request of this tab (`start()` subscribes at the
    // server's default) can arrive after a level-k request was sent; taking it would run a k >= 2
    // question unvalidated, so it is skipped and the answer to the level-k request awaited.
    const fits = (r: RingAnswer | undefined): r is RingAnswer =>
      r !== undefined && (k < 2 || (r.security?.requested ?? 1) >= k);
    const now = get().rings[model];
    if (fits(now)) return Promise.resolve(now);
    const ms = o.ringTimeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const finish = (f: () => void) => {
        clearTimeout(timer);
        off();
        signal.removeEventListener('abort', onAbort);
        f();
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new RingworkError(
                'SIGNALING_COORDINATOR_TIMEOUT',
                `The coordinator did not answer the ring request within ${ms / 1000} s.`,
              ),
            ),
          ),
        ms,
      );
      const onAbort = () => finish(() => reject(new RingworkError('ABORTED', 'Generation was stopped.')));
      signal.addEventListener('abort', onAbort, { once: true });
      const off = store.subscribe((s) => {
        const r = s.rings[model];
        if (fits(r)) finish(() => resolve(r));
      });
    });
  };

  /** Resolves once the model's ring answer differs from `key`, or after `ms` (never rejects but on abort). */
  const ringChange = (model: string, key: string, ms: number, signal: AbortSignal): Promise<void> =>
    new Promise((resolve, reject) => {
      const keyOf = (r: RingAnswer | undefined) =>
        r?.type === 'ring' ? `${r.ringId}@${r.epoch}` : r ? `none:${r.reason}` : '';
      if (keyOf(get().rings[model]) !== key) return resolve();
      const finish = (f: () => void) => {
        clearTimeout(timer);
        off();
        signal.removeEventListener('abort', onAbort);
        f();
      };
      const timer = setTimeout(() => finish(resolve), ms);
      const onAbort = () => finish(() => reject(new RingworkError('ABORTED', 'Generation was stopped.')));
      signal.addEventListener('abort', onAbort, { once: true });
      const off = store.subscribe((s) => {
        if (keyOf(s.rings[model]) !== key) finish(resolve);
      });
    });

  /**
   * After a loss: tells the coordinator the ring stalled (it checks the peers itself; nobody is
   * evicted on this tab's word), waits for its re-planned ring — or, when none comes within the
   * grace, tries the same ring again — and fails with what is missing when no ring can be formed.
   */
  const replaceRing = async (
    net: NetworkHandle,
    model: string,
    loss: RingLoss,
    signal: AbortSignal,
    targetOf: (r: ServerMessageOf<'ring'>) => RingTarget,
  ): Promise<RingTarget> => {
    const key = `${loss.ring.ringId}@${loss.ring.epoch}`;
    const notReady =
      loss.cause === 'replanned' ||
      loss.error.code === 'RING_STALE_EPOCH' ||
      loss.error.code === 'RING_STAGE_NOT_SERVING';
    // A re-plan the coordinator made itself needs no report.
    if (loss.attempt === 0 && loss.cause !== 'replanned') {
      try {
        net.signaling.send({
          type: 'ring-stalled',
          ringId: loss.ring.ringId,
          epoch: loss.ring.epoch,
          position: loss.position,
          cause: loss.cause,
          ...(loss.lostPeer ? { peer: loss.lostPeer } : {}),
        });
      } catch {
        /* signaling down: the coordinator learns of the loss on its own */
      }
    }
    // A ring still loading its shards answers "not serving" at once: poll it with a short backoff,
    // capped at 250 ms (a 1 s cap added 0.5 s on average to every recovery; an attempt is one
    // `open` answered at once by the first stage).
    const waitMs =
      loss.attempt === 0 && !notReady ? (o.stallGraceMs ?? 4000) : Math.min(250, 100 * 2 ** loss.attempt);
    await ringChange(model, key, waitMs, signal);
    const now = get().rings[model];
    if (now?.type !== 'ring') {
      const missing = now?.missingBytes;
      throw new RingworkError(
        'RING_FAILOVER_FAILED',
        `The ring lost a peer and no ring can take the answer over: ${
          missing !== undefined && missing > 0
            ? `${(missing / 1e9).toFixed(2)} GB more peer memory is needed`
            : (now?.reason ?? 'the coordinator has no ring for this model')
        }.`,
        {
          details: { model, lostPeer: loss.lostPeer, missingBytes: missing, reason: now?.reason },
          cause: loss.error,
        },
      );
    }
    return targetOf(now);
  };

  return {
    subscribe,
    follow(model) {
      if (subscribed) subscribe(subscribed.net, model);
    },
    ringFor,
    ringChange,
    replaceRing,
    stop() {
      subscribed?.offs.forEach((f) => f());
      subscribed = undefined;
    },
  };
}
