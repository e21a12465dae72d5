import { describe, expect, test } from "bun:test";
import { readU32, readU32BE, writeU32, writeU32BE } from "../../src/engine/bytes.ts";

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
