/**
 * Reads and verifies a `data.db` checkpoint file (format: docs/snapshot-format.md, constants:
 * snapshot_format.ts). Every defect is a {@link CorruptionError} naming the file and the byte offset
 * of the bad structure: `data.db` is renamed into place only after fsync, so it is never legitimately
 * torn, and a short file is corruption too.
 *
 * @example
 * const info = readSnapshot(io, "/data/data.db", (bytes, ko, kl, vo, vl, lsn, expiry) => {
 *   table.load(bytes.subarray(ko, ko + kl), bytes.subarray(vo, vo + vl), lsn, expiry);
 * });
 * wal.replayFrom(info.redo_lsn);
 */

import { readU32, readU64 } from "../bytes.ts";
import { crc32c } from "../crc32c.ts";
import { assert, CorruptionError } from "../errors.ts";
import { closeQuietly, type FileId, type Io } from "../io/io.ts";
import {
  BLOCK_CRC_START_BYTES,
  BLOCK_HEADER_SIZE_BYTES,
  BLOCK_OFFSET,
  BlockCrcList,
  ENTRY_HEADER_SIZE_BYTES,
  ENTRY_OFFSET,
  FOOTER_MAGIC,
  FOOTER_OFFSET,
  FOOTER_SIZE_BYTES,
  HEADER_OFFSET,
  HEADER_SIZE_BYTES,
  SNAPSHOT_FORMAT_VERSION,
  SNAPSHOT_MAGIC,
  type SnapshotInfo,
  snapshotSizeBytes,
} from "./snapshot_format.ts";

/**
 * Called once per entry, in file order, after the entry's block passed its CRC. The key is
 * `bytes[key_offset, key_offset + key_length)`, the value likewise. `bytes` is the reader's chunk
 * buffer: valid only during the call — copy what you keep. `expiry_unix_ms` is 0 for none.
 */
export type SnapshotEntryVisitor = (
  bytes: Uint8Array,
  key_offset: number,
  key_length: number,
  value_offset: number,
  value_length: number,
  lsn: number,
  expiry_unix_ms: number,
) => void;

/** Bytes read per `io.read` (less for a smaller file). A larger block gets a buffer of its own size. */
const CHUNK_BYTES = 8 * 1024 * 1024;
const U32_SPAN = 0x100000000;
/** An LSN's high u32 must stay below this for the LSN to be < 2^53. */
const LSN_HIGH_LIMIT = 0x200000;

export interface SnapshotHeader {
  readonly redo_lsn: number;
  readonly max_lsn: number;
  readonly entry_count: number;
  readonly created_unix_ms: number;
  readonly body_bytes: number;
}

interface BodySummary {
  readonly entry_count: number;
  readonly block_count: number;
  readonly max_lsn: number;
  readonly crc_of_block_crcs: number;
}

/**
 * Verifies `path` block by block and calls `onEntry` for every entry of each verified block.
 * Reads in 8 MiB chunks; never holds the whole file. On a {@link CorruptionError}, `onEntry` may
 * already have seen the entries of earlier blocks: the caller discards everything it loaded.
 *
 * @example
 * let n = 0;
 * const info = readSnapshot(io, path, () => n++); // n === info.entry_count
 */
export function readSnapshot(io: Io, path: string, onEntry: SnapshotEntryVisitor): SnapshotInfo {
  const file = io.open(path);
  try {
    const size_bytes = io.size(file);
    const reader = new ChunkReader(io, file, path, Math.min(CHUNK_BYTES, size_bytes));
    const header = decodeHeader(reader, path, size_bytes);
    const expected_bytes = snapshotSizeBytes(header.body_bytes);
    if (size_bytes > expected_bytes) {
      throw new CorruptionError(
        path,
        expected_bytes,
        `${size_bytes - expected_bytes} bytes after the footer`,
      );
    }
    const body = readBody(reader, path, size_bytes, header.body_bytes, onEntry);
    verifyFooter(reader, path, size_bytes, HEADER_SIZE_BYTES + header.body_bytes, body);
    verifyCounts(path, header, body);
    return {
      redo_lsn: header.redo_lsn,
      max_lsn: header.max_lsn,
      entry_count: header.entry_count,
      created_unix_ms: header.created_unix_ms,
      bytes: size_bytes,
      block_count: body.block_count,
    };
  } finally {
    io.close(file);
  }
}

