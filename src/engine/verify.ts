/**
 * Offline check of a data directory (`walkv verify`): verifies `data.db` and every WAL segment with
 * the rules recovery applies (block and record CRCs, segment headers, LSN continuity, the WAL
 * reaching back to data.db's redo LSN), without changing any file and without loading a table.
 *
 * - Corruption is reported, not thrown: `report.error` is the first {@link CorruptionError} (file and
 *   byte offset); checking stops there. Other failures (directory missing, EACCES) throw IoError.
 * - Warnings do not make the directory unhealthy: a torn tail in the newest segment (recovery cuts
 *   it; normal while a daemon is writing), leftover `data.db.tmp` / `wal/*.tmp`, unknown files in
 *   `wal/`, a damaged segment that data.db covers (recovery deletes it unread).
 * - Safe while a daemon runs: files are only read; if the WAL directory changes while it is read (a
 *   checkpoint deleted segments, the writer rotated), the check starts again, up to 10 times (3 were
 *   not always enough with a checkpoint every few milliseconds on a loaded machine: the CLI test of a
 *   running daemon once saw a segment vanish in all 3).
 *
 * @example
 * const report = verifyDataDir(new RealIo(), "/var/lib/walkv", {});
 * if (report.error) console.error(`corruption: ${report.error.message}`);
 */

import { HEADER_OFFSET } from "./checkpoint/snapshot_format.ts";
import { readSnapshotHeader, verifySnapshot } from "./checkpoint/snapshot_reader.ts";
import { DEFAULT_CONFIG } from "./config.ts";
import { assert, CorruptionError, IoError } from "./errors.ts";
import type { Io } from "./io/io.ts";
import { parseSegmentName, segmentName } from "./wal/format.ts";
import { checkChainStart, coveredSegmentCount, listSegments, readChainSegment } from "./wal/segment_chain.ts";
import { MAX_RECORD_BYTES_LIMIT, readSegment, type SegmentReadResult } from "./wal/segment_reader.ts";

/** Attempts before a directory that keeps changing is reported as it was last seen. */
const MAX_ATTEMPTS = 10;

export interface VerifyOptions {
  /** Largest WAL record accepted, as the daemon's `max_batch_bytes`. Default 32 MiB. */
  readonly max_record_bytes?: number;
}

/** What a verified `data.db` holds. */
export interface DataDbReport {
  readonly path: string;
  readonly keys: number;
  readonly redo_lsn: number;
  readonly max_lsn: number;
  readonly bytes: number;
  readonly blocks: number;
  readonly created_unix_ms: number;
}

/** One verified WAL segment. */
export interface SegmentReport {
  readonly name: string;
  readonly path: string;
  readonly first_lsn: number;
  /** Undefined when the segment holds no record. */
  readonly last_lsn: number | undefined;
  readonly records: number;
  readonly bytes: number;
  /** Bytes after the last valid record of the newest segment (a torn tail recovery cuts). */
  readonly torn_bytes: number;
  /** All its records are ≤ data.db's redo LSN: recovery deletes it unread. */
  readonly covered: boolean;
}

export interface VerifyTotals {
  readonly segments: number;
  readonly records: number;
  readonly wal_bytes: number;
  /** Records recovery would replay (LSN > redo LSN). */
  readonly replay_records: number;
  /** The LSN the next write would take after recovery. */
  readonly next_lsn: number;
}

export interface VerifyReport {
  readonly data_dir: string;
  /** Undefined when there is no data.db (or it failed verification: see `error`). */
  readonly data_db: DataDbReport | undefined;
  /** The segments verified before `error`, if any, in LSN order. */
  readonly segments: readonly SegmentReport[];
  readonly totals: VerifyTotals;
  readonly warnings: readonly string[];
  /** The first corruption found; checking stopped there. Undefined: the directory is healthy. */
  readonly error: CorruptionError | undefined;
}

