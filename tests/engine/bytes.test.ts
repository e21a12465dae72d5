import { describe, expect, test } from "bun:test";
import { copyBytes, copyOrView, readU32, readU32BE, writeU32, writeU32BE } from "../../src/engine/bytes.ts";

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
 * Arrays of `n` bytes of each kind a copy meets: a request's Buffer (perhaps inside a pooled buffer,
 * not from its byte 0), a plain array, the WAL ring, the arena (growable, perhaps grown since).
 */
const ARRAY_KINDS: Record<string, (n: number) => Uint8Array> = {
  buffer: (n) => Buffer.alloc(n),
  "view at an offset": (n) => new Uint8Array(new ArrayBuffer(n + 13), 13),
  plain: (n) => new Uint8Array(n),
  "fixed shared": (n) => new Uint8Array(new SharedArrayBuffer(n)),
  "growable shared": (n) => new Uint8Array(new SharedArrayBuffer(n, { maxByteLength: 2 * n + 64 })),
  "grown shared": (n) => {
    const buffer = new SharedArrayBuffer(16, { maxByteLength: 2 * n + 64 });
    const view = new Uint8Array(buffer); // length-tracking: covers what the buffer grows to
    buffer.grow(n);
    return view;
  },
};

describe("copyBytes", () => {
  test("between every kind of array, at every offset mod 8, lengths around the loop threshold, ranges at the arrays' ends", () => {
    let cases = 0;
    for (const [src_kind, makeSrc] of Object.entries(ARRAY_KINDS)) {
      const src = makeSrc(5003); // filled in place: map() would return a plain array
      for (let i = 0; i < src.length; i++) src[i] = (i * 31 + 7) & 255;
      for (const [dst_kind, makeDst] of Object.entries(ARRAY_KINDS)) {
        for (const n of [0, 1, 7, 8, 9, 16, 100, 4096]) {
          for (let align = 0; align < 8; align++) {
            for (const at_end of [false, true]) {
              const s = at_end ? src.length - n - align : align;
              const d = at_end ? 4200 - n - ((align * 3) % 8) : (align * 3) % 8;
              const dst = makeDst(4200).fill(0xee);
              copyBytes(dst, d, src, s, n);
              const expected = new Uint8Array(4200).fill(0xee);
              expected.set(src.subarray(s, s + n), d);
              if (Buffer.compare(dst, expected) !== 0)
                throw new Error(`${src_kind} @${s} → ${dst_kind} @${d}, ${n} bytes`);
              cases++;
            }
          }
        }
      }
    }
    const kinds = Object.keys(ARRAY_KINDS).length;
    expect(cases).toBe(kinds * kinds * 8 * 8 * 2);
  });

  test("a range outside either array is refused before any byte is written", () => {
    const src = new Uint8Array(64).fill(1);
    for (const [d, s, n] of [
      [60, 0, 5],
      [0, 60, 5],
      [0, 0, 65],
      [-1, 0, 4],
      [0, -1, 4],
      [50, 0, 20],
    ] as const) {
      const dst = new Uint8Array(64);
      expect(() => copyBytes(dst, d, src, s, n)).toThrow(/invariant/);
      expect(dst.every((b) => b === 0)).toBe(true);
    }
  });
});
