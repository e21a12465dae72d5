/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of WAL records and of
 * `data.db` blocks. Slicing-by-8 over precomputed tables: about 1 GB/s in Bun. The loop stays in
 * int32 arithmetic (Int32Array tables, no `>>> 0` inside): values above 2^31 make the JIT deoptimise.
 *
 * @example
 * crc32c(new TextEncoder().encode("123456789")) === 0xe3069283
 */
const POLY = 0x82f63b78;
const TABLES = buildTables();

function buildTables(): Int32Array {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
}

/**
 * Extends a running CRC-32C with `bytes[start, end)`. Start a fresh checksum with `crc = 0`.
 *
 * @example
 * const whole = crc32c(ab);
 * const split = crc32cUpdate(crc32cUpdate(0, ab, 0, 3), ab, 3, ab.length); // whole === split
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  const t = TABLES;
  let c = ~crc;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const lo = c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    c =
      t[1792 + (lo & 0xff)]! ^
      t[1536 + ((lo >>> 8) & 0xff)]! ^
      t[1280 + ((lo >>> 16) & 0xff)]! ^
      t[1024 + (lo >>> 24)]! ^
      t[768 + bytes[i + 4]!]! ^
      t[512 + bytes[i + 5]!]! ^
      t[256 + bytes[i + 6]!]! ^
      t[bytes[i + 7]!]!;
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32C of `bytes[start, end)`. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return crc32cUpdate(0, bytes, start, end);
}
