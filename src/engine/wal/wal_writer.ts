/**
 * The WAL writer: the one thread that moves completed records from the shared {@link WalBuffer} to
 * segment files, in LSN order, and makes them durable by the fsync policy:
 * - `always`: one fdatasync per batch covers every record in it (group commit: all writers whose
 *   records were complete when the batch was taken share it); records become visible after it.
 *   The segment is written with zeros up to `zero_ahead_bytes` (default 1 MiB) past its last record, so
 *   that a batch overwrites blocks the file already has: its fdatasync then flushes the data alone,
 *   with no journal commit for the file's new size and blocks (as PostgreSQL fills its WAL segments
 *   with zeros). Measured here: 94 µs against 131 µs per small append + fdatasync, alone; 127–148
 *   against 181–265 µs under SET load. The zeros are cut before the segment is sealed (rotation,
 *   close); in the newest segment after a crash they read as its clean end (segment_reader.ts).
 * - `everysec`: records are visible once written to the OS (they survive kill -9); an fdatasync
 *   starts at least once per `everysec_interval_ms` — on this thread, or, given a `background_sync`
 *   ({@link WalSyncer}), on the syncer's, which this writer never waits for except before it syncs
 *   the segment itself and when it names a new segment to it (one round trip per segment).
 * - `no`: visible once written; fdatasync only at segment rotation, checkpoints and shutdown. Given a
 *   `background_sync`, the syncer also runs fdatasyncs in a segment's last eighth (as with
 *   `everysec`), one per 1/64 of the segment at most, so that the rotation's own fdatasync on this
 *   thread has little left to flush.
 *
 * Failures (PostgreSQL's 2018 fsync lesson): a failed fdatasync stops the log for good — writes are
 * refused, reads go on, nothing is retried. A failed write (EIO, ENOSPC) truncates the segment back
 * to its last good size, rolls the unwritten records out of the table (they were never visible),
 * rejects their writers and then accepts writes again, so a full disk heals when space returns.
 *
 * @example
 * const writer = new WalWriter(io, buffer, table, { dir, fsync: "always", segment_bytes: 64 << 20 }, start);
 * while (!stopping) writer.waitAndStep(); // on the WAL writer worker
 * writer.close();
 */
import type { EngineConfig } from "../config.ts";
import { crashPoint } from "../crash_points.ts";
import { assert, describeFailure } from "../errors.ts";
import { hashKey } from "../hash.ts";
import { closeQuietly, type FileId, type Io } from "../io/io.ts";
import type { Table } from "../table.ts";
import { encodeSegmentHeader, parseSegmentName, SEGMENT_HEADER_SIZE_BYTES, segmentName } from "./format.ts";
import { visitRecordEntries } from "./record.ts";
import { WAL_HALTED, WAL_STOPPED, type WalBuffer } from "./wal_buffer.ts";
import type { BackgroundSync } from "./wal_syncer.ts";

export type FsyncMode = "always" | "everysec" | "no";

export interface WalWriterOptions {
  /** The WAL directory, `DATA/wal`. */
  readonly dir: string;
  readonly fsync: FsyncMode;
  /** A segment is rotated before a record would take it past this size. */
  readonly segment_bytes: number;
  readonly everysec_interval_ms?: number;
  /** fsync `always`: zeros kept written past the last record (EngineConfig.wal_zero_ahead_bytes). */
  readonly zero_ahead_bytes?: number;
  /** Ask for a checkpoint once this many WAL bytes were written since the last request. */
  readonly checkpoint_wal_bytes?: number;
  readonly now_ms?: () => number;
  readonly log?: (line: string) => void;
  /**
   * `everysec` or `no`: this syncer's thread (wal_syncer.ts) runs the periodic fdatasync of
   * `everysec`, and in both modes the early ones of a segment's last eighth, so that the rotation's
   * own fdatasync on this thread has little left to flush.
   */
  readonly background_sync?: BackgroundSync;
  /**
   * True for a shard whose mutex the thread that steps this writer holds while it steps (a
   * `LocalWalWriter` stepped by Engine's `write_now`, or while a write waits for ring space): a
   * rollback then changes that shard without taking its mutex, which would never come free.
   */
  readonly shard_held?: (shard: number) => boolean;
}

