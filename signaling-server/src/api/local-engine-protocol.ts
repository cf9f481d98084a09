/**
 * Messages between the server's event loop and the local-engine worker thread. Both ends are this
 * server's own code, but the worker's replies are still parsed, so a bug there surfaces as a typed
 * error instead of a wrong answer.
 */
import { z } from 'zod';

/** What to generate from: plain text (continued) or chat messages (the model's template, if any). */
export const engineInputSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('text'), text: z.string() }),
  z.object({
    kind: z.literal('chat'),
    messages: z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() })),
  }),
]);
export type EngineInput = z.infer<typeof engineInputSchema>;

/** Server → worker. */
export const engineRequestSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('generate'),
    id: z.number().int(),
    model: z.object({ url: z.string(), tokenizerUrl: z.string().optional() }),
    contextLength: z.number().int().positive(),
    /** llama2.c checkpoints end a story with BOS only (no EOS ids). */
    llama2c: z.boolean(),
    input: engineInputSchema,
    /** Generated tokens at most; null = as many as the context holds. */
    maxTokens: z.number().int().positive().nullable(),
    temperature: z.number().min(0),
    topP: z.number().gt(0).max(1),
    seed: z.number().int().min(0),
  }),
  z.object({ type: z.literal('abort'), id: z.number().int() }),
]);
export type EngineRequest = z.infer<typeof engineRequestSchema>;

/** Worker → server. */
export const engineReplySchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('started'), id: z.number().int(), promptTokens: z.number().int() }),
  z.object({ type: z.literal('token'), id: z.number().int(), token: z.number().int(), piece: z.string() }),
  z.object({
    type: z.literal('done'),
    id: z.number().int(),
    stop: z.enum(['steps', 'bos', 'eos']),
    promptTokens: z.number().int(),
    completionTokens: z.number().int(),
  }),
  z.object({ type: z.literal('error'), id: z.number().int(), error: z.unknown() }), // RingworkError.fromJSON never throws,
]);
export type EngineReply = z.infer<typeof engineReplySchema>;
