/**
 * Crash recovery, run once at start-up before any thread serves:
 * 1. create `DATA/` and `DATA/wal/` (0700) if missing; remove a leftover `data.db.tmp`;
 * 2. load `data.db` (every block verified) into the table; its redo LSN says where replay starts;
 * 3. replay every WAL record with LSN > redo, in LSN order, segment after segment; a gap is
 *    corruption; segments wholly ≤ redo are deleted unread (a checkpoint covered them);
 * 4. the newest segment may end in a torn tail (a crash mid-append): it is dropped and logged with
 *    the bytes dropped. The newest segment's records after the redo LSN are then re-persisted (copied
 *    to a fresh segment, fsynced, renamed over it): after a process crash they may sit in the page
 *    cache only; replaying them makes them visible, so they must survive a power cut from now on, and
 *    no later segment may become durable while they are not. Older segments are fsynced in place;
 * 5. Corruption anywhere else refuses to start with a
 *    CorruptionError naming the file and byte offset — unless `repair_wal` is set, in which case the
 *    WAL is cut at the first bad record and every later segment is deleted (logged loudly).
 *
 * @example
 * const result = recover(io, config, table, console.log);
 * // start the WAL writer at result.next_lsn
 */
import { readSnapshot } from "./checkpoint/snapshot_reader.ts";
import type { EngineConfig } from "./config.ts";
import { assert, CorruptionError } from "./errors.ts";
import { hashKey } from "./hash.ts";
import { closeQuietly, type Io } from "./io/io.ts";
import type { Table } from "./table.ts";
import { encodeSegmentHeader, OP_DEL, SEGMENT_HEADER_SIZE_BYTES, segmentName } from "./wal/format.ts";
import { visitRecordEntries } from "./wal/record.ts";
import { checkChainStart, coveredSegmentCount, listSegments, readChainSegment } from "./wal/segment_chain.ts";

const COPY_CHUNK_BYTES = 4 << 20;
/** WAL bytes per distinct key assumed when sizing the table before replay (a 16 B key + 100 B value is 152). */
const WAL_BYTES_PER_KEY_ESTIMATE = 160;

export interface RecoveryResult {
  /** The LSN the next write takes. */
  readonly next_lsn: number;
  /** Redo LSN of the loaded data.db (0 without one). */
  readonly redo_lsn: number;
  readonly snapshot_entries: number;
  readonly wal_records: number;
  readonly wal_segments: number;
  readonly torn_bytes: number;
  readonly duration_ms: number;
}

/** Recovers the table from `config.data_dir`. The table must be empty; no other thread may use it yet. */
export function recover(
  io: Io,
  config: EngineConfig,
  table: Table,
  log: (line: string) => void,
): RecoveryResult {
  const started_ms = performance.now();
  const dir = config.data_dir;
  io.mkdirp(`${dir}/wal`);
  for (const name of io.list(`${dir}/wal`)) {
    if (!name.endsWith(".tmp")) continue;
    io.unlink(`${dir}/wal/${name}`);
    log(`recovery: removed wal/${name} left by an interrupted recovery`);
  }
  if (io.exists(`${dir}/data.db.tmp`)) {
    io.unlink(`${dir}/data.db.tmp`);
    log("recovery: removed data.db.tmp left by an interrupted checkpoint");
  }
  const loader = new Loader(table);
  let redo_lsn = 0;
  let snapshot_entries = 0;
  let snapshot_max_lsn = 0;
  if (io.exists(`${dir}/data.db`)) {
    const info = readSnapshot(
      io,
      `${dir}/data.db`,
      (bytes, ko, kl, vo, vl, lsn, expiry) => loader.set(bytes, ko, kl, vo, vl, lsn, expiry),
      (entry_count) => table.presize(entry_count),
    );
    redo_lsn = info.redo_lsn;
    snapshot_max_lsn = info.max_lsn;
    snapshot_entries = info.entry_count;
    log(`recovery: loaded data.db: ${info.entry_count} keys, redo LSN ${redo_lsn}`);
  }
  const replay = replayWal(io, config, loader, redo_lsn, log);
  const duration_ms = Math.round(performance.now() - started_ms);
  log(
    `recovery: replayed ${replay.records} WAL records from ${replay.segments} segments in ${duration_ms} ms`,
  );
  return {
    // data.db's versions never pass the durable WAL, but should the WAL have been lost, never reuse them.
    next_lsn: Math.max(replay.last_lsn, snapshot_max_lsn) + 1,
    redo_lsn,
    snapshot_entries,
    wal_records: replay.records,
    wal_segments: replay.segments,
    torn_bytes: replay.torn_bytes,
    duration_ms,
  };
}

