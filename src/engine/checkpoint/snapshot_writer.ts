/**
 * Writes a `data.db` checkpoint file (format: docs/snapshot-format.md, constants: snapshot_format.ts).
 *
 * @example
 * const writer = new SnapshotWriter(io, "/data/data.db.tmp", { redo_lsn, created_unix_ms: Date.now() });
 * for (const e of table) writer.add(e.key, e.value, e.lsn, e.expiry_unix_ms);
 * writer.finish();                                   // synced and closed
 * io.rename("/data/data.db.tmp", "/data/data.db");   // the caller publishes it
 * io.syncDir("/data");
 */

import { copyBytes, MAX_LSN, MAX_U32, writeU32, writeU64 } from "../bytes.ts";
import { crashPoint } from "../crash_points.ts";
import { crc32c } from "../crc32c.ts";
import { assert } from "../errors.ts";
import type { FileId, Io } from "../io/io.ts";
import {
  BLOCK_CRC_START_BYTES,
  BLOCK_HEADER_SIZE_BYTES,
  BLOCK_OFFSET,
  BLOCK_TARGET_BYTES_DEFAULT,
  BLOCK_TARGET_BYTES_MAX,
  BLOCK_TARGET_BYTES_MIN,
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
} from "./snapshot_format.ts";

export interface SnapshotWriterOptions {
  /** Recovery replays the WAL from this LSN on (an integer in [0, 2^53)). */
  readonly redo_lsn: number;
  readonly created_unix_ms: number;
  /** Payload size at which a block is flushed (default 1 MiB). */
  readonly block_target_bytes?: number;
}

/** What {@link SnapshotWriter.finish} wrote. */
export interface SnapshotWriteResult {
  /** Size of the whole file. */
  readonly bytes: number;
  readonly entry_count: number;
  /** Largest entry LSN (0 when there are no entries). */
  readonly max_lsn: number;
  readonly block_count: number;
}

const U32_SPAN = 0x100000000;
/**
 * The file is fdatasync'ed every this many bytes while it is written (PostgreSQL's
 * checkpoint_flush_after): writeback comes in small slices instead of one large flush at the end,
 * so the WAL's own fdatasyncs never queue behind hundreds of megabytes.
 */
const SYNC_EVERY_BYTES = 8 << 20;

/**
 * Streams entries into blocks and writes a complete, synced `data.db`-format file at `path`
 * (created or truncated). One reused block buffer; each full block is one `io.write`.
 * It never renames: the caller renames the file into place and syncs the directory.
 * After an exception from `add` or `finish`, call {@link SnapshotWriter.abort}.
 *
 * @example
 * const writer = new SnapshotWriter(io, tmp_path, { redo_lsn: 42, created_unix_ms: Date.now() });
 * writer.add(key, value, 41, 0); // lsn 41, no expiry
 * const { bytes, entry_count } = writer.finish();
 */
export class SnapshotWriter {
  private readonly io: Io;
  private readonly file: FileId;
  private readonly redo_lsn: number;
  private readonly created_unix_ms: number;
  private readonly block_target_bytes: number;
  /** Block header + payload of the block being filled. */
  private readonly block: Uint8Array;
  private readonly block_view: DataView;
  private block_length_bytes = BLOCK_HEADER_SIZE_BYTES;
  private block_entry_count = 0;
  /** File offset of the next block. */
  private offset_bytes = HEADER_SIZE_BYTES;
  private entry_count = 0;
  private block_count = 0;
  private unsynced_bytes = 0;
  private max_lsn = 0;
  private readonly block_crcs = new BlockCrcList();
  private open = true;

  constructor(io: Io, path: string, options: SnapshotWriterOptions) {
    const block_target_bytes = options.block_target_bytes ?? BLOCK_TARGET_BYTES_DEFAULT;
    assert(Number.isSafeInteger(options.redo_lsn) && options.redo_lsn >= 0, "redo_lsn out of range");
    assert(
      Number.isSafeInteger(options.created_unix_ms) && options.created_unix_ms >= 0,
      "bad created_unix_ms",
    );
    assert(
      Number.isSafeInteger(block_target_bytes) &&
        block_target_bytes >= BLOCK_TARGET_BYTES_MIN &&
        block_target_bytes <= BLOCK_TARGET_BYTES_MAX,
      "block_target_bytes out of range",
    );
    this.io = io;
    this.redo_lsn = options.redo_lsn;
    this.created_unix_ms = options.created_unix_ms;
    this.block_target_bytes = block_target_bytes;
    this.block = new Uint8Array(BLOCK_HEADER_SIZE_BYTES + block_target_bytes);
    this.block_view = new DataView(this.block.buffer);
    this.file = io.open(path, { create: true, truncate: true });
    // A zero placeholder: until the final header replaces it, the file is not a valid data.db.
    io.write(this.file, new Uint8Array(HEADER_SIZE_BYTES), 0);
  }

