/**
 * Cluster mode's route for the OpenAI API's links to ring stages held by other instances
 * (api/api-link-hub.ts {@link ApiLinkRemote}): a frame for a stage goes to the instance holding it,
 * found in the directory once per stage and kept — as a promise, so frames to one stage leave in
 * the order they were sent — until a link to it closes or a frame cannot be delivered (the stage
 * may have moved). The stage's frames go back to the instance that opened the link.
 */
import type { Logger } from 'pino';
import { RingworkError } from '../../../shared/errors.js';
import type { ClientMessageOf } from '../../../shared/protocol/signaling.js';
import type { ApiLinkRemote } from '../api/api-link-hub.js';
import type { ClusterBus } from './cluster-bus.js';
import type { RedisStore } from './redis-store.js';

/** Stages whose holder is remembered at once (past it the table starts over). */
const MAX_ROUTES = 4096;

/** The route, and what the cluster node tells it. */
export interface ApiLinkRoute {
  readonly remote: ApiLinkRemote;
  /** A stage's frame came back: a `close` may mean the stage moved, so look it up again next time. */
  returned(peer: string, msg: ClientMessageOf<'api-link'>): void;
}

/** Creates the route of instance `me`. */
export function createApiLinkRoute(o: {
  me: string;
  store: Pick<RedisStore, 'ownerOf'>;
  bus: Pick<ClusterBus, 'post'>;
  log: Pick<Logger, 'debug'>;
}): ApiLinkRoute {
  const routes = new Map<string, Promise<string | null>>();
  return {
    remote: {
      send(peer, msg, undelivered) {
        let route = routes.get(peer);
        if (!route) {
          if (routes.size >= MAX_ROUTES) routes.clear();
          route = o.store.ownerOf(peer);
          routes.set(peer, route);
        }
        const r = route;
        const fail = (e: unknown): void => {
          if (routes.get(peer) === r) routes.delete(peer);
          undelivered(e);
        };
        r.then((owner) => {
          if (owner === null || owner === o.me)
            return fail(new RingworkError('PROTOCOL_UNKNOWN_PEER', `No stage ${peer} in the cluster.`, {}));
          o.bus.post(owner, { kind: 'api-link', from: o.me, peer, msg }, fail);
        }, fail);
      },
      reply(instance, peer, msg) {
        o.bus.post(instance, { kind: 'api-link-back', peer, msg }, (e) =>
          o.log.debug({ err: e, peer, instance }, 'api link frame not returned (instance gone)'),
        );
      },
    },
    returned(peer, msg) {
      if (msg.frame.kind === 'close') routes.delete(peer);
    },
  };
}
