import { beforeAll, describe, expect, test } from "bun:test";
import { SnapshotWriter } from "../../src/engine/checkpoint/snapshot_writer.ts";
import { type EngineConfig, engineConfig } from "../../src/engine/config.ts";
import { CorruptionError, IoError } from "../../src/engine/errors.ts";
import { type InlineHost, openEngine } from "../../src/engine/host.ts";
import type { Io } from "../../src/engine/io/io.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { SimDisk } from "../../src/engine/io/sim_disk.ts";
import { type VerifyReport, verifyDataDir } from "../../src/engine/verify.ts";
import { parseSegmentName } from "../../src/engine/wal/format.ts";
import { readSegment } from "../../src/engine/wal/segment_reader.ts";
import { readWholeFile } from "./sim_host.ts";

const SEED = Number(process.env.WALKV_SEED ?? 20240721);
const DIR = "/data";
const WAL_DIR = "/data/wal";
const DB = "/data/data.db";
const MAX_RECORD_BYTES = 8192;
const utf8 = (text: string) => new TextEncoder().encode(text);

function config(): EngineConfig {
  return engineConfig({
    data_dir: DIR,
    fsync: "always",
    shard_bits: 4,
    memory_limit_bytes: 64 << 20,
    max_key_bytes: 256,
    max_value_bytes: 4096,
    max_batch_bytes: MAX_RECORD_BYTES,
    wal_segment_bytes: 64 << 10,
  });
}

function verify(io: Io): VerifyReport {
  return verifyDataDir(io, DIR, { max_record_bytes: MAX_RECORD_BYTES });
}

async function openInline(disk: SimDisk): Promise<InlineHost> {
  return (await openEngine(config(), { io: disk, inline: true, log: () => {} })) as InlineHost;
}

/** 300 writes of ~1 KB (several segments), a checkpoint after write 150, then closed cleanly. */
async function buildHealthy(): Promise<{ disk: SimDisk; covered: { path: string; bytes: Uint8Array } }> {
  const disk = new SimDisk({ rng: prng(SEED) });
  const host = await openInline(disk);
  let covered: { path: string; bytes: Uint8Array } | undefined;
  for (let i = 0; i < 300; i++) {
    const write = host.engine.set(utf8(`k${i % 200}`), utf8(`v${i}:${"x".repeat(1000)}`));
    while (host.step()) {}
    await write;
    if (i === 150) {
      const first = segmentPaths(disk)[0]!;
      covered = { path: first, bytes: readWholeFile(disk, first) };
      await host.checkpoint();
    }
  }
  await host.close();
  return { disk, covered: covered! };
}

function segmentPaths(disk: SimDisk): string[] {
  return disk
    .list(WAL_DIR)
    .filter((name) => parseSegmentName(name) !== undefined)
    .map((name) => `${WAL_DIR}/${name}`);
}

function writeFile(disk: SimDisk, path: string, bytes: Uint8Array): void {
  const file = disk.open(path, { create: true, truncate: true });
  try {
    disk.write(file, bytes, 0);
  } finally {
    disk.close(file);
  }
}

/** Every file of the data directory: path → bytes. */
function files(disk: SimDisk): Map<string, Uint8Array> {
  const all = new Map<string, Uint8Array>();
  for (const dir of [DIR, WAL_DIR]) {
    if (!disk.exists(dir)) continue;
    for (const name of disk.list(dir)) {
      if (dir === DIR && name === "wal") continue;
      all.set(`${dir}/${name}`, readWholeFile(disk, `${dir}/${name}`));
    }
  }
  return all;
}

function copyDisk(disk: SimDisk): SimDisk {
  const copy = new SimDisk({ rng: prng(SEED) });
  copy.mkdirp(WAL_DIR);
  for (const [path, bytes] of files(disk)) writeFile(copy, path, bytes);
  return copy;
}

/** Edits bytes [offset, offset + data.length) of `path` in place (the file may grow). */
function patch(disk: SimDisk, path: string, offset_bytes: number, data: Uint8Array): void {
  const file = disk.open(path);
  try {
    disk.write(file, data, offset_bytes);
  } finally {
    disk.close(file);
  }
}

function flipByte(disk: SimDisk, path: string, offset_bytes: number): void {
  const byte = readWholeFile(disk, path).subarray(offset_bytes, offset_bytes + 1);
  byte[0]! ^= 0x10;
  patch(disk, path, offset_bytes, byte);
}

