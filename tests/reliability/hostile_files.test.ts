/**
 * Hostile files (issue [3/4] item 5): starting from a healthy data directory made by the engine
 * (inline, on a SimDisk: data.db, a covered WAL segment a checkpoint had not deleted yet, and the
 * chain of segments after it), fast-check (seeded) generates corrupted directories — truncated,
 * bit-flipped, zero-filled ranges, wrong magic, another format version with a valid CRC (a future one,
 * or a segment's 2 relabelled 1, whose CRC-32 records then fail the CRC-32C of version 1), random
 * bytes appended, files replaced by garbage, garbage files added, segments removed — and for each:
 *
 * - `verifyDataDir` returns a report (corruption in `report.error`) or throws IoError: nothing else;
 * - start-up (`openEngine` inline on a copy) succeeds or throws CorruptionError: nothing else;
 * - a CorruptionError names a file of the directory and an offset inside it (0 ≤ offset ≤ size);
 * - both agree: both refuse at the same file and offset, or both accept with the same next LSN;
 * - a start-up that succeeds recovered exactly the history up to its next LSN - 1 (a prefix: a torn
 *   tail loses the end of the log, never a middle, never a changed value);
 * - nothing hangs: each case runs on a worker with a deadline (synchronous code cannot be timed out
 *   otherwise); a case past CASE_DEADLINE_MS terminates the worker and fails.
 *
 * Then the real daemon is started on one bit-flipped directory: it exits 3 (corruption) naming the
 * file and offset that `verifyDataDir` names, and leaves no socket or pid file behind.
 *
 * Seeded: WALKV_SEED; WALKV_FUZZ_RUNS sets the number of cases.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { HEADER_OFFSET } from "../../src/engine/checkpoint/snapshot_format.ts";
import { type EngineConfig, engineConfig } from "../../src/engine/config.ts";
import { crc32c } from "../../src/engine/crc32c.ts";
import { type InlineHost, openEngine } from "../../src/engine/host.ts";
import { prng } from "../../src/engine/io/prng.ts";
import { RealIo } from "../../src/engine/io/real_io.ts";
import { SimDisk } from "../../src/engine/io/sim_disk.ts";
import { verifyDataDir } from "../../src/engine/verify.ts";
import {
  encodeSegmentHeader,
  FORMAT_VERSION,
  OLDEST_FORMAT_VERSION,
  parseSegmentName,
  SEGMENT_HEADER_SIZE_BYTES,
  segmentName,
} from "../../src/engine/wal/format.ts";
import { delEntry, setEntry } from "../../src/engine/wal/record.ts";
import { readWholeFile } from "../engine/sim_host.ts";
import { Daemon, stopAllDaemons, tempDir } from "../server/daemon.ts";
import { testSeed } from "../server/raw_client.ts";
import type { FilesCase, FilesResult, Outcome } from "./hostile_files_worker.ts";

const SEED = testSeed(0x5eed_f11e);
const RUNS = Number(process.env.WALKV_FUZZ_RUNS ?? 0) || 2000;
const DIR = "/data";
const WAL_DIR = `${DIR}/wal`;
const DB = `${DIR}/data.db`;
/** A case (verify + start-up of a ~200 KB directory) taking longer than this is a hang. */
const CASE_DEADLINE_MS = 10_000;
const WRITES = 240;
const CHECKPOINT_AFTER_WRITE = 160;
const KEYS = 48;
const utf8 = new TextEncoder();

const CONFIG: EngineConfig = engineConfig({
  data_dir: DIR,
  fsync: "always",
  shard_bits: 4,
  memory_limit_bytes: 64 << 20,
  max_key_bytes: 64,
  max_value_bytes: 4096,
  max_batch_bytes: 8192,
  wal_segment_bytes: 64 << 10,
});

/** The healthy directory (path → bytes) and the value each write set (index = LSN - 1). */
interface Healthy {
  readonly files: Map<string, Uint8Array>;
  /** Every write: [LSN, key, value or null for a delete] (a delete of an absent key takes no LSN). */
  readonly history: ReadonlyArray<readonly [number, string, Uint8Array | null]>;
  readonly last_lsn: number;
  readonly redo_lsn: number;
}

