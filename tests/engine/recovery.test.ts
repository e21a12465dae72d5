import { describe, expect, test } from "bun:test";
import { Arena, createArenaShared } from "../../src/engine/arena.ts";
import { readU32, writeU32 } from "../../src/engine/bytes.ts";
import type { EngineConfig } from "../../src/engine/config.ts";
import { crc32 } from "../../src/engine/crc32.ts";
import { crc32c } from "../../src/engine/crc32c.ts";
import { CorruptionError } from "../../src/engine/errors.ts";
import { prng } from "../../src/engine/io/prng.ts";
import { SimDisk } from "../../src/engine/io/sim_disk.ts";
import { type ClosableSink, recover } from "../../src/engine/recovery.ts";
import { createPipeShared, PipeSink } from "../../src/engine/replay_pipe.ts";
import { createTableShared, Table } from "../../src/engine/table.ts";
import { encodeSegmentHeader, parseSegmentName, segmentName } from "../../src/engine/wal/format.ts";
import {
  delEntry,
  encodedRecordSize,
  encodeRecord,
  setEntry,
  type WalEntry,
} from "../../src/engine/wal/record.ts";
import { readSegment } from "../../src/engine/wal/segment_reader.ts";
import { smallConfig as config, fileSize, openSim, readWholeFile, SEED, text, utf8 } from "./sim_host.ts";

const WAL_DIR = "/data/wal";

/** A disk holding `count` keys `k{i}` = `v{i}:…` (LSN i + 1), written in order and closed cleanly. */
async function populated(count: number, value_bytes = 100): Promise<SimDisk> {
  const disk = new SimDisk({ rng: prng(SEED) });
  const { host, engine } = await openSim({}, disk);
  for (let i = 0; i < count; i++) {
    const write = engine.set(utf8(`k${i}`), utf8(`v${i}:${"x".repeat(value_bytes)}`));
    while (host.step()) {}
    await write;
  }
  await host.close();
  return disk;
}

function segmentPaths(disk: SimDisk): string[] {
  return disk
    .list(WAL_DIR)
    .filter((name) => parseSegmentName(name) !== undefined)
    .map((name) => `${WAL_DIR}/${name}`);
}

/** File offset of each record of a segment, in order. */
function recordOffsets(disk: SimDisk, path: string): number[] {
  const offsets: number[] = [];
  readSegment(disk, path, { newest: true, max_record_bytes: 8192 }, (_l, _b, _o, _len, file_offset) =>
    offsets.push(file_offset),
  );
  return offsets;
}

function flipByte(disk: SimDisk, path: string, offset_bytes: number): void {
  const file = disk.open(path);
  try {
    const byte = new Uint8Array(1);
    disk.read(file, byte, offset_bytes);
    byte[0]! ^= 0x40;
    disk.write(file, byte, offset_bytes);
  } finally {
    disk.close(file);
  }
}

async function openError(disk: SimDisk): Promise<CorruptionError> {
  try {
    await openSim({}, disk);
  } catch (error) {
    expect(error).toBeInstanceOf(CorruptionError);
    return error as CorruptionError;
  }
  throw new Error("the engine opened on corrupt data");
}

/**
 * Recovers into a fresh table and returns every entry: key → [value, lsn], plus the result. With
 * `offload`, a replay worker links (through a 16 KiB pipe, so it wraps often), as in threaded hosts.
 */