  /**
   * Appends one entry. `lsn` is the key's version, an integer in [1, 2^53); `expiry_unix_ms` is 0
   * for none. The bytes are copied: the caller may reuse `key` and `value` at once.
   *
   * @example
   * writer.add(utf8("user:1"), value, 17, Date.now() + 60_000);
   */
  add(key: Uint8Array, value: Uint8Array, lsn: number, expiry_unix_ms: number): void {
    this.addEntry(key, 0, key.length, value, 0, value.length, lsn, expiry_unix_ms);
  }

  /**
   * {@link add} of a key and value that lie one after the other in `src` (a table record, a staging
   * buffer): `src[key_offset, +key_length)` then `value_length` bytes. Nothing is allocated.
   *
   * @example
   * writer.addRange(record_bytes, key_at, key_length, value_length, 17, 0);
   */
  addRange(
    src: Uint8Array,
    key_offset: number,
    key_length: number,
    value_length: number,
    lsn: number,
    expiry_unix_ms: number,
  ): void {
    this.addEntry(
      src,
      key_offset,
      key_length,
      src,
      key_offset + key_length,
      value_length,
      lsn,
      expiry_unix_ms,
    );
  }

  private addEntry(
    key_src: Uint8Array,
    key_offset: number,
    key_length: number,
    value_src: Uint8Array,
    value_offset: number,
    value_length: number,
    lsn: number,
    expiry_unix_ms: number,
  ): void {
    assert(this.open, "SnapshotWriter is closed");
    assert(Number.isSafeInteger(lsn) && lsn >= 1 && lsn <= MAX_LSN, "lsn out of range");
    assert(expiry_unix_ms >= 0 && expiry_unix_ms < Number.POSITIVE_INFINITY, "bad expiry_unix_ms");
    assert(key_length <= MAX_U32 && value_length <= MAX_U32, "key or value too large");
    const entry_bytes = ENTRY_HEADER_SIZE_BYTES + key_length + value_length;
    const payload_bytes = this.block_length_bytes - BLOCK_HEADER_SIZE_BYTES;
    if (payload_bytes > 0 && payload_bytes + entry_bytes > this.block_target_bytes) this.flushBlock();
    // An entry larger than the block target gets a block of its own, in a one-off buffer.
    const own_block = entry_bytes > this.block_target_bytes;
    assert(!own_block || this.block_entry_count === 0, "oversized entry must start an empty block");
    const block = own_block ? new Uint8Array(BLOCK_HEADER_SIZE_BYTES + entry_bytes) : this.block;
    const view = own_block ? new DataView(block.buffer) : this.block_view;
    const at = own_block ? BLOCK_HEADER_SIZE_BYTES : this.block_length_bytes;
    writeU32(block, at + ENTRY_OFFSET.key_length, key_length);
    writeU32(block, at + ENTRY_OFFSET.value_length, value_length);
    writeU32(block, at + ENTRY_OFFSET.lsn, lsn >>> 0);
    writeU32(block, at + ENTRY_OFFSET.lsn + 4, Math.floor(lsn / U32_SPAN));
    view.setFloat64(at + ENTRY_OFFSET.expiry_unix_ms, expiry_unix_ms, true);
    const key_at = at + ENTRY_HEADER_SIZE_BYTES;
    copyBytes(block, key_at, key_src, key_offset, key_length);
    copyBytes(block, key_at + key_length, value_src, value_offset, value_length);
    if (own_block) this.writeBlock(block, block.length, 1);
    else {
      this.block_length_bytes = key_at + key_length + value_length;
      this.block_entry_count++;
    }
    this.entry_count++;
    if (lsn > this.max_lsn) this.max_lsn = lsn;
  }

