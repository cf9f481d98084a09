/** The API's request parsing: which error code and message a bad or unsupported option gets. */
import { describe, expect, it } from 'vitest';
import { RingworkError } from '../../shared/errors';
import {
  chatCompletionRequestSchema,
  completionRequestSchema,
  parseApiRequest,
} from '../../signaling-server/src/api/openai-schema';

function refusal(f: () => unknown): RingworkError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(RingworkError);
    return e as RingworkError;
  }
  throw new Error('expected a refusal');
}

describe('parseApiRequest', () => {
  it('an unsupported option: API_UNSUPPORTED, the option named once, details.param', () => {
    const e = refusal(() => parseApiRequest(completionRequestSchema, { model: 'm', prompt: 'x', n: 2 }));
    expect(e.code).toBe('API_UNSUPPORTED');
    expect(e.message).toMatch(/^n must be 1/);
    expect(e.details).toMatchObject({ param: 'n' });
    const t = refusal(() =>
      parseApiRequest(chatCompletionRequestSchema, {
        model: 'm',
        messages: [{ role: 'user', content: 'x' }],
        tools: [{ type: 'function' }],
      }),
    );
    expect(t.code).toBe('API_UNSUPPORTED');
    expect(t.message).toMatch(/^tools is not supported/);
  });

  it('a bad value: INVALID_ARGUMENT prefixed with the field it concerns', () => {
    const e = refusal(() =>
      parseApiRequest(completionRequestSchema, { model: 'm', prompt: 'x', temperature: -1 }),
    );
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/^temperature: /);
    expect(e.details).toMatchObject({ param: 'temperature' });
  });
});
