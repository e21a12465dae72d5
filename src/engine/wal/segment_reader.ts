/**
 * Reads one WAL segment through {@link Io}, verifying it record by record, and classifies its end:
 * a clean end (in the newest segment, also zeros to the end of the file: what the writer wrote
 * ahead of its records with fsync `always`), a torn tail (newest segment only: cut off, not an
 * error), or corruption (throws
 * {@link CorruptionError} naming the file and the bad record's byte offset). The rules are in
 * docs/wal-format.md, "Torn tail or corruption". Records are verified with the checksum of the
 * segment header's format version (CRC-32C for version 1, CRC-32 for version 2), chosen once.
 *
 * The file is read in chunks (default 4 MiB); a chunk grows for a record larger than itself, up to
 * `max_record_bytes`. Memory use is one chunk, whatever the segment size.
 *
 * @example
 * const result = readSegment(io, path, { newest: true, max_record_bytes: 1 << 26 },
 *   (lsn, bytes, record_offset) => visitRecordEntries(bytes, record_offset, apply));
 * if (result.torn_tail_offset_bytes !== undefined) io.truncate(file, result.torn_tail_offset_bytes);
 */
import { assert, CorruptionError } from "../errors.ts";
import type { FileId, Io } from "../io/io.ts";
import {
  decodeSegmentHeader,
  isNewerFormat,
  RECORD_HEADER_SIZE_BYTES,
  type RecordChecksum,
  recordChecksum,
  SEGMENT_HEADER_SIZE_BYTES,
  type SegmentHeader,
} from "./format.ts";
import { decodeRecordHeader, recordCrcMatches, recordDefect, recordLengthBytes } from "./record.ts";

export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
/** Hard ceiling of `max_record_bytes`: a record must fit one Uint8Array comfortably. */
export const MAX_RECORD_BYTES_LIMIT = 1024 * 1024 * 1024;

export interface ReadSegmentOptions {
  /** The newest segment may end in a torn tail; older segments must end cleanly. */
  readonly newest: boolean;
  /** The LSN the segment must start with (from its name or the previous segment), if known. */
  readonly expected_first_lsn?: number;
  /** Largest record (header + payload) accepted; a longer record that fits the file is corruption. */
  readonly max_record_bytes: number;
  /** Read size; defaults to {@link DEFAULT_CHUNK_BYTES}. */
  readonly chunk_bytes?: number;
}

/**
 * Called for each verified record in order. `bytes[record_offset, record_offset + record_length_bytes)`
 * is the record; `bytes` is the reader's chunk, valid only during the call.
 */
export type RecordCallback = (
  lsn: number,
  bytes: Uint8Array,
  record_offset: number,
  record_length_bytes: number,
  file_offset_bytes: number,
) => void;

export interface SegmentReadResult {
  readonly first_lsn: number;
  /** The header's format version (1 or 2: which checksum the records carry); undefined if it is torn. */
  readonly format_version: number | undefined;
  /** LSN of the last verified record; undefined if the segment holds none. */
  readonly last_lsn: number | undefined;
  readonly records: number;
  /** File offset just past the last verified record (32 for a segment with no records). */
  readonly end_offset_bytes: number;
  readonly size_bytes: number;
  /**
   * Where the torn tail starts (= `end_offset_bytes`), or undefined if the segment ends cleanly.
   * 0 means the segment header itself is torn: the segment never held a record and can be deleted.
   */
  readonly torn_tail_offset_bytes: number | undefined;
  /** Bytes in the torn tail, to log what truncation drops; 0 if none. */
  readonly torn_bytes: number;
  /**
   * Newest segment: zero bytes from `end_offset_bytes` to the end of the file (written ahead of the
   * records with fsync `always`); a clean end, nothing is dropped with them. 0 if none.
   */
  readonly zero_tail_bytes: number;
}

/** A window of one chunk over the file: loads the byte ranges the reader asks for. */
class ChunkedFile {
  bytes: Uint8Array;
  private window_offset_bytes = 0;
  private window_length_bytes = 0;

  constructor(
    private readonly io: Io,
    private readonly file: FileId,
    private readonly path: string,
    readonly size_bytes: number,
    chunk_bytes: number,
  ) {
    this.bytes = new Uint8Array(Math.max(1, Math.min(chunk_bytes, size_bytes)));
  }

  /** Makes file bytes [offset, offset + length) available; returns their offset in `this.bytes`. */
  load(offset_bytes: number, length_bytes: number): number {
    const start = offset_bytes - this.window_offset_bytes;
    if (start >= 0 && start + length_bytes <= this.window_length_bytes) return start;
    this.refill(offset_bytes, length_bytes);
    return 0;
  }