/** Applies recovered versions to the table (single-threaded; every version is visible at once). */
class Loader {
  constructor(private readonly table: Table) {}

  set(bytes: Uint8Array, ko: number, kl: number, vo: number, vl: number, lsn: number, expiry: number): void {
    const h = hashKey(bytes, ko, ko + kl);
    const version = this.table.newVersion(bytes, ko, kl, bytes, vo, vl, expiry);
    this.link(version, h, lsn);
  }

  /** Sizes the table for the keys the WAL may add (one per ~WAL_BYTES_PER_KEY_ESTIMATE bytes). */
  presizeForWal(io: Io, wal_dir: string, firsts: number[]): void {
    let bytes = 0;
    for (const lsn of firsts) {
      const file = io.open(`${wal_dir}/${segmentName(lsn)}`);
      try {
        bytes += io.size(file);
      } finally {
        closeQuietly(io, file);
      }
    }
    this.table.presize(this.table.slotsUsed() + Math.ceil(bytes / WAL_BYTES_PER_KEY_ESTIMATE));
  }

  del(bytes: Uint8Array, ko: number, kl: number, lsn: number): void {
    const h = hashKey(bytes, ko, ko + kl);
    const version = this.table.newVersion(bytes, ko, kl, undefined, 0, 0, 0);
    this.link(version, h, lsn);
  }

  private link(version: number, h: number, lsn: number): void {
    const shard = this.table.shardOf(h);
    this.table.lockShard(shard);
    try {
      this.table.reserveSlots(shard, 1);
      this.table.link(version, h, lsn, Number.MAX_SAFE_INTEGER);
    } finally {
      this.table.unlockShard(shard);
    }
  }
}

function replayWal(
  io: Io,
  config: EngineConfig,
  loader: Loader,
  redo_lsn: number,
  log: (line: string) => void,
) {
  const wal_dir = `${config.data_dir}/wal`;
  const listed = listSegments(io, wal_dir);
  const skip = coveredSegmentCount(listed, redo_lsn);
  for (const first_lsn of listed.slice(0, skip)) io.unlink(`${wal_dir}/${segmentName(first_lsn)}`);
  if (skip > 0) {
    io.syncDir(wal_dir);
    log(`recovery: deleted ${skip} WAL segments covered by data.db`);
  }
  const firsts = listed.slice(skip);
  checkChainStart(wal_dir, firsts, redo_lsn);
  const state = { last_lsn: redo_lsn, records: 0, torn_bytes: 0 };
  loader.presizeForWal(io, wal_dir, firsts);
  for (let i = 0; i < firsts.length; i++) {
    try {
      replaySegment(io, config, loader, wal_dir, { chain: firsts, index: i }, redo_lsn, state, log);
    } catch (error) {
      if (!(error instanceof CorruptionError) || !config.repair_wal) throw error;
      repairAt(io, wal_dir, firsts.slice(i), error, log);
      break;
    }
  }
  io.syncDir(wal_dir);
  io.syncDir(config.data_dir);
  return { ...state, segments: firsts.length };
}

/**
 * Replays one segment (records > redo_lsn). An older segment is fsynced as it is; the newest one is
 * re-persisted: its records > redo_lsn are copied into a fresh segment that is fsynced and renamed
 * over it (dropping a torn tail), because after a crash — or a failed fdatasync before it — its
 * pages may be in the page cache only, and a fresh write plus fdatasync is the one way to know
 * they are on disk.
 */
