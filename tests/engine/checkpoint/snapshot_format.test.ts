import { describe, expect, test } from "bun:test";
import {
  SNAPSHOT_FORMAT_VERSION,
  snapshotSizeBytes,
} from "../../../src/engine/checkpoint/snapshot_format.ts";
import { readSnapshot, verifySnapshot } from "../../../src/engine/checkpoint/snapshot_reader.ts";
import {
  SnapshotWriter,
  type SnapshotWriterOptions,
} from "../../../src/engine/checkpoint/snapshot_writer.ts";
import { crc32c } from "../../../src/engine/crc32c.ts";
import { CorruptionError, IoError } from "../../../src/engine/errors.ts";
import type { Io } from "../../../src/engine/io/io.ts";
import { prng } from "../../../src/engine/io/prng.ts";
import { MemIo } from "../io/mem_io.ts";

const SEED = Number(process.env.WALKV_SEED ?? 0x5eed);
const PATH = "/data/data.db.tmp";

interface Entry {
  key: Uint8Array;
  value: Uint8Array;
  lsn: number;
  expiry_unix_ms: number;
}

function writeSnapshot(io: Io, entries: readonly Entry[], options: SnapshotWriterOptions, path = PATH) {
  const writer = new SnapshotWriter(io, path, options);
  for (const e of entries) writer.add(e.key, e.value, e.lsn, e.expiry_unix_ms);
  return writer.finish();
}

function readAll(io: Io, path = PATH): { entries: Entry[]; info: ReturnType<typeof readSnapshot> } {
  const entries: Entry[] = [];
  const info = readSnapshot(io, path, (bytes, ko, kl, vo, vl, lsn, expiry_unix_ms) => {
    entries.push({ key: bytes.slice(ko, ko + kl), value: bytes.slice(vo, vo + vl), lsn, expiry_unix_ms });
  });
  return { entries, info };
}

function randomBytes(random: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (random() * 256) | 0;
  return bytes;
}

function randomEntries(random: () => number, count: number): Entry[] {
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const value_length = random() < 0.2 ? 0 : (random() * 300) | 0;
    entries.push({
      key: randomBytes(random, 1 + ((random() * 40) | 0)),
      value: randomBytes(random, value_length),
      lsn: 1 + Math.floor(random() * 2 ** 53 - 2),
      expiry_unix_ms: random() < 0.5 ? 0 : 1.7e12 + random() * 1e9,
    });
  }
  return entries;
}

function expectSameEntries(actual: readonly Entry[], expected: readonly Entry[]): void {
  expect(actual.length, `seed ${SEED}`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const where = `seed ${SEED}, entry ${i}`;
    expect(a.key, where).toEqual(e.key);
    expect(a.value, where).toEqual(e.value);
    expect(a.lsn, where).toBe(e.lsn);
    expect(a.expiry_unix_ms, where).toBe(e.expiry_unix_ms);
  }
}

function maxLsn(entries: readonly Entry[]): number {
  return entries.reduce((m, e) => Math.max(m, e.lsn), 0);
}