  /** Reads a chunk starting at `offset_bytes`, growing the buffer to `length_bytes` if needed. */
  private refill(offset_bytes: number, length_bytes: number): void {
    assert(offset_bytes >= 0 && offset_bytes + length_bytes <= this.size_bytes, "load past end of file");
    if (length_bytes > this.bytes.length) this.bytes = new Uint8Array(length_bytes);
    const want_bytes = Math.min(this.bytes.length, this.size_bytes - offset_bytes);
    let got_bytes = 0;
    while (got_bytes < want_bytes) {
      const n = this.io.read(this.file, this.bytes.subarray(got_bytes, want_bytes), offset_bytes + got_bytes);
      if (n === 0)
        throw new CorruptionError(this.path, offset_bytes + got_bytes, "file shrank while reading");
      got_bytes += n;
    }
    this.window_offset_bytes = offset_bytes;
    this.window_length_bytes = want_bytes;
  }

  /** Offset of the first non-zero byte in [from, size), or -1 if all are zero. */
  firstNonZero(from_bytes: number): number {
    for (let p = from_bytes; p < this.size_bytes; ) {
      const length_bytes = Math.min(this.bytes.length, this.size_bytes - p);
      const start = this.load(p, length_bytes);
      for (let i = 0; i < length_bytes; i++) if (this.bytes[start + i] !== 0) return p + i;
      p += length_bytes;
    }
    return -1;
  }
}

/**
 * Reads and verifies the segment at `path`, calling `onRecord` for each record in order. Returns
 * where the valid records end and, for the newest segment, the torn tail to cut off. Throws
 * {@link CorruptionError}(path, offset of the bad record, reason) on corruption.
 *
 * @example
 * const r = readSegment(io, "/data/wal/00000000000000000001.wal",
 *   { newest: false, expected_first_lsn: 1, max_record_bytes: 64 << 20 }, () => {});
 * // r.last_lsn + 1 is the first LSN of the next segment
 */
export function readSegment(
  io: Io,
  path: string,
  options: ReadSegmentOptions,
  onRecord: RecordCallback,
): SegmentReadResult {
  const chunk_bytes = options.chunk_bytes ?? DEFAULT_CHUNK_BYTES;
  assert(Number.isSafeInteger(chunk_bytes) && chunk_bytes >= RECORD_HEADER_SIZE_BYTES, "bad chunk_bytes");
  assert(
    Number.isSafeInteger(options.max_record_bytes) &&
      options.max_record_bytes > RECORD_HEADER_SIZE_BYTES &&
      options.max_record_bytes <= MAX_RECORD_BYTES_LIMIT,
    "bad max_record_bytes",
  );
  const file = io.open(path);
  try {
    const chunked = new ChunkedFile(io, file, path, io.size(file), chunk_bytes);
    const header = readHeader(chunked, path, options);
    if (header === undefined) return tornResult(options, chunked.size_bytes, path);
    return readRecords(chunked, path, options, header, onRecord);
  } finally {
    io.close(file);
  }
}

/** The segment's verified header, or undefined if the newest segment's header is torn. */
function readHeader(
  chunked: ChunkedFile,
  path: string,
  options: ReadSegmentOptions,
): SegmentHeader | undefined {
  if (chunked.size_bytes < SEGMENT_HEADER_SIZE_BYTES) {
    if (options.newest) return undefined;
    throw new CorruptionError(path, 0, `segment is ${chunked.size_bytes} bytes, shorter than its header`);
  }
  const start = chunked.load(0, SEGMENT_HEADER_SIZE_BYTES);
  const header = chunked.bytes.subarray(start, start + SEGMENT_HEADER_SIZE_BYTES);
  let decoded: SegmentHeader;
  try {
    decoded = decodeSegmentHeader(header, path);
  } catch (error) {
    const torn =
      options.newest && !isNewerFormat(header) && chunked.firstNonZero(SEGMENT_HEADER_SIZE_BYTES) < 0;
    if (error instanceof CorruptionError && torn) return undefined;
    throw error;
  }
  const expected = options.expected_first_lsn;
  if (expected !== undefined && decoded.first_lsn !== expected) {
    throw new CorruptionError(path, 16, `segment first_lsn ${decoded.first_lsn}, expected ${expected}`);
  }
  return decoded;
}

function tornResult(options: ReadSegmentOptions, size_bytes: number, path: string): SegmentReadResult {
  const first_lsn = options.expected_first_lsn;
  if (first_lsn === undefined) throw new CorruptionError(path, 0, "torn segment header");
  return {
    first_lsn,
    format_version: undefined,
    last_lsn: undefined,
    records: 0,
    end_offset_bytes: 0,
    size_bytes,
    torn_tail_offset_bytes: 0,
    torn_bytes: size_bytes,
    zero_tail_bytes: 0,
  };
}

