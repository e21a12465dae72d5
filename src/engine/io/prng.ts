/**
 * The one seeded pseudo-random generator of walkv's simulation tests (mulberry32: 32-bit state,
 * period 2^32, fast, good enough for fault schedules). Every randomised test and {@link SimDisk}
 * draw from it, so a failing run is replayed exactly from its seed.
 *
 * @example
 * const rng = prng(42);
 * const coin = rng() < 0.5;
 * const die = randomInt(rng, 6); // 0..5
 */
import { assert } from "../errors.ts";

/**
 * Returns a deterministic generator of uniform numbers in [0, 1) seeded by `seed` (an integer;
 * only its low 32 bits matter).
 *
 * @example
 * const a = prng(7), b = prng(7);
 * a() === b(); // true
 */
export function prng(seed: number): () => number {
  assert(Number.isInteger(seed), `prng seed must be an integer, got ${seed}`);
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Returns a uniform integer in [0, `limit`) drawn from `rng`. `limit` must be a positive integer.
 *
 * @example
 * randomInt(prng(1), 10); // some integer 0..9
 */
export function randomInt(rng: () => number, limit: number): number {
  assert(
    Number.isSafeInteger(limit) && limit > 0,
    `randomInt limit must be a positive integer, got ${limit}`,
  );
  const value = Math.floor(rng() * limit);
  assert(value >= 0 && value < limit, "rng must return a number in [0, 1)");
  return value;
}