let healthy: Healthy;
let worker: Worker;
let next_case = 1;
const figures = { cases: 0, refused: 0, accepted: 0, torn: 0, verify_ms: 0, start_ms: 0, started_ms: 0 };

beforeAll(async () => {
  healthy = await buildHealthy();
  worker = startWorker();
});

afterAll(async () => {
  worker?.terminate();
  await stopAllDaemons();
});

function startWorker(): Worker {
  return new Worker(new URL("./hostile_files_worker.ts", import.meta.url).href, { type: "module" });
}

function segmentPaths(disk: SimDisk): string[] {
  return disk
    .list(WAL_DIR)
    .filter((name) => parseSegmentName(name) !== undefined)
    .map((name) => `${WAL_DIR}/${name}`);
}

/**
 * WRITES sets and deletes of ~700 B over KEYS keys, one at a time (LSN = write index + 1), a
 * checkpoint after write CHECKPOINT_AFTER_WRITE, closed cleanly; the oldest segment, which the
 * checkpoint deleted, is put back (a crash right after the checkpoint leaves it so).
 */
async function buildHealthy(): Promise<Healthy> {
  const disk = new SimDisk({ rng: prng(SEED) });
  const host = (await openEngine(CONFIG, { io: disk, inline: true, log: () => {} })) as InlineHost;
  const history: Array<readonly [number, string, Uint8Array | null]> = [];
  const random = prng(SEED);
  let oldest: [string, Uint8Array] | undefined;
  for (let i = 0; i < WRITES; i++) {
    const key = `k${Math.floor(random() * KEYS)}`;
    const value = i % 7 === 6 ? null : utf8.encode(`v${i}:${"x".repeat(600 + (i % 100))}`);
    const write = host.engine.write([
      value === null ? delEntry(utf8.encode(key)) : setEntry(utf8.encode(key), value),
    ]);
    while (host.step()) {}
    const { lsn, existed } = await write;
    if (value !== null || existed) history.push([lsn, key, value]);
    if (i + 1 === CHECKPOINT_AFTER_WRITE) {
      const first = segmentPaths(disk)[0]!;
      oldest = [first, readWholeFile(disk, first)];
      await host.checkpoint();
    }
  }
  await host.close();
  const files = new Map<string, Uint8Array>();
  files.set(DB, readWholeFile(disk, DB));
  if (oldest !== undefined) files.set(oldest[0], oldest[1]);
  for (const p of segmentPaths(disk)) files.set(p, readWholeFile(disk, p));
  const redo_lsn = new DataView(files.get(DB)!.buffer).getUint32(HEADER_OFFSET.redo_lsn, true);
  const last_lsn = history.at(-1)![0];
  expect(history.map(([lsn]) => lsn)).toEqual(Array.from({ length: history.length }, (_, i) => i + 1));
  return { files, history, redo_lsn, last_lsn };
}

/** The value of every key after the writes with LSN ≤ `lsn`, as hex (null: absent). */
function stateAt(lsn: number): Map<string, string | null> {
  const state = new Map<string, string | null>();
  for (let k = 0; k < KEYS; k++) state.set(`k${k}`, null);
  for (const [write_lsn, key, value] of healthy.history)
    if (write_lsn <= lsn) state.set(key, value === null ? null : Buffer.from(value).toString("hex"));
  return state;
}

// ---- corruptions ----

type Corruption =
  | { readonly kind: "truncate"; readonly file: number; readonly at: number }
  | { readonly kind: "flip"; readonly file: number; readonly at: number; readonly bit: number }
  | { readonly kind: "zero"; readonly file: number; readonly at: number; readonly length: number }
  | { readonly kind: "magic"; readonly file: number; readonly at: number; readonly xor: number }
  | { readonly kind: "other_version"; readonly file: number; readonly version: number }
  | { readonly kind: "append"; readonly file: number; readonly bytes: Uint8Array }
  | { readonly kind: "replace"; readonly file: number; readonly bytes: Uint8Array }
  | { readonly kind: "remove"; readonly file: number }
  | { readonly kind: "add"; readonly name: string; readonly bytes: Uint8Array };