/**
 * The writer's options as the engine's configuration sets them (every host builds its writer so).
 *
 * @example
 * new WalWriter(io, buffer, table, walWriterOptions(config, log), start);
 */
export function walWriterOptions(config: EngineConfig, log: (line: string) => void): WalWriterOptions {
  return {
    dir: `${config.data_dir}/wal`,
    fsync: config.fsync,
    segment_bytes: config.wal_segment_bytes,
    checkpoint_wal_bytes: config.checkpoint_wal_bytes,
    zero_ahead_bytes: config.wal_zero_ahead_bytes,
    log,
  };
}

/** Where the log continues after recovery: the next LSN (always in a new segment). */
export interface WalStart {
  readonly next_lsn: number;
  /** WAL bytes recovery replayed: they count toward the next size-triggered checkpoint. */
  readonly replayed_bytes?: number;
}

/** Doorbell checks before the idle writer sleeps (a few microseconds). */
const IDLE_SPIN_ITERATIONS = 2000;
/**
 * `always`, threaded: after a group commit that left records waiting (other writers are active), the
 * writer waits this long at most — and never more than half the last fdatasync — for the writers the
 * group just released to come back, so that the next fdatasync covers them too (see waitAndStep).
 */
const GROUP_LINGER_MAX_MS = 2;
/** While lingering, a pause in arrivals this long ends the wait. */
const GROUP_QUIET_MS = 0.15;
/** Largest single write(2) of a batch. */
const BATCH_WRITE_BYTES_MAX = 8 << 20;
/** The zeros a segment is extended with, written in pieces of this size. */
const ZEROS = new Uint8Array(256 << 10);

export class WalWriter {
  private readonly io: Io;
  private readonly buffer: WalBuffer;
  private readonly table: Table;
  private readonly options: Required<Omit<WalWriterOptions, "background_sync">>;
  private readonly background_sync: BackgroundSync | undefined;
  private file: FileId | undefined;
  private segment_path = "";
  private segment_first_lsn = 0;
  private segment_size_bytes = 0;
  /** The segment's size when the syncer was last asked for an fdatasync (0: not yet). */
  private sync_requested_size_bytes = 0;
  /** fsync `always`: the segment's bytes written so far, zeros ahead of its last record included. */
  private segment_written_bytes = 0;
  private durable_lsn: number;
  private written_lsn: number;
  private last_sync_ms: number;
  private bytes_since_checkpoint_request = 0;
  /** How long the last fdatasync took (performance.now() clock). */
  private last_fdatasync_ms = 0;
  /** When an `always` group was published with records already waiting behind it; -1 otherwise. */
  private group_released_ms = -1;

  constructor(io: Io, buffer: WalBuffer, table: Table, options: WalWriterOptions, start: WalStart) {
    assert(options.segment_bytes > SEGMENT_HEADER_SIZE_BYTES, "segment_bytes above the header size");
    assert(
      options.background_sync === undefined || options.fsync !== "always",
      "a background fdatasync is for fsync everysec or no",
    );
    this.background_sync = options.background_sync;
    this.io = io;
    this.buffer = buffer;
    this.table = table;
    this.options = {
      everysec_interval_ms: 1000,
      checkpoint_wal_bytes: Number.POSITIVE_INFINITY,
      zero_ahead_bytes: 0,
      now_ms: Date.now,
      log: () => {},
      shard_held: () => false,
      ...options,
    };
    this.durable_lsn = start.next_lsn - 1;
    this.written_lsn = start.next_lsn - 1;
    this.last_sync_ms = this.options.now_ms();
    this.bytes_since_checkpoint_request = start.replayed_bytes ?? 0;
  }

