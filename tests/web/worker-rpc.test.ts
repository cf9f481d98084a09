/**
 * The error contract across the comlink worker boundary: the real `wire` / `createAbortRegistry`
 * (worker side) and `rethrow` (page side) of web/src/engine/worker-rpc.ts, with real comlink over a
 * MessageChannel (structured clone, as between a page and its worker).
 */
import * as Comlink from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { isRingworkError, RingworkError, throwIfAborted } from '../../shared/errors';
import { createAbortRegistry, rethrow, wire } from '../../web/src/engine/worker-rpc';

const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).forEach((f) => f()));

/** Exposes `api` on one end of a MessageChannel and wraps the other, as a worker and its page. */
function connect<T extends object>(api: T): Comlink.Remote<T> {
  const { port1, port2 } = new MessageChannel();
  Comlink.expose(api, port1);
  const remote = Comlink.wrap<T>(port2);
  cleanups.push(() => {
    remote[Comlink.releaseProxy]();
    port1.close();
    port2.close();
  });
  return remote;
}

describe('errors across the worker boundary', () => {
  it('a RingworkError keeps its code, details and cause chain', async () => {
    const calls = createAbortRegistry();
    const remote = connect({
      load: (opId: number): Promise<void> =>
        calls.run(opId, async () => {
          throw new RingworkError('MODEL_TRUNCATED', 'stories.bin ends early.', {
            details: { file: 'stories.bin', expected: 1024, got: 512 },
            cause: new RingworkError('FETCH_FAILED', 'connection reset', {
              cause: new TypeError('fetch failed'),
            }),
          });
        }),
      open: (): Promise<void> =>
        wire(async () => {
          throw new RingworkError('RUNNER_NOT_LOADED', 'Load a shard first.');
        }),
    });
    const e = await remote.load(1).catch((x: unknown) => x);
    // Without rethrow the page would only see plain data: the boundary really strips the class.
    expect(e).not.toBeInstanceOf(Error);
    const rebuilt = (() => {
      try {
        rethrow(e);
      } catch (x) {
        return x;
      }
    })();
    expect(rebuilt).toBeInstanceOf(RingworkError);
    expect(rebuilt).toMatchObject({
      code: 'MODEL_TRUNCATED',
      message: 'stories.bin ends early.',
      details: { file: 'stories.bin', expected: 1024, got: 512 },
    });
    const cause = (rebuilt as RingworkError).cause as RingworkError;
    expect(isRingworkError(cause, 'FETCH_FAILED')).toBe(true);
    expect(cause.cause).toMatchObject({ name: 'TypeError', message: 'fetch failed' });

    await expect(remote.open().catch(rethrow)).rejects.toMatchObject({ code: 'RUNNER_NOT_LOADED' });
  });

  it('an abort by operation id comes back as ABORTED', async () => {
    const calls = createAbortRegistry();
    const remote = connect({
      step: (opId: number): Promise<void> =>
        calls.run(
          opId,
          (signal) =>
            new Promise<never>((_, reject) =>
              signal.addEventListener('abort', () => {
                try {
                  throwIfAborted(signal, 'The step');
                } catch (x) {
                  reject(x);
                }
              }),
            ),
        ),
      abort: (opId: number) => calls.abort(opId),
    });
    const pending = remote.step(7).catch(rethrow);
    await remote.abort(7);
    await expect(pending).rejects.toSatisfy((x: unknown) => isRingworkError(x, 'ABORTED'));
  });

  it('an untyped exception in the worker arrives as RUNNER_BACKEND_FAILED with the original as cause', async () => {
    const remote = connect({
      info: (): Promise<void> =>
        wire(async () => {
          throw new RangeError('out of range');
        }),
    });
    const e = await remote
      .info()
      .catch(rethrow)
      .catch((x: unknown) => x);
    expect(isRingworkError(e, 'RUNNER_BACKEND_FAILED')).toBe(true);
    expect((e as RingworkError).message).toBe('out of range');
    expect((e as RingworkError).cause).toMatchObject({ name: 'RangeError', message: 'out of range' });
  });

  it('rethrow passes anything that is not a serialised error through unchanged', () => {
    const plain = new Error('no code');
    expect(() => rethrow(plain)).toThrow(plain);
    // An Error that happens to carry a string `code` (Node system errors) is not mistaken for one.
    const sys = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
    expect(() => rethrow(sys)).toThrow(sys);
  });
});
