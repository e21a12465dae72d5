import { describe, expect, test } from "bun:test";
import {
  copyOrView,
  copyToWords,
  copyWords,
  readU32,
  readU32BE,
  wordView,
  writeU32,
  writeU32BE,
} from "../../src/engine/bytes.ts";

describe("u32 byte orders", () => {
  test("big-endian is network order, little-endian the reverse, and both round-trip every bit", () => {
    const bytes = new Uint8Array(6).fill(0xee);
    writeU32BE(bytes, 1, 0x01020304);
    expect([...bytes]).toEqual([0xee, 1, 2, 3, 4, 0xee]);
    expect(readU32BE(bytes, 1)).toBe(0x01020304);
    expect(readU32(bytes, 1)).toBe(0x04030201);
    for (const value of [0, 1, 0x7fffffff, 0x80000000, 0xdeadbeef, 0xffffffff]) {
      writeU32BE(bytes, 2, value);
      expect(readU32BE(bytes, 2)).toBe(value);
      writeU32(bytes, 2, value);
      expect(readU32(bytes, 2)).toBe(value);
    }
  });
});

describe("copyOrView", () => {
  test("a short range is a copy of its own; a long one a view of the same memory; both hold the bytes", () => {
    const src = new Uint8Array(1000).map((_, i) => i * 7);
    for (const [start, end] of [
      [0, 0],
      [3, 19],
      [10, 42],
      [10, 43],
      [100, 900],
    ] as const) {
      const got = copyOrView(src, start, end);
      expect([...got]).toEqual([...src.subarray(start, end)]);
      expect(got.buffer === src.buffer).toBe(end - start > 32);
    }
  });
});

/**
 * Runs `copy` into a fresh array of `dst_bytes` filled with 0xee, whose bytes must then be those of
 * `src[s, s + n)` at `d` and 0xee elsewhere; throws naming the case if not.
 */
function checkCopy(
  dst_bytes: number,
  d: number,
  src: Uint8Array,
  s: number,
  n: number,
  copy: (dst8: Uint8Array, dst32: Uint32Array) => void,
): void {
  const dst8 = new Uint8Array(dst_bytes).fill(0xee);
  copy(dst8, wordView(dst8));
  const expected = new Uint8Array(dst_bytes).fill(0xee);
  expected.set(src.subarray(s, s + n), d);
  if (Buffer.compare(dst8, expected) !== 0) throw new Error(`src @${s} → dst ${dst_bytes}@${d}, ${n} bytes`);
}

describe("copyWords", () => {
  test("every alignment of source and destination, lengths around the word thresholds, ranges at the buffers' ends", () => {
    let cases = 0;
    for (const src_bytes of [8192, 8191, 8189]) {
      const src8 = new Uint8Array(src_bytes).map((_, i) => (i * 31 + 7) & 255);
      const src32 = wordView(src8);
      for (const dst_bytes of [4200, 4199]) {
        for (let src_align = 0; src_align < 8; src_align++) {
          for (let dst_align = 0; dst_align < 8; dst_align++) {
            for (const n of [0, 1, 15, 31, 32, 33, 100, 101, 1000, 4095, 4096]) {
              for (const at_end of [false, true]) {
                const s = at_end ? src_bytes - n - (src_align % 4) : src_align;
                const d = at_end ? dst_bytes - n - (dst_align % 4) : dst_align;
                checkCopy(dst_bytes, d, src8, s, n, (dst8, dst32) =>
                  copyWords(dst8, dst32, d, src8, src32, s, n),
                );
                cases++;
              }
            }
          }
        }
      }
    }
    expect(cases).toBe(3 * 2 * 8 * 8 * 11 * 2);
  });
});

describe("copyToWords", () => {
  test("any source offset, every destination alignment, lengths around the thresholds, at the destination's end", () => {
    const src = new Uint8Array(9000).map((_, i) => (i * 13 + 5) & 255);
    let cases = 0;
    for (const dst_bytes of [4200, 4199]) {
      for (let src_at = 0; src_at < 5; src_at++) {
        for (let dst_align = 0; dst_align < 8; dst_align++) {
          for (const n of [0, 1, 15, 31, 32, 33, 100, 101, 1000, 4095, 4096]) {
            for (const at_end of [false, true]) {
              const d = at_end ? dst_bytes - n - (dst_align % 4) : dst_align;
              checkCopy(dst_bytes, d, src, src_at, n, (dst8, dst32) =>
                copyToWords(dst8, dst32, d, src, src_at, n),
              );
              cases++;
            }
          }
        }
      }
    }
    expect(cases).toBe(2 * 5 * 8 * 11 * 2);
  });
});
