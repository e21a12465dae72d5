import { describe, expect, test } from "bun:test";
import { readU32, writeU32 } from "../../../src/engine/bytes.ts";
import { crc32 } from "../../../src/engine/crc32.ts";
import { crc32c } from "../../../src/engine/crc32c.ts";
import { CorruptionError, IoError } from "../../../src/engine/errors.ts";
import { prng, randomInt } from "../../../src/engine/io/prng.ts";
import { encodeSegmentHeader, segmentName } from "../../../src/engine/wal/format.ts";
import {
  delEntry,
  encodedRecordSize,
  encodeRecord,
  setEntry,
  type WalEntry,
} from "../../../src/engine/wal/record.ts";
import {
  type ReadSegmentOptions,
  readSegment,
  type SegmentReadResult,
} from "../../../src/engine/wal/segment_reader.ts";
import { MemIo } from "../io/mem_io.ts";

const SEED = Number(process.env.WALKV_SEED ?? 20240601);
const PATH = `/data/wal/${segmentName(1)}`;
const MAX_RECORD_BYTES = 1 << 20;

const ascii = (s: string) => new TextEncoder().encode(s);

function entriesFor(lsn: number): WalEntry[] {
  return [
    setEntry(ascii(`key-${lsn}`), ascii(`value-${lsn}`.repeat(1 + (lsn % 3)))),
    delEntry(ascii(`old-${lsn}`)),
  ];
}

interface Segment {
  bytes: Uint8Array;
  /** File offset of each record. */
  offsets: number[];
}

type Checksum = (bytes: Uint8Array, start: number, end: number) => number;
/** The record checksum of each format version, spelled out here rather than taken from format.ts. */
const CHECKSUM_OF_VERSION: Record<number, Checksum> = { 1: crc32c, 2: crc32 };

/** Writes the CRC of the record at `bytes[offset]`, computed by `checksum`. */
function seal(bytes: Uint8Array, offset: number, checksum: Checksum): void {
  const end = offset + 24 + readU32(bytes, offset);
  writeU32(bytes, offset + 4, checksum(bytes, offset + 8, end));
}

/**
 * A segment of format `format_version` (2, as walkv writes, by default) with header first_lsn
 * `first_lsn` and one record per element of `lsns`, each sealed with the version's checksum.
 */
