/** The transport contract (tests/contracts/transport.ts) on the in-memory transport hub. */
import { describe, it } from 'vitest';
import { createMemoryTransportHub } from '../../shared/transport/memory-transport';
import { contract, type TransportFixture } from '../contracts/transport';
import { TIMEOUT_SCALE } from '../helpers/timeouts';

async function memoryFixture(n: number): Promise<TransportFixture> {
  const hub = createMemoryTransportHub();
  const transports = Array.from({ length: n }, (_, i) =>
    hub.transport(`p_memory${String(i).padStart(8, '0')}`),
  );
  // A transport is reachable once something listens for its incoming links (as a page that joined).
  const offs = transports.map((t) => t.onIncoming(() => undefined));
  return {
    transports,
    unknownPeerId: 'p_AAAAAAAAAAAAAAAA',
    async teardown() {
      offs.forEach((off) => off());
      await Promise.all(transports.map((t) => t.close()));
    },
  };
}

describe('Transport contract: in-memory hub', () => {
  for (const c of contract(memoryFixture, { scale: TIMEOUT_SCALE })) it(c.name, c.run, c.timeoutMs);
});