describe("round trip", () => {
  test("addRange (key and value one after the other in a buffer, at any offset) writes what add writes", () => {
    const random = prng(SEED);
    const entries = randomEntries(random, 500);
    entries.push({
      key: randomBytes(random, 10),
      value: randomBytes(random, 3 << 20),
      lsn: 7,
      expiry_unix_ms: 0,
    });
    const by_add = new MemIo();
    writeSnapshot(by_add, entries, { redo_lsn: 1, created_unix_ms: 2 });
    const by_range = new MemIo();
    const writer = new SnapshotWriter(by_range, PATH, { redo_lsn: 1, created_unix_ms: 2 });
    for (const e of entries) {
      const at = (random() * 16) | 0; // records start anywhere in their buffer
      const buffer = new Uint8Array(at + e.key.length + e.value.length + 3).fill(0xee);
      buffer.set(e.key, at);
      buffer.set(e.value, at + e.key.length);
      writer.addRange(buffer, at, e.key.length, e.value.length, e.lsn, e.expiry_unix_ms);
    }
    writer.finish();
    expectSameEntries(readAll(by_range).entries, entries);
    expect(readAll(by_range).info).toEqual(readAll(by_add).info);
  });

  test("random entries incl. empty values, 64 KiB keys and values larger than a block", () => {
    const random = prng(SEED);
    const entries = randomEntries(random, 400);
    const block_target_bytes = 4096;
    entries.splice(17, 0, {
      key: randomBytes(random, 65536),
      value: new Uint8Array(0),
      lsn: 5,
      expiry_unix_ms: 0,
    });
    entries.splice(100, 0, {
      key: randomBytes(random, 65536),
      value: randomBytes(random, 9),
      lsn: 6,
      expiry_unix_ms: 1,
    });
    entries.splice(200, 0, {
      key: randomBytes(random, 3),
      value: randomBytes(random, 3 * block_target_bytes),
      lsn: 7,
      expiry_unix_ms: 0,
    });
    const io = new MemIo();
    const options = { redo_lsn: 123, created_unix_ms: 1_700_000_000_000, block_target_bytes };
    const written = writeSnapshot(io, entries, options);
    const { entries: read, info } = readAll(io);
    expectSameEntries(read, entries);
    expect(written.entry_count).toBe(entries.length);
    expect(written.max_lsn).toBe(maxLsn(entries));
    expect(written.block_count).toBeGreaterThan(3);
    expect(written.bytes).toBe(io.files.get(PATH)!.length);
    expect(info).toEqual({ redo_lsn: 123, created_unix_ms: 1_700_000_000_000, ...written });
    expect(io.openCount()).toBe(0);
  });

  test("a block larger than the 8 MiB read chunk, with default block target", () => {
    const random = prng(SEED + 1);
    const entries = [
      ...randomEntries(random, 50),
      {
        key: randomBytes(random, 16),
        value: randomBytes(random, 9 * 1024 * 1024 + 5),
        lsn: 9,
        expiry_unix_ms: 0,
      },
      ...randomEntries(random, 50),
    ];
    const io = new MemIo();
    writeSnapshot(io, entries, { redo_lsn: 1, created_unix_ms: 2 });
    expectSameEntries(readAll(io).entries, entries);
  });

  test("LSN extremes 1 and 2^53 - 1 survive", () => {
    const io = new MemIo();
    const entries = [
      { key: new Uint8Array([1]), value: new Uint8Array([2]), lsn: 1, expiry_unix_ms: 0 },
      {
        key: new Uint8Array([3]),
        value: new Uint8Array([4]),
        lsn: Number.MAX_SAFE_INTEGER,
        expiry_unix_ms: 0,
      },
    ];
    writeSnapshot(io, entries, { redo_lsn: Number.MAX_SAFE_INTEGER, created_unix_ms: 0 });
    const { entries: read, info } = readAll(io);
    expectSameEntries(read, entries);
    expect(info.max_lsn).toBe(Number.MAX_SAFE_INTEGER);
    expect(info.redo_lsn).toBe(Number.MAX_SAFE_INTEGER);
  });

  test("empty snapshot: header and footer only", () => {
    const io = new MemIo();
    const written = writeSnapshot(io, [], { redo_lsn: 7, created_unix_ms: 8 });
    expect(written).toEqual({ bytes: 96, entry_count: 0, max_lsn: 0, block_count: 0 });
    const { entries, info } = readAll(io);
    expect(entries).toEqual([]);
    expect(info).toEqual({
      redo_lsn: 7,
      max_lsn: 0,
      entry_count: 0,
      created_unix_ms: 8,
      bytes: 96,
      block_count: 0,
    });
  });
});

describe("writer", () => {
  test("one io.write per block, then footer and header, one sync, one close", () => {
    const io = new MemIo();
    const random = prng(SEED + 2);
    const written = writeSnapshot(io, randomEntries(random, 200), {
      redo_lsn: 1,
      created_unix_ms: 1,
      block_target_bytes: 2048,
    });
    expect(io.calls).toEqual({ write: 1 + written.block_count + 2, sync: 1, close: 1 });
  });

  test("abort closes without syncing; the writer refuses further use", () => {
    const io = new MemIo();
    const writer = new SnapshotWriter(io, PATH, { redo_lsn: 1, created_unix_ms: 1 });
    writer.add(new Uint8Array([1]), new Uint8Array([2]), 3, 0);
    writer.abort();
    writer.abort();
    expect(io.calls.sync).toBe(0);
    expect(io.openCount()).toBe(0);
    expect(() => writer.add(new Uint8Array([1]), new Uint8Array(0), 4, 0)).toThrow(/invariant/);
    expect(() => writer.finish()).toThrow(/invariant/);
  });

  test("asserts LSNs are integers in [1, 2^53) and expiries finite and >= 0", () => {
    const io = new MemIo();
    const writer = new SnapshotWriter(io, PATH, { redo_lsn: 1, created_unix_ms: 1 });
    const key = new Uint8Array([1]);
    for (const lsn of [0, -1, 1.5, 2 ** 53, Number.NaN])
      expect(() => writer.add(key, key, lsn, 0)).toThrow(/lsn/);
    for (const expiry of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => writer.add(key, key, 1, expiry)).toThrow(/expiry/);
    }
    writer.abort();
  });
});