/**
 * Verifies `data_dir` read-only. Returns the report (corruption in `report.error`); throws IoError
 * when the directory cannot be read at all.
 *
 * @example
 * const { error, warnings, totals } = verifyDataDir(io, "/data", { max_record_bytes: 64 << 20 });
 */
export function verifyDataDir(io: Io, data_dir: string, options: VerifyOptions = {}): VerifyReport {
  const max_record_bytes = options.max_record_bytes ?? DEFAULT_CONFIG.max_batch_bytes;
  assert(
    Number.isSafeInteger(max_record_bytes) &&
      max_record_bytes > 0 &&
      max_record_bytes <= MAX_RECORD_BYTES_LIMIT,
    `bad max_record_bytes ${max_record_bytes}`,
  );
  for (let attempt = 1; ; attempt++) {
    const before = walListing(io, data_dir);
    let report: VerifyReport;
    try {
      report = verifyOnce(io, data_dir, max_record_bytes);
    } catch (error) {
      // A file listed a moment ago is gone: a running daemon changed the directory.
      const vanished = error instanceof IoError && error.errno === "ENOENT" && io.exists(data_dir);
      if (vanished && attempt < MAX_ATTEMPTS) continue;
      throw error;
    }
    if (walListing(io, data_dir) === before) return report;
    if (attempt === MAX_ATTEMPTS) {
      const warning = `the WAL directory changed during each of ${MAX_ATTEMPTS} attempts (a running daemon?)`;
      return { ...report, warnings: [...report.warnings, warning] };
    }
  }
}

/** The names in `wal/`, to notice a concurrent change ("" without the directory). */
function walListing(io: Io, data_dir: string): string {
  const wal_dir = `${data_dir}/wal`;
  return io.exists(wal_dir) ? io.list(wal_dir).join("/") : "";
}

/** Mutable state of one attempt. */
class Checker {
  data_db: DataDbReport | undefined;
  readonly segments: SegmentReport[] = [];
  readonly warnings: string[] = [];
  /** Largest LSN data.db or the chain accounts for so far (as recovery's `last_lsn`). */
  readonly state = { last_lsn: 0 };
  replay_records = 0;

  constructor(
    readonly io: Io,
    readonly data_dir: string,
    readonly max_record_bytes: number,
  ) {}

  report(error: CorruptionError | undefined): VerifyReport {
    let records = 0;
    let wal_bytes = 0;
    for (const segment of this.segments) {
      records += segment.records;
      wal_bytes += segment.bytes;
    }
    return {
      data_dir: this.data_dir,
      data_db: this.data_db,
      segments: this.segments,
      totals: {
        segments: this.segments.length,
        records,
        wal_bytes,
        replay_records: this.replay_records,
        next_lsn: this.state.last_lsn + 1,
      },
      warnings: this.warnings,
      error,
    };
  }
}

function verifyOnce(io: Io, data_dir: string, max_record_bytes: number): VerifyReport {
  const checker = new Checker(io, data_dir, max_record_bytes);
  const names = io.list(data_dir);
  if (names.includes("data.db.tmp"))
    checker.warnings.push("data.db.tmp: left by an interrupted checkpoint (or one in progress)");
  const wal_dir = `${data_dir}/wal`;
  const wal_exists = io.exists(wal_dir);
  const firsts = wal_exists ? listSegments(io, wal_dir) : [];
  if (wal_exists) warnOtherWalFiles(checker, io.list(wal_dir));
  try {
    // Recovery's order, so that both name the same defect first: data.db's header, the start of
    // the WAL chain it needs, data.db's blocks, then the chain itself.
    if (names.includes("data.db")) {
      const redo_lsn = readSnapshotHeader(io, `${data_dir}/data.db`).redo_lsn;
      checkChainStart(wal_dir, firsts.slice(coveredSegmentCount(firsts, redo_lsn)), redo_lsn);
      checkDataDb(checker);
    }
    checkWal(checker, firsts);
  } catch (error) {
    if (error instanceof CorruptionError) return checker.report(error);
    throw error;
  }
  return checker.report(undefined);
}