/**
 * Reads and verifies only the 64-byte header of `path` (magic, version, CRC): recovery plans with it
 * before it reads the body.
 *
 * @example
 * const { redo_lsn, entry_count } = readSnapshotHeader(io, "/data/data.db");
 */
export function readSnapshotHeader(io: Io, path: string): SnapshotHeader {
  const file = io.open(path);
  try {
    const size_bytes = io.size(file);
    return decodeHeader(new ChunkReader(io, file, path, HEADER_SIZE_BYTES), path, size_bytes);
  } finally {
    closeQuietly(io, file);
  }
}

/**
 * Verifies every checksum, count and bound of `path` without visiting the entries.
 *
 * @example
 * const { entry_count, redo_lsn } = verifySnapshot(io, "/data/data.db");
 */
export function verifySnapshot(io: Io, path: string): SnapshotInfo {
  return readSnapshot(io, path, ignoreEntry);
}

function ignoreEntry(): void {}

function decodeHeader(reader: ChunkReader, path: string, size_bytes: number): SnapshotHeader {
  if (size_bytes < HEADER_SIZE_BYTES) {
    throw new CorruptionError(path, 0, `file is ${size_bytes} bytes: truncated inside the 64-byte header`);
  }
  const at = reader.load(0, HEADER_SIZE_BYTES);
  const bytes = reader.bytes;
  for (let i = 0; i < SNAPSHOT_MAGIC.length; i++) {
    if (bytes[at + i] !== SNAPSHOT_MAGIC[i])
      throw new CorruptionError(path, 0, "bad magic: not a walkv data file");
  }
  const version = readU32(bytes, at + HEADER_OFFSET.format_version);
  if (version > SNAPSHOT_FORMAT_VERSION) {
    throw new CorruptionError(
      path,
      HEADER_OFFSET.format_version,
      `format version ${version} is newer than this walkv supports (${SNAPSHOT_FORMAT_VERSION})`,
    );
  }
  if (version !== SNAPSHOT_FORMAT_VERSION) {
    throw new CorruptionError(path, HEADER_OFFSET.format_version, `unknown format version ${version}`);
  }
  const stored_crc = readU32(bytes, at + HEADER_OFFSET.header_crc32c);
  if (stored_crc !== crc32c(bytes, at, at + HEADER_OFFSET.header_crc32c)) {
    throw new CorruptionError(path, 0, "header CRC mismatch");
  }
  const header_size_bytes = readU32(bytes, at + HEADER_OFFSET.header_size_bytes);
  if (header_size_bytes !== HEADER_SIZE_BYTES) {
    throw new CorruptionError(
      path,
      HEADER_OFFSET.header_size_bytes,
      `header_size_bytes is ${header_size_bytes}`,
    );
  }
  if (readU32(bytes, at + HEADER_OFFSET.reserved) !== 0) {
    throw new CorruptionError(path, HEADER_OFFSET.reserved, "header reserved field is not zero");
  }
  const u64 = (field: keyof typeof HEADER_OFFSET): number => {
    const value = readU64(bytes, at + HEADER_OFFSET[field]);
    if (value < 0) throw new CorruptionError(path, HEADER_OFFSET[field], `header ${field} is 2^53 or more`);
    return value;
  };
  return {
    redo_lsn: u64("redo_lsn"),
    max_lsn: u64("max_lsn"),
    entry_count: u64("entry_count"),
    created_unix_ms: u64("created_unix_ms"),
    body_bytes: u64("body_bytes"),
  };
}

