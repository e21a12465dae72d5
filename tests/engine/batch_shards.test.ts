import { describe, expect, test } from "bun:test";
import { BatchShards } from "../../src/engine/batch_shards.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";

const SEED = Number(process.env.WALKV_SEED ?? 1 + Math.floor(Math.random() * 1e9));

/** The shards of `hashes` with their key counts, ascending, the slow and obvious way. */
function expected(hashes: number[], shardOf: (h: number) => number): Array<[number, number]> {
  const counts = new Map<number, number>();
  for (const h of hashes) counts.set(shardOf(h), (counts.get(shardOf(h)) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => a[0] - b[0]);
}

function contents(batch: BatchShards): Array<[number, number]> {
  return Array.from({ length: batch.length }, (_, i): [number, number] => [
    batch.shards[i]!,
    batch.counts[i]!,
  ]);
}

describe("BatchShards", () => {
  const shardOf = (h: number) => h >>> 20; // 4096 shards, as the default shard_bits 12

  test("one key: its shard, once", () => {
    const batch = new BatchShards();
    batch.load([0xabc12345], shardOf);
    expect(contents(batch)).toEqual([[0xabc, 1]]);
  });

  test("repeats are counted, shards come out ascending, and a reload replaces the batch", () => {
    const batch = new BatchShards();
    batch.load([0x00500000, 0xfff00000, 0x00500001, 0x00100000, 0x00500002], shardOf);
    expect(contents(batch)).toEqual([
      [0x001, 1],
      [0x005, 3],
      [0xfff, 1],
    ]);
    batch.load([0x00200000, 0x00200000], shardOf);
    expect(contents(batch)).toEqual([[0x002, 2]]);
  });

  test(`random batches of 1 to 3000 keys (past the initial capacity) match a Map (seed ${SEED})`, () => {
    const rng = prng(SEED);
    const batch = new BatchShards();
    for (let round = 0; round < 200; round++) {
      const n = 1 + randomInt(rng, round % 10 === 0 ? 3000 : 100);
      const hashes = Array.from({ length: n }, () => randomInt(rng, 2 ** 32));
      batch.load(hashes, shardOf);
      expect(contents(batch), `seed ${SEED} round ${round}`).toEqual(expected(hashes, shardOf));
      for (const h of hashes.slice(0, 20)) {
        const shard = shardOf(h);
        expect(batch.shards[batch.indexOf(shard)], `seed ${SEED} round ${round}`).toBe(shard);
      }
      expect(batch.indexOf(-1)).toBe(-1);
      expect(batch.indexOf(1 << 20)).toBe(-1);
    }
  });

  test("an empty batch is refused", () => {
    expect(() => new BatchShards().load([], shardOf)).toThrow(/at least one key/);
  });
});