function readRecords(
  chunked: ChunkedFile,
  path: string,
  options: ReadSegmentOptions,
  header: SegmentHeader,
  onRecord: RecordCallback,
): SegmentReadResult {
  const size_bytes = chunked.size_bytes;
  const checksum = recordChecksum(header.format_version);
  let offset_bytes = SEGMENT_HEADER_SIZE_BYTES;
  let records = 0;
  while (offset_bytes < size_bytes) {
    const expected_lsn = header.first_lsn + records;
    const length_bytes = readRecordAt(chunked, path, options, checksum, offset_bytes, expected_lsn, onRecord);
    if (length_bytes < 0) {
      if (!options.newest) {
        const reason = `${tornReason(chunked, offset_bytes, length_bytes)} in a segment that is not the newest`;
        throw new CorruptionError(path, offset_bytes, reason);
      }
      const torn_at = length_bytes === ZERO_REMAINDER ? undefined : offset_bytes;
      return result(header, records, offset_bytes, size_bytes, torn_at);
    }
    records += 1;
    offset_bytes += length_bytes;
  }
  return result(header, records, offset_bytes, size_bytes, undefined);
}

const TORN_SHORT = -1;
const TORN_PAST_END = -2;
const TORN_CRC = -3;
/** Newest segment: only zeros from the record's offset to the end of the file, its clean end. */
const ZERO_REMAINDER = -4;

/** Why the record at `offset_bytes` is torn, from {@link readRecordAt}'s negative `code`. */
function tornReason(chunked: ChunkedFile, offset_bytes: number, code: number): string {
  const left_bytes = chunked.size_bytes - offset_bytes;
  if (code === TORN_SHORT) return `${left_bytes} bytes left, less than a record header`;
  if (code === TORN_CRC) return "record CRC mismatch";
  const at = chunked.load(offset_bytes, RECORD_HEADER_SIZE_BYTES);
  return `record of ${recordLengthBytes(chunked.bytes, at)} bytes runs past end of file`;
}

/**
 * Verifies the record at `offset_bytes` (its CRC with `checksum`, the segment's) and hands it to
 * `onRecord`; returns its length, or a negative code: ZERO_REMAINDER (newest segment), or a torn
 * tail (TORN_*); throws CorruptionError for corruption.
 * The loop's body as a function of its own: the JIT optimises it after a few thousand records,
 * long before it could optimise a loop that runs once per segment.
 */
function readRecordAt(
  chunked: ChunkedFile,
  path: string,
  options: ReadSegmentOptions,
  checksum: RecordChecksum,
  offset_bytes: number,
  expected_lsn: number,
  onRecord: RecordCallback,
): number {
  const left_bytes = chunked.size_bytes - offset_bytes;
  if (left_bytes < RECORD_HEADER_SIZE_BYTES)
    return options.newest && chunked.firstNonZero(offset_bytes) < 0 ? ZERO_REMAINDER : TORN_SHORT;
  const length_bytes = recordLengthBytes(chunked.bytes, chunked.load(offset_bytes, RECORD_HEADER_SIZE_BYTES));
  if (length_bytes > left_bytes) return TORN_PAST_END;
  if (length_bytes > options.max_record_bytes) {
    const reason = `record of ${length_bytes} bytes is over max_record_bytes ${options.max_record_bytes}`;
    throw new CorruptionError(path, offset_bytes, reason);
  }
  const start = chunked.load(offset_bytes, length_bytes);
  if (!recordCrcMatches(chunked.bytes, start, checksum)) {
    if (!options.newest) throw new CorruptionError(path, offset_bytes, "record CRC mismatch");
    // One scan from the record's offset: zeros to the end of the file are the clean end; non-zero
    // bytes within the record only, a torn tail; any after it, corruption.
    const first_data = chunked.firstNonZero(offset_bytes);
    if (first_data < 0) return ZERO_REMAINDER;
    const end_bytes = offset_bytes + length_bytes;
    const data_after = first_data >= end_bytes ? first_data : chunked.firstNonZero(end_bytes);
    if (data_after < 0) return TORN_CRC;
    throw new CorruptionError(
      path,
      offset_bytes,
      `record CRC mismatch, and non-zero data follows at byte ${data_after}`,
    );
  }
  const header = decodeRecordHeader(chunked.bytes, start);
  const defect = recordDefect(chunked.bytes, start, header);
  if (defect !== undefined) throw new CorruptionError(path, offset_bytes, defect);
  if (header.lsn !== expected_lsn) {
    throw new CorruptionError(path, offset_bytes, `record lsn ${header.lsn}, expected ${expected_lsn}`);
  }
  onRecord(header.lsn, chunked.bytes, start, length_bytes, offset_bytes);
  return length_bytes;
}

function result(
  header: SegmentHeader,
  records: number,
  end_offset_bytes: number,
  size_bytes: number,
  torn_tail_offset_bytes: number | undefined,
): SegmentReadResult {
  return {
    first_lsn: header.first_lsn,
    format_version: header.format_version,
    last_lsn: records === 0 ? undefined : header.first_lsn + records - 1,
    records,
    end_offset_bytes,
    size_bytes,
    torn_tail_offset_bytes,
    torn_bytes: torn_tail_offset_bytes === undefined ? 0 : size_bytes - torn_tail_offset_bytes,
    zero_tail_bytes: torn_tail_offset_bytes === undefined ? size_bytes - end_offset_bytes : 0,
  };
}