function buildSegment(first_lsn: number, lsns: number[], entries = entriesFor, format_version = 2): Segment {
  const parts = lsns.map((lsn) => {
    const list = entries(lsn);
    const record = new Uint8Array(encodedRecordSize(list));
    encodeRecord(lsn, list, record, 0);
    seal(record, 0, CHECKSUM_OF_VERSION[format_version]!);
    return record;
  });
  const bytes = new Uint8Array(32 + parts.reduce((sum, part) => sum + part.length, 0));
  bytes.set(encodeSegmentHeader(first_lsn, format_version), 0);
  const offsets: number[] = [];
  let offset = 32;
  for (const part of parts) {
    offsets.push(offset);
    bytes.set(part, offset);
    offset += part.length;
  }
  return { bytes, offsets };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

interface Read {
  result: SegmentReadResult;
  lsns: number[];
  file_offsets: number[];
}

function read(bytes: Uint8Array, options: Partial<ReadSegmentOptions> = {}): Read {
  const io = new MemIo();
  io.files.set(PATH, bytes);
  const lsns: number[] = [];
  const file_offsets: number[] = [];
  const full: ReadSegmentOptions = { newest: true, max_record_bytes: MAX_RECORD_BYTES, ...options };
  try {
    const result = readSegment(io, PATH, full, (lsn, chunk, record_offset, record_length, file_offset) => {
      expect(chunk.subarray(record_offset, record_offset + record_length)).toEqual(
        bytes.subarray(file_offset, file_offset + record_length),
      );
      lsns.push(lsn);
      file_offsets.push(file_offset);
    });
    return { result, lsns, file_offsets };
  } finally {
    expect(io.openCount()).toBe(0);
  }
}

function corruptionOf(bytes: Uint8Array, options: Partial<ReadSegmentOptions> = {}): CorruptionError {
  try {
    read(bytes, options);
  } catch (error) {
    if (error instanceof CorruptionError) {
      expect(error.file).toBe(PATH);
      return error;
    }
    throw error;
  }
  throw new Error("expected a CorruptionError");
}

const LSNS = [1, 2, 3, 4, 5];

describe("readSegment: clean segments", () => {
  test("yields every record in order with its file offset", () => {
    const segment = buildSegment(1, LSNS);
    for (const newest of [true, false]) {
      const { result, lsns, file_offsets } = read(segment.bytes, { newest, expected_first_lsn: 1 });
      expect(lsns).toEqual(LSNS);
      expect(file_offsets).toEqual(segment.offsets);
      expect(result).toEqual({
        first_lsn: 1,
        format_version: 2,
        last_lsn: 5,
        records: 5,
        end_offset_bytes: segment.bytes.length,
        size_bytes: segment.bytes.length,
        torn_tail_offset_bytes: undefined,
        torn_bytes: 0,
        zero_tail_bytes: 0,
      });
    }
  });

  test("a header-only segment has no records", () => {
    const { result, lsns } = read(buildSegment(7, []).bytes, { newest: false });
    expect(lsns).toEqual([]);
    expect(result.first_lsn).toBe(7);
    expect(result.last_lsn).toBeUndefined();
    expect(result.end_offset_bytes).toBe(32);
  });

  test(`chunk sizes smaller than records give the same records (seed ${SEED})`, () => {
    const rng = prng(SEED);
    const sizes = Array.from({ length: 200 }, () => randomInt(rng, 3000));
    const segment = buildSegment(
      100,
      sizes.map((_, i) => 100 + i),
      (lsn) => [setEntry(ascii(`k${lsn}`), new Uint8Array(sizes[lsn - 100]!).fill(lsn))],
    );
    const whole = read(segment.bytes, { newest: false });
    for (const chunk_bytes of [24, 100, 1000, 4096]) {
      const chunked = read(segment.bytes, { newest: false, chunk_bytes });
      expect(chunked.lsns, `seed ${SEED} chunk ${chunk_bytes}`).toEqual(whole.lsns);
      expect(chunked.file_offsets, `seed ${SEED} chunk ${chunk_bytes}`).toEqual(segment.offsets);
      expect(chunked.result).toEqual(whole.result);
    }
  });

  test("a missing file is an IoError, not corruption", () => {
    const io = new MemIo();
    expect(() =>
      readSegment(io, PATH, { newest: true, max_record_bytes: MAX_RECORD_BYTES }, () => {}),
    ).toThrow(IoError);
  });
});

describe("readSegment: torn tail of the newest segment", () => {
  const segment = buildSegment(1, LSNS);
  const last = segment.offsets[4]!;
  const flipLastPayload = () => {
    const bytes = segment.bytes.slice();
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x10;
    return bytes;
  };
  const cases: [string, Uint8Array, number, number][] = [
    // name, file bytes, torn offset, records kept
    [
      "fewer than 24 bytes left",
      concat(segment.bytes, new Uint8Array(23).fill(0xab)),
      segment.bytes.length,
      5,
    ],
    ["a record running past end of file", segment.bytes.slice(0, segment.bytes.length - 1), last, 4],
    ["only part of a record header", segment.bytes.slice(0, last + 10), last, 4],
    ["a bad-CRC record ending exactly at EOF", flipLastPayload(), last, 4],
    ["a bad-CRC record followed by zeros", concat(flipLastPayload(), new Uint8Array(5000)), last, 4],
    [
      "a header whose length runs past EOF",
      concat(segment.bytes, new Uint8Array([0xff, 0xff, 0xff, 0x7f, ...new Uint8Array(28)])),
      segment.bytes.length,
      5,
    ],
  ];
  const zero_cases: [string, Uint8Array][] = [
    ["an all-zero remainder (zeros written ahead)", concat(segment.bytes, new Uint8Array(1 << 20))],
    ["a short all-zero remainder", concat(segment.bytes, new Uint8Array(5))],
  ];
  for (const [name, bytes] of zero_cases) {
    test(`ends cleanly at ${name}, dropping nothing`, () => {
      for (const chunk_bytes of [undefined, 64]) {
        const { result, lsns } = read(bytes, { chunk_bytes });
        expect(result.torn_tail_offset_bytes).toBeUndefined();
        expect(result.torn_bytes).toBe(0);
        expect(result.end_offset_bytes).toBe(segment.bytes.length);
        expect(result.zero_tail_bytes).toBe(bytes.length - segment.bytes.length);
        expect(lsns).toEqual(LSNS);
      }
    });
    test(`reports ${name} in an older segment as corruption`, () => {
      const error = corruptionOf(bytes, { newest: false });
      expect(error.offset_bytes).toBe(segment.bytes.length);
    });
  }
  for (const [name, bytes, torn_offset, records] of cases) {
    test(`cuts ${name}`, () => {
      for (const chunk_bytes of [undefined, 64]) {
        const { result, lsns } = read(bytes, { chunk_bytes });
        expect(result.torn_tail_offset_bytes).toBe(torn_offset);
        expect(result.end_offset_bytes).toBe(torn_offset);
        expect(result.torn_bytes).toBe(bytes.length - torn_offset);
        expect(result.zero_tail_bytes).toBe(0);
        expect(result.records).toBe(records);
        expect(result.last_lsn).toBe(records);
        expect(lsns).toEqual(LSNS.slice(0, records));
      }
    });
    test(`reports ${name} in an older segment as corruption`, () => {
      const error = corruptionOf(bytes, { newest: false });
      expect(error.offset_bytes).toBe(torn_offset);
    });
  }

  const header = encodeSegmentHeader(1);
  const header_cases: [string, Uint8Array][] = [
    ["an empty file", new Uint8Array(0)],
    ["a partial header", header.slice(0, 20)],
    ["a zero header", new Uint8Array(32)],
    ["a zero header and zero tail", new Uint8Array(4096)],
    [
      "a bad-CRC header and zero tail",
      concat(concat(header.slice(0, 31), new Uint8Array([1])), new Uint8Array(100)),
    ],
  ];
  for (const [name, bytes] of header_cases) {
    test(`cuts ${name} at 0 when the first LSN is known`, () => {
      const { result } = read(bytes, { expected_first_lsn: 1 });
      expect(result).toEqual({
        first_lsn: 1,
        format_version: undefined,
        last_lsn: undefined,
        records: 0,
        end_offset_bytes: 0,
        size_bytes: bytes.length,
        torn_tail_offset_bytes: 0,
        torn_bytes: bytes.length,
        zero_tail_bytes: 0,
      });
      expect(corruptionOf(bytes).offset_bytes).toBe(0);
      expect(corruptionOf(bytes, { newest: false, expected_first_lsn: 1 })).toBeInstanceOf(CorruptionError);
    });
  }
});

describe("readSegment: corruption", () => {
  const segment = buildSegment(1, LSNS);
  const middle = segment.offsets[2]!;

  /** Segment bytes with the record at `offset` changed by `mutate` and its CRC re-sealed. */
  function resealed(offset: number, mutate: (bytes: Uint8Array) => void): Uint8Array {
    const bytes = segment.bytes.slice();
    mutate(bytes);
    seal(bytes, offset, crc32);
    return bytes;
  }

  test("a bad-CRC record followed by non-zero bytes", () => {
    const bytes = segment.bytes.slice();
    bytes[middle + 30] = bytes[middle + 30]! ^ 1;
    for (const newest of [true, false]) {
      const error = corruptionOf(bytes, { newest });
      expect(error.offset_bytes).toBe(middle);
      expect(error.message).toMatch(/CRC mismatch/);
    }
  });

  test("a bad-CRC record, then zeros, then a valid record (out-of-order writeback)", () => {
    const bytes = segment.bytes.slice();
    bytes.fill(0, segment.offsets[3]!, segment.offsets[4]!);
    bytes[middle + 30] = bytes[middle + 30]! ^ 1;
    expect(corruptionOf(bytes).offset_bytes).toBe(middle);
    const zeroed_record = segment.bytes.slice();
    zeroed_record.fill(0, middle, segment.offsets[3]!);
    const error = corruptionOf(zeroed_record);
    expect(error.offset_bytes).toBe(middle);
    expect(error.message).toMatch(`non-zero data follows at byte ${segment.offsets[3]}`);
  });

  const defects: [string, (bytes: Uint8Array) => void, RegExp][] = [
    ["a reserved record type", (b) => (b[middle + 16] = 9), /reserved record type 9/],
    ["reserved record flags", (b) => (b[middle + 17] = 1), /reserved record flags/],
    ["entry_count 0", (b) => writeU32(b, middle + 20, 0), /no entries/],
    ["a reserved op", (b) => (b[middle + 24] = 7), /reserved op 7/],
    ["reserved entry flags", (b) => (b[middle + 25] = 0x80), /reserved flags 0x80/],
    ["a payload not consumed exactly", (b) => writeU32(b, middle + 20, 1), /bytes after the last entry/],
  ];
  for (const [name, mutate, reason] of defects) {
    test(`${name} under a valid CRC, in the middle or at the tail`, () => {
      const bytes = resealed(middle, mutate);
      const error = corruptionOf(bytes);
      expect(error.offset_bytes).toBe(middle);
      expect(error.message).toMatch(reason);
      // A well-sealed record is never a torn write: even as the last record it is corruption.
      const tail = resealed(middle, mutate).slice(0, segment.offsets[3]!);
      expect(corruptionOf(tail).offset_bytes).toBe(middle);
    });
  }

  test("a record over max_record_bytes", () => {
    // LSN 2 holds the largest record (3 value repeats), so it is the first over the limit.
    const length = segment.offsets[2]! - segment.offsets[1]!;
    const error = corruptionOf(segment.bytes, { max_record_bytes: length - 1 });
    expect(error.offset_bytes).toBe(segment.offsets[1]!);
    expect(error.message).toMatch(`record of ${length} bytes is over max_record_bytes ${length - 1}`);
  });

  test("an LSN gap, a repeat, and a first record not matching the header", () => {
    const cases: [number, number[], number, string][] = [
      [1, [1, 2, 4, 5], 2, "record lsn 4, expected 3"],
      [1, [1, 2, 2, 3], 2, "record lsn 2, expected 3"],
      [1, [2, 3], 0, "record lsn 2, expected 1"],
    ];
    for (const [first_lsn, lsns, bad_index, reason] of cases) {
      const built = buildSegment(first_lsn, lsns);
      for (const newest of [true, false]) {
        const error = corruptionOf(built.bytes, { newest });
        expect(error.offset_bytes).toBe(built.offsets[bad_index]!);
        expect(error.message).toMatch(reason);
      }
    }
  });

  test("a header first_lsn other than expected", () => {
    const error = corruptionOf(segment.bytes, { expected_first_lsn: 2 });
    expect(error.offset_bytes).toBe(16);
    expect(error.message).toMatch("segment first_lsn 1, expected 2");
  });

  test("a bad header followed by records, and a newer format version even when alone", () => {
    const bad_magic = segment.bytes.slice();
    bad_magic[0] = 0;
    expect(corruptionOf(bad_magic, { expected_first_lsn: 1 }).message).toMatch(/bad magic/);
    const newer = encodeSegmentHeader(1);
    newer[8] = 3;
    expect(corruptionOf(newer, { expected_first_lsn: 1 }).message).toMatch(
      /format version 3 is newer than this walkv supports \(2\)/,
    );
  });

  test("a flip of any bit of a record followed by another is never accepted", () => {
    for (let i = middle; i < segment.offsets[3]!; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bytes = segment.bytes.slice();
        bytes[i] = bytes[i]! ^ (1 << bit);
        const where = `byte ${i} bit ${bit}`;
        expect(corruptionOf(bytes, { newest: false }).offset_bytes, where).toBe(middle);
        // In the newest segment only a length that now runs past EOF may read as a torn tail.
        try {
          const { result } = read(bytes);
          expect(i - middle, where).toBeLessThan(4);
          expect(result.torn_tail_offset_bytes, where).toBe(middle);
        } catch (error) {
          expect(error, where).toBeInstanceOf(CorruptionError);
          expect((error as CorruptionError).offset_bytes, where).toBe(middle);
        }
      }
    }
  });
});