/** Walks the blocks in file bytes [64, 64 + body_bytes), verifying each before visiting it. */
function readBody(
  reader: ChunkReader,
  path: string,
  size_bytes: number,
  body_bytes: number,
  onEntry: SnapshotEntryVisitor,
): BodySummary {
  const body_end = HEADER_SIZE_BYTES + body_bytes;
  let offset = HEADER_SIZE_BYTES;
  let entry_count = 0;
  let block_count = 0;
  let max_lsn = 0;
  const block_crcs = new BlockCrcList();
  while (offset < body_end) {
    const block_end = blockEnd(reader, path, size_bytes, body_end, offset);
    const at = reader.load(offset, block_end - offset);
    const bytes = reader.bytes;
    const payload_end = at + (block_end - offset);
    const stored_crc = readU32(bytes, at + BLOCK_OFFSET.crc32c);
    if (stored_crc !== crc32c(bytes, at + BLOCK_CRC_START_BYTES, payload_end)) {
      throw new CorruptionError(path, offset, "block CRC mismatch");
    }
    if (readU32(bytes, at + BLOCK_OFFSET.reserved) !== 0) {
      throw new CorruptionError(path, offset + BLOCK_OFFSET.reserved, "block reserved field is not zero");
    }
    const block_entry_count = readU32(bytes, at + BLOCK_OFFSET.entry_count);
    if (block_entry_count === 0)
      throw new CorruptionError(path, offset + BLOCK_OFFSET.entry_count, "empty block");
    const block_max_lsn = visitEntries(
      reader,
      path,
      offset - at,
      at + BLOCK_HEADER_SIZE_BYTES,
      payload_end,
      block_entry_count,
      onEntry,
    );
    if (block_max_lsn > max_lsn) max_lsn = block_max_lsn;
    block_crcs.push(stored_crc);
    entry_count += block_entry_count;
    block_count++;
    offset = block_end;
  }
  return { entry_count, block_count, max_lsn, crc_of_block_crcs: block_crcs.checksum() };
}

/** File offset just after the block that starts at `offset`, checked against the body and the file. */
function blockEnd(
  reader: ChunkReader,
  path: string,
  size_bytes: number,
  body_end: number,
  offset: number,
): number {
  if (offset + BLOCK_HEADER_SIZE_BYTES > body_end) {
    throw new CorruptionError(path, offset, "block header overruns the body");
  }
  if (offset + BLOCK_HEADER_SIZE_BYTES > size_bytes) {
    throw new CorruptionError(path, offset, "file ends inside a block header: truncated");
  }
  const at = reader.load(offset, BLOCK_HEADER_SIZE_BYTES);
  const payload_bytes = readU32(reader.bytes, at + BLOCK_OFFSET.payload_length_bytes);
  const block_end = offset + BLOCK_HEADER_SIZE_BYTES + payload_bytes;
  if (block_end > body_end) {
    throw new CorruptionError(path, offset, `block of ${payload_bytes} payload bytes overruns the body`);
  }
  if (block_end > size_bytes) throw new CorruptionError(path, offset, "file ends inside a block: truncated");
  return block_end;
}

/**
 * Visits the `entry_count` entries of a verified payload `reader.bytes[start, end)` and returns their
 * largest LSN. `delta` maps buffer indexes to file offsets for error reports.
 */
function visitEntries(
  reader: ChunkReader,
  path: string,
  delta: number,
  start: number,
  end: number,
  entry_count: number,
  onEntry: SnapshotEntryVisitor,
): number {
  const bytes = reader.bytes;
  const view = reader.view;
  let at = start;
  let max_lsn = 0;
  for (let n = 0; n < entry_count; n++) {
    if (at + ENTRY_HEADER_SIZE_BYTES > end)
      throw new CorruptionError(path, at + delta, "entry overruns its block");
    const key_length = readU32(bytes, at + ENTRY_OFFSET.key_length);
    const value_length = readU32(bytes, at + ENTRY_OFFSET.value_length);
    const key_at = at + ENTRY_HEADER_SIZE_BYTES;
    const value_at = key_at + key_length;
    const next = value_at + value_length;
    if (next > end) throw new CorruptionError(path, at + delta, "entry overruns its block");
    const lsn_high = readU32(bytes, at + ENTRY_OFFSET.lsn + 4);
    const lsn = lsn_high * U32_SPAN + readU32(bytes, at + ENTRY_OFFSET.lsn);
    if (lsn_high >= LSN_HIGH_LIMIT || lsn < 1) {
      throw new CorruptionError(path, at + delta + ENTRY_OFFSET.lsn, "entry lsn out of range");
    }
    const expiry_unix_ms = view.getFloat64(at + ENTRY_OFFSET.expiry_unix_ms, true);
    if (!(expiry_unix_ms >= 0 && expiry_unix_ms < Number.POSITIVE_INFINITY)) {
      throw new CorruptionError(path, at + delta + ENTRY_OFFSET.expiry_unix_ms, "entry expiry out of range");
    }
    onEntry(bytes, key_at, key_length, value_at, value_length, lsn, expiry_unix_ms);
    if (lsn > max_lsn) max_lsn = lsn;
    at = next;
  }
  if (at !== end) {
    throw new CorruptionError(
      path,
      at + delta,
      `${end - at} bytes left over after the block's ${entry_count} entries`,
    );
  }
  return max_lsn;
}

