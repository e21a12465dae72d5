import { describe, expect, test } from "bun:test";
import { writeU32 } from "../../../src/engine/bytes.ts";
import { crc32 } from "../../../src/engine/crc32.ts";
import { crc32c } from "../../../src/engine/crc32c.ts";
import { prng, randomInt } from "../../../src/engine/io/prng.ts";
import { OP_DEL, OP_SET, recordChecksum } from "../../../src/engine/wal/format.ts";
import {
  decodeRecordHeader,
  encodedRecordSize,
  encodeRecord,
  recordCrcMatches,
  recordDefect,
  recordLengthBytes,
  setEntryIn,
  visitRecordEntries,
  type WalEntry,
  type WalOp,
} from "../../../src/engine/wal/record.ts";

const SEED = Number(process.env.WALKV_SEED ?? 20240601);
const ascii = (s: string) => new TextEncoder().encode(s);

function encode(lsn: number, entries: WalEntry[]): Uint8Array {
  const bytes = new Uint8Array(encodedRecordSize(entries));
  expect(encodeRecord(lsn, entries, bytes, 0)).toBe(bytes.length);
  return bytes;
}

/** An entry of whole arrays, any op and expiry (also malformed ones, for the encoder's asserts). */
function entry(op: WalOp, key: Uint8Array, value: Uint8Array | undefined, expiry_unix_ms = 0): WalEntry {
  const value_length = value?.length ?? 0;
  return {
    op,
    key,
    key_start: 0,
    key_length: key.length,
    value,
    value_start: 0,
    value_length,
    expiry_unix_ms,
  };
}

/** Entries as decoded by the visitor, copied out for comparison. */
function decode(bytes: Uint8Array, offset: number): WalEntry[] {
  const out: WalEntry[] = [];
  visitRecordEntries(
    bytes,
    offset,
    (op, key_offset, key_length, value_offset, value_length, expiry_unix_ms) => {
      const key = bytes.slice(key_offset, key_offset + key_length);
      const value = op === OP_SET ? bytes.slice(value_offset, value_offset + value_length) : undefined;
      out.push(entry(op as WalOp, key, value, expiry_unix_ms));
    },
  );
  return out;
}

function randomBytes(rng: () => number, max_length: number): Uint8Array {
  const bytes = new Uint8Array(randomInt(rng, max_length + 1));
  for (let i = 0; i < bytes.length; i++) bytes[i] = randomInt(rng, 256);
  return bytes;
}

function randomEntries(rng: () => number): WalEntry[] {
  const entries: WalEntry[] = [];
  const count = 1 + randomInt(rng, 5);
  for (let i = 0; i < count; i++) {
    const is_set = rng() < 0.7;
    const key = randomBytes(rng, 40);
    const value = is_set ? randomBytes(rng, 200) : undefined;
    const expiry_unix_ms = rng() < 0.3 ? 1_700_000_000_000 + randomInt(rng, 1_000_000_000) + rng() : 0;
    entries.push(entry(is_set ? OP_SET : OP_DEL, key, value, expiry_unix_ms));
  }
  return entries;
}

