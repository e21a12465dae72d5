/**
 * Shared by the arena tests and their Worker: a seeded PRNG and a random alloc/free workload that
 * stamps every word of each chunk with an owner tag and checks the tag before freeing.
 */
import { type Arena, bufferIndex, offsetBytes } from "../../src/engine/arena.ts";
import { prng } from "../../src/engine/io/prng.ts";

/** Seed of randomised tests: env WALKV_SEED, else a fixed default. */
export const SEED = Number(process.env.WALKV_SEED ?? 0x5eed);

/**
 * The project's seeded PRNG (src/engine/io/prng.ts) as uint32 values.
 *
 * @example
 * const next = mulberry32(1); next() !== next()
 */
export function mulberry32(seed: number): () => number {
  const random = prng(seed | 0);
  return () => Math.floor(random() * 4294967296);
}

/**
 * Size mixes: `mixed` is mostly small, some medium, a few over 64 KiB (bumped one at a time);
 * `hot` keeps nearly all sizes in the six classes up to 48 bytes, so workers contend on class locks.
 */
export type SizeMix = "mixed" | "hot";

/**
 * A random allocation size of the given mix (at least 4 bytes, so a chunk holds a tag word).
 *
 * @example
 * randomSize(mulberry32(1), "mixed")
 */
export function randomSize(next: () => number, mix: SizeMix): number {
  if (mix === "hot" && next() % 100 < 97) return 4 + (next() % 45);
  const pick = next() % 100;
  if (pick < 90) return 4 + (next() % 1020);
  if (pick < 99) return 1024 + (next() % 16384);
  return 65536 + (next() % 65536);
}

/** Counts of one {@link runChunkWorkload}. */
export interface WorkloadResult {
  allocs: number;
  frees: number;
  max_buffer_index: number;
}

/**
 * `ops` random allocs/frees keeping at most `live_max` chunks; each chunk's words are filled with
 * `(worker_id << 24) | serial` and verified before its free. Frees everything at the end.
 *
 * @example
 * runChunkWorkload(arena, 1, SEED, 10_000, 256, "mixed")
 */
export function runChunkWorkload(
  arena: Arena,
  worker_id: number,
  seed: number,
  ops: number,
  live_max: number,
  mix: SizeMix,
): WorkloadResult {
  const next = mulberry32(seed ^ Math.imul(worker_id, 0x9e3779b1));
  const refs: number[] = [];
  const sizes: number[] = [];
  const tags: number[] = [];
  const result: WorkloadResult = { allocs: 0, frees: 0, max_buffer_index: 0 };
  for (let op = 0; op < ops; op++) {
    if (refs.length < live_max && (refs.length === 0 || next() % 100 < 55)) {
      const size = randomSize(next, mix);
      const ref = arena.alloc(size);
      const tag = ((worker_id << 24) | (result.allocs & 0xffffff)) >>> 0;
      fillWords(arena, ref, size, tag);
      refs.push(ref);
      sizes.push(size);
      tags.push(tag);
      result.allocs++;
      result.max_buffer_index = Math.max(result.max_buffer_index, bufferIndex(ref));
    } else {
      freeAt(arena, refs, sizes, tags, next() % refs.length, seed);
      result.frees++;
    }
  }
  while (refs.length > 0) {
    freeAt(arena, refs, sizes, tags, refs.length - 1, seed);
    result.frees++;
  }
  return result;
}

function fillWords(arena: Arena, ref: number, size_bytes: number, tag: number): void {
  const first = offsetBytes(ref) >>> 2;
  arena.u32[bufferIndex(ref)]!.fill(tag, first, first + (size_bytes >>> 2));
}

function freeAt(
  arena: Arena,
  refs: number[],
  sizes: number[],
  tags: number[],
  i: number,
  seed: number,
): void {
  const ref = refs[i]!;
  const size = sizes[i]!;
  const tag = tags[i]!;
  const words = arena.u32[bufferIndex(ref)]!;
  const first = offsetBytes(ref) >>> 2;
  for (let w = first; w < first + (size >>> 2); w++) {
    if (words[w] !== tag) {
      const found = words[w];
      const owner =
        found === undefined ? "outside the buffer" : `${found.toString(16)} (worker ${found >>> 24})`;
      throw new Error(
        `seed ${seed}: chunk ref ${ref} (${size} bytes) word ${w - first} holds ${owner}, ` +
          `expected ${tag.toString(16)} (worker ${tag >>> 24})`,
      );
    }
  }
  arena.free(ref, size);
  refs[i] = refs[refs.length - 1]!;
  sizes[i] = sizes[sizes.length - 1]!;
  tags[i] = tags[tags.length - 1]!;
  refs.pop();
  sizes.pop();
  tags.pop();
}
