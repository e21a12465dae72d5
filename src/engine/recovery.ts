/**
 * Crash recovery, run once at start-up before any thread serves. Three phases:
 *
 * 1. **Plan** ({@link planRecovery}, one thread): create `DATA/` and `DATA/wal/` (0700); remove a
 *    leftover `data.db.tmp` and `wal/*.tmp`; read `data.db`'s header (its redo LSN says where replay
 *    starts); delete the segments it covers; check that the rest of the WAL starts at or before
 *    redo + 1 (a gap is corruption). Then the table is sized for what is coming.
 * 2. **Apply** ({@link applyRecovery}): load `data.db` (every block verified) and replay the WAL
 *    records > redo in LSN order, into a {@link ReplaySink}. Applying never writes a file. The sink
 *    is a Loader on this thread, or (`options.offload`: the threaded host, for recoveries of 8 MiB
 *    and more) a pipe to a replay worker that links while this thread reads and verifies on
 *    (replay_pipe.ts): 1M keys recover from the WAL in 1.0–1.34 s instead of ≈ 1.7, from data.db in
 *    0.80–0.90 s instead of ≈ 0.97 (docs/BENCHMARKS.md). (Linking on two threads, each
 *    taking half of the shards, was measured and gained nothing on 2 cores: both threads then
 *    contend on page faults and allocator locks. Pre-faulting the arena's pages on a helper thread
 *    made it slower, for the same reason.)
 * 3. **Finish** ({@link finishRecovery}, one thread): the newest segment may end in a torn tail (a
 *    crash mid-append): it is dropped and logged with the bytes dropped. The newest segment's records
 *    after the redo LSN are then re-persisted (copied to a fresh segment whose header keeps the
 *    segment's format version, as the records keep their checksums; fsynced, renamed over it):
 *    after a process crash — or a failed fdatasync before it — they may sit in the page cache only;
 *    replaying makes them visible, so they must survive a power cut from now on, and no later segment
 *    may become durable while they are not. Older segments are fsynced in place.
 *
 * Corruption anywhere else refuses to start with a CorruptionError naming the file and byte offset,
 * unless `repair_wal` is set: then the WAL is cut at the first bad record and every later segment is
 * deleted (logged loudly).
 *
 * @example
 * const result = recover(io, config, table, console.log); // all three phases on this thread
 * // start the WAL writer at result.next_lsn
 */
import { readSnapshot, readSnapshotHeader } from "./checkpoint/snapshot_reader.ts";
import type { EngineConfig } from "./config.ts";
import { assert, CorruptionError } from "./errors.ts";
import { closeQuietly, type Io } from "./io/io.ts";
import { Loader, type ReplaySink } from "./replay_loader.ts";
import type { Table } from "./table.ts";
import { encodeSegmentHeader, OP_DEL, SEGMENT_HEADER_SIZE_BYTES, segmentName } from "./wal/format.ts";
import { type EntryVisitor, visitRecordEntries } from "./wal/record.ts";
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
  /** Bytes of WAL replayed (after the redo LSN's segment): what a checkpoint has yet to cover. */
  readonly wal_bytes: number;
  readonly duration_ms: number;
}

/** What recovery reads, decided (and cleaned up) before the table is touched. */
interface RecoveryPlan {
  readonly data_db: boolean;
  readonly redo_lsn: number;
  readonly snapshot_max_lsn: number;
  readonly snapshot_entries: number;
  /** First LSNs of the WAL segments to replay, oldest first. */
  readonly chain: readonly number[];
  readonly chain_bytes: number;
  /** data.db's body and the WAL chain: what applying reads. */
  readonly read_bytes: number;
  /** Keys to size the table for: data.db's count plus an estimate from the WAL's size. */
  readonly expected_keys: number;
  readonly started_ms: number;
}