/** `file` picks one of the directory's files (modulo their count: data.db, then segments). */
const file = fc.nat();
/** Offsets: anywhere, or near the start (headers) where structure is densest. */
const at = fc.oneof(fc.nat(), fc.nat(96));
const garbage = fc.uint8Array({ minLength: 0, maxLength: 300 });
const corruption: fc.Arbitrary<Corruption> = fc.oneof(
  fc.record({ kind: fc.constant("truncate" as const), file, at }),
  fc.record({ kind: fc.constant("flip" as const), file, at, bit: fc.nat(7) }),
  fc.record({ kind: fc.constant("zero" as const), file, at, length: fc.integer({ min: 1, max: 5000 }) }),
  fc.record({
    kind: fc.constant("magic" as const),
    file,
    at: fc.nat(7),
    xor: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({
    kind: fc.constant("other_version" as const),
    file,
    // 1 and 2 are the segment versions walkv reads (2 → 1 exercises the records' checksum), 3 the next.
    version: fc.oneof(fc.constantFrom(1, 2, 3), fc.integer({ min: 1, max: 0xffffffff })),
  }),
  fc.record({ kind: fc.constant("append" as const), file, bytes: garbage.filter((b) => b.length > 0) }),
  fc.record({ kind: fc.constant("replace" as const), file, bytes: garbage }),
  fc.record({ kind: fc.constant("remove" as const), file }),
  fc.record({
    kind: fc.constant("add" as const),
    name: fc.oneof(
      fc.constantFrom("data.db.tmp", "junk", "wal/junk.bin", `wal/${segmentName(1)}.tmp`),
      fc.integer({ min: 1, max: WRITES + 50 }).map((lsn) => `wal/${segmentName(lsn)}`),
    ),
    bytes: garbage,
  }),
);

/** Applies `c` to `files` (in place); returns the path it changed. */
function corrupt(files: Map<string, Uint8Array>, c: Corruption): string {
  if (c.kind === "add") {
    files.set(`${DIR}/${c.name}`, c.bytes);
    return `${DIR}/${c.name}`;
  }
  const paths = [...files.keys()].sort();
  if (paths.length === 0) return DIR;
  const target = paths[c.file % paths.length]!;
  const bytes = files.get(target)!;
  const offset = bytes.length === 0 ? 0 : ("at" in c ? c.at : 0) % bytes.length;
  switch (c.kind) {
    case "truncate":
      files.set(target, bytes.slice(0, offset));
      return target;
    case "flip":
    case "magic": {
      const out = bytes.slice();
      if (out.length > 0) out[offset]! ^= c.kind === "flip" ? 1 << c.bit : c.xor;
      files.set(target, out);
      return target;
    }
    case "zero": {
      const out = bytes.slice();
      out.fill(0, offset, offset + c.length);
      files.set(target, out);
      return target;
    }
    case "other_version":
      files.set(target, withVersion(target, bytes, c.version));
      return target;
    case "append": {
      const out = new Uint8Array(bytes.length + c.bytes.length);
      out.set(bytes);
      out.set(c.bytes, bytes.length);
      files.set(target, out);
      return target;
    }
    case "replace":
      files.set(target, c.bytes);
      return target;
    case "remove":
      files.delete(target);
      return target;
  }
}

/**
 * The file with format version `version` at byte 8 and a valid header CRC: data.db's CRC covers the
 * version (bytes [0, 60), stored at 60); a segment of a version walkv reads gets the whole header of
 * that version (wal/format.ts: its CRC covers [16, 32), and [8, 12) too in version 2); other
 * versions are refused before any CRC is read.
 */
function withVersion(target: string, bytes: Uint8Array, version: number): Uint8Array {
  const out = bytes.slice();
  if (out.length < 12) return out;
  const view = new DataView(out.buffer);
  view.setUint32(8, version, true);
  if (target === DB && out.length >= 64)
    view.setUint32(HEADER_OFFSET.header_crc32c, crc32c(out, 0, 60), true);
  const first_lsn = out.length >= SEGMENT_HEADER_SIZE_BYTES ? Number(view.getBigUint64(16, true)) : 0;
  const readable = version === OLDEST_FORMAT_VERSION || version === FORMAT_VERSION;
  if (target !== DB && readable && Number.isSafeInteger(first_lsn) && first_lsn >= 1) {
    // A valid header of the other version (its own CRC): the records must fail its checksum.
    out.set(encodeSegmentHeader(first_lsn, version), 0);
  }
  return out;
}

// ---- running a case ----

/** Runs `files` on the worker; a hang terminates it (a fresh one serves the next case) and fails. */
async function runCase(files: Map<string, Uint8Array>, what: string): Promise<FilesResult> {
  const case_id = next_case++;
  const message: FilesCase = { case_id, config: CONFIG, files: [...files], keys: keyNames() };
  const result = new Promise<FilesResult>((resolve) => {
    worker.onmessage = (event: MessageEvent<FilesResult>) => {
      if (event.data.case_id === case_id) resolve(event.data);
    };
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      worker.terminate();
      worker = startWorker();
      reject(new Error(`hang: verify/start-up of ${what} not done in ${CASE_DEADLINE_MS} ms (seed ${SEED})`));
    }, CASE_DEADLINE_MS);
  });
  worker.postMessage(message);
  try {
    return await Promise.race([result, hang]);
  } finally {
    clearTimeout(timer);
  }
}