describe("readSegment: format versions", () => {
  for (const format_version of [1, 2]) {
    const other = format_version === 1 ? 2 : 1;

    test(`a version ${format_version} segment is read with its records' checksum, in any chunk size`, () => {
      // Values of 0 to 600 bytes: records on both sides of crc32's native threshold.
      const sized = (lsn: number) => [setEntry(ascii(`k${lsn}`), new Uint8Array(lsn * 20).fill(lsn))];
      const lsns = Array.from({ length: 30 }, (_, i) => 1 + i);
      const segment = buildSegment(1, lsns, sized, format_version);
      for (const chunk_bytes of [undefined, 100]) {
        const { result, lsns: read_lsns, file_offsets } = read(segment.bytes, { newest: false, chunk_bytes });
        expect(read_lsns).toEqual(lsns);
        expect(file_offsets).toEqual(segment.offsets);
        expect(result.format_version).toBe(format_version);
        expect(result.end_offset_bytes).toBe(segment.bytes.length);
      }
    });

    test(`a record sealed with version ${other}'s checksum in a version ${format_version} segment is a bad CRC`, () => {
      const segment = buildSegment(1, LSNS, entriesFor, format_version);
      const middle = segment.offsets[2]!;
      const wrong = segment.bytes.slice();
      seal(wrong, middle, CHECKSUM_OF_VERSION[other]!);
      for (const newest of [true, false]) {
        const error = corruptionOf(wrong, { newest });
        expect(error.offset_bytes).toBe(middle);
        expect(error.message).toMatch(/record CRC mismatch/);
      }
      // As the newest segment's last record, it reads as a torn tail (cut); in an older one, corruption.
      const last = segment.offsets[4]!;
      const wrong_tail = segment.bytes.slice();
      seal(wrong_tail, last, CHECKSUM_OF_VERSION[other]!);
      const { result, lsns } = read(wrong_tail);
      expect(lsns).toEqual([1, 2, 3, 4]);
      expect(result.torn_tail_offset_bytes).toBe(last);
      const error = corruptionOf(wrong_tail, { newest: false });
      expect(error.offset_bytes).toBe(last);
      expect(error.message).toMatch(/record CRC mismatch$/);
    });

    test(`a whole version ${format_version} segment relabelled version ${other} fails at its first record`, () => {
      const segment = buildSegment(1, LSNS, entriesFor, format_version);
      const relabelled = segment.bytes.slice();
      relabelled.set(encodeSegmentHeader(1, other), 0);
      const error = corruptionOf(relabelled, { newest: false });
      expect(error.offset_bytes).toBe(32);
      expect(error.message).toMatch(/record CRC mismatch/);
    });
  }

  test("a version 2 header damaged to read 1 is a bad header, even in the newest segment: nothing is cut", () => {
    const segment = buildSegment(1, [1], entriesFor, 2);
    const damaged = segment.bytes.slice();
    damaged[8] = 1;
    for (const newest of [true, false]) {
      const error = corruptionOf(damaged, { newest });
      expect(error.offset_bytes).toBe(12);
      expect(error.message).toMatch(/segment header CRC mismatch/);
    }
  });
});