/** What one segment turned out to hold. */
interface SegmentOutcome {
  /** Its header's (1 or 2), undefined if the header is torn: a copy of its records keeps it. */
  readonly format_version: number | undefined;
  readonly end_offset_bytes: number;
  readonly torn_bytes: number;
  /** Zeros the writer wrote ahead of the records (fsync `always`): not log, not counted as WAL bytes. */
  readonly zero_tail_bytes: number;
  /** The first record after the redo LSN, if any. */
  readonly kept: { readonly lsn: number; readonly offset_bytes: number } | undefined;
}

/** What applying found in the files. */
interface ApplyResult {
  readonly records: number;
  readonly last_lsn: number;
  readonly segments: readonly SegmentOutcome[];
  /** Under repair_wal: where replay stopped (segment index in the chain) and why. */
  readonly repair: { readonly index: number; readonly error: CorruptionError } | undefined;
}

/** A sink that links on another thread, stopped with `close` once recovery is done with it. */
export type ClosableSink = ReplaySink & { close(): void };

export interface RecoveryOptions {
  /**
   * Given the bytes recovery is about to read (data.db's body and the WAL), a sink that links the
   * versions on another thread (the threaded host's replay worker, replay_pipe.ts), or undefined to
   * link them on this one. Closed when applying ends, also on an error.
   */
  readonly offload?: (read_bytes: number) => ClosableSink | undefined;
}

/**
 * Recovers the table from `config.data_dir` on this thread (and the thread of `options.offload`'s
 * sink, if one). The table must be empty and unused by any other thread.
 */
export function recover(
  io: Io,
  config: EngineConfig,
  table: Table,
  log: (line: string) => void,
  options: RecoveryOptions = {},
): RecoveryResult {
  const plan = planRecovery(io, config, log);
  const offloaded = options.offload?.(plan.read_bytes);
  let applied: ApplyResult;
  try {
    table.presize(plan.expected_keys); // while the replay worker starts
    applied = applyRecovery(io, config, offloaded ?? new Loader(table), plan);
  } finally {
    offloaded?.close();
  }
  const applied_ms = performance.now();
  const result = finishRecovery(io, config, plan, applied, log);
  const finish_ms = Math.round(performance.now() - applied_ms);
  log(
    `recovery: ${result.duration_ms - finish_ms} ms reading and applying, ${finish_ms} ms making the log durable`,
  );
  return result;
}

/** Phase 1: cleans up leftovers, reads data.db's header, drops covered segments. */
function planRecovery(io: Io, config: EngineConfig, log: (line: string) => void): RecoveryPlan {
  const started_ms = performance.now();
  const dir = config.data_dir;
  const wal_dir = `${dir}/wal`;
  io.mkdirp(wal_dir);
  for (const name of io.list(wal_dir)) {
    if (!name.endsWith(".tmp")) continue;
    io.unlink(`${wal_dir}/${name}`);
    log(`recovery: removed wal/${name} left by an interrupted recovery`);
  }
  if (io.exists(`${dir}/data.db.tmp`)) {
    io.unlink(`${dir}/data.db.tmp`);
    log("recovery: removed data.db.tmp left by an interrupted checkpoint");
  }
  const data_db = io.exists(`${dir}/data.db`);
  const header = data_db ? readSnapshotHeader(io, `${dir}/data.db`) : undefined;
  const redo_lsn = header?.redo_lsn ?? 0;
  const listed = listSegments(io, wal_dir);
  const covered = coveredSegmentCount(listed, redo_lsn);
  for (const first_lsn of listed.slice(0, covered)) io.unlink(`${wal_dir}/${segmentName(first_lsn)}`);
  if (covered > 0) {
    io.syncDir(wal_dir);
    log(`recovery: deleted ${covered} WAL segments covered by data.db`);
  }
  const chain = listed.slice(covered);
  checkChainStart(wal_dir, chain, redo_lsn);
  const chain_bytes = walBytes(io, wal_dir, chain);
  return {
    data_db,
    redo_lsn,
    snapshot_max_lsn: header?.max_lsn ?? 0,
    snapshot_entries: header?.entry_count ?? 0,
    chain,
    chain_bytes,
    read_bytes: (header?.body_bytes ?? 0) + chain_bytes,
    expected_keys: (header?.entry_count ?? 0) + Math.ceil(chain_bytes / WAL_BYTES_PER_KEY_ESTIMATE),
    started_ms,
  };
}

