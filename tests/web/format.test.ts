/**
 * The UI's text formatting: full peer ids in error text are written the way the UI shows peers.
 */
import { describe, expect, it } from 'vitest';
import { flops, shortId, unitSpan, withShortPeerIds } from '../../web/src/app/format';

const id = 'p_AbC123xyz_-98765';

describe('withShortPeerIds', () => {
  it('writes every full peer id in a message as the short id the UI shows', () => {
    expect(id).toHaveLength(18);
    const other = 'p_zzzzzzzzzzzzzzzz';
    expect(withShortPeerIds(`Peer ${id} did not answer (next: ${other}).`)).toBe(
      `Peer ${shortId(id)} did not answer (next: ${shortId(other)}).`,
    );
    expect(shortId(id)).toBe('AbC123');
  });

  it('leaves other text alone: no id, a longer token, an id glued to a word', () => {
    for (const t of ['no peers here', `x${id}`, `${id}9`, 'p_short', 'up_AbC123xyz_-98765'])
      expect(withShortPeerIds(t)).toBe(t);
    expect(withShortPeerIds(undefined)).toBeUndefined();
  });
});

describe('unitSpan', () => {
  it('names one unit as "unit n" and longer ranges as "units a–b"', () => {
    expect(unitSpan([3, 4])).toBe('unit 3');
    expect(unitSpan([0, 3])).toBe('units 0–2');
    expect(unitSpan([4, 7])).toBe('units 4–6');
  });
});

describe('flops', () => {
  it('scales from TFLOPS down to MFLOPS, and says 0 FLOPS for nothing', () => {
    expect(flops(0)).toBe('0 FLOPS');
    expect(flops(0.0061)).toBe('6.1 GFLOPS');
    expect(flops(30)).toBe('30.0 TFLOPS');
    expect(flops(1e-6)).toBe('1.0 MFLOPS');
    expect(flops(undefined)).toBe('—');
  });
});
