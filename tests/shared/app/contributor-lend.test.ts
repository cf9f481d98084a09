import { describe, expect, it } from 'vitest';
import { isRingworkError } from '../../../shared/errors';
import { createFakeSignalingHub } from '../../helpers/memory-signaling';
import { CAPABILITY, contributorOn, pid } from './app-fixture';

describe('memory to lend', () => {
  it('the announced capability lends what the person chose, never more than the device has', async () => {
    const hub = createFakeSignalingHub();
    const [a, b] = [pid('a'), pid('b')];
    const ca = contributorOn(hub, a);
    await ca.start({ capability: CAPABILITY, lendMemoryBytes: 800_000 });
    expect(hub.sent(a, 'profile')).toEqual([
      { type: 'profile', capability: { ...CAPABILITY, memoryBytes: 800_000 } },
    ]);
    expect(ca.store.getState()).toMatchObject({
      usableMemoryBytes: CAPABILITY.memoryBytes,
      capability: { memoryBytes: 800_000 },
    });
    // More than the device has lends what it has.
    const cb = contributorOn(hub, b);
    await cb.start({ capability: CAPABILITY, lendMemoryBytes: 1e12 });
    expect(hub.sent(b, 'profile')[0]).toMatchObject({ capability: { memoryBytes: CAPABILITY.memoryBytes } });
    await ca.stop();
    await cb.stop();
  });

  it('a lend that is not a positive number is a typed error shown on the page', async () => {
    const hub = createFakeSignalingHub();
    const c = contributorOn(hub, pid('c'));
    const e = await c.start({ capability: CAPABILITY, lendMemoryBytes: -5 }).catch((x: unknown) => x);
    expect(isRingworkError(e) && e.code).toBe('INVALID_ARGUMENT');
    expect(c.store.getState()).toMatchObject({ phase: 'error', errorCode: 'INVALID_ARGUMENT' });
    expect(hub.sent(pid('c'), 'profile')).toEqual([]);
  });
});
