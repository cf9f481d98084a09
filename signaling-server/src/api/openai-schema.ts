/**
 * The request shapes of the OpenAI-compatible API, validated at the boundary, and the mapping from
 * Ringwork's error family to OpenAI's error body (`{"error": {"message", "type", "code", "param"}}`).
 *
 * Field policy (documented in the README): fields Ringwork honours are validated; fields that would
 * change the output and that it cannot honour (`n` > 1, tools, logprobs, penalties, `logit_bias`,
 * a JSON response format, `echo`, `suffix`, `best_of` > 1) are refused with `API_UNSUPPORTED`;
 * anything else (`user`, `metadata`, `store`, fields newer clients add) is ignored.
 */
import { z } from 'zod';
import { openAiErrorBody } from '../../../shared/api/openai-wire.js';
import { RingworkError } from '../../../shared/errors.js';

const textPart = z.object({ type: z.literal('text'), text: z.string().max(1_000_000) }).loose();
const content = z.union([z.string().max(1_000_000), z.array(textPart).min(1).max(256)]);

/** One chat message; `developer` is OpenAI's newer name for `system`. */
const message = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant']),
    content,
    name: z.string().max(256).optional(),
  })
  .loose();

const stop = z.union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).max(4)]).optional();

/** Sampling options both endpoints share. */
const common = {
  model: z.string().min(1).max(200),
  stream: z.boolean().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).loose().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullish(),
  stop: stop.nullable(),
  n: z.number().int().min(1).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  logprobs: z.union([z.boolean(), z.number()]).nullish(),
  top_logprobs: z.number().nullish(),
  frequency_penalty: z.number().nullish(),
  presence_penalty: z.number().nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
};

/** Options that change the output and are not supported; each is refused when set to a non-default. */
function refuseUnsupported(
  r: {
    n?: number | null | undefined;
    logprobs?: boolean | number | null | undefined;
    top_logprobs?: number | null | undefined;
    frequency_penalty?: number | null | undefined;
    presence_penalty?: number | null | undefined;
    logit_bias?: Record<string, number> | null | undefined;
  } & Record<string, unknown>,
  ctx: z.RefinementCtx,
): void {
  const refuse = (path: string, why: string) =>
    ctx.addIssue({ code: 'custom', path: [path], message: why, params: { unsupported: true } });
  if ((r.n ?? 1) > 1) refuse('n', 'n must be 1: Ringwork returns one choice per request');
  if (r.logprobs !== undefined && r.logprobs !== null && r.logprobs !== false)
    refuse('logprobs', 'logprobs are not supported');
  if (r.top_logprobs) refuse('top_logprobs', 'top_logprobs are not supported');
  if (r.frequency_penalty) refuse('frequency_penalty', 'frequency_penalty is not supported (use 0)');
  if (r.presence_penalty) refuse('presence_penalty', 'presence_penalty is not supported (use 0)');
  if (r.logit_bias && Object.keys(r.logit_bias).length > 0)
    refuse('logit_bias', 'logit_bias is not supported');
  for (const k of ['tools', 'functions', 'tool_choice', 'function_call'])
    if (r[k] !== undefined && r[k] !== null && !(Array.isArray(r[k]) && r[k].length === 0) && r[k] !== 'none')
      refuse(k, `${k} is not supported: the network's models do not call tools`);
  const rf = r.response_format as { type?: unknown } | undefined | null;
  if (rf && rf.type !== 'text')
    refuse('response_format', 'only response_format {"type": "text"} is supported');
}

/** `POST /v1/chat/completions`. */
export const chatCompletionRequestSchema = z
  .object({
    ...common,
    messages: z.array(message).min(1, 'messages must hold at least one message').max(1024),
    max_completion_tokens: z.number().int().min(1).nullish(),
  })
  .loose()
  .superRefine(refuseUnsupported);
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;

/** `POST /v1/completions`. */
export const completionRequestSchema = z
  .object({
    ...common,
    prompt: z.union([z.string().max(1_000_000), z.array(z.string().max(1_000_000)).length(1)]),
    echo: z.boolean().nullish(),
    suffix: z.string().nullish(),
    best_of: z.number().int().min(1).nullish(),
  })
  .loose()
  .superRefine((r, ctx) => {
    refuseUnsupported(r, ctx);
    const refuse = (path: string, why: string) =>
      ctx.addIssue({ code: 'custom', path: [path], message: why, params: { unsupported: true } });
    if (r.echo) refuse('echo', 'echo is not supported');
    if (r.suffix) refuse('suffix', 'suffix (insertion) is not supported');
    if ((r.best_of ?? 1) > 1) refuse('best_of', 'best_of must be 1');
  });
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

/** The text of one message's content (parts joined). */
export function contentText(c: z.infer<typeof content>): string {
  return typeof c === 'string' ? c : c.map((p) => p.text).join('');
}

/**
 * Parses a request body against `schema`; a refused option becomes `API_UNSUPPORTED`, any other
 * problem `INVALID_ARGUMENT`, each naming the field (`details.param`).
 */
export function parseApiRequest<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const unsupported = r.error.issues.find(
    (i) => i.code === 'custom' && (i as { params?: { unsupported?: boolean } }).params?.unsupported,
  );
  const issue = unsupported ?? r.error.issues[0]!;
  const param = issue.path.map(String).join('.') || null;
  // A refusal's message names its option already ("n must be 1: …"); zod's own messages do not.
  throw new RingworkError(
    unsupported ? 'API_UNSUPPORTED' : 'INVALID_ARGUMENT',
    param && !unsupported ? `${param}: ${issue.message}` : issue.message,
    { details: { param } },
  );
}

/**
 * OpenAI's error body for any error; unexpected ones are 500 `SERVER_INTERNAL` without internals.
 * The status table is shared with the SDK, which maps the body back (shared/api/openai-wire.ts).
 */
export const openAiError = openAiErrorBody;
