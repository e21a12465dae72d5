import { describe, expect, test } from "bun:test";
import { crc32 as zlibCrc32 } from "node:zlib";
import { buildCrcTables, crcUpdate } from "../../src/engine/crc_slicing.ts";
import { CRC32_NATIVE_MIN_BYTES, crc32 } from "../../src/engine/crc32.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";

const SEED = Number(process.env.WALKV_SEED ?? 20240601);
const ascii = (s: string) => new TextEncoder().encode(s);
const JS_TABLES = buildCrcTables(0xedb88320);

/** `length` random bytes, in an array over a SharedArrayBuffer (as the WAL ring is) or a plain one. */
function randomArray(rng: () => number, length: number, shared: boolean): Uint8Array {
  const bytes = new Uint8Array(shared ? new SharedArrayBuffer(length) : new ArrayBuffer(length));
  for (let i = 0; i < length; i++) bytes[i] = randomInt(rng, 256);
  return bytes;
}

describe("crc32", () => {
  test("is CRC-32 as zlib computes it: the check value, the empty range, an all-ones input", () => {
    expect(crc32(ascii("123456789"))).toBe(0xcbf43926);
    expect(crc32(ascii("xx123456789y"), 2, 11)).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    const ones = new Uint8Array(4096).fill(0xff);
    for (const length of [1, 7, CRC32_NATIVE_MIN_BYTES - 1, CRC32_NATIVE_MIN_BYTES, 4096]) {
      expect(crc32(ones, 0, length), `length ${length}`).toBe(crcUpdate(JS_TABLES, 0, ones, 0, length));
    }
  });

  test(`equals zlib.crc32 at every length up to 3x the native threshold, any offset (seed ${SEED})`, () => {
    const rng = prng(SEED);
    for (const shared of [false, true]) {
      const bytes = randomArray(rng, 3 * CRC32_NATIVE_MIN_BYTES + 16, shared);
      for (let length = 0; length <= 3 * CRC32_NATIVE_MIN_BYTES; length++) {
        const start = randomInt(rng, 16);
        const expected = zlibCrc32(bytes.slice(start, start + length));
        const where = `seed ${SEED} shared ${shared} start ${start} length ${length}`;
        expect(crc32(bytes, start, start + length), where).toBe(expected);
      }
    }
  });

  test(`equals the JavaScript loop on large ranges, native above the threshold (seed ${SEED})`, () => {
    const rng = prng(SEED ^ 0x5a);
    for (const shared of [false, true]) {
      const bytes = randomArray(rng, 120_016, shared);
      for (const length of [1700, 4096, 65_537, 120_000]) {
        const start = randomInt(rng, 16);
        const where = `seed ${SEED} shared ${shared} start ${start} length ${length}`;
        expect(crc32(bytes, start, start + length), where).toBe(
          crcUpdate(JS_TABLES, 0, bytes, start, start + length),
        );
      }
    }
  });

  test(`its JavaScript loop equals zlib.crc32 on both sides of the threshold (seed ${SEED})`, () => {
    // The loop alone computes ranges of any length; crc32 only sends it the short ones.
    const rng = prng(SEED ^ 0x3c);
    for (const shared of [false, true]) {
      const bytes = randomArray(rng, 2100, shared);
      for (let i = 0; i < 400; i++) {
        const start = randomInt(rng, 100);
        const end = start + randomInt(rng, 2000);
        const where = `seed ${SEED} shared ${shared} [${start}, ${end})`;
        const crc = crcUpdate(JS_TABLES, 0, bytes, start, end);
        expect(crc, where).toBe(zlibCrc32(bytes.subarray(start, end)));
        expect(crc, where).toBe(crc32(bytes, start, end));
      }
    }
  });

  test("results are unsigned; a range outside the array is an invariant violation", () => {
    const rng = prng(SEED ^ 0x77);
    let above_2_31 = 0;
    for (const length of [5, 60, 200, 1000]) {
      for (let i = 0; i < 50; i++) {
        const crc = crc32(randomArray(rng, length, false));
        expect(Number.isInteger(crc) && crc >= 0 && crc <= 0xffffffff).toBe(true);
        if (crc >= 2 ** 31) above_2_31++;
      }
    }
    expect(above_2_31).toBeGreaterThan(0);
    const bytes = new Uint8Array(300);
    expect(() => crc32(bytes, 5, 3)).toThrow(/invariant/);
    expect(() => crc32(bytes, -1, 3)).toThrow(/invariant/);
    expect(() => crc32(bytes, 0, 301)).toThrow(/invariant/);
    expect(() => crc32(bytes, 100, 301)).toThrow(/invariant/);
  });
});
