import { beforeAll, describe, expect, it, vi } from 'vitest';
import { scaled } from '../../helpers/timeouts';
import { loadGolden } from '../../helpers/golden';
import { createFakeSignalingHub } from '../../helpers/memory-signaling';
import {
  CAPABILITY,
  GOLDEN_SETTINGS,
  assign,
  contributorOn,
  pid,
  requesterOn,
  ringOf,
  warmUpOrt,
} from './app-fixture';

const golden = loadGolden();
const history = [{ role: 'user' as const, text: 'Once upon a time' }];

describe('re-plan after a contributor leaves (as the browser app test does)', () => {
  beforeAll(warmUpOrt);

  it('the requester follows the pushed ring of the remaining peers and gets the golden text again', async () => {
    const hub = createFakeSignalingHub();
    const [a, b, c, req] = [pid('a'), pid('b'), pid('c'), pid('req')];
    const peers = [contributorOn(hub, a), contributorOn(hub, b), contributorOn(hub, c)];
    for (const p of peers) await p.start({ capability: CAPABILITY });
    const three = [
      { peer: a, range: [0, 2] as [number, number] },
      { peer: b, range: [2, 4] as [number, number] },
      { peer: c, range: [4, 7] as [number, number] },
    ];
    let ring = ringOf(three, 1);
    hub.onSend((from, m) => m.type === 'ring-request' && hub.push(from, ring));
    assign(hub, three, 1);
    for (const p of peers)
      await vi.waitFor(() => expect(p.store.getState().phase).toBe('serving'), { timeout: scaled(30_000) });
    const r = requesterOn(hub, req);
    const first = await r.ask({ settings: GOLDEN_SETTINGS, history, signal: new AbortController().signal });
    expect(first.text + '\n').toBe(golden.text);

    await peers[2]!.stop();
    const two = [
      { peer: a, range: [0, 3] as [number, number] },
      { peer: b, range: [3, 7] as [number, number] },
    ];
    ring = ringOf(two, 2);
    assign(hub, two, 2);
    hub.push(req, ring); // the coordinator pushes the re-planned ring to its subscriber
    const second = await r.ask({ settings: GOLDEN_SETTINGS, history, signal: new AbortController().signal });
    expect(second.text).toBe(first.text);
    expect(second.stats.peers).toEqual([a, b]);
    await peers[0]!.stop();
    await peers[1]!.stop();
  });
});