function truncateFile(disk: SimDisk, path: string, size_bytes: number): void {
  const file = disk.open(path);
  try {
    disk.truncate(file, size_bytes);
  } finally {
    disk.close(file);
  }
}

function recordOffsets(disk: SimDisk, path: string): number[] {
  const offsets: number[] = [];
  readSegment(disk, path, { newest: true, max_record_bytes: MAX_RECORD_BYTES }, (...args) =>
    offsets.push(args[4]),
  );
  return offsets;
}

function expectCorruption(report: VerifyReport, file: string, offset_bytes: number, reason?: string): void {
  expect(report.error).toBeInstanceOf(CorruptionError);
  expect({ file: report.error!.file, offset: report.error!.offset_bytes }).toEqual({
    file,
    offset: offset_bytes,
  });
  if (reason !== undefined) expect(report.error!.message).toContain(reason);
}

/** What start-up says about a copy of `disk`: its corruption error, or its recovery result. */
async function recoverCopy(disk: SimDisk) {
  try {
    const host = await openInline(copyDisk(disk));
    const recovery = host.recovery;
    await host.close();
    return { error: undefined, recovery };
  } catch (error) {
    if (!(error instanceof CorruptionError)) throw error;
    return { error, recovery: undefined };
  }
}

let healthy: SimDisk;
let covered_segment: { path: string; bytes: Uint8Array };

beforeAll(async () => {
  const built = await buildHealthy();
  healthy = built.disk;
  covered_segment = built.covered;
});

describe("verifyDataDir: healthy directories", () => {
  test("a healthy directory: data.db, contiguous segments, totals that match recovery", async () => {
    const disk = copyDisk(healthy);
    const before = files(disk);
    const writes_before = { ...disk.stats };
    const report = verify(disk);
    expect(report.error).toBeUndefined();
    expect(report.warnings).toEqual([]);
    expect(report.data_db?.keys).toBe(151);
    expect(report.data_db?.redo_lsn).toBe(151);
    expect(report.data_db?.path).toBe(DB);
    expect(report.data_db?.bytes).toBe(before.get(DB)!.length);
    const segments = report.segments;
    expect(segments.length).toBe(segmentPaths(disk).length);
    expect(segments.length).toBeGreaterThanOrEqual(2);
    expect(segments[0]!.first_lsn).toBeLessThanOrEqual(152);
    for (let i = 1; i < segments.length; i++)
      expect(segments[i]!.first_lsn).toBe(segments[i - 1]!.last_lsn! + 1);
    expect(segments.at(-1)!.last_lsn).toBe(300);
    expect(report.totals.next_lsn).toBe(301);
    expect(report.totals.replay_records).toBe(149);
    expect(report.totals.records).toBe(segments.reduce((n, s) => n + s.records, 0));
    expect(report.totals.wal_bytes).toBe(segments.reduce((n, s) => n + s.bytes, 0));
    // Read only: not one byte, name or sync changed.
    expect(files(disk)).toEqual(before);
    expect(disk.stats).toEqual(writes_before);
    const recovered = await recoverCopy(disk);
    expect(recovered.recovery?.next_lsn).toBe(report.totals.next_lsn);
    expect(recovered.recovery?.wal_records).toBe(report.totals.replay_records);
  });

  test("an empty data directory, and one without wal/, are healthy", () => {
    const disk = new SimDisk({ rng: prng(SEED) });
    disk.mkdirp(DIR);
    const report = verify(disk);
    expect(report.error).toBeUndefined();
    expect(report.data_db).toBeUndefined();
    expect(report.segments).toEqual([]);
    expect(report.totals).toEqual({ segments: 0, records: 0, wal_bytes: 0, replay_records: 0, next_lsn: 1 });
    disk.mkdirp(WAL_DIR);
    expect(verify(disk).error).toBeUndefined();
    expect(disk.exists(DB)).toBe(false);
  });

  test("a missing data directory throws IoError ENOENT (not corruption)", () => {
    const disk = new SimDisk({ rng: prng(SEED) });
    expect(() => verify(disk)).toThrow(IoError);
  });

  test("a torn tail in the newest segment is a warning with its bytes, not an error", async () => {
    const disk = copyDisk(healthy);
    const newest = segmentPaths(disk).at(-1)!;
    const offsets = recordOffsets(disk, newest);
    const torn_at = offsets.at(-1)! + 30;
    truncateFile(disk, newest, torn_at);
    const report = verify(disk);
    expect(report.error).toBeUndefined();
    const torn_bytes = torn_at - offsets.at(-1)!;
    expect(report.warnings).toEqual([
      expect.stringContaining(`torn tail of ${torn_bytes} bytes at byte ${offsets.at(-1)}`),
    ]);
    expect(report.segments.at(-1)!.torn_bytes).toBe(torn_bytes);
    expect(report.totals.next_lsn).toBe(300);
    expect((await recoverCopy(disk)).recovery?.torn_bytes).toBe(torn_bytes);
  });

  test("zeros after the newest segment's last record are its clean end (fsync always writes them ahead); a torn header is a torn tail", () => {
    const disk = copyDisk(healthy);
    const newest = segmentPaths(disk).at(-1)!;
    const size = readWholeFile(disk, newest).length;
    patch(disk, newest, size, new Uint8Array(700));
    const report = verify(disk);
    expect(report.error).toBeUndefined();
    expect(report.warnings).toEqual([]);
    patch(disk, newest, size + 5, new Uint8Array([1])); // a record header, its CRC wrong: torn
    const torn = verify(disk);
    expect(torn.error).toBeUndefined();
    expect(torn.warnings).toEqual([expect.stringContaining(`torn tail of 700 bytes at byte ${size}`)]);
    truncateFile(disk, newest, 10);
    const header = verify(disk);
    expect(header.error).toBeUndefined();
    expect(header.warnings).toEqual([expect.stringContaining("torn tail of 10 bytes at byte 0")]);
  });

  test("leftover data.db.tmp and wal/*.tmp, and unknown files in wal/, are warnings", () => {
    const disk = copyDisk(healthy);
    writeFile(disk, `${DIR}/data.db.tmp`, utf8("half a checkpoint"));
    writeFile(disk, `${WAL_DIR}/00000000000000000151.wal.tmp`, utf8("half a rewrite"));
    writeFile(disk, `${WAL_DIR}/notes.txt`, utf8("hello"));
    const report = verify(disk);
    expect(report.error).toBeUndefined();
    expect(report.warnings).toEqual([
      expect.stringContaining("data.db.tmp"),
      expect.stringContaining("wal/00000000000000000151.wal.tmp"),
      expect.stringContaining("wal/notes.txt: not a WAL segment"),
    ]);
  });

  test("a segment data.db covers is reported as covered; damage in it is only a warning", () => {
    const disk = copyDisk(healthy);
    writeFile(disk, covered_segment.path, covered_segment.bytes);
    const report = verify(disk);
    expect(report.error).toBeUndefined();
    expect(report.segments[0]!.covered).toBe(true);
    expect(report.segments[0]!.path).toBe(covered_segment.path);
    expect(report.segments.slice(1).every((s) => !s.covered)).toBe(true);
    flipByte(disk, covered_segment.path, 100);
    const damaged = verify(disk);
    expect(damaged.error).toBeUndefined();
    expect(damaged.warnings).toEqual([expect.stringContaining("covered by data.db")]);
  });
});

