/**
 * 32-bit MurmurHash3 (x86_32) of a key's bytes: the table's only hash. Its top bits pick the shard,
 * its low bits the home slot inside the shard, and all 32 bits are kept in the slot as a tag.
 *
 * @example
 * const h = hashKey(new TextEncoder().encode("user:42")); // 0 <= h < 2**32
 * hashKey(block, 10, 26) // the key held in block[10, 26)
 */
export function hashKey(key: Uint8Array, start = 0, end = key.length): number {
  const n = end - start;
  let h = 0x9747b28c ^ n;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    const k = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24);
    h ^= mixK(k);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = end - i;
  if (rest > 0) {
    let k = key[i]!;
    if (rest > 1) k |= key[i + 1]! << 8;
    if (rest > 2) k |= key[i + 2]! << 16;
    h ^= mixK(k);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mixK(k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}
