import { describe, expect, test } from "bun:test";
import { buildCrcTables, crcUpdate } from "../../src/engine/crc_slicing.ts";
import { crc32 } from "../../src/engine/crc32.ts";
import { crc32c, crc32cUpdate } from "../../src/engine/crc32c.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";

const SEED = Number(process.env.WALKV_SEED ?? 20240601);
const CHECK_INPUT = new TextEncoder().encode("123456789");

/** Bit-at-a-time CRC of a reflected polynomial: the definition the tables must agree with. */
function bitwiseCrc(reflected_polynomial: number, bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ reflected_polynomial : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

describe("slicing-by-8 CRC, shared by CRC-32C and CRC-32", () => {
  test("gives each polynomial's check value", () => {
    expect(crc32c(CHECK_INPUT)).toBe(0xe3069283);
    expect(crcUpdate(buildCrcTables(0x82f63b78), 0, CHECK_INPUT, 0, 9)).toBe(0xe3069283);
    expect(crcUpdate(buildCrcTables(0xedb88320), 0, CHECK_INPUT, 0, 9)).toBe(0xcbf43926);
    expect(crc32(CHECK_INPUT)).toBe(0xcbf43926);
  });

  test(`matches the bitwise definition at every length up to 40 and any split (seed ${SEED})`, () => {
    const rng = prng(SEED);
    for (const polynomial of [0x82f63b78, 0xedb88320]) {
      const tables = buildCrcTables(polynomial);
      for (let length = 0; length <= 40; length++) {
        const bytes = Uint8Array.from({ length }, () => randomInt(rng, 256));
        const expected = bitwiseCrc(polynomial, bytes);
        const where = `seed ${SEED} polynomial ${polynomial.toString(16)} length ${length}`;
        expect(crcUpdate(tables, 0, bytes, 0, length), where).toBe(expected);
        const split = randomInt(rng, length + 1);
        const first = crcUpdate(tables, 0, bytes, 0, split);
        expect(crcUpdate(tables, first, bytes, split, length), `${where} split ${split}`).toBe(expected);
      }
    }
  });

  test("crc32cUpdate extends a running CRC-32C as before", () => {
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 31) & 0xff);
    expect(crc32cUpdate(crc32cUpdate(0, bytes, 0, 333), bytes, 333)).toBe(crc32c(bytes));
    expect(crc32c(bytes, 10, 900)).toBe(bitwiseCrc(0x82f63b78, bytes.subarray(10, 900)));
  });

  test("asserts on bad tables, polynomials and ranges", () => {
    expect(() => buildCrcTables(0)).toThrow(/invariant/);
    expect(() => buildCrcTables(2 ** 32)).toThrow(/invariant/);
    expect(() => crcUpdate(new Int32Array(256), 0, CHECK_INPUT, 0, 9)).toThrow(/invariant/);
    expect(() => crc32c(CHECK_INPUT, 4, 10)).toThrow(/invariant/);
  });
});
