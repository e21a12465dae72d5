import { describe, expect, test } from "bun:test";
import { readU32, readU64, writeU32, writeU64 } from "../../../src/engine/bytes.ts";
import { crc32 } from "../../../src/engine/crc32.ts";
import { crc32c, crc32cUpdate } from "../../../src/engine/crc32c.ts";
import { CorruptionError } from "../../../src/engine/errors.ts";
import {
  decodeSegmentHeader,
  encodeSegmentHeader,
  FORMAT_VERSION,
  isNewerFormat,
  OLDEST_FORMAT_VERSION,
  parseSegmentName,
  recordChecksum,
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
  test("is written as version 2, has the documented layout (CRC-32C over [8, 12) and [16, 32)) and round-trips", () => {
    expect([OLDEST_FORMAT_VERSION, FORMAT_VERSION]).toEqual([1, 2]);
    const header = encodeSegmentHeader(2 ** 32 + 7);
    expect(header.length).toBe(32);
    expect(new TextDecoder().decode(header.subarray(0, 8))).toBe("WALKVWAL");
    expect(Array.from(header.subarray(8, 12))).toEqual([2, 0, 0, 0]);
    expect(readU32(header, 12)).toBe(crc32cUpdate(crc32c(header, 8, 12), header, 16, 32));
    expect(Array.from(header.subarray(16, 32))).toEqual([7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(decodeSegmentHeader(header, "x.wal")).toEqual({ first_lsn: 2 ** 32 + 7, format_version: 2 });
  });

  test("a version 1 header (as walkv wrote before version 2) is accepted; 0 and 3 are not written", () => {
    const header = encodeSegmentHeader(9, 1);
    expect(Array.from(header.subarray(8, 12))).toEqual([1, 0, 0, 0]);
    expect(readU32(header, 12)).toBe(crc32c(header, 16, 32));
    expect(decodeSegmentHeader(header, "x.wal")).toEqual({ first_lsn: 9, format_version: 1 });
    // A version 2 header relabelled 1 is a bad header: its CRC covers the version field.
    const v2 = encodeSegmentHeader(9);
    v2[8] = 1;
    expect(corruption(() => decodeSegmentHeader(v2, "x.wal")).message).toMatch(/CRC mismatch/);
    // And a version 1 header relabelled 2: read as version 2, its CRC covers other bytes.
    const v1 = encodeSegmentHeader(9, 1);
    v1[8] = 2;
    expect(corruption(() => decodeSegmentHeader(v1, "x.wal")).offset_bytes).toBe(12);
    expect(() => encodeSegmentHeader(9, 0)).toThrow(/invariant/);
    expect(() => encodeSegmentHeader(9, 3)).toThrow(/invariant/);
  });

  test("records are checksummed with CRC-32C in version 1 and CRC-32 in version 2", () => {
    expect(recordChecksum(1)).toBe(crc32c);
    expect(recordChecksum(2)).toBe(crc32);
    const check = new TextEncoder().encode("123456789");
    expect(recordChecksum(1)(check, 0, 9)).toBe(0xe3069283);
    expect(recordChecksum(2)(check, 0, 9)).toBe(0xcbf43926);
    expect(() => recordChecksum(0)).toThrow(/invariant/);
    expect(() => recordChecksum(3)).toThrow(/invariant/);
  });

  test("bad magic, newer version, bad CRC, reserved bytes are corruption at their offset", () => {
    const cases: [number, number, number, RegExp][] = [
      [0, 0x58, 0, /bad magic/],
      [8, 3, 8, /format version 3 is newer than this walkv supports \(2\)/],
      [8, 0xff, 8, /format version 255 is newer than this walkv supports \(2\)/],
      [8, 0, 8, /unknown format version 0/],
      [8, 1, 12, /CRC mismatch/],
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
    writeU32(resealed, 12, crc32cUpdate(crc32c(resealed, 8, 12), resealed, 16, 32));
    expect(corruption(() => decodeSegmentHeader(resealed, "s")).offset_bytes).toBe(24);
  });

  test("isNewerFormat recognises only a valid magic with a version over 2", () => {
    const header = encodeSegmentHeader(1);
    expect(isNewerFormat(header)).toBe(false);
    header[8] = 1;
    expect(isNewerFormat(header)).toBe(false);
    header[8] = 3;
    expect(isNewerFormat(header)).toBe(true);
    header[0] = 0;
    expect(isNewerFormat(header)).toBe(false);
  });
});