  /**
   * Writes the last block, the footer and the final header, syncs and closes the file.
   *
   * @example
   * const { bytes, entry_count, max_lsn, block_count } = writer.finish();
   */
  finish(): SnapshotWriteResult {
    assert(this.open, "SnapshotWriter is closed");
    if (this.block_entry_count > 0) this.flushBlock();
    const body_bytes = this.offset_bytes - HEADER_SIZE_BYTES;
    this.io.write(this.file, this.encodeFooter(), this.offset_bytes);
    this.io.write(this.file, this.encodeHeader(body_bytes), 0);
    crashPoint("checkpoint-after-tmp-write");
    this.io.sync(this.file);
    this.open = false;
    this.io.close(this.file);
    return {
      bytes: this.offset_bytes + FOOTER_SIZE_BYTES,
      entry_count: this.entry_count,
      max_lsn: this.max_lsn,
      block_count: this.block_count,
    };
  }

  /**
   * Closes the file without syncing (no-op if already closed). The caller deletes the partial file.
   *
   * @example
   * try { writeAll(writer); writer.finish(); } catch (e) { writer.abort(); io.unlink(tmp_path); throw e; }
   */
  abort(): void {
    if (!this.open) return;
    this.open = false;
    this.io.close(this.file);
  }

  private flushBlock(): void {
    this.writeBlock(this.block, this.block_length_bytes, this.block_entry_count);
    this.block_length_bytes = BLOCK_HEADER_SIZE_BYTES;
    this.block_entry_count = 0;
  }

  /** Fills in the block header of `block[0, length_bytes)` and writes it at the next block offset. */
  private writeBlock(block: Uint8Array, length_bytes: number, entry_count: number): void {
    assert(entry_count > 0, "empty block");
    writeU32(block, BLOCK_OFFSET.payload_length_bytes, length_bytes - BLOCK_HEADER_SIZE_BYTES);
    writeU32(block, BLOCK_OFFSET.entry_count, entry_count);
    writeU32(block, BLOCK_OFFSET.reserved, 0);
    const crc = crc32c(block, BLOCK_CRC_START_BYTES, length_bytes);
    writeU32(block, BLOCK_OFFSET.crc32c, crc);
    this.io.write(this.file, block.subarray(0, length_bytes), this.offset_bytes);
    this.offset_bytes += length_bytes;
    this.block_count++;
    this.block_crcs.push(crc);
    this.unsynced_bytes += length_bytes;
    if (this.unsynced_bytes >= SYNC_EVERY_BYTES) {
      this.io.sync(this.file);
      this.unsynced_bytes = 0;
    }
  }

  private encodeFooter(): Uint8Array {
    const footer = new Uint8Array(FOOTER_SIZE_BYTES);
    footer.set(FOOTER_MAGIC, FOOTER_OFFSET.magic);
    writeU64(footer, FOOTER_OFFSET.entry_count, this.entry_count);
    writeU64(footer, FOOTER_OFFSET.block_count, this.block_count);
    writeU32(footer, FOOTER_OFFSET.crc32c_of_block_crcs, this.block_crcs.checksum());
    return footer; // reserved stays 0
  }

  private encodeHeader(body_bytes: number): Uint8Array {
    const header = new Uint8Array(HEADER_SIZE_BYTES);
    header.set(SNAPSHOT_MAGIC, HEADER_OFFSET.magic);
    writeU32(header, HEADER_OFFSET.format_version, SNAPSHOT_FORMAT_VERSION);
    writeU32(header, HEADER_OFFSET.header_size_bytes, HEADER_SIZE_BYTES);
    writeU64(header, HEADER_OFFSET.redo_lsn, this.redo_lsn);
    writeU64(header, HEADER_OFFSET.max_lsn, this.max_lsn);
    writeU64(header, HEADER_OFFSET.entry_count, this.entry_count);
    writeU64(header, HEADER_OFFSET.created_unix_ms, this.created_unix_ms);
    writeU64(header, HEADER_OFFSET.body_bytes, body_bytes);
    writeU32(header, HEADER_OFFSET.header_crc32c, crc32c(header, 0, HEADER_OFFSET.header_crc32c));
    return header; // reserved stays 0
  }
}