describe("verifyDataDir: data.db corruption", () => {
  const cases: [string, (disk: SimDisk, size: number) => void, number, string][] = [
    ["truncated to 0 bytes", (d) => truncateFile(d, DB, 0), 0, "truncated"],
    ["truncated inside the header", (d) => truncateFile(d, DB, 40), 0, "truncated"],
    ["truncated inside the body", (d) => truncateFile(d, DB, 5000), 64, "truncated"],
    ["truncated inside the footer", (d, size) => truncateFile(d, DB, size - 5), -32, "footer"],
    ["a flipped bit in a block", (d) => flipByte(d, DB, 3000), 64, "block CRC"],
    ["a zero-filled block", (d) => patch(d, DB, 64, new Uint8Array(4096)), 64, "block CRC"],
    ["a wrong magic", (d) => patch(d, DB, 0, utf8("NOTWALKV")), 0, "bad magic"],
    ["a future format version", (d) => patch(d, DB, 8, new Uint8Array([9, 0, 0, 0])), 8, "newer"],
    ["bytes after the footer", (d, size) => patch(d, DB, size, new Uint8Array(3)), 0, "after the footer"],
  ];
  for (const [name, damage, offset, reason] of cases) {
    test(`${name} → error at the right offset, as recovery reports it`, async () => {
      const disk = copyDisk(healthy);
      const size = readWholeFile(disk, DB).length;
      damage(disk, size);
      const report = verify(disk);
      const expected_offset = offset < 0 ? size + offset : name === "bytes after the footer" ? size : offset;
      expectCorruption(report, DB, expected_offset, reason);
      expect(report.data_db).toBeUndefined();
      const recovered = await recoverCopy(disk);
      expect(recovered.error?.file).toBe(DB);
      expect(recovered.error?.offset_bytes).toBe(expected_offset);
    });
  }

  test("data.db holding an LSN the WAL does not reach is corruption", () => {
    const disk = new SimDisk({ rng: prng(SEED) });
    disk.mkdirp(WAL_DIR);
    const writer = new SnapshotWriter(disk, DB, { redo_lsn: 5, created_unix_ms: 1 });
    writer.add(utf8("k"), utf8("v"), 9, 0);
    writer.finish();
    expectCorruption(verify(disk), DB, 24, "WAL ends at LSN 5");
  });
});

