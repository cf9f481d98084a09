/**
 * What a step of work is worth: the FLOPs of the units a stage served, from the model profile the
 * planner uses (per-unit decode FLOPs per token). A record of `steps` decode steps on units
 * `[a, b)` is worth `steps × Σ_{u∈[a,b)} flopsPerToken(u)`.
 */
import type { ModelProfile } from '../../../shared/model/profile.js';

/** FLOPs of one decode step of units `[start, end)`; undefined if the range is not in the profile. */
export function flopsPerStep(profile: ModelProfile, units: readonly [number, number]): number | undefined {
  const [a, b] = units;
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b <= a || b > profile.layers.length)
    return undefined;
  let f = 0;
  for (let u = a; u < b; u++) f += profile.layers[u]!.flopsPerToken;
  return f;
}

/** A `flopsOf` for the ledger over a set of profiles by model id. */
export function flopsFromProfiles(
  profiles: ReadonlyMap<string, ModelProfile>,
): (model: string, units: readonly [number, number]) => number | undefined {
  return (model, units) => {
    const p = profiles.get(model);
    return p ? flopsPerStep(p, units) : undefined;
  };
}
