/**
 * The checkpointer: writes the table to `data.db` without stopping readers or writers (a fuzzy
 * checkpoint with a redo LSN), then deletes the WAL segments it covers.
 *
 * 1. redo = the visible LSN now. Every record ≤ redo is in the table.
 * 2. Shard by shard, copy each key's version visible at that moment into a staging buffer, holding
 *    only that shard's mutex for the copy (readers are never blocked; the shard's writers wait for
 *    one shard's copy). No I/O happens under a mutex. Shards a writer holds are skipped and taken
 *    on a later pass (the order does not matter: each is copied at one instant after redo), so the
 *    scan rarely sleeps on a writer's mutex, and the writer's unlock rarely has one to wake.
 * 3. Stream the staged entries into `data.db.tmp`.
 * 4. Make the WAL durable up to the largest LSN copied (write-ahead rule: no version reaches
 *    data.db before its WAL record is durable; it also makes a multi-key write that the scan caught
 *    half-way whole again at recovery, since its record is replayed).
 * 5. fsync `data.db.tmp`, rename it over `data.db`, fsync the directory.
 * 6. Delete every segment whose records are all ≤ redo (never the newest), fsync the WAL directory.
 *
 * Why recovery is then correct: load data.db, replay every WAL record > redo in LSN order. A key no
 * record > redo touches had the same value during the whole scan, so data.db holds it exactly; for
 * any other key the last record > redo decides its final value, whatever data.db held for it.
 *
 * @example
 * const result = new Checkpointer(io, config, table, wal, { make_durable }).run();
 * // result.redo_lsn, result.bytes, result.duration_ms
 */
import { copyBytes } from "../bytes.ts";
import type { EngineConfig } from "../config.ts";
import { crashPoint } from "../crash_points.ts";
import { assert, UnavailableError } from "../errors.ts";
import type { Io } from "../io/io.ts";
import type { EntryVisitor, Table } from "../table.ts";
import { segmentName } from "../wal/format.ts";
import { coveredSegmentCount, listSegments } from "../wal/segment_chain.ts";
import { WAL_STOPPED, type WalBuffer } from "../wal/wal_buffer.ts";
import { SnapshotWriter } from "./snapshot_writer.ts";

export interface CheckpointResult {
  readonly redo_lsn: number;
  readonly max_lsn: number;
  readonly bytes: number;
  readonly entries: number;
  readonly duration_ms: number;
  readonly deleted_segments: number;
}

export interface CheckpointerOptions {
  /** Makes the WAL durable up to `lsn` (asks the WAL writer and waits, or runs it inline). */
  readonly make_durable: (lsn: number) => void;
  readonly now_ms?: () => number;
  readonly log?: (line: string) => void;
  /**
   * Asked after each shard, before the file is made durable, and while the scan waits for a shard's
   * mutex: true gives the checkpoint up (UnavailableError; `data.db` unchanged). The checkpoint
   * worker says true once a shutdown skips the final checkpoint: its writers may have been cut off
   * holding mutexes that are then never released, and a checkpoint of a large store would otherwise
   * run on for its whole length (past the shutdown watchdog's bound).
   */
  readonly abandoned?: () => boolean;
}

/**
 * Passes over the shards a writer held when the scan first came by, before the scan waits for their
 * mutexes. Under SET at pipeline 16 a writer holds about a fifth of the shards at any moment: a
 * first pass skipped 250–1,300 of 4,096.
 */
const BUSY_SHARD_PASSES = 8;

/** Entries staged per shard before they are streamed to the file. */
class Staging {
  bytes = new Uint8Array(1 << 20);
  used_bytes = 0;
  readonly key_lengths: number[] = [];
  readonly value_lengths: number[] = [];
  readonly lsns: number[] = [];
  readonly expiries: number[] = [];

  add(
    src: Uint8Array,
    key_offset: number,
    key_length: number,
    value_length: number,
    lsn: number,
    expiry: number,
  ) {
    const length = key_length + value_length;
    if (this.used_bytes + length > this.bytes.length) this.grow(this.used_bytes + length);
    copyBytes(this.bytes, this.used_bytes, src, key_offset, length);
    this.used_bytes += length;
    this.key_lengths.push(key_length);
    this.value_lengths.push(value_length);
    this.lsns.push(lsn);
    this.expiries.push(expiry);
  }

  drainInto(writer: SnapshotWriter): void {
    let p = 0;
    for (let i = 0; i < this.lsns.length; i++) {
      const k = this.key_lengths[i]!;
      const v = this.value_lengths[i]!;
      writer.addRange(this.bytes, p, k, v, this.lsns[i]!, this.expiries[i]!);
      p += k + v;
    }
    this.clear();
  }

  /** Drops what is staged (also what a failed drain left). */
  clear(): void {
    this.used_bytes = 0;
    this.key_lengths.length = 0;
    this.value_lengths.length = 0;
    this.lsns.length = 0;
    this.expiries.length = 0;
  }