  /**
   * Writes every completed record the current segment can take (one write, one fdatasync in
   * `always` mode), publishes the new LSNs, and rotates the segment if it is full. Returns true if it
   * did anything. Never throws for I/O errors: it handles them as described above.
   */
  step(): boolean {
    if (this.buffer.state() === WAL_STOPPED) return false;
    this.collectBackgroundSync();
    const batch = this.collect();
    if (batch.last_lsn === batch.first_lsn - 1) {
      if (batch.rotate) return this.rotate();
      return this.syncIfDue();
    }
    if (this.file === undefined && !this.openNewSegment(batch.first_lsn)) return true;
    const size_before = this.segment_size_bytes;
    try {
      this.zeroAhead(size_before + batch.bytes);
      for (const [start, end] of batch.ranges) {
        this.io.write(this.file!, this.buffer.ring.subarray(start, end), this.segment_size_bytes);
        this.segment_size_bytes += end - start;
      }
    } catch (error) {
      this.failWrite(error, size_before);
      return true;
    }
    this.written_lsn = batch.last_lsn;
    crashPoint("wal-after-write-before-fsync");
    const must_sync =
      this.options.fsync === "always" || (this.syncDue() && this.background_sync === undefined);
    if (must_sync && !this.syncFile()) return true;
    this.publish(
      batch.end_pos,
      batch.last_lsn - batch.first_lsn + 1,
      this.segment_size_bytes - size_before,
      must_sync ? 1 : 0,
    );
    this.noteBytes(this.segment_size_bytes - size_before);
    // A batch that fills the segment is sealed by rotate() below, whose own fdatasync covers it:
    // asking the syncer first would only make rotate() wait for a second one.
    if (!must_sync && !batch.rotate) this.startBackgroundSyncIfDue();
    if (this.options.fsync === "always" && this.buffer.isComplete(batch.last_lsn + 1)) {
      this.group_released_ms = performance.now();
    }
    if (batch.rotate) this.rotate();
    return true;
  }

  /**
   * Threaded mode: steps; when idle, spins briefly on the doorbell (a steady stream of writes then
   * never pays for a wake-up), then sleeps until records complete or a timer is due.
   *
   * With fsync `always`, a group commit that leaves records waiting is followed by a short linger
   * ({@link lingerForGroup}), as Redis gathers a whole event-loop turn into one fsync and PostgreSQL
   * offers `commit_delay`: without it, the clients a group releases come back while the next
   * fdatasync (which took only the records already waiting) runs, and the clients split into two
   * alternating groups of half the size.
   */
  waitAndStep(): void {
    this.lingerForGroup();
    const seen = this.buffer.doorbell();
    if (this.step()) return;
    for (let i = 0; i < IDLE_SPIN_ITERATIONS; i++) if (this.buffer.doorbell() !== seen) return;
    this.buffer.sleepOnDoorbell(
      seen,
      this.options.fsync === "everysec" ? this.options.everysec_interval_ms : 1000,
    );
  }

  /**
   * After a group was released with records waiting: waits for the next record to complete, then
   * until arrivals pause for GROUP_QUIET_MS, at most until GROUP_LINGER_MAX_MS (or half the last
   * fdatasync) after the release.
   */
  private lingerForGroup(): void {
    if (this.group_released_ms < 0) return;
    const deadline_ms = this.group_released_ms + Math.min(GROUP_LINGER_MAX_MS, this.last_fdatasync_ms / 2);
    this.group_released_ms = -1;
    let seen = this.buffer.doorbell();
    let wait_ms = Number.POSITIVE_INFINITY; // the first arrival: up to the deadline
    for (;;) {
      const left_ms = deadline_ms - performance.now();
      if (left_ms <= 0) return;
      this.buffer.sleepOnDoorbell(seen, Math.min(left_ms, wait_ms));
      const now_seen = this.buffer.doorbell();
      if (now_seen === seen) return;
      seen = now_seen;
      wait_ms = GROUP_QUIET_MS;
    }
  }

  /** Makes everything written durable now (shutdown, checkpoints). False if the fdatasync failed. */
  syncNow(): boolean {
    if (this.file === undefined || this.written_lsn === this.durable_lsn)
      return this.buffer.state() !== WAL_STOPPED;
    return this.syncAndPublish();
  }

  private syncAndPublish(): boolean {
    if (!this.syncFile()) return false;
    this.publish(undefined, 0, 0, 1);
    return true;
  }

  /**
   * Flushes and syncs what is complete, then closes the segment file. If a checkpoint with redo LSN
   * `covered_lsn` already holds everything written, the segments are deleted too: a clean restart
   * then loads data.db and reads no log.
   */
  close(covered_lsn = 0): void {
    while (this.step()) {}
    if (this.file !== undefined && this.buffer.state() !== WAL_STOPPED) this.seal();
    this.closeFile();
    if (this.buffer.state() !== WAL_STOPPED)
      removeCoveredWal(this.io, this.options.dir, covered_lsn, this.written_lsn);
  }

