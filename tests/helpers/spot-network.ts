/**
 * A coordinator with six 1 MB contributors (so a k = 2 request gets a primary and a validator ring
 * of three) and one requester, on fake timers, as the spot-check tests use it: `ask(security)`
 * sends a `ring-request` through the wire schema (as protocol-handlers.ts does) and returns the
 * latest `ring` answer.
 */
import { vi } from 'vitest';
import {
  clientMessageSchema,
  serverMessageSchema,
  type ServerMessage,
  type ServerMessageOf,
} from '../../shared/protocol/signaling';
import type { CatalogModel } from '../../signaling-server/src/catalog';
import { createCoordinator, type CoordinatorOptions } from '../../signaling-server/src/coordinator';
import { createValidationRegistry } from '../../signaling-server/src/validation-registry';

/** Re-plan debounce of the network, ms (advanced after each join and request). */
export const SPOT_DEBOUNCE_MS = 200;
/** A valid peer id made of a short name. */
export const pid = (name: string): string => `p_${name.padEnd(16, '0')}`;

/** Builds the network on `stories` (the caller has turned fake timers on). */
export function sixPeerNetwork(stories: CatalogModel, opts: Partial<CoordinatorOptions> = {}) {
  const inbox = new Map<string, ServerMessage[]>();
  const validation = createValidationRegistry();
  const co = createCoordinator({
    catalog: [stories],
    validation,
    send: (peer, msg) => {
      serverMessageSchema.parse(msg);
      inbox.set(peer, [...(inbox.get(peer) ?? []), msg]);
    },
    debounceMs: SPOT_DEBOUNCE_MS,
    maxWaitMs: 1000,
    ...opts,
  });
  co.start();
  for (const n of ['a', 'b', 'c', 'd', 'e', 'f']) {
    co.addPeer(pid(n), ['contributor']);
    co.setCapability(pid(n), {
      tflops: 10,
      bandwidthGBps: 100,
      memoryBytes: 1_000_000,
      backend: 'wasm',
      mobile: false,
    });
    vi.advanceTimersByTime(SPOT_DEBOUNCE_MS);
  }
  const req = pid('req');
  co.addPeer(req, ['requester']);
  const ask = (security: unknown): ServerMessageOf<'ring'> => {
    const msg = clientMessageSchema.parse({
      type: 'ring-request',
      v: 1,
      model: stories.descriptor.id,
      security,
    });
    if (msg.type !== 'ring-request') throw new Error('not a ring-request');
    co.requestRing(req, msg.model, msg.security);
    vi.advanceTimersByTime(SPOT_DEBOUNCE_MS);
    return (inbox.get(req) ?? []).filter((m): m is ServerMessageOf<'ring'> => m.type === 'ring').at(-1)!;
  };
  return { co, validation, ask, req, inbox };
}