function recoverFresh(disk: SimDisk, log: string[], offload = false, overrides: Partial<EngineConfig> = {}) {
  const arena_shared = createArenaShared({
    buffer_count: 1,
    initial_bytes: 1 << 20,
    max_bytes_per_buffer: 64 << 20,
  });
  const arena = new Arena(arena_shared);
  const table_shared = createTableShared(arena, 4);
  const table = new Table(table_shared, arena);
  const offloadTo = (): ClosableSink => {
    const pipe = createPipeShared(16384);
    const worker = new Worker(new URL("../../src/engine/replay_worker.ts", import.meta.url).href, {
      type: "module",
    });
    worker.postMessage({ pipe, table: table_shared, arena: arena_shared });
    return new PipeSink(pipe, table, () => worker.terminate());
  };
  const result = recover(disk, config(overrides), table, (l) => log.push(l), {
    offload: offload ? offloadTo : undefined,
  });
  const entries = new Map<string, [string, number]>();
  const decoder = new TextDecoder();
  for (let s = 0; s < table.shard_count; s++) {
    table.scanShard(
      s,
      () => Number.MAX_SAFE_INTEGER,
      (bytes, ko, kl, vl, lsn) => {
        entries.set(decoder.decode(bytes.subarray(ko, ko + kl)), [
          decoder.decode(bytes.subarray(ko + kl, ko + kl + vl)),
          lsn,
        ]);
      },
    );
  }
  return { result, entries };
}