  // ---------------------------------------------------------------- batching

  private collect() {
    const [flushed_pos, flushed_lsn] = this.buffer.flushed();
    const ranges: Array<[number, number]> = [];
    const room = this.options.segment_bytes - this.segment_size_bytes;
    let lsn = flushed_lsn + 1;
    let end_pos = flushed_pos;
    let bytes = 0;
    let rotate = false;
    while (bytes < BATCH_WRITE_BYTES_MAX && this.buffer.isComplete(lsn)) {
      const length = this.buffer.recordLength(lsn);
      if (
        this.file !== undefined &&
        bytes + length > room &&
        this.segment_size_bytes + bytes > SEGMENT_HEADER_SIZE_BYTES
      ) {
        rotate = true;
        break;
      }
      const pos = this.buffer.recordLogicalPos(lsn);
      const phys = pos % this.buffer.ring_bytes;
      const last = ranges[ranges.length - 1];
      if (last !== undefined && last[1] === phys) last[1] += length;
      else ranges.push([phys, phys + length]);
      bytes += length;
      end_pos = pos + length;
      lsn++;
    }
    return { first_lsn: flushed_lsn + 1, last_lsn: lsn - 1, end_pos, ranges, rotate, bytes };
  }

  private publish(end_pos: number | undefined, records: number, bytes: number, fsyncs: number): void {
    const [flushed_pos, flushed_lsn] = this.buffer.flushed();
    const visible = this.options.fsync === "always" ? this.durable_lsn : this.written_lsn;
    this.buffer.publish({
      written: this.written_lsn,
      durable: this.durable_lsn,
      visible,
      flushed_pos: end_pos ?? flushed_pos,
      flushed_lsn: end_pos === undefined ? flushed_lsn : this.written_lsn,
      wal_bytes_added: bytes,
      fsyncs_added: fsyncs,
      group_records: records,
      segment_first_lsn: this.segment_first_lsn,
    });
  }

  private noteBytes(bytes: number): void {
    this.bytes_since_checkpoint_request += bytes;
    if (this.bytes_since_checkpoint_request >= this.options.checkpoint_wal_bytes) {
      this.bytes_since_checkpoint_request = 0;
      this.buffer.requestCheckpoint();
    }
  }

  // ---------------------------------------------------------------- durability

  private syncDue(): boolean {
    return (
      this.options.fsync === "everysec" &&
      this.options.now_ms() - this.last_sync_ms >= this.options.everysec_interval_ms
    );
  }

  private syncIfDue(): boolean {
    if (this.written_lsn === this.durable_lsn || !this.syncDue()) return false;
    if (this.background_sync === undefined) return this.syncNow();
    this.startBackgroundSyncIfDue();
    return false;
  }

  /**
   * With a syncer: hands it the segment and the written LSN, if due and it is idle. Due once per
   * interval (everysec), and also in a segment's last eighth (everysec and no) once 1/64 of a
   * segment was written since the last request: rotation seals the segment with an fdatasync on this
   * thread, which then only flushes what came after the syncer's last one (a whole 64 MiB segment
   * took 125–157 ms there under SET load with fsync no). Asked whenever idle instead, the syncer ran
   * some 50–90 fdatasyncs per segment under SET p16 (372 in a 3M-SET run, against 33 spaced so), each
   * with its journal commit, for no shorter rotation.
   */
  private startBackgroundSyncIfDue(): void {
    const syncer = this.background_sync;
    if (syncer === undefined || this.file === undefined || syncer.busy()) return;
    this.collectBackgroundSync(); // idle: its last result is final (it may have finished just now)
    if (this.written_lsn === this.durable_lsn) return;
    const { segment_bytes } = this.options;
    const early_due =
      this.segment_size_bytes >= segment_bytes - segment_bytes / 8 &&
      this.segment_size_bytes - this.sync_requested_size_bytes >= segment_bytes / 64;
    if (!(this.syncDue() || early_due)) return;
    syncer.request(this.segment_first_lsn, this.written_lsn);
    this.sync_requested_size_bytes = this.segment_size_bytes;
    this.last_sync_ms = this.options.now_ms();
  }