function verifyFooter(
  reader: ChunkReader,
  path: string,
  size_bytes: number,
  offset: number,
  body: BodySummary,
): void {
  if (offset + FOOTER_SIZE_BYTES > size_bytes) {
    throw new CorruptionError(path, offset, "file ends inside the footer: truncated");
  }
  const at = reader.load(offset, FOOTER_SIZE_BYTES);
  const bytes = reader.bytes;
  for (let i = 0; i < FOOTER_MAGIC.length; i++) {
    if (bytes[at + i] !== FOOTER_MAGIC[i]) throw new CorruptionError(path, offset, "bad footer magic");
  }
  const check = (field_offset: number, stored: number, actual: number, what: string): void => {
    if (stored !== actual)
      throw new CorruptionError(path, offset + field_offset, `footer ${what}: ${stored} != ${actual}`);
  };
  check(
    FOOTER_OFFSET.entry_count,
    readU64(bytes, at + FOOTER_OFFSET.entry_count),
    body.entry_count,
    "entry_count",
  );
  check(
    FOOTER_OFFSET.block_count,
    readU64(bytes, at + FOOTER_OFFSET.block_count),
    body.block_count,
    "block_count",
  );
  check(
    FOOTER_OFFSET.crc32c_of_block_crcs,
    readU32(bytes, at + FOOTER_OFFSET.crc32c_of_block_crcs),
    body.crc_of_block_crcs,
    "CRC of the block CRCs",
  );
  check(FOOTER_OFFSET.reserved, readU32(bytes, at + FOOTER_OFFSET.reserved), 0, "reserved field");
}

/** The header's counts, written last, must agree with what the blocks hold. */
function verifyCounts(path: string, header: SnapshotHeader, body: BodySummary): void {
  if (header.entry_count !== body.entry_count) {
    throw new CorruptionError(
      path,
      HEADER_OFFSET.entry_count,
      `header entry_count is ${header.entry_count}, the blocks hold ${body.entry_count}`,
    );
  }
  if (header.max_lsn !== body.max_lsn) {
    throw new CorruptionError(
      path,
      HEADER_OFFSET.max_lsn,
      `header max_lsn is ${header.max_lsn}, the largest entry lsn is ${body.max_lsn}`,
    );
  }
}

/**
 * A forward-only window over a file: `load(offset, length)` makes file bytes [offset, offset + length)
 * resident in `bytes` (reading ahead up to a full chunk) and returns the index of `offset` in it.
 */
class ChunkReader {
  bytes: Uint8Array;
  view: DataView;
  /** File offsets of bytes[0] and of the byte after the last resident one. */
  private start_bytes = 0;
  private end_bytes = 0;
  private readonly io: Io;
  private readonly file: FileId;
  private readonly path: string;

  constructor(io: Io, file: FileId, path: string, capacity_bytes: number) {
    this.io = io;
    this.file = file;
    this.path = path;
    this.bytes = new Uint8Array(capacity_bytes);
    this.view = new DataView(this.bytes.buffer);
  }

  /** The caller has checked that the file is at least `offset + length` bytes long. */
  load(offset: number, length: number): number {
    assert(offset >= this.start_bytes, "ChunkReader reads forward only");
    if (offset + length <= this.end_bytes) return offset - this.start_bytes;
    const kept_bytes = Math.max(0, this.end_bytes - offset);
    if (length > this.bytes.length) {
      const grown = new Uint8Array(length);
      grown.set(
        this.bytes.subarray(
          this.end_bytes - kept_bytes - this.start_bytes,
          this.end_bytes - this.start_bytes,
        ),
      );
      this.bytes = grown;
      this.view = new DataView(grown.buffer);
    } else {
      this.bytes.copyWithin(
        0,
        this.end_bytes - kept_bytes - this.start_bytes,
        this.end_bytes - this.start_bytes,
      );
    }
    this.start_bytes = offset;
    this.end_bytes = offset + kept_bytes;
    while (this.end_bytes < offset + length) {
      const read_bytes = this.io.read(
        this.file,
        this.bytes.subarray(this.end_bytes - offset),
        this.end_bytes,
      );
      if (read_bytes === 0) throw new CorruptionError(this.path, offset, "file shrank while being read");
      this.end_bytes += read_bytes;
    }
    return 0;
  }
}