describe("recovery", () => {
  test("a leftover data.db.tmp is removed and logged", async () => {
    const disk = await populated(3);
    const tmp = disk.open("/data/data.db.tmp", { create: true });
    disk.write(tmp, utf8("half a checkpoint"), 0);
    disk.close(tmp);
    const { engine, log } = await openSim({}, disk);
    expect(disk.exists("/data/data.db.tmp")).toBe(false);
    expect(log.some((l) => l.includes("removed data.db.tmp"))).toBe(true);
    expect(text(engine.get(utf8("k2")))?.startsWith("v2:")).toBe(true);
  });

  test("the torn tail of the newest segment is cut, truncated and logged", async () => {
    const disk = await populated(5);
    const [path] = segmentPaths(disk);
    const offsets = recordOffsets(disk, path!);
    expect(offsets.length).toBe(5);
    const size = fileSize(disk, path!);
    const torn_at = offsets[4]! + 30; // record 5 half written
    const file = disk.open(path!);
    disk.truncate(file, torn_at);
    disk.close(file);
    const { host, engine, log } = await openSim({}, disk);
    expect(host.recovery.torn_bytes).toBe(torn_at - offsets[4]!);
    expect(host.recovery.next_lsn).toBe(5);
    expect(fileSize(disk, path!)).toBe(offsets[4]!);
    expect(size).toBeGreaterThan(torn_at);
    const dropped = `${path!} at byte ${offsets[4]!}: ${torn_at - offsets[4]!} bytes dropped`;
    expect(log.some((l) => l.includes("torn tail") && l.includes(dropped))).toBe(true);
    expect(engine.get(utf8("k4"))).toBeUndefined();
    expect(text(engine.get(utf8("k3")))?.startsWith("v3:")).toBe(true);
    // The log goes on at LSN 5 in the cut segment.
    const write = engine.set(utf8("k4"), utf8("again"));
    while (host.step()) {}
    expect(await write).toBe(5);
  });

  test("a bad CRC in an older segment refuses to open, naming the file and offset", async () => {
    const disk = await populated(150, 1000);
    const paths = segmentPaths(disk);
    expect(paths.length).toBeGreaterThanOrEqual(2);
    const offsets = recordOffsets(disk, paths[0]!);
    const bad = offsets[7]!;
    flipByte(disk, paths[0]!, bad + 40);
    const error = await openError(disk);
    expect(error.file).toBe(paths[0]!);
    expect(error.offset_bytes).toBe(bad);
    expect(error.message).toContain("CRC");
  });

  test("a replay worker links what one thread would, and corruption is reported alike", async () => {
    /** The same 150 writes on a fresh disk (recovery changes the disk); `corrupt`: record 7 bad. */
    const disk = async (corrupt: boolean) => {
      const fresh = await populated(150, 1000);
      const first = segmentPaths(fresh)[0]!;
      if (corrupt) flipByte(fresh, first, recordOffsets(fresh, first)[7]! + 40);
      return fresh;
    };
    const on_thread = recoverFresh(await disk(false), []);
    const offloaded = recoverFresh(await disk(false), [], true);
    expect(on_thread.entries.size).toBe(150);
    expect(offloaded.entries).toEqual(on_thread.entries);
    expect(offloaded.result.next_lsn).toBe(on_thread.result.next_lsn);
    const caught = async (offload: boolean): Promise<CorruptionError> => {
      try {
        recoverFresh(await disk(true), [], offload);
      } catch (error) {
        expect(error).toBeInstanceOf(CorruptionError);
        return error as CorruptionError;
      }
      throw new Error("recovered corrupt data");
    };
    const [offloaded_error, on_thread_error] = [await caught(true), await caught(false)];
    expect([offloaded_error.file, offloaded_error.offset_bytes, offloaded_error.message]).toEqual([
      on_thread_error.file,
      on_thread_error.offset_bytes,
      on_thread_error.message,
    ]);
    const repaired = recoverFresh(await disk(true), [], true, { repair_wal: true });
    expect(repaired.entries.size).toBe(7);
    expect(repaired.entries).toEqual(recoverFresh(await disk(true), [], false, { repair_wal: true }).entries);
  });

  test("repair_wal cuts the WAL at the bad record, deletes later segments, logs it", async () => {
    const disk = await populated(150, 1000);
    const paths = segmentPaths(disk);
    const offsets = recordOffsets(disk, paths[0]!);
    flipByte(disk, paths[0]!, offsets[7]! + 40);
    const { host, engine, log } = await openSim({ repair_wal: true }, disk);
    expect(log.some((l) => l.includes("REPAIR") && l.includes(paths[0]!))).toBe(true);
    expect(host.recovery.next_lsn).toBe(8);
    expect(segmentPaths(disk)).toEqual([paths[0]!]);
    expect(fileSize(disk, paths[0]!)).toBe(offsets[7]!);
    expect(text(engine.get(utf8("k6")))?.startsWith("v6:")).toBe(true);
    expect(engine.get(utf8("k7"))).toBeUndefined();
    expect(engine.get(utf8("k149"))).toBeUndefined();
  });

  test("a missing middle segment (LSN gap) is corruption", async () => {
    const disk = await populated(200, 1000);
    const paths = segmentPaths(disk);
    expect(paths.length).toBeGreaterThanOrEqual(3);
    disk.unlink(paths[1]!);
    const error = await openError(disk);
    expect(error.file).toBe(paths[2]!);
    expect(error.message).toContain("expected");
  });

  test("a missing first segment (WAL starts after LSN 1 without data.db) is corruption", async () => {
    const disk = await populated(150, 1000);
    const paths = segmentPaths(disk);
    disk.unlink(paths[0]!);
    const error = await openError(disk);
    expect(error.file).toBe(paths[1]!);
  });

  test("a corrupt data.db refuses to open", async () => {
    const disk = new SimDisk({ rng: prng(SEED) });
    const { host, engine } = await openSim({}, disk);
    for (let i = 0; i < 20; i++) {
      const write = engine.set(utf8(`k${i}`), utf8(`v${i}`));
      while (host.step()) {}
      await write;
    }
    await host.checkpoint();
    await host.close();
    flipByte(disk, "/data/data.db", 64 + 16 + 30); // inside the first block's entries
    const error = await openError(disk);
    expect(error.file).toBe("/data/data.db");
  });

  test("recovery is idempotent: recovering twice gives the same state", async () => {
    const disk = new SimDisk({ rng: prng(SEED) });
    const { host, engine } = await openSim({}, disk);
    const rng = prng(SEED ^ 0x1d);
    for (let i = 0; i < 120; i++) {
      const key = utf8(`k${Math.floor(rng() * 40)}`);
      const write = rng() < 0.8 ? engine.set(key, utf8(`v${i}:${"y".repeat(500)}`)) : engine.del(key);
      while (host.step()) {}
      await write;
      if (i === 60) await host.checkpoint();
    }
    await host.close();
    // A torn tail too, so the first recovery changes the disk.
    const paths = segmentPaths(disk);
    const newest = paths[paths.length - 1]!;
    const file = disk.open(newest);
    disk.write(file, new Uint8Array([7, 0, 0, 0, 1, 2, 3]), disk.size(file));
    disk.close(file);
    const log: string[] = [];
    const first = recoverFresh(disk, log);
    expect(first.result.torn_bytes).toBe(7);
    const files_after_first = segmentPaths(disk).map((p) => [p, fileSize(disk, p)]);
    const second = recoverFresh(disk, log);
    expect(second.result.torn_bytes).toBe(0);
    expect(second.entries).toEqual(first.entries);
    expect(second.result.next_lsn).toBe(first.result.next_lsn);
    expect(second.result.redo_lsn).toBe(first.result.redo_lsn);
    expect(second.result.wal_records).toBe(first.result.wal_records);
    expect(segmentPaths(disk).map((p) => [p, fileSize(disk, p)])).toEqual(files_after_first);
    expect(first.entries.size).toBeGreaterThan(0);
    // A third time through the engine, after a power cut: still the same state.
    disk.powerCut();
    expect(recoverFresh(disk, log).entries).toEqual(first.entries);
  });
});