  private grow(min_bytes: number): void {
    const bigger = new Uint8Array(Math.max(min_bytes, this.bytes.length * 2));
    bigger.set(this.bytes.subarray(0, this.used_bytes));
    this.bytes = bigger;
  }
}

export class Checkpointer {
  private readonly staging = new Staging();
  private readonly now_ms: () => number;
  private readonly log: (line: string) => void;

  constructor(
    private readonly io: Io,
    private readonly config: EngineConfig,
    private readonly table: Table,
    private readonly wal: WalBuffer,
    private readonly options: CheckpointerOptions,
  ) {
    this.now_ms = options.now_ms ?? Date.now;
    this.log = options.log ?? (() => {});
  }

  /** Runs one checkpoint. Throws IoError/UnavailableError on failure; `data.db` is then unchanged. */
  run(): CheckpointResult {
    const started_ms = this.now_ms();
    const dir = this.config.data_dir;
    const tmp = `${dir}/data.db.tmp`;
    const redo_lsn = this.wal.visibleLsn();
    let writer: SnapshotWriter | undefined;
    let written: ReturnType<SnapshotWriter["finish"]>;
    let max_lsn = redo_lsn;
    this.staging.clear(); // a failed checkpoint before this one may have left entries staged
    try {
      writer = new SnapshotWriter(this.io, tmp, { redo_lsn, created_unix_ms: Date.now() });
      max_lsn = Math.max(redo_lsn, this.scanAll(writer));
      if (this.wal.state() === WAL_STOPPED)
        throw new UnavailableError("checkpoint abandoned: the WAL is stopped");
      this.options.make_durable(max_lsn);
      written = writer.finish();
      assert(written.max_lsn <= max_lsn, "data.db holds no version above the LSN made durable");
      crashPoint("checkpoint-after-tmp-fsync");
      this.io.rename(tmp, `${dir}/data.db`);
    } catch (error) {
      writer?.abort();
      this.removeQuietly(tmp);
      throw error;
    }
    crashPoint("checkpoint-after-rename");
    this.io.syncDir(dir);
    crashPoint("checkpoint-before-wal-deletion");
    const deleted_segments = this.deleteCoveredSegments(redo_lsn);
    const duration_ms = this.now_ms() - started_ms;
    this.log(
      `checkpoint: redo LSN ${redo_lsn}, ${written.entry_count} keys, ${written.bytes} bytes, ` +
        `${duration_ms} ms, ${deleted_segments} WAL segments deleted`,
    );
    return {
      redo_lsn,
      max_lsn,
      bytes: written.bytes,
      entries: written.entry_count,
      duration_ms,
      deleted_segments,
    };
  }

  /**
   * Stages and writes every shard's visible entries, in any order: first the shards whose mutex is
   * free (a writer holds a busy one only while it applies its batch), then the busy ones again, up
   * to {@link BUSY_SHARD_PASSES} times, then whatever is still busy, waiting for its mutex. Returns
   * the largest LSN copied.
   */
  private scanAll(writer: SnapshotWriter): number {
    let max_lsn = 0;
    const visibleLsn = () => this.wal.visibleLsn();
    const stage: EntryVisitor = (src, ko, kl, vl, l, e) => this.staging.add(src, ko, kl, vl, l, e);
    const copied = (lsn: number) => {
      if (lsn > max_lsn) max_lsn = lsn;
      this.staging.drainInto(writer);
      this.giveUpIfAbandoned();
    };
    // The first pass takes every shard whose mutex is free, then each further pass the ones left.
    let busy = Array.from({ length: this.table.shard_count }, (_, shard) => shard);
    for (let pass = 0; pass <= BUSY_SHARD_PASSES && busy.length > 0; pass++) {
      busy = busy.filter((shard) => {
        const lsn = this.table.scanShardIfFree(shard, visibleLsn, stage);
        if (lsn !== undefined) copied(lsn);
        return lsn === undefined;
      });
    }
    for (const shard of busy) copied(this.table.scanShard(shard, visibleLsn, stage, this.options.abandoned));
    return max_lsn;
  }

  private giveUpIfAbandoned(): void {
    if (this.options.abandoned?.()) {
      throw new UnavailableError("checkpoint abandoned: the shutdown skips the final checkpoint");
    }
  }

  /** Deletes segments whose every record is ≤ redo_lsn (never the newest); fsyncs the directory. */
  private deleteCoveredSegments(redo_lsn: number): number {
    const wal_dir = `${this.config.data_dir}/wal`;
    const firsts = listSegments(this.io, wal_dir);
    const covered = coveredSegmentCount(firsts, redo_lsn);
    for (const first_lsn of firsts.slice(0, covered)) this.io.unlink(`${wal_dir}/${segmentName(first_lsn)}`);
    if (covered > 0) this.io.syncDir(wal_dir);
    return covered;
  }

  private removeQuietly(path: string): void {
    try {
      if (this.io.exists(path)) this.io.unlink(path);
    } catch {
      // The next checkpoint truncates it, and recovery removes it.
    }
  }
}