test("exact byte layout of header, blocks, entries and footer", () => {
  const io = new MemIo();
  const entries = [
    { key: new Uint8Array([0x61]), value: new Uint8Array([1, 2, 3]), lsn: 2 ** 32 + 5, expiry_unix_ms: 0 },
    { key: new Uint8Array([0x62, 0x63]), value: new Uint8Array(0), lsn: 9, expiry_unix_ms: 1234.5 },
    { key: new Uint8Array([0x64]), value: new Uint8Array(50), lsn: 3, expiry_unix_ms: 0 },
  ];
  writeSnapshot(io, entries, {
    redo_lsn: 0x0102030405,
    created_unix_ms: 1_700_000_000_123,
    block_target_bytes: 64,
  });

  // Hand-built expectation: block 1 holds entries 0 and 1 (28 + 26 = 54 bytes), block 2 entry 2 (75 bytes).
  const expected = new Uint8Array(64 + (16 + 54) + (16 + 75) + 32);
  const v = new DataView(expected.buffer);
  const u64 = (at: number, n: number) => v.setBigUint64(at, BigInt(n), true);
  const ascii = (at: number, s: string) => expected.set(new TextEncoder().encode(s), at);
  let at = 64;
  const entry = (e: Entry) => {
    v.setUint32(at, e.key.length, true);
    v.setUint32(at + 4, e.value.length, true);
    u64(at + 8, e.lsn);
    v.setFloat64(at + 16, e.expiry_unix_ms, true);
    expected.set(e.key, at + 24);
    expected.set(e.value, at + 24 + e.key.length);
    at += 24 + e.key.length + e.value.length;
  };
  const block_crcs: number[] = [];
  const block = (list: Entry[]) => {
    const start = at;
    at += 16;
    list.forEach(entry);
    v.setUint32(start, at - start - 16, true);
    v.setUint32(start + 8, list.length, true);
    block_crcs.push(crc32c(expected, start + 8, at));
    v.setUint32(start + 4, block_crcs.at(-1)!, true);
  };
  block(entries.slice(0, 2));
  block(entries.slice(2));
  ascii(at, "WALKVEND");
  u64(at + 8, 3);
  u64(at + 16, 2);
  const crc_bytes = new Uint8Array(8);
  block_crcs.forEach((crc, i) => {
    new DataView(crc_bytes.buffer).setUint32(4 * i, crc, true);
  });
  v.setUint32(at + 24, crc32c(crc_bytes), true);
  ascii(0, "WALKVDB\0");
  v.setUint32(8, 1, true);
  v.setUint32(12, 64, true);
  u64(16, 0x0102030405);
  u64(24, 2 ** 32 + 5);
  u64(32, 3);
  u64(40, 1_700_000_000_123);
  u64(48, at - 64);
  v.setUint32(60, crc32c(expected, 0, 60), true);

  expect(io.files.get(PATH)!).toEqual(expected);
  expect(snapshotSizeBytes(at - 64)).toBe(expected.length);
});

