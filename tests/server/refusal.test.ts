import { describe, expect, it } from 'vitest';
import { isRingworkError } from '../../shared/errors';
import { refusal } from '../../signaling-server/src/refusal';

describe('refusal', () => {
  it('is a typed error with code, message and details but no stack frames; the stack limit is restored', () => {
    const before = Error.stackTraceLimit;
    const e = refusal('PROTOCOL_NOT_ALLOWED', 'You were not introduced to p_x.', { details: { to: 'p_x' } });
    expect(isRingworkError(e, 'PROTOCOL_NOT_ALLOWED')).toBe(true);
    expect(e.message).toBe('You were not introduced to p_x.');
    expect(e.details).toEqual({ to: 'p_x' });
    expect(e.toJSON()).toMatchObject({ code: 'PROTOCOL_NOT_ALLOWED', details: { to: 'p_x' } });
    // No "    at ..." lines: no frames were captured.
    expect(e.stack ?? '').not.toMatch(/\n\s+at /);
    expect(Error.stackTraceLimit).toBe(before);
    expect(new Error('x').stack).toMatch(/\n\s+at /);
  });
});