describe("record layout", () => {
  // SET "ab"="xyz", DEL "k" with expiry 2^40 ms, at LSN 2^32 + 2 (exercises the high u32 half).
  const entries: WalEntry[] = [
    entry(OP_SET, ascii("ab"), ascii("xyz"), 0),
    entry(OP_DEL, ascii("k"), undefined, 2 ** 40),
  ];
  const expected = new Uint8Array([
    // header: payload_length 38 = (12 + 2 + 3) + (12 + 8 + 1), crc (filled below), lsn, type, flags, reserved, count
    0x26,
    0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0x01, 0, 0, 0, 0x01, 0, 0, 0, 0x02, 0, 0, 0,
    // entry 1: SET, no flags, key_length 2, value_length 3, "ab", "xyz"
    0x01, 0, 0, 0, 0x02, 0, 0, 0, 0x03, 0, 0, 0, 0x61, 0x62, 0x78, 0x79, 0x7a,
    // entry 2: DEL, HAS_EXPIRY, key_length 1, value_length 0, f64 2^40 = 0x4270000000000000, "k"
    0x02, 0x01, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x70, 0x42, 0x6b,
  ]);
  // Format version 2 (the one written): CRC-32 as zlib computes it.
  writeU32(expected, 4, crc32(expected, 8, expected.length));

  test("encodes the hand-computed bytes, sealed with CRC-32 (format version 2)", () => {
    expect(encodedRecordSize(entries)).toBe(62);
    expect(encode(2 ** 32 + 2, entries)).toEqual(expected);
    expect(crc32(expected, 8, 62)).not.toBe(crc32c(expected, 8, 62));
  });

  test("verifies with its segment's checksum only: CRC-32 in version 2, CRC-32C in version 1", () => {
    expect(recordCrcMatches(expected, 0, recordChecksum(2))).toBe(true);
    expect(recordCrcMatches(expected, 0, recordChecksum(1))).toBe(false);
    const v1 = expected.slice();
    writeU32(v1, 4, crc32c(v1, 8, v1.length));
    expect(recordCrcMatches(v1, 0, recordChecksum(1))).toBe(true);
    expect(recordCrcMatches(v1, 0, recordChecksum(2))).toBe(false);
    expect(recordDefect(v1, 0, decodeRecordHeader(v1, 0))).toBeUndefined();
    expect(decode(v1, 0)).toEqual(entries);
  });

  test("decodes the header fields and entries", () => {
    expect(decodeRecordHeader(expected, 0)).toEqual({
      payload_length_bytes: 38,
      crc: crc32(expected, 8, 62),
      lsn: 2 ** 32 + 2,
      type: 1,
      flags: 0,
      reserved: 0,
      entry_count: 2,
    });
    expect(recordLengthBytes(expected, 0)).toBe(62);
    expect(recordCrcMatches(expected, 0, crc32)).toBe(true);
    expect(recordDefect(expected, 0, decodeRecordHeader(expected, 0))).toBeUndefined();
    expect(decode(expected, 0)).toEqual(entries);
  });

  test("encodes keys and values given as ranges of larger arrays like whole arrays", () => {
    // "ab" and "xyz" inside one request-like buffer, as a server hands them over (no views).
    const input = ascii("*3 SET ab $3 xyz!");
    const ranged = [setEntryIn(input, 7, 2, input, 13, 3, 0), entries[1]!];
    expect(encode(2 ** 32 + 2, ranged)).toEqual(expected);
    const out_of_bounds = [setEntryIn(input, 7, 2, input, 15, 3, 0)];
    expect(() => encode(1, out_of_bounds)).toThrow(/invariant/);
    expect(() => encode(1, [setEntryIn(input, -1, 2, input, 13, 3, 0)])).toThrow(/invariant/);
  });

  test("encodes at an offset into a reused dirty buffer", () => {
    const buffer = new Uint8Array(100).fill(0xee);
    encodeRecord(2 ** 32 + 2, entries, buffer, 7);
    expect(buffer.subarray(7, 69)).toEqual(expected);
    expect(buffer[6]).toBe(0xee);
    expect(buffer[69]).toBe(0xee);
  });
});

describe("record round trip", () => {
  test(`random batches back to back in one buffer (seed ${SEED})`, () => {
    const rng = prng(SEED);
    const batches = Array.from({ length: 500 }, () => randomEntries(rng));
    const size_bytes = batches.reduce((sum, entries) => sum + encodedRecordSize(entries), 0);
    const buffer = new Uint8Array(size_bytes);
    let offset = 0;
    batches.forEach((entries, i) => {
      offset += encodeRecord(1000 + i, entries, buffer, offset);
    });
    expect(offset).toBe(size_bytes);
    offset = 0;
    batches.forEach((entries, i) => {
      const header = decodeRecordHeader(buffer, offset);
      expect(header.lsn, `seed ${SEED} record ${i}`).toBe(1000 + i);
      expect(recordCrcMatches(buffer, offset, crc32), `seed ${SEED} record ${i}`).toBe(true);
      expect(recordDefect(buffer, offset, header), `seed ${SEED} record ${i}`).toBeUndefined();
      expect(decode(buffer, offset), `seed ${SEED} record ${i}`).toEqual(entries);
      offset += recordLengthBytes(buffer, offset);
    });
  });

  test("the largest LSN round-trips; LSNs at or over 2^53 are rejected", () => {
    const entries = randomEntries(prng(SEED));
    expect(decodeRecordHeader(encode(2 ** 53 - 1, entries), 0).lsn).toBe(2 ** 53 - 1);
    expect(() => encode(2 ** 53, entries)).toThrow(/invariant/);
    expect(() => encode(0, entries)).toThrow(/invariant/);
  });

  test("encoder asserts on malformed entries and an undersized buffer", () => {
    const key = ascii("k");
    expect(() => encode(1, [])).toThrow(/invariant/);
    expect(() => encode(1, [entry(OP_SET, key, undefined, 0)])).toThrow(/invariant/);
    expect(() => encode(1, [entry(OP_DEL, key, key, 0)])).toThrow(/invariant/);
    expect(() => encode(1, [entry(OP_DEL, key, undefined, Number.NaN)])).toThrow(/invariant/);
    const entries: WalEntry[] = [entry(OP_DEL, key, undefined, 0)];
    expect(() => encodeRecord(1, entries, new Uint8Array(36), 1)).toThrow(/invariant/);
  });
});