describe("corruption", () => {
  /** A small fixture with many blocks (one holding an oversized entry) and its structure map. */
  function fixture(): { io: MemIo; original: Uint8Array; structures: [number, number][] } {
    const random = prng(SEED + 3);
    const entries = randomEntries(random, 14).map((e) => ({ ...e, value: e.value.subarray(0, 20) }));
    entries[5]!.value = randomBytes(random, 100); // larger than the 64-byte block target
    const io = new MemIo();
    writeSnapshot(io, entries, { redo_lsn: 3, created_unix_ms: 4, block_target_bytes: 64 });
    const original = io.files.get(PATH)!.slice();
    const v = new DataView(original.buffer);
    const structures: [number, number][] = [[0, 64]];
    for (let at = 64; at < original.length - 32; at += 16 + v.getUint32(at, true)) {
      structures.push([at, at + 16 + v.getUint32(at, true)]);
    }
    structures.push([original.length - 32, original.length]);
    return { io, original, structures };
  }

  function structureOf(structures: [number, number][], offset: number): [number, number] {
    return structures.find(([start, end]) => offset >= start && offset < end)!;
  }

  function corruption(io: Io, path = PATH): CorruptionError {
    try {
      verifySnapshot(io, path);
    } catch (e) {
      if (e instanceof CorruptionError) return e;
      throw e;
    }
    throw new Error("corruption not detected");
  }

  /** The error names the file and an offset inside the structure that holds byte `damaged`. */
  function expectReportedIn(io: MemIo, structures: [number, number][], damaged: number, what: string): void {
    const error = corruption(io);
    const [start, end] = structureOf(structures, damaged);
    const where = `seed ${SEED}, ${what}: reported ${error.message}`;
    expect(error.file, where).toBe(PATH);
    expect(
      error.offset_bytes >= start && error.offset_bytes < end,
      `${where}; expected in [${start}, ${end})`,
    ).toBe(true);
  }

  test("the fixture is valid and has many blocks", () => {
    const { io, structures } = fixture();
    expect(verifySnapshot(io, PATH).entry_count).toBe(14);
    expect(structures.length).toBeGreaterThan(8);
  });

  test("truncated at every offset", () => {
    const { io, original, structures } = fixture();
    for (let length = 0; length < original.length; length++) {
      io.files.set(PATH, original.slice(0, length));
      expectReportedIn(io, structures, length, `truncated to ${length} bytes`);
    }
  });

  test("every single-bit flip at every offset is detected", () => {
    const { io, original, structures } = fixture();
    for (let offset = 0; offset < original.length; offset++) {
      for (let bit = 0; bit < 8; bit++) {
        const damaged = original.slice();
        damaged[offset]! ^= 1 << bit;
        io.files.set(PATH, damaged);
        expectReportedIn(io, structures, offset, `bit ${bit} of byte ${offset} flipped`);
      }
    }
  });

  test("zero-filled regions: each structure wholly, and seeded random ranges", () => {
    const { io, original, structures } = fixture();
    const random = prng(SEED + 4);
    const regions: [number, number][] = [...structures];
    for (let i = 0; i < 300; i++) {
      const start = (random() * original.length) | 0;
      regions.push([start, Math.min(original.length, start + 1 + ((random() * 100) | 0))]);
    }
    for (const [start, end] of regions) {
      const damaged = original.slice();
      damaged.fill(0, start, end);
      const first_changed = damaged.findIndex((b, i) => b !== original[i]);
      if (first_changed < 0) continue; // the range held only zeros
      io.files.set(PATH, damaged);
      expectReportedIn(io, structures, first_changed, `bytes [${start}, ${end}) zeroed`);
    }
  });

  test("wrong magic: not a walkv data file, at byte 0", () => {
    const { io, original } = fixture();
    const damaged = original.slice();
    damaged[3] = 0x58;
    io.files.set(PATH, damaged);
    const error = corruption(io);
    expect(error.offset_bytes).toBe(0);
    expect(error.message).toContain("not a walkv data file");
  });

  test("future format version, even with a valid header CRC", () => {
    const { io, original } = fixture();
    const damaged = original.slice();
    const v = new DataView(damaged.buffer);
    v.setUint32(8, SNAPSHOT_FORMAT_VERSION + 1, true);
    v.setUint32(60, crc32c(damaged, 0, 60), true);
    io.files.set(PATH, damaged);
    const error = corruption(io);
    expect(error.offset_bytes).toBe(8);
    expect(error.message).toContain("format version 2 is newer than this walkv supports (1)");
  });

  test("header counts that disagree with the blocks, even with a valid header CRC", () => {
    const { io, original } = fixture();
    for (const [field_offset, delta] of [
      [32, 1],
      [24, 1],
    ] as const) {
      const damaged = original.slice();
      const v = new DataView(damaged.buffer);
      v.setBigUint64(field_offset, v.getBigUint64(field_offset, true) + BigInt(delta), true);
      v.setUint32(60, crc32c(damaged, 0, 60), true);
      io.files.set(PATH, damaged);
      expect(corruption(io).offset_bytes).toBe(field_offset);
    }
  });

  test("trailing garbage after the footer", () => {
    const { io, original } = fixture();
    for (const extra of [new Uint8Array(1), new Uint8Array([0xff]), original.slice(0, 100)]) {
      const damaged = new Uint8Array(original.length + extra.length);
      damaged.set(original);
      damaged.set(extra, original.length);
      io.files.set(PATH, damaged);
      const error = corruption(io);
      expect(error.offset_bytes).toBe(original.length);
      expect(error.file).toBe(PATH);
    }
  });

  test("a missing file is an IoError, not corruption", () => {
    expect(() => verifySnapshot(new MemIo(), PATH)).toThrow(IoError);
  });
});
