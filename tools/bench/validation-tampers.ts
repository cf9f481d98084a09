/**
 * The validation benchmark's tampering stages: the built-in classes of issue 10 and the loader for
 * a user's tamper module (`export default function tamper(ctx)`). Test-only behaviour: a class
 * says which stages it can play, how it changes what the stage sends (and whether it commits to
 * that), or which dishonest runner it computes with.
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { RingworkError } from '../../shared/errors.js';
import { mulberry32Float } from '../../shared/util/prng.js';
import type { StageBehaviour, TamperContext, TamperFn } from '../../shared/validation/stage.js';

/** Which stages a class can play: `first` takes token ids, `head` samples, `middle` is neither. */
export type StageRole = 'first' | 'middle' | 'head';

/** One way to cheat. */
export interface TamperClass {
  name: string;
  description: string;
  roles: readonly StageRole[];
  /** A fresh behaviour for one trial (its own seeded randomness and memory). */
  behaviour?: (seed: number, role: StageRole) => StageBehaviour;
  /** Compute with a dishonest runner instead (every step differs from the honest one). */
  runner?: 'q4' | 'other-model';
}

function gauss(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** Relative noise: x + eps·|x|·N(0, 1) on every entry. */
export function noise(eps: number, rand: () => number): TamperFn {
  return (ctx) => ctx.data.map((x) => x + eps * Math.abs(x) * gauss(rand));
}

function topTwo(row: Float32Array): [number, number] {
  let a = 0;
  let b = -1;
  for (let i = 1; i < row.length; i++) {
    if (row[i]! > row[a]!) {
      b = a;
      a = i;
    } else if (b < 0 || row[i]! > row[b]!) b = i;
  }
  return [a, b];
}

/** Swaps the top two logits of the last row (the head then samples the runner-up). */
function swapTopTwo(ctx: TamperContext): Float32Array {
  const out = ctx.data.slice();
  const rowLen = ctx.shape[1]!;
  const row = out.subarray(out.length - rowLen);
  const [a, b] = topTwo(row);
  [row[a], row[b]] = [row[b]!, row[a]!];
  return out;
}

const ANY: readonly StageRole[] = ['first', 'middle', 'head'];

/** The built-in classes (issue 10's list). */
export const TAMPER_CLASSES: readonly TamperClass[] = [
  {
    name: 'noise-1e-2',
    description: 'relative noise 1e-2 on every value sent',
    roles: ANY,
    behaviour: (seed) => ({ tamper: noise(1e-2, mulberry32Float(seed)) }),
  },
  {
    name: 'noise-1e-3',
    description: 'relative noise 1e-3 on every value sent',
    roles: ANY,
    behaviour: (seed) => ({ tamper: noise(1e-3, mulberry32Float(seed)) }),
  },
  {
    name: 'zeros',
    description: 'sends zeros',
    roles: ANY,
    behaviour: () => ({ tamper: (ctx) => new Float32Array(ctx.data.length) }),
  },
  {
    name: 'skip-units',
    description: 'skips its units: passes its input through',
    roles: ['middle'],
    behaviour: () => ({ tamper: (ctx) => ctx.input?.slice() }),
  },
  {
    name: 'stale-replay',
    description: "replays the previous step's output",
    roles: ANY,
    behaviour: () => {
      let prev: Float32Array | undefined;
      return {
        tamper: (ctx) => {
          const rowLen = ctx.shape[1]!;
          const last = ctx.data.slice(ctx.data.length - rowLen);
          const out = prev && ctx.data.length === rowLen ? prev : undefined;
          prev = last;
          return out;
        },
      };
    },
  },
  {
    name: 'other-model',
    description: "another model's weights (stories260K's, shuffled with another seed)",
    roles: ANY,
    runner: 'other-model',
  },
  { name: 'q4-weights', description: 'q4 weights where f32 was assigned', roles: ANY, runner: 'q4' },
  {
    name: 'wrong-token',
    description: "the head sends (and commits to) the runner-up token; its logits' sketch stays honest",
    roles: ['head'],
    behaviour: () => ({ token: ({ logits }) => topTwo(logits)[1] }),
  },
  {
    name: 'cheat-10pct',
    description: 'relative noise 1e-2 on a random 10 % of steps',
    roles: ANY,
    behaviour: (seed) => {
      const rand = mulberry32Float(seed);
      const n = noise(1e-2, mulberry32Float(seed ^ 0x9e3779b9));
      return { tamper: (ctx) => (rand() < 0.1 ? n(ctx) : undefined) };
    },
  },
  {
    name: 'sign-flip',
    description: 'flips the sign of one random dimension',
    roles: ANY,
    behaviour: (seed) => {
      const rand = mulberry32Float(seed);
      return {
        tamper: (ctx) => {
          const out = ctx.data.slice();
          const rowLen = ctx.shape[1]!;
          const i = out.length - rowLen + Math.floor(rand() * rowLen);
          out[i] = -out[i]!;
          return out;
        },
      };
    },
  },
  {
    name: 'honest-commit-tampered-send',
    description: 'commits to the honest output, sends noise 1e-2 (the head: the runner-up token)',
    roles: ANY,
    behaviour: (seed, role) => ({
      mode: 'honest-commit',
      tamper: role === 'head' ? swapTopTwo : noise(1e-2, mulberry32Float(seed)),
    }),
  },
];

/** Loads a tamper module (`export default function tamper(ctx)`) as a class that can play any stage. */
export async function loadTamperModule(path: string): Promise<TamperClass> {
  const mod = (await import(pathToFileURL(resolve(path)).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') {
    throw new RingworkError('INVALID_ARGUMENT', `${path} must export a default function tamper(ctx).`);
  }
  const fn = mod.default as TamperFn;
  return {
    name: path,
    description: `tamper module ${path}`,
    roles: ANY,
    behaviour: () => ({
      tamper: (ctx) => {
        const r = fn(ctx);
        if (r !== undefined && !(r instanceof Float32Array)) {
          throw new RingworkError(
            'INVALID_ARGUMENT',
            `${path}: tamper(ctx) must return a Float32Array or undefined.`,
          );
        }
        return r;
      },
    }),
  };
}
