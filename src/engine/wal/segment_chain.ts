/**
 * The WAL as a chain of segments, as recovery reads it: the segment listing, which segments a
 * `data.db` covers (recovery deletes them unread), the check that the rest reaches back to the redo
 * LSN, and the reading of segment i of the chain (only the newest may end in a torn tail; each later
 * segment must start right after the LSNs seen so far). Shared by recovery.ts and verify.ts, so the
 * offline check applies exactly the rules that start-up applies.
 *
 * @example
 * const firsts = listSegments(io, wal_dir);
 * const chain = firsts.slice(coveredSegmentCount(firsts, redo_lsn));
 * checkChainStart(wal_dir, chain, redo_lsn);
 * const state = { last_lsn: redo_lsn };
 * for (let index = 0; index < chain.length; index++)
 *   readChainSegment(io, wal_dir, chain, index, state, max_record_bytes, onRecord);
 */
import { assert, CorruptionError } from "../errors.ts";
import type { Io } from "../io/io.ts";
import { parseSegmentName, segmentName } from "./format.ts";
import { type RecordCallback, readSegment, type SegmentReadResult } from "./segment_reader.ts";

/**
 * First LSNs of the segments in `wal_dir`, ascending. Other files are ignored.
 *
 * @example
 * listSegments(io, "/data/wal"); // [1, 5031, 10422]
 */
export function listSegments(io: Io, wal_dir: string): number[] {
  return io
    .list(wal_dir)
    .map((name) => parseSegmentName(name))
    .filter((lsn): lsn is number => lsn !== undefined)
    .sort((a, b) => a - b);
}

/**
 * How many leading segments of `firsts` hold only records ≤ `redo_lsn`: those whose successor
 * starts at or before redo + 1. The newest segment is never counted.
 *
 * @example
 * coveredSegmentCount([1, 10, 20], 15) === 1; // segment 1 holds LSNs 1..9
 */
export function coveredSegmentCount(firsts: readonly number[], redo_lsn: number): number {
  assert(Number.isSafeInteger(redo_lsn) && redo_lsn >= 0, `bad redo_lsn ${redo_lsn}`);
  let covered = 0;
  while (covered + 1 < firsts.length && firsts[covered + 1]! <= redo_lsn + 1) covered++;
  return covered;
}

/**
 * Throws {@link CorruptionError} if the chain (the segments left after the covered ones) starts after
 * redo + 1: the records between the checkpoint and the first segment are missing.
 *
 * @example
 * checkChainStart("/data/wal", [7], 3); // throws: LSNs 4..6 are missing
 */
export function checkChainStart(wal_dir: string, chain: readonly number[], redo_lsn: number): void {
  const first = chain[0];
  if (first !== undefined && first > redo_lsn + 1) {
    throw new CorruptionError(
      `${wal_dir}/${segmentName(first)}`,
      0,
      `WAL starts at LSN ${first} but data.db needs LSN ${redo_lsn + 1}: segments are missing`,
    );
  }
}

/**
 * Reads and verifies segment `chain[index]` as recovery does: the newest may end in a torn tail; the
 * first must start at the LSN its name gives, every later one right after `state.last_lsn`, which
 * this advances to the largest LSN read. Throws {@link CorruptionError} naming the file and offset.
 *
 * @example
 * const state = { last_lsn: redo_lsn };
 * const result = readChainSegment(io, wal_dir, chain, 0, state, 64 << 20, () => {});
 */
export function readChainSegment(
  io: Io,
  wal_dir: string,
  chain: readonly number[],
  index: number,
  state: { last_lsn: number },
  max_record_bytes: number,
  onRecord: RecordCallback,
): SegmentReadResult {
  assert(Number.isSafeInteger(index) && index >= 0 && index < chain.length, `bad chain index ${index}`);
  const newest = index === chain.length - 1;
  const expected_first_lsn = index === 0 ? chain[0]! : state.last_lsn + 1;
  return readSegment(
    io,
    `${wal_dir}/${segmentName(chain[index]!)}`,
    { newest, expected_first_lsn, max_record_bytes },
    (lsn, bytes, record_offset, record_length_bytes, file_offset_bytes) => {
      if (lsn > state.last_lsn) state.last_lsn = lsn;
      onRecord(lsn, bytes, record_offset, record_length_bytes, file_offset_bytes);
    },
  );
}
