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
 * The client itself is shared/api/ringwork-client.ts (pure TS, also used from Node); this file only
 * picks what the module exports.
 */
export {
  createRingworkClient,
  type ApiStream,
  type ChatCreateParams,
  type CompletionCreateParams,
  type RingworkClient,
  type RingworkClientOptions,
} from '../../../shared/api/ringwork-client.js';
export type {
  ApiChatMessage,
  ApiModel,
  ApiModelList,
  ChatCompletion,
  ChatCompletionChunk,
  Completion,
  RingworkAnswerInfo,
} from '../../../shared/api/openai-wire.js';
export { ERROR_CODES, RingworkError, isRingworkError, type ErrorCode } from '../../../shared/errors.js';