/** The value a version 1 WAL written by {@link writeVersion1Wal} sets at `lsn`: 0 to 1,000 bytes. */
const v1Value = (lsn: number) => `v${lsn}:${"x".repeat((lsn * 37) % 1000)}`;

/** Its record at `lsn`: SET k{lsn}, and from LSN 10 on, every 10th also DELs k{lsn - 5}. */
function v1Entries(lsn: number): WalEntry[] {
  const set = setEntry(utf8(`k${lsn}`), utf8(v1Value(lsn)));
  return lsn >= 10 && lsn % 10 === 0 ? [set, delEntry(utf8(`k${lsn - 5}`))] : [set];
}

/**
 * Writes the WAL of format version 1 that walkv wrote before version 2, one segment per element of
 * `segments` (the LSNs of its records): headers of version 1, records sealed with `checksum`
 * (CRC-32C, as version 1 requires, unless a test says otherwise), files and directory synced.
 */
function writeVersion1Wal(disk: SimDisk, segments: number[][], checksum = crc32c): string[] {
  disk.mkdirp(WAL_DIR);
  const paths = segments.map((lsns) => {
    const path = `${WAL_DIR}/${segmentName(lsns[0]!)}`;
    const file = disk.open(path, { create: true, truncate: true });
    disk.write(file, encodeSegmentHeader(lsns[0]!, 1), 0);
    let offset = 32;
    for (const lsn of lsns) {
      const entries = v1Entries(lsn);
      const record = new Uint8Array(encodedRecordSize(entries));
      encodeRecord(lsn, entries, record, 0);
      writeU32(record, 4, checksum(record, 8, record.length));
      disk.write(file, record, offset);
      offset += record.length;
    }
    disk.sync(file);
    disk.close(file);
    return path;
  });
  disk.syncDir(WAL_DIR);
  disk.syncDir("/data");
  return paths;
}

/** LSNs `first` to `last`. */
const lsnRange = (first: number, last: number) =>
  Array.from({ length: last - first + 1 }, (_, i) => first + i);

/** The format version of segment `path`, once readSegment has verified all of it with that version's checksum. */
function verifiedFormatVersion(disk: SimDisk, path: string): number | undefined {
  const version = readSegment(disk, path, { newest: true, max_record_bytes: 8192 }, () => {}).format_version;
  expect(readU32(readWholeFile(disk, path), 8)).toBe(version!);
  return version;
}

/**
 * Checks that the engine holds what the version 1 WAL of LSNs 1 to `last_lsn` set and deleted, but
 * for the keys of the LSNs in `overwritten`.
 */