  /** Publishes as durable what the syncer's last finished fdatasync covered (read when it is idle). */
  private collectBackgroundSync(): void {
    if (this.background_sync === undefined || this.background_sync.busy()) return;
    const synced_lsn = this.background_sync.syncedLsn();
    if (synced_lsn <= this.durable_lsn) return;
    assert(synced_lsn <= this.written_lsn, "the syncer only syncs what was written");
    this.durable_lsn = synced_lsn;
    this.publish(undefined, 0, 0, 1);
  }

  /**
   * fdatasync of the current segment; on failure stops the log for good. Waits first for the
   * syncer's fdatasync in flight, if any (see wal_syncer.ts).
   */
  private syncFile(): boolean {
    this.background_sync?.waitIdle();
    if (this.buffer.state() === WAL_STOPPED) return false; // the syncer's fdatasync failed
    const started_ms = performance.now();
    try {
      this.io.sync(this.file!);
    } catch (error) {
      this.stop(
        `fdatasync of ${this.segment_path} failed (${describeFailure(error)}); writes stopped until restart`,
      );
      return false;
    }
    this.durable_lsn = this.written_lsn;
    this.last_sync_ms = this.options.now_ms();
    this.last_fdatasync_ms = performance.now() - started_ms;
    return true;
  }

  private stop(message: string): void {
    this.options.log(`wal: ${message}`);
    this.buffer.setState(WAL_STOPPED, message);
  }

  // ---------------------------------------------------------------- segments

  /**
   * fsync `always`: before a batch that ends at `end_bytes` is written, writes zeros from
   * `end_bytes` to `zero_ahead_bytes` past it, no further than the segment size, if the batch would
   * reach past the bytes written so far. Each extension is written in 256 KiB pieces that the next
   * fdatasync flushes: about 1.1 ms per MiB here, once per MiB of records. Throws as a write does.
   */
  private zeroAhead(end_bytes: number): void {
    const ahead_bytes = this.options.zero_ahead_bytes;
    if (this.options.fsync !== "always" || ahead_bytes === 0 || end_bytes <= this.segment_written_bytes)
      return;
    const target_bytes = Math.max(end_bytes, Math.min(this.options.segment_bytes, end_bytes + ahead_bytes));
    for (let at = end_bytes; at < target_bytes; ) {
      const n = Math.min(ZEROS.length, target_bytes - at);
      this.io.write(this.file!, ZEROS.subarray(0, n), at);
      at += n;
    }
    this.segment_written_bytes = target_bytes;
  }

  /**
   * Before the segment is closed (rotation, shutdown): cuts the zeros written ahead of its last
   * record and makes every record written durable. False if the log stopped.
   */
  private seal(): boolean {
    return this.trimZeros() && this.syncNow();
  }

  /**
   * Cuts the zeros written ahead of the segment's last record; the fdatasync that follows makes the
   * cut durable with the records. False (the log stopped) if the cut failed.
   */
  private trimZeros(): boolean {
    if (this.segment_written_bytes <= this.segment_size_bytes) return true;
    try {
      this.io.truncate(this.file!, this.segment_size_bytes);
    } catch (error) {
      this.stop(`cannot cut the zeros ahead of ${this.segment_path} (${describeFailure(error)})`);
      return false;
    }
    this.segment_written_bytes = this.segment_size_bytes;
    return this.syncAndPublish();
  }

  /** Closes the segment's descriptor (a syncer has its own: see wal_syncer.ts). */
  private closeFile(): void {
    if (this.file === undefined) return;
    closeQuietly(this.io, this.file);
    this.file = undefined;
  }

  /** Creates segment `first_lsn`: header written and synced, directory entry synced. */
  private openNewSegment(first_lsn: number): boolean {
    const path = `${this.options.dir}/${segmentName(first_lsn)}`;
    let file: FileId | undefined;
    try {
      file = this.io.open(path, { create: true, truncate: true });
      this.io.write(file, encodeSegmentHeader(first_lsn), 0);
      if (this.segment_path !== "") crashPoint("wal-mid-rotation"); // not this process's first segment
      this.io.sync(file);
      this.io.syncDir(this.options.dir);
    } catch (error) {
      if (file !== undefined) closeQuietly(this.io, file);
      this.failWrite(error, undefined);
      return false;
    }
    this.file = file;
    this.segment_path = path;
    this.segment_first_lsn = first_lsn;
    this.segment_size_bytes = SEGMENT_HEADER_SIZE_BYTES;
    this.sync_requested_size_bytes = 0;
    this.segment_written_bytes = SEGMENT_HEADER_SIZE_BYTES;
    // The syncer opens its descriptor before the segment's first record (wal_syncer.ts): it must be
    // open when a writeback error happens, to report it. One round trip per segment.
    this.background_sync?.adopt(first_lsn);
    return true;
  }

