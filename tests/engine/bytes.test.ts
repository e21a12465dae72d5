import { describe, expect, test } from "bun:test";
import { copyOrView, readU32, readU32BE, writeU32, writeU32BE } from "../../src/engine/bytes.ts";

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
