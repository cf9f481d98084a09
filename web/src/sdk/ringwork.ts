/**
 * The browser SDK, served by the Ringwork server as the ES module `/sdk/ringwork.js` (built by
 * vite.config.ts's library build into dist/sdk/). Other sites import it from the server:
 *
 * ```js
 * import { createRingworkClient } from 'https://ringwork.example/sdk/ringwork.js';
 * const rw = createRingworkClient({ server: 'https://ringwork.example', apiKey });
 * for await (const c of await rw.chat.completions.create({ model, messages, stream: true }))
 *   out.textContent += c.choices[0]?.delta.content ?? '';
 * ```
 *
 * Two transports, one OpenAI-shaped surface:
 * - `transport: 'http'` (default): the server's API (`/v1`, shared/api/ringwork-client.ts, also used
 *   from Node). The server runs the ring request for the page.
 * - `transport: 'ring'`: the page joins the network itself as a WebRTC requester of the ring, as the
 *   Chat page does (shared/api/ring-transport.ts over shared/app/requester.ts): tokens come from the
 *   ring's head straight to the page, with no server on their path, and answers carry what the
 *   Chat page shows in their `ringwork` field. It is loaded on first use (a dynamic import of a
 *   second module next to this one), so pages that only use HTTP load only the small module.
 */
import {
  createRingworkClient as createHttpClient,
  type RingworkClient,
  type RingworkClientOptions,
} from '../../../shared/api/ringwork-client.js';
import type { RingRequesterPort } from '../../../shared/api/ring-transport.js';
import type * as RingModule from './ring-client.js';
import type { ShardRunner } from '../../../shared/runtime/shard-runner.js';
import { RingworkError } from '../../../shared/errors.js';

export {
  type ApiStream,
  type ChatCreateParams,
  type CompletionCreateParams,
  type RingworkClient,
  type RingworkRequestOptions,
} from '../../../shared/api/ringwork-client.js';
export type { RingRequesterPort } from '../../../shared/api/ring-transport.js';
export type {
  ApiChatMessage,
  ApiModel,
  ApiModelList,
  ChatCompletion,
  ChatCompletionChunk,
  Completion,
  RingworkAnswerInfo,
  RingworkAnswerStats,
  RingworkChunkInfo,
} from '../../../shared/api/openai-wire.js';
export { ERROR_CODES, RingworkError, isRingworkError, type ErrorCode } from '../../../shared/errors.js';

/** Options of {@link createRingworkClient}. */
export interface SdkClientOptions extends RingworkClientOptions {
  /**
   * How answers travel: `http` (default) through the server's API; `ring` from the ring's peers
   * to this page over WebRTC (this page is a requester of the ring; browsers only).
   */
  transport?: 'http' | 'ring';
  /**
   * Ring transport: the requester to answer through (the Chat page passes its tab's, which shares
   * the tab's connection and its contributor's links). Absent: the SDK joins the network itself
   * (one signaling connection to `server`, requester role only, on first use).
   */
  requester?: RingRequesterPort;
  /**
   * Ring transport without `requester`: makes shard runners, needed for validated answers
   * (security level k >= 2 runs the stages' checks in this page). Absent: such a request fails
   * with `SDK_NO_RUNNER`.
   */
  createRunner?: () => ShardRunner;
}

/** The ring transport's module, loaded once on first use (a failed load is retried next time). */
let ringModule: Promise<typeof RingModule> | undefined;
const loadRing = (): Promise<typeof RingModule> =>
  (ringModule ??= import('./ring-client.js').catch((e: unknown) => {
    ringModule = undefined;
    throw new RingworkError('API_UNREACHABLE', 'The SDK could not load its ring transport module.', {
      cause: e,
    });
  }));

/** Creates a client of the Ringwork network at `o.server`. */
export function createRingworkClient(o: SdkClientOptions): RingworkClient {
  const http = createHttpClient(o);
  const transport = o.transport ?? 'http';
  if (transport !== 'http' && transport !== 'ring')
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `transport must be "http" or "ring", not "${String(transport)}".`,
      {
        details: { param: 'transport' },
      },
    );
  if (transport === 'http') {
    if (o.requester || o.createRunner)
      throw new RingworkError(
        'INVALID_ARGUMENT',
        "requester and createRunner are options of transport: 'ring'.",
        {
          details: { param: o.requester ? 'requester' : 'createRunner' },
        },
      );
    return http;
  }
  let ring: Promise<RingworkClient> | undefined;
  const client = (): Promise<RingworkClient> =>
    (ring ??= loadRing().then(
      (m) => m.createRingClient({ ...o, models: http.models }),
      (e: unknown) => {
        ring = undefined;
        throw e;
      },
    ));
  return {
    chat: {
      completions: {
        create: ((p: Parameters<RingworkClient['chat']['completions']['create']>[0]) =>
          client().then((c) =>
            c.chat.completions.create(p),
          )) as RingworkClient['chat']['completions']['create'],
      },
    },
    completions: {
      create: ((p: Parameters<RingworkClient['completions']['create']>[0]) =>
        client().then((c) => c.completions.create(p))) as RingworkClient['completions']['create'],
    },
    // The ring has no catalogue of its own: the server's list.
    models: http.models,
  };
}