describe("record verification", () => {
  const base: WalEntry[] = [
    entry(OP_SET, ascii("key"), ascii("value"), 0),
    entry(OP_DEL, ascii("gone"), undefined, 0),
  ];

  test("a flip of any bit after the length field fails the CRC", () => {
    const record = encode(5, base);
    for (let i = 4; i < record.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = record.slice();
        flipped[i] = flipped[i]! ^ (1 << bit);
        expect(recordCrcMatches(flipped, 0, crc32), `byte ${i} bit ${bit}`).toBe(false);
      }
    }
  });

  /** Applies `mutate` to a valid record, re-seals its CRC, and returns recordDefect's verdict. */
  function defectAfter(mutate: (record: Uint8Array) => Uint8Array): string | undefined {
    const record = mutate(encode(5, base));
    writeU32(record, 4, crc32(record, 8, record.length));
    expect(recordCrcMatches(record, 0, crc32)).toBe(true);
    return recordDefect(record, 0, decodeRecordHeader(record, 0));
  }
  const poke = (offset: number, value: number) => (record: Uint8Array) => {
    record[offset] = value;
    return record;
  };
  // Entry 1 starts at 24, entry 2 at 24 + 12 + 3 + 5 = 44.
  const cases: [string, (record: Uint8Array) => Uint8Array, RegExp][] = [
    ["reserved record type", poke(16, 2), /reserved record type 2/],
    ["record flags", poke(17, 1), /reserved record flags/],
    ["record reserved field", poke(19, 1), /reserved field/],
    ["LSN of 2^53", poke(14, 0x20), /lsn out of range/],
    ["LSN 0", poke(8, 0), /lsn out of range/],
    ["entry_count 0", poke(20, 0), /no entries/],
    ["entry_count too large", poke(20, 3), /entry 2 runs past the payload/],
    ["entry_count too small", poke(20, 1), /16 bytes after the last entry/],
    ["reserved op", poke(44, 3), /entry 1 has reserved op 3/],
    ["reserved entry flags", poke(45, 2), /entry 1 has reserved flags 0x2/],
    ["entry reserved field", poke(47, 1), /entry 1 reserved field/],
    ["DEL with a value", poke(52, 1), /entry 1 is a DEL with a value/],
    ["key past the payload", poke(28, 200), /entry 0 key or value runs past/],
    ["expiry past the payload", poke(45, 1), /entry 1 expiry runs past/],
  ];
  for (const [name, mutate, reason] of cases) {
    test(`detects ${name}`, () => {
      expect(defectAfter(mutate)).toMatch(reason);
    });
  }

  test("detects an expiry that is 0 or not finite under HAS_EXPIRY", () => {
    for (const expiry of [0, Number.NaN, Number.POSITIVE_INFINITY, -1]) {
      const entries: WalEntry[] = [entry(OP_DEL, ascii("k"), undefined, 5)];
      const record = encode(1, entries);
      new DataView(record.buffer).setFloat64(36, expiry, true);
      writeU32(record, 4, crc32(record, 8, record.length));
      expect(recordDefect(record, 0, decodeRecordHeader(record, 0)), `expiry ${expiry}`).toMatch(
        /bad expiry/,
      );
    }
  });

  test("detects a payload with trailing bytes", () => {
    const defect = defectAfter((record) => {
      const longer = new Uint8Array(record.length + 3);
      longer.set(record);
      writeU32(longer, 0, longer.length - 24);
      return longer;
    });
    expect(defect).toMatch(/3 bytes after the last entry/);
  });
});