describe("verifyDataDir: WAL corruption", () => {
  test("a flipped bit in a record of an older segment → that record's offset", async () => {
    const disk = copyDisk(healthy);
    const [first, second] = segmentPaths(disk);
    const offsets = recordOffsets(disk, first!);
    flipByte(disk, first!, offsets[3]! + 40);
    const report = verify(disk);
    expectCorruption(report, first!, offsets[3]!, "CRC");
    expect(report.segments).toEqual([]);
    expect(second).toBeDefined();
    const recovered = await recoverCopy(disk);
    expect([recovered.error?.file, recovered.error?.offset_bytes]).toEqual([first, offsets[3]]);
  });

  test("a flipped bit mid-way in the newest segment is corruption, not a torn tail", () => {
    const disk = copyDisk(healthy);
    const newest = segmentPaths(disk).at(-1)!;
    const offsets = recordOffsets(disk, newest);
    flipByte(disk, newest, offsets[1]! + 30);
    expectCorruption(verify(disk), newest, offsets[1]!, "non-zero data follows");
  });

  test("an older segment truncated mid-record → error at that record", () => {
    const disk = copyDisk(healthy);
    const first = segmentPaths(disk)[0]!;
    const offsets = recordOffsets(disk, first);
    truncateFile(disk, first, offsets.at(-1)! + 10);
    expectCorruption(verify(disk), first, offsets.at(-1)!, "not the newest");
  });

  test("zero-filled records in an older segment → error at the first zeroed record", () => {
    const disk = copyDisk(healthy);
    const first = segmentPaths(disk)[0]!;
    const offsets = recordOffsets(disk, first);
    patch(disk, first, offsets[2]!, new Uint8Array(3000));
    expect(verify(disk).error?.offset_bytes).toBe(offsets[2]!);
    expect(verify(disk).error?.file).toBe(first);
  });

  test("a wrong magic or a future version in a segment header", () => {
    for (const newest of [false, true]) {
      const disk = copyDisk(healthy);
      const path = newest ? segmentPaths(disk).at(-1)! : segmentPaths(disk)[0]!;
      patch(disk, path, 8, new Uint8Array([3, 0, 0, 0]));
      expectCorruption(verify(disk), path, 8, "newer than this walkv supports");
      patch(disk, path, 0, utf8("XXXXXXXX"));
      expectCorruption(verify(disk), path, 0, "bad magic");
    }
  });

  test("a missing middle segment is an LSN gap; missing first segments leave data.db uncovered", () => {
    const disk = copyDisk(healthy);
    const paths = segmentPaths(disk);
    expect(paths.length).toBeGreaterThanOrEqual(3);
    disk.unlink(paths[1]!);
    expectCorruption(verify(disk), paths[2]!, 16, "expected");
    const head = copyDisk(healthy);
    head.unlink(paths[0]!);
    expectCorruption(verify(head), paths[1]!, 0, "segments are missing");
  });

  test("a segment whose header disagrees with its name is corruption", () => {
    const disk = copyDisk(healthy);
    const paths = segmentPaths(disk);
    const last = paths.at(-1)!;
    const bytes = readWholeFile(disk, last);
    disk.unlink(last);
    const renamed = `${WAL_DIR}/00000000000000099999.wal`;
    writeFile(disk, renamed, bytes);
    expectCorruption(verify(disk), renamed, 16, "its name");
  });
});