function keyNames(): string[] {
  return Array.from({ length: KEYS }, (_, k) => `k${k}`);
}

/**
 * The checks of the module comment, for one corrupted directory. `one_file`: the damage is in one
 * file. With defects in several files, verify and start-up may each report a different one first
 * (see the test.todo below): then only their verdicts must agree.
 */
function checkResult(files: Map<string, Uint8Array>, r: FilesResult, what: string, one_file = true): void {
  const where = `${what} (seed ${SEED})\nverify: ${JSON.stringify(r.verify)}\nstart: ${brief(r.start)}`;
  figures.cases++;
  figures.verify_ms += r.verify_ms;
  figures.start_ms += r.start_ms;
  if (r.verify.kind !== "ok" && r.verify.kind !== "corruption" && r.verify.kind !== "io")
    throw new Error(`verify threw something other than CorruptionError/IoError: ${where}`);
  if (r.start.kind !== "ok" && r.start.kind !== "corruption")
    throw new Error(`start-up threw something other than CorruptionError: ${where}`);
  for (const outcome of [r.verify, r.start]) {
    if (outcome.kind !== "corruption") continue;
    const size = files.get(outcome.file)?.length;
    if (size === undefined) throw new Error(`corruption names a file not in the directory: ${where}`);
    if (outcome.offset_bytes < 0 || outcome.offset_bytes > size)
      throw new Error(`corruption offset outside the file (${size} bytes): ${where}`);
  }
  if (r.start.kind === "corruption") {
    figures.refused++;
    if (r.verify.kind !== "corruption") throw new Error(`start-up refused, verify did not: ${where}`);
    if (one_file && r.verify.file !== r.start.file)
      throw new Error(`start-up and verify name different files: ${where}`);
    if (one_file && r.verify.offset_bytes !== r.start.offset_bytes)
      throw new Error(`start-up and verify name different offsets: ${where}`);
    return;
  }
  figures.accepted++;
  if (r.start.kind !== "ok" || r.verify.kind !== "ok")
    throw new Error(`start-up accepted, verify refused: ${where}`);
  if (r.start.torn_bytes > 0) figures.torn++;
  if (r.verify.next_lsn !== r.start.next_lsn) throw new Error(`next LSN differs: ${where}`);
  const expected = stateAt(r.start.next_lsn - 1);
  for (const [key, value] of r.start.values) {
    if (expected.get(key) !== value)
      throw new Error(
        `start-up recovered ${key} unlike the history up to LSN ${r.start.next_lsn - 1}: ${where}`,
      );
  }
}

function brief(o: Outcome): string {
  return o.kind === "ok" ? `ok next_lsn ${o.next_lsn}, torn ${o.torn_bytes} B` : JSON.stringify(o);
}

function describeCorruptions(cs: readonly Corruption[]): string {
  return JSON.stringify(cs, (_k, v) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v));
}

