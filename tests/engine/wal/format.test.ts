import { describe, expect, test } from "bun:test";
import { readU64, writeU32, writeU64 } from "../../../src/engine/bytes.ts";
import { crc32c } from "../../../src/engine/crc32c.ts";
import { CorruptionError } from "../../../src/engine/errors.ts";
import {
  decodeSegmentHeader,
  encodeSegmentHeader,
  isNewerFormat,
  parseSegmentName,
  segmentName,
} from "../../../src/engine/wal/format.ts";

function corruption(fn: () => unknown): CorruptionError {
  try {
    fn();
  } catch (error) {
    if (error instanceof CorruptionError) return error;
    throw error;
  }
  throw new Error("expected a CorruptionError");
}

describe("segment names", () => {
  test("are the first LSN in 20 digits", () => {
    expect(segmentName(1)).toBe("00000000000000000001.wal");
    expect(segmentName(2 ** 53 - 1)).toBe("00009007199254740991.wal");
    expect(parseSegmentName("00000000000000000001.wal")).toBe(1);
    expect(parseSegmentName(segmentName(123_456_789_012))).toBe(123_456_789_012);
  });

  test("reject anything else", () => {
    for (const name of [
      "00000000000000000000.wal",
      "0000000000000000001.wal",
      "00000000000000000001.wal.tmp",
      "0000000000000000000a.wal",
      "-0000000000000000001.wal",
      "99999999999999999999.wal",
      "00000000000000000001.WAL",
      "data.db",
    ]) {
      expect(parseSegmentName(name), name).toBeUndefined();
    }
  });
});

describe("u64 halves", () => {
  test("round trip up to 2^53 - 1 and flag larger values", () => {
    const bytes = new Uint8Array(8);
    for (const value of [0, 1, 0xffffffff, 2 ** 32, 2 ** 32 + 5, 2 ** 53 - 1]) {
      writeU64(bytes, 0, value);
      expect(readU64(bytes, 0)).toBe(value);
    }
    writeU32(bytes, 4, 0x200000);
    expect(readU64(bytes, 0)).toBe(-1);
  });
});

describe("segment header", () => {
  test("has the documented layout and round-trips", () => {
    const header = encodeSegmentHeader(2 ** 32 + 7);
    expect(header.length).toBe(32);
    expect(new TextDecoder().decode(header.subarray(0, 8))).toBe("WALKVWAL");
    expect(Array.from(header.subarray(8, 12))).toEqual([1, 0, 0, 0]);
    expect(Array.from(header.subarray(16, 32))).toEqual([7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(decodeSegmentHeader(header, "x.wal")).toBe(2 ** 32 + 7);
  });

  test("bad magic, newer version, bad CRC, reserved bytes are corruption at their offset", () => {
    const cases: [number, number, number, RegExp][] = [
      [0, 0x58, 0, /bad magic/],
      [8, 2, 8, /format version 2 is newer than this walkv supports \(1\)/],
      [8, 0, 8, /unknown format version 0/],
      [12, 0, 12, /CRC mismatch/],
      [20, 1, 12, /CRC mismatch/],
    ];
    for (const [offset, value, error_offset, reason] of cases) {
      const header = encodeSegmentHeader(9);
      header[offset] = value;
      const error = corruption(() => decodeSegmentHeader(header, "seg.wal"));
      expect(error.file).toBe("seg.wal");
      expect(error.offset_bytes, `byte ${offset}`).toBe(error_offset);
      expect(error.message).toMatch(reason);
    }
    expect(corruption(() => decodeSegmentHeader(new Uint8Array(31), "s")).offset_bytes).toBe(0);
    const resealed = encodeSegmentHeader(9);
    resealed[24] = 1;
    writeU32(resealed, 12, crc32c(resealed, 16, 32));
    expect(corruption(() => decodeSegmentHeader(resealed, "s")).offset_bytes).toBe(24);
  });

  test("isNewerFormat recognises only a valid magic with a newer version", () => {
    const header = encodeSegmentHeader(1);
    expect(isNewerFormat(header)).toBe(false);
    header[8] = 2;
    expect(isNewerFormat(header)).toBe(true);
    header[0] = 0;
    expect(isNewerFormat(header)).toBe(false);
  });
});