/**
 * Phase 2: loads data.db and replays the WAL chain. Reads only. Throws CorruptionError on
 * corruption (unless repair_wal: then it stops at the bad record).
 */
function applyRecovery(io: Io, config: EngineConfig, sink: ReplaySink, plan: RecoveryPlan): ApplyResult {
  if (plan.data_db) {
    const info = readSnapshot(io, `${config.data_dir}/data.db`, (bytes, ko, kl, vo, vl, lsn, expiry) =>
      sink.set(bytes, ko, kl, vo, vl, lsn, expiry),
    );
    assert(info.redo_lsn === plan.redo_lsn, "data.db did not change during recovery");
  }
  const wal_dir = `${config.data_dir}/wal`;
  const state = { last_lsn: plan.redo_lsn, records: 0 };
  const segments: SegmentOutcome[] = [];
  const replayer = new RecordReplayer(sink);
  for (let i = 0; i < plan.chain.length; i++) {
    try {
      segments.push(replaySegment(io, config, replayer, wal_dir, plan, i, state));
    } catch (error) {
      if (!(error instanceof CorruptionError) || !config.repair_wal) throw error;
      sink.flush();
      return { ...state, segments, repair: { index: i, error } };
    }
  }
  sink.flush();
  return { ...state, segments, repair: undefined };
}

/** Phase 3: repairs (if asked), re-persists the newest segment, fsyncs, and reports. */
function finishRecovery(
  io: Io,
  config: EngineConfig,
  plan: RecoveryPlan,
  applied: ApplyResult,
  log: (line: string) => void,
): RecoveryResult {
  const wal_dir = `${config.data_dir}/wal`;
  if (plan.data_db) log(`recovery: loaded data.db: ${plan.snapshot_entries} keys, redo LSN ${plan.redo_lsn}`);
  let torn_bytes = 0;
  applied.segments.forEach((outcome, i) => {
    const path = `${wal_dir}/${segmentName(plan.chain[i]!)}`;
    torn_bytes += outcome.torn_bytes;
    if (outcome.torn_bytes > 0) {
      log(
        `recovery: torn tail of ${path} at byte ${outcome.end_offset_bytes}: ${outcome.torn_bytes} bytes dropped`,
      );
    }
    const newest = i === plan.chain.length - 1;
    if (!newest) syncFile(io, path);
    else if (outcome.kept === undefined) {
      io.unlink(path);
      log(`recovery: removed ${path}: no record after the redo LSN`);
    } else rewriteSegment(io, path, outcome);
  });
  if (applied.repair !== undefined)
    repairAt(io, wal_dir, plan.chain.slice(applied.repair.index), applied.repair.error, log);
  io.syncDir(wal_dir);
  io.syncDir(config.data_dir);
  const duration_ms = Math.round(performance.now() - plan.started_ms);
  log(
    `recovery: replayed ${applied.records} WAL records from ${plan.chain.length} segments in ${duration_ms} ms`,
  );
  return {
    // data.db's versions never pass the durable WAL, but should the WAL have been lost, never reuse them.
    next_lsn: Math.max(applied.last_lsn, plan.snapshot_max_lsn) + 1,
    redo_lsn: plan.redo_lsn,
    snapshot_entries: plan.snapshot_entries,
    wal_records: applied.records,
    wal_segments: plan.chain.length,
    torn_bytes,
    wal_bytes: plan.chain_bytes - applied.segments.reduce((sum, s) => sum + s.zero_tail_bytes, 0),
    duration_ms,
  };
}

/**
 * Feeds verified WAL records to a sink, every entry at its record's LSN (one visitor for all
 * records: no closure per record).
 */
class RecordReplayer {
  private bytes: Uint8Array = new Uint8Array(0);
  private lsn = 0;
  private readonly visit: EntryVisitor;