describe("verifyDataDir: a directory that changes while it is read", () => {
  /** An Io over `disk` that runs `onOpen(path, count)` before each open. */
  function watched(disk: SimDisk, onOpen: (path: string, count: number) => void): Io {
    let count = 0;
    return new Proxy(disk, {
      get(target, key) {
        if (key === "open")
          return (path: string, options?: object) => {
            onOpen(path, ++count);
            return target.open(path, options);
          };
        const value = Reflect.get(target, key);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  test("a covered segment deleted by a checkpoint mid-check → checked again, healthy", () => {
    const disk = copyDisk(healthy);
    writeFile(disk, covered_segment.path, covered_segment.bytes);
    const io = watched(disk, (path, count) => {
      if (path === DB && count === 1) disk.unlink(covered_segment.path);
    });
    const report = verify(io);
    expect(report.error).toBeUndefined();
    expect(report.warnings).toEqual([]);
    expect(report.segments.some((s) => s.covered)).toBe(false);
  });

  test("a segment vanishing before it is opened → checked again", () => {
    const disk = copyDisk(healthy);
    writeFile(disk, covered_segment.path, covered_segment.bytes);
    const io = watched(disk, (path) => {
      if (path === DB && disk.exists(covered_segment.path)) disk.unlink(covered_segment.path);
    });
    expect(verify(io).error).toBeUndefined();
  });

  test("a WAL directory that never stops changing → a warning after 10 attempts", () => {
    const disk = copyDisk(healthy);
    const io = watched(disk, (path, count) => {
      if (path === DB) writeFile(disk, `${WAL_DIR}/junk${count}`, utf8("x"));
    });
    const report = verify(io);
    expect(report.error).toBeUndefined();
    expect(report.warnings.at(-1)).toContain("changed during each of 10 attempts");
  });
});

describe("verifyDataDir: garbage never crashes it, and it agrees with recovery", () => {
  test("random garbage as data.db or as a segment → a CorruptionError", () => {
    const rng = prng(SEED);
    for (let round = 0; round < 200; round++) {
      const disk = new SimDisk({ rng: prng(SEED) });
      disk.mkdirp(WAL_DIR);
      const garbage = new Uint8Array(randomInt(rng, 400));
      for (let i = 0; i < garbage.length; i++) garbage[i] = randomInt(rng, 256);
      const path = round % 2 === 0 ? DB : `${WAL_DIR}/00000000000000000001.wal`;
      // Half the segments get a valid-looking magic so the header fields are exercised too.
      if (round % 4 === 1 && garbage.length >= 8) garbage.set(utf8("WALKVWAL"), 0);
      writeFile(disk, path, garbage);
      writeFile(disk, `${WAL_DIR}/00000000000000000002.wal`, new Uint8Array(0));
      const report = verify(disk);
      const where = `seed ${SEED} round ${round}`;
      expect(report.error, where).toBeInstanceOf(CorruptionError);
      expect(report.error!.offset_bytes, where).toBeLessThanOrEqual(garbage.length);
    }
  });

  test("random damage to a healthy directory: verify reports exactly what recovery refuses", async () => {
    const rng = prng(SEED);
    const rounds = 200;
    const outcomes = { corrupt: 0, healthy: 0 };
    for (let round = 0; round < rounds; round++) {
      const disk = copyDisk(healthy);
      const paths = [...files(disk).keys()];
      const path = paths[randomInt(rng, paths.length)]!;
      const size = readWholeFile(disk, path).length;
      const at = randomInt(rng, Math.max(1, size));
      const kind = randomInt(rng, 4);
      if (kind === 0) flipByte(disk, path, Math.min(at, size - 1));
      else if (kind === 1) truncateFile(disk, path, at);
      else if (kind === 2) patch(disk, path, at, new Uint8Array(1 + randomInt(rng, 2000)));
      else {
        const garbage = new Uint8Array(1 + randomInt(rng, 200));
        for (let i = 0; i < garbage.length; i++) garbage[i] = randomInt(rng, 256);
        patch(disk, path, at, garbage);
      }
      const where = `seed ${SEED} round ${round}: kind ${kind} at ${at} of ${path}`;
      const report = verify(disk);
      const recovered = await recoverCopy(disk);
      expect([report.error?.file, report.error?.offset_bytes], where).toEqual([
        recovered.error?.file,
        recovered.error?.offset_bytes,
      ]);
      outcomes[report.error === undefined ? "healthy" : "corrupt"]++;
      if (recovered.recovery !== undefined) {
        expect(report.totals.next_lsn, where).toBe(recovered.recovery.next_lsn);
        const torn = report.segments.reduce((n, s) => n + s.torn_bytes, 0);
        expect(torn, where).toBe(recovered.recovery.torn_bytes);
      }
    }
    expect(outcomes.corrupt, `seed ${SEED}`).toBeGreaterThan(0);
    expect(outcomes.healthy, `seed ${SEED}`).toBeGreaterThan(0);
  });
});