  /** Seals the current segment (zeros ahead cut, fdatasync) and starts the next one at the next LSN. */
  private rotate(): boolean {
    if (this.file !== undefined) {
      if (!this.seal()) return true;
      this.closeFile();
    }
    this.openNewSegment(this.written_lsn + 1);
    return true;
  }

  // ---------------------------------------------------------------- write failures

  /**
   * A write failed: refuse new appends, wait for every reserved record to be complete, cut the
   * segment back to `good_size_bytes`, remove the unwritten versions from the table, and accept
   * appends again from the first unwritten LSN (a new failure epoch: their writers are rejected).
   */
  private failWrite(error: unknown, good_size_bytes: number | undefined): void {
    const message = `write to ${this.segment_path || this.options.dir} failed (${describeFailure(error)}); unwritten writes rejected`;
    this.options.log(`wal: ${message}`);
    this.buffer.setState(WAL_HALTED, message);
    const [, flushed_lsn] = this.buffer.flushed();
    const last = this.buffer.reservedLsn();
    this.waitComplete(flushed_lsn + 1, last);
    if (good_size_bytes !== undefined && this.file !== undefined) {
      try {
        this.io.truncate(this.file, good_size_bytes);
        // Durable before a later segment is: else, after a power cut, the bytes cut here (zeros
        // written ahead and synced, or what reached the disk of the failed write) could come back
        // at the end of a segment that is no longer the newest, which recovery takes for corruption.
        this.io.sync(this.file);
        this.segment_size_bytes = good_size_bytes;
        this.segment_written_bytes = good_size_bytes;
      } catch (truncate_error) {
        this.stop(
          `cannot cut ${this.segment_path} back after a failed write (${describeFailure(truncate_error)})`,
        );
        return;
      }
    }
    for (let lsn = flushed_lsn + 1; lsn <= last; lsn++) this.rollback(lsn);
    this.buffer.rewind();
    assert(this.buffer.state() !== WAL_HALTED, "rewind resumes appends, unless the log stopped meanwhile");
  }

  private waitComplete(first: number, last: number): void {
    for (let lsn = first; lsn <= last; lsn++) {
      while (!this.buffer.isComplete(lsn)) this.buffer.sleepOnDoorbell(this.buffer.doorbell(), 10);
    }
  }

  private rollback(lsn: number): void {
    const ring = this.buffer.ring;
    const offset = this.buffer.recordLogicalPos(lsn) % this.buffer.ring_bytes;
    visitRecordEntries(ring, offset, (_op, key_offset, key_length) => {
      const key = ring.subarray(key_offset, key_offset + key_length);
      const h = hashKey(key);
      const shard = this.table.shardOf(h);
      if (this.options.shard_held(shard)) {
        this.table.rollback(key, h, lsn);
        return;
      }
      this.table.lockShard(shard);
      try {
        this.table.rollback(key, h, lsn);
      } finally {
        this.table.unlockShard(shard);
      }
    });
  }
}

/**
 * Deletes every segment of the WAL in `dir` if a checkpoint with redo LSN `covered_lsn` holds
 * everything written (up to `written_lsn`): a clean restart then loads data.db and reads no log.
 * Only once nothing writes to the WAL any more (shutdown).
 *
 * @example
 * removeCoveredWal(io, `${data_dir}/wal`, final_checkpoint.redo_lsn, wal.lsns().written);
 */
export function removeCoveredWal(io: Io, dir: string, covered_lsn: number, written_lsn: number): void {
  if (covered_lsn < written_lsn) return;
  const segments = io.list(dir).filter((name) => parseSegmentName(name) !== undefined);
  for (const name of segments) io.unlink(`${dir}/${name}`);
  if (segments.length > 0) io.syncDir(dir);
}