  constructor(private readonly sink: ReplaySink) {
    this.visit = (op, ko, kl, vo, vl, expiry) => {
      if (op === OP_DEL) this.sink.del(this.bytes, ko, kl, this.lsn);
      else this.sink.set(this.bytes, ko, kl, vo, vl, this.lsn, expiry);
    };
  }

  /** Puts every entry of the verified record at `bytes[offset]` into the sink. */
  replay(bytes: Uint8Array, offset: number, lsn: number): void {
    this.bytes = bytes;
    this.lsn = lsn;
    visitRecordEntries(bytes, offset, this.visit);
  }
}

function walBytes(io: Io, wal_dir: string, chain: readonly number[]): number {
  let bytes = 0;
  for (const lsn of chain) {
    const file = io.open(`${wal_dir}/${segmentName(lsn)}`);
    try {
      bytes += io.size(file);
    } finally {
      closeQuietly(io, file);
    }
  }
  return bytes;
}

/** Replays segment `index` of the chain (records > redo) and says what it held. */
function replaySegment(
  io: Io,
  config: EngineConfig,
  replayer: RecordReplayer,
  wal_dir: string,
  plan: RecoveryPlan,
  index: number,
  state: { last_lsn: number; records: number },
): SegmentOutcome {
  let kept: { lsn: number; offset_bytes: number } | undefined;
  const result = readChainSegment(
    io,
    wal_dir,
    plan.chain,
    index,
    state,
    config.max_batch_bytes,
    (lsn, bytes, offset, _length, file_offset) => {
      if (lsn <= plan.redo_lsn) return;
      kept ??= { lsn, offset_bytes: file_offset };
      replayer.replay(bytes, offset, lsn);
      state.records++;
    },
  );
  return {
    format_version: result.format_version,
    end_offset_bytes: result.end_offset_bytes,
    torn_bytes: result.torn_bytes,
    zero_tail_bytes: result.zero_tail_bytes,
    kept,
  };
}

/**
 * Copies the records of `old_path` from the kept one to the end of the valid ones into a new segment
 * named after the kept record's LSN, under a header of the old segment's format version (the records
 * keep their checksums, CRC-32C in a version 1 segment): written, fsynced, renamed over.
 */
function rewriteSegment(io: Io, old_path: string, outcome: SegmentOutcome): void {
  const { format_version, kept } = outcome;
  assert(
    format_version !== undefined && kept !== undefined,
    "a segment with a record to keep has a valid header",
  );
  const first_lsn = kept.lsn;
  const from_bytes = kept.offset_bytes;
  const to_bytes = outcome.end_offset_bytes;
  assert(from_bytes >= SEGMENT_HEADER_SIZE_BYTES && from_bytes < to_bytes, "kept records lie in the segment");
  const dir = old_path.slice(0, old_path.lastIndexOf("/"));
  const final_path = `${dir}/${segmentName(first_lsn)}`;
  const tmp_path = `${final_path}.tmp`;
  const source = io.open(old_path);
  const target = io.open(tmp_path, { create: true, truncate: true });
  try {
    io.write(target, encodeSegmentHeader(first_lsn, format_version), 0);
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
    closeQuietly(io, file);
  }
}

/** `repair_wal`: truncate the bad segment at the bad record, delete every later segment. */
function repairAt(
  io: Io,
  wal_dir: string,
  firsts: readonly number[],
  error: CorruptionError,
  log: (line: string) => void,
): void {
  log(`recovery: REPAIR: ${error.message}; cutting the WAL there (repair_wal is set)`);
  const file = io.open(error.file);
  try {
    io.truncate(file, Math.max(0, error.offset_bytes));
    io.sync(file);
  } finally {
    closeQuietly(io, file);
  }
  for (const lsn of firsts.slice(1)) {
    io.unlink(`${wal_dir}/${segmentName(lsn)}`);
    log(`recovery: REPAIR: deleted ${segmentName(lsn)} (after the cut)`);
  }
}