describe(`hostile files (seed ${SEED})`, () => {
  test("the healthy directory: verify and start-up accept it and recover all writes", async () => {
    expect(healthy.files.size).toBeGreaterThanOrEqual(4); // data.db, covered segment, ≥ 2 in the chain
    expect(healthy.redo_lsn).toBeGreaterThan(0);
    const r = await runCase(healthy.files, "the healthy directory");
    checkResult(healthy.files, r, "healthy");
    expect(r.start).toMatchObject({ kind: "ok", next_lsn: healthy.last_lsn + 1, torn_bytes: 0 });
    expect(r.start.kind === "ok" && r.start.values).toEqual([...stateAt(healthy.last_lsn)]);
  });

  test("corrupted data.db and WAL segments: a clear error or a torn tail, verify and start-up agree", async () => {
    figures.started_ms = performance.now();
    await fc.assert(
      fc.asyncProperty(fc.array(corruption, { minLength: 1, maxLength: 3 }), async (cs) => {
        const files = new Map(healthy.files);
        const touched = new Set(cs.map((c) => corrupt(files, c)));
        const what = describeCorruptions(cs);
        checkResult(files, await runCase(files, what), what, touched.size === 1);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    const elapsed_ms = performance.now() - figures.started_ms;
    console.log(
      `hostile files: ${figures.cases} cases (seed ${SEED}) in ${(elapsed_ms / 1000).toFixed(1)} s: ` +
        `${figures.refused} refused by verify and start-up alike, ` +
        `${figures.accepted} accepted by both (${figures.torn} with a torn tail cut); ` +
        `verify ${(figures.verify_ms / figures.cases).toFixed(1)} ms, start-up ` +
        `${(figures.start_ms / figures.cases).toFixed(1)} ms per case on average`,
    );
    expect(figures.refused).toBeGreaterThan(0);
    expect(figures.accepted).toBeGreaterThan(0);
  }, 120_000);

  test("defects in two files: verify and start-up report the same one first", async () => {
    // Found by the property (seeds 1 and 2): verify used to check all of data.db before the WAL
    // chain, while start-up reads data.db's header, checks that the chain reaches back to the redo
    // LSN, and only then reads data.db's blocks. verify now follows start-up's order.
    const files = new Map(healthy.files);
    files.set(DB, files.get(DB)!.slice(0, 100)); // header intact, first block cut
    const segments = [...files.keys()].filter((p) => p.startsWith(WAL_DIR)).sort();
    for (const p of segments.slice(0, -1)) files.delete(p); // the newest alone: LSNs are missing
    const r = await runCase(files, "data.db cut at byte 100 and all but the newest segment removed");
    expect(r.start.kind).toBe("corruption");
    expect(r.verify).toMatchObject({ kind: "corruption" });
    const start = r.start as unknown as { file: string; offset_bytes: number };
    expect(r.verify).toMatchObject({ file: start.file, offset_bytes: start.offset_bytes });
  });

  test("the daemon refuses a bit-flipped data.db: exit 3, file and offset named, nothing left behind", async () => {
    const dir = tempDir();
    const data_dir = path.join(dir, "data");
    fs.mkdirSync(path.join(data_dir, "wal"), { recursive: true, mode: 0o700 });
    for (const [p, bytes] of healthy.files) {
      const out = bytes.slice();
      // A bit in the first block's payload: the block CRC fails.
      if (p === DB) out[64 + 16 + 30]! ^= 0x04;
      fs.writeFileSync(path.join(data_dir, p.slice(DIR.length + 1)), out, { mode: 0o600 });
    }
    const report = verifyDataDir(new RealIo(), data_dir, { max_record_bytes: CONFIG.max_batch_bytes });
    expect(report.error?.file).toBe(path.join(data_dir, "data.db"));
    const daemon = Daemon.spawn({
      dir,
      data_dir,
      args: [
        "--max-batch-bytes",
        String(CONFIG.max_batch_bytes),
        "--max-key-bytes",
        String(CONFIG.max_key_bytes),
        "--max-value-bytes",
        String(CONFIG.max_value_bytes),
      ],
    });
    const code = await daemon.exited;
    expect({ code, stdout: daemon.stdout, stderr: daemon.stderr }).toMatchObject({
      code: 3,
      stdout: "",
    });
    expect(daemon.stderr).toContain(`${report.error!.file} at byte ${report.error!.offset_bytes}`);
    expect(fs.existsSync(daemon.socket_path)).toBe(false);
    expect(fs.existsSync(path.join(data_dir, "walkv.pid"))).toBe(false);
  }, 30_000);
});