function warnOtherWalFiles(checker: Checker, names: readonly string[]): void {
  for (const name of names) {
    if (parseSegmentName(name) !== undefined) continue;
    if (name.endsWith(".tmp")) checker.warnings.push(`wal/${name}: left by an interrupted recovery`);
    else checker.warnings.push(`wal/${name}: not a WAL segment (ignored)`);
  }
}

function checkDataDb(checker: Checker): void {
  const path = `${checker.data_dir}/data.db`;
  const info = verifySnapshot(checker.io, path);
  checker.data_db = {
    path,
    keys: info.entry_count,
    redo_lsn: info.redo_lsn,
    max_lsn: info.max_lsn,
    bytes: info.bytes,
    blocks: info.block_count,
    created_unix_ms: info.created_unix_ms,
  };
  checker.state.last_lsn = info.redo_lsn;
}

/** Covered segments first (damage there is a warning), then the chain recovery replays. */
function checkWal(checker: Checker, firsts: readonly number[]): void {
  const wal_dir = `${checker.data_dir}/wal`;
  const redo_lsn = checker.data_db?.redo_lsn ?? 0;
  const covered = coveredSegmentCount(firsts, redo_lsn);
  for (const first_lsn of firsts.slice(0, covered)) checkCoveredSegment(checker, first_lsn);
  const chain = firsts.slice(covered);
  checkChainStart(wal_dir, chain, redo_lsn);
  for (let index = 0; index < chain.length; index++) {
    const result = readChainSegment(
      checker.io,
      wal_dir,
      chain,
      index,
      checker.state,
      checker.max_record_bytes,
      (lsn) => {
        if (lsn > redo_lsn) checker.replay_records++;
      },
    );
    addChainSegment(checker, chain[index]!, result);
  }
  const data_db = checker.data_db;
  if (data_db !== undefined && checker.state.last_lsn < data_db.max_lsn) {
    throw new CorruptionError(
      data_db.path,
      HEADER_OFFSET.max_lsn,
      `data.db holds LSN ${data_db.max_lsn} but the WAL ends at LSN ${checker.state.last_lsn}: ` +
        "WAL records the checkpoint made durable are missing",
    );
  }
}

function checkCoveredSegment(checker: Checker, first_lsn: number): void {
  const name = segmentName(first_lsn);
  const path = `${checker.data_dir}/wal/${name}`;
  try {
    const result = readSegment(
      checker.io,
      path,
      { newest: false, expected_first_lsn: first_lsn, max_record_bytes: checker.max_record_bytes },
      () => {},
    );
    checker.segments.push(segmentReport(name, path, result, true));
  } catch (error) {
    if (!(error instanceof CorruptionError)) throw error;
    checker.warnings.push(
      `wal/${name}: covered by data.db (recovery deletes it unread), but ${error.message}`,
    );
  }
}

function addChainSegment(checker: Checker, name_lsn: number, result: SegmentReadResult): void {
  const name = segmentName(name_lsn);
  const path = `${checker.data_dir}/wal/${name}`;
  if (result.torn_tail_offset_bytes !== 0 && result.first_lsn !== name_lsn) {
    throw new CorruptionError(
      path,
      16,
      `segment header says first LSN ${result.first_lsn}, its name ${name_lsn}`,
    );
  }
  if (result.torn_tail_offset_bytes !== undefined) {
    checker.warnings.push(
      `wal/${name}: torn tail of ${result.torn_bytes} bytes at byte ${result.torn_tail_offset_bytes} ` +
        "(recovery cuts it; normal at the end of the segment a running daemon writes)",
    );
  }
  checker.segments.push(segmentReport(name, path, result, false));
}

function segmentReport(
  name: string,
  path: string,
  result: SegmentReadResult,
  covered: boolean,
): SegmentReport {
  return {
    name,
    path,
    first_lsn: result.first_lsn,
    last_lsn: result.last_lsn,
    records: result.records,
    bytes: result.size_bytes,
    torn_bytes: result.torn_bytes,
    covered,
  };
}