function replaySegment(
  io: Io,
  config: EngineConfig,
  loader: Loader,
  wal_dir: string,
  position: { chain: readonly number[]; index: number },
  redo_lsn: number,
  state: { last_lsn: number; records: number; torn_bytes: number },
  log: (line: string) => void,
): void {
  let kept: { lsn: number; offset_bytes: number } | undefined;
  const path = `${wal_dir}/${segmentName(position.chain[position.index]!)}`;
  const newest = position.index === position.chain.length - 1;
  const result = readChainSegment(
    io,
    wal_dir,
    position.chain,
    position.index,
    state,
    config.max_batch_bytes,
    (lsn, bytes, offset, _length, file_offset) => {
      if (lsn <= redo_lsn) return;
      kept ??= { lsn, offset_bytes: file_offset };
      applyRecord(loader, bytes, offset, lsn);
      state.records++;
    },
  );
  state.torn_bytes += result.torn_bytes;
  if (result.torn_bytes > 0)
    log(
      `recovery: torn tail of ${path} at byte ${result.end_offset_bytes}: ${result.torn_bytes} bytes dropped`,
    );
  if (!newest) syncFile(io, path);
  else if (kept === undefined) {
    io.unlink(path);
    log(`recovery: removed ${path}: no record after the redo LSN`);
  } else rewriteSegment(io, path, kept.lsn, kept.offset_bytes, result.end_offset_bytes);
}

/** Copies `old_path[from, to)` into a new segment `first_lsn`: written, fsynced, renamed over. */
function rewriteSegment(
  io: Io,
  old_path: string,
  first_lsn: number,
  from_bytes: number,
  to_bytes: number,
): void {
  const dir = old_path.slice(0, old_path.lastIndexOf("/"));
  const final_path = `${dir}/${segmentName(first_lsn)}`;
  const tmp_path = `${final_path}.tmp`;
  const source = io.open(old_path);
  const target = io.open(tmp_path, { create: true, truncate: true });
  try {
    io.write(target, encodeSegmentHeader(first_lsn), 0);
    const chunk = new Uint8Array(Math.min(COPY_CHUNK_BYTES, Math.max(1, to_bytes - from_bytes)));
    for (let p = from_bytes; p < to_bytes; ) {
      const n = io.read(source, chunk.subarray(0, Math.min(chunk.length, to_bytes - p)), p);
      assert(n > 0, "segment shrank during recovery");
      io.write(target, chunk.subarray(0, n), SEGMENT_HEADER_SIZE_BYTES + p - from_bytes);
      p += n;
    }
    io.sync(target);
  } finally {
    closeQuietly(io, target);
    closeQuietly(io, source);
  }
  io.rename(tmp_path, final_path);
  if (final_path !== old_path) io.unlink(old_path);
  io.syncDir(dir);
}

function syncFile(io: Io, path: string): void {
  const file = io.open(path);
  try {
    io.sync(file);
  } finally {
    io.close(file);
  }
}

function applyRecord(loader: Loader, bytes: Uint8Array, offset: number, lsn: number): void {
  visitRecordEntries(bytes, offset, (op, ko, kl, vo, vl, expiry) => {
    if (op === OP_DEL) loader.del(bytes, ko, kl, lsn);
    else loader.set(bytes, ko, kl, vo, vl, lsn, expiry);
  });
}

/** `repair_wal`: truncate the bad segment at the bad record, delete every later segment. */
function repairAt(
  io: Io,
  wal_dir: string,
  firsts: number[],
  error: CorruptionError,
  log: (line: string) => void,
): void {
  log(`recovery: REPAIR: ${error.message}; cutting the WAL there (repair_wal is set)`);
  const later = firsts.slice(1);
  const file = io.open(error.file);
  try {
    io.truncate(file, Math.max(0, error.offset_bytes));
    io.sync(file);
  } finally {
    io.close(file);
  }
  for (const lsn of later) {
    io.unlink(`${wal_dir}/${segmentName(lsn)}`);
    log(`recovery: REPAIR: deleted ${segmentName(lsn)} (after the cut)`);
  }
  io.syncDir(wal_dir);
}
