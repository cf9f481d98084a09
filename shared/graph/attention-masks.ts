/**
 * The position-derived inputs of a shard's attention, built once per shard graph by
 * `compileShard`: causal masks (for the `concat` and `rows` KV-cache contracts) and
 * GroupQueryAttention's lengths.
 */
import type { GraphBuilder } from './onnx-builder.js';

/**
 * GroupQueryAttention's length inputs from `position_ids` [1, S] (consecutive, the last one at
 * cached + S - 1): `seqlens_k` = int32 [last position] (its "total length - 1") and the int32
 * scalar total length. Derived in the graph, so the runner feeds the same inputs in both modes.
 */
export function gqaLengths(g: GraphBuilder, positions: string): { seqlensK: string; total: string } {
  const last = g.node('Reshape', [
    g.node('Slice', [
      positions,
      g.constInt64([-1]),
      g.constInt64([Number.MAX_SAFE_INTEGER]),
      g.constInt64([1]),
    ]),
    g.constInt64([1]),
  ]);
  const seqlensK = g.node('Cast', [last], { attrs: { to: 6 } });
  const total = g.node(
    'Cast',
    [g.node('Squeeze', [g.node('Add', [last, g.constInt64([1])]), g.constInt64([0])])],
    {
      attrs: { to: 6 },
    },
  );
  return { seqlensK, total };
}

/** -inf-like bias [1,1,1,S,T] hiding keys that lie after each query's position. */
export function causalMask(g: GraphBuilder, positions: string, presentK: string): string {
  const total = g.node('Gather', [g.node('Shape', [presentK]), g.constInt64([2], [])], {
    attrs: { axis: 0 },
  });
  const keyPos = g.node('Range', [g.constInt64([0], []), total, g.constInt64([1], [])]);
  // [1, S, 1] vs [T] -> [1, S, T]
  const qPos = g.node('Unsqueeze', [positions, g.constInt64([2])]);
  const hidden = g.node('Greater', [keyPos, qPos]);
  const bias = g.node('Where', [hidden, g.constFloat([-1e9], []), g.constFloat([0], [])]);
  return g.node('Unsqueeze', [bias, g.constInt64([1, 2])]);
}

/**
 * The mask of a `rows` graph, once per shard: a bias [1, 1, G*S, cap + S] over the buffer's rows
 * then the step's rows (queries in group-major order, as the graph merges them), and the Split
 * sizes [cap, S] that part the probabilities again. Buffer row j is a key iff j <
 * position_ids[0] (the cached length: the rows after it are spare capacity or dropped by a
 * rewind); the step's row j is visible to query i iff its position is <= query i's.
 */
export function rowsCausalMask(
  g: GraphBuilder,
  positions: string,
  pastKey: string,
  groups: number,
): { bias: string; split: string } {
  const cap = g.node('Slice', [g.node('Shape', [pastKey]), g.constInt64([2]), g.constInt64([3])]);
  const seq = g.node('Slice', [g.node('Shape', [positions]), g.constInt64([1]), g.constInt64([2])]);
  const split = g.node('Concat', [cap, seq], { attrs: { axis: 0 } });
  const rowIdx = g.node('Range', [
    g.constInt64([0], []),
    g.node('Squeeze', [cap, g.constInt64([0])]),
    g.constInt64([1], []),
  ]);
  // [1, S, 1]: each query's position; [1, 1, 1]: the first one, the cached length.
  const qPos = g.node('Unsqueeze', [positions, g.constInt64([2])]);
  const cached = g.node('Slice', [qPos, g.constInt64([0]), g.constInt64([1]), g.constInt64([1])]);
  // Or-ing the (always false) row > query test gives the [1, S, cap] shape.
  const hiddenPast = g.node('Or', [
    g.node('GreaterOrEqual', [rowIdx, cached]),
    g.node('Greater', [rowIdx, qPos]),
  ]);
  const hiddenNew = g.node('Greater', [g.node('Unsqueeze', [positions, g.constInt64([1])]), qPos]);
  const hidden = g.node('Concat', [hiddenPast, hiddenNew], { attrs: { axis: -1 } });
  let bias = g.node('Where', [hidden, g.constFloat([-1e9], []), g.constFloat([0], [])]);
  if (groups > 1) bias = g.node('Tile', [bias, g.constInt64([1, groups, 1])]);
  return { bias: g.node('Unsqueeze', [bias, g.constInt64([1])]), split };
}