function expectVersion1Writes(
  get: (key: Uint8Array) => Uint8Array | undefined,
  last_lsn: number,
  overwritten: readonly number[] = [],
): void {
  const deleted = new Set(
    lsnRange(10, last_lsn)
      .filter((lsn) => lsn % 10 === 0)
      .map((lsn) => lsn - 5),
  );
  for (const lsn of lsnRange(1, last_lsn)) {
    if (overwritten.includes(lsn)) continue;
    const expected = deleted.has(lsn) ? undefined : v1Value(lsn);
    expect(text(get(utf8(`k${lsn}`))), `k${lsn}`).toBe(expected);
  }
}

describe("recovery of a format version 1 WAL", () => {
  test("recovers every write; new writes go to version 2 segments; a restart reads both", async () => {
    const disk = new SimDisk({ rng: prng(SEED) });
    const v1_paths = writeVersion1Wal(disk, [lsnRange(1, 40), lsnRange(41, 80), lsnRange(81, 100)]);
    // A torn tail on the newest segment, so recovery copies its records to a fresh file.
    const newest = disk.open(v1_paths[2]!);
    disk.write(newest, new Uint8Array([7, 0, 0, 0, 1, 2, 3]), disk.size(newest));
    disk.sync(newest);
    disk.close(newest);

    const first = await openSim({}, disk);
    expect(first.host.recovery.wal_records).toBe(100);
    expect(first.host.recovery.torn_bytes).toBe(7);
    expect(first.host.recovery.next_lsn).toBe(101);
    expectVersion1Writes((key) => first.engine.get(key), 100);
    // The version 1 segments stay version 1: the newest was copied under a version 1 header.
    expect(segmentPaths(first.disk)).toEqual(v1_paths);
    for (const path of v1_paths) expect(verifiedFormatVersion(disk, path), path).toBe(1);

    // New writes, 0 to 3,900-byte values (both sides of crc32's native threshold): version 2.
    const new_value = (i: number) => `n${i}:${"y".repeat(i * 100)}`;
    for (let i = 0; i < 40; i++) {
      const write = first.engine.set(utf8(`n${i}`), utf8(new_value(i)));
      while (first.host.step()) {}
      await write;
    }
    const overwrite = first.engine.set(utf8("k1"), utf8("again"));
    while (first.host.step()) {}
    expect(await overwrite).toBe(141);
    await first.host.close();
    const v2_paths = segmentPaths(disk).filter((path) => !v1_paths.includes(path));
    expect(v2_paths.length).toBeGreaterThanOrEqual(2);
    expect(v2_paths[0]).toBe(`${WAL_DIR}/${segmentName(101)}`);
    for (const path of v2_paths) expect(verifiedFormatVersion(disk, path), path).toBe(2);

    const second = await openSim({}, disk);
    expect(second.host.recovery.wal_records).toBe(141);
    expect(second.host.recovery.torn_bytes).toBe(0);
    expect(second.host.recovery.next_lsn).toBe(142);
    expectVersion1Writes((key) => second.engine.get(key), 100, [1]);
    expect(text(second.engine.get(utf8("k1")))).toBe("again");
    for (let i = 0; i < 40; i++) expect(text(second.engine.get(utf8(`n${i}`))), `n${i}`).toBe(new_value(i));
  });

  test("a version 1 record sealed with CRC-32 instead of CRC-32C refuses to open", async () => {
    const disk = new SimDisk({ rng: prng(SEED) });
    const paths = writeVersion1Wal(disk, [lsnRange(1, 40), lsnRange(41, 50)]);
    // Record 8 (LSN 8) of the older segment, resealed with the version 2 checksum.
    const bytes = readWholeFile(disk, paths[0]!);
    const offset = recordOffsets(disk, paths[0]!)[7]!;
    const end = offset + 24 + readU32(bytes, offset);
    const file = disk.open(paths[0]!);
    const crc = new Uint8Array(4);
    writeU32(crc, 0, crc32(bytes, offset + 8, end));
    disk.write(file, crc, offset + 4);
    disk.close(file);
    const error = await openError(disk);
    expect(error.file).toBe(paths[0]!);
    expect(error.offset_bytes).toBe(offset);
    expect(error.message).toContain("record CRC mismatch");
  });
});
