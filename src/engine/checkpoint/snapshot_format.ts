/**
 * `data.db` checkpoint file format: constants and field offsets shared by {@link SnapshotWriter}
 * (snapshot_writer.ts) and {@link readSnapshot} (snapshot_reader.ts). The format is specified in
 * docs/snapshot-format.md; these three modules are its only implementation.
 *
 * Layout (little-endian): a 64-byte header, blocks (16-byte block header + entries), a 32-byte footer.
 *
 * @example
 * const body_start_bytes = HEADER_SIZE_BYTES; // the first block header starts at byte 64
 * const footer_start_bytes = HEADER_SIZE_BYTES + info.body_bytes;
 */

import { writeU32 } from "../bytes.ts";
import { crc32c } from "../crc32c.ts";

/** "WALKVDB\0" in ASCII: the first 8 bytes of every `data.db`. */
export const SNAPSHOT_MAGIC: Uint8Array = new Uint8Array([0x57, 0x41, 0x4c, 0x4b, 0x56, 0x44, 0x42, 0x00]);
/** "WALKVEND" in ASCII: the first 8 bytes of the footer. */
export const FOOTER_MAGIC: Uint8Array = new Uint8Array([0x57, 0x41, 0x4c, 0x4b, 0x56, 0x45, 0x4e, 0x44]);
/** The only snapshot format this walkv reads and writes. */
export const SNAPSHOT_FORMAT_VERSION = 1;

export const HEADER_SIZE_BYTES = 64;
/** Byte offsets of the header fields. The header CRC covers bytes [0, 60). */
export const HEADER_OFFSET = {
  magic: 0,
  format_version: 8,
  header_size_bytes: 12,
  redo_lsn: 16,
  max_lsn: 24,
  entry_count: 32,
  created_unix_ms: 40,
  body_bytes: 48,
  reserved: 56,
  header_crc32c: 60,
} as const;

export const BLOCK_HEADER_SIZE_BYTES = 16;
/** Byte offsets of the block header fields, relative to the block start. */
export const BLOCK_OFFSET = { payload_length_bytes: 0, crc32c: 4, entry_count: 8, reserved: 12 } as const;
/** The block CRC covers bytes [8, 16 + payload_length) of the block: entry_count, reserved, payload. */
export const BLOCK_CRC_START_BYTES = 8;
/** Default payload size at which a block is flushed. One larger entry gets a block of its own. */
export const BLOCK_TARGET_BYTES_DEFAULT = 1024 * 1024;
/** Limits of the `block_target_bytes` writer option. */
export const BLOCK_TARGET_BYTES_MIN = 64;
export const BLOCK_TARGET_BYTES_MAX = 64 * 1024 * 1024;

/** Entry: u32 key_length | u32 value_length | u64 lsn | f64 expiry_unix_ms | key | value. */
export const ENTRY_HEADER_SIZE_BYTES = 24;
export const ENTRY_OFFSET = { key_length: 0, value_length: 4, lsn: 8, expiry_unix_ms: 16 } as const;

export const FOOTER_SIZE_BYTES = 32;
/** Byte offsets of the footer fields, relative to the footer start. */
export const FOOTER_OFFSET = {
  magic: 0,
  entry_count: 8,
  block_count: 16,
  crc32c_of_block_crcs: 24,
  reserved: 28,
} as const;

/** What a verified `data.db` holds, from its header and footer. */
export interface SnapshotInfo {
  /** Recovery replays the WAL from this LSN on. */
  readonly redo_lsn: number;
  /** Largest entry LSN (0 when there are no entries). */
  readonly max_lsn: number;
  readonly entry_count: number;
  readonly created_unix_ms: number;
  /** Size of the whole file. */
  readonly bytes: number;
  readonly block_count: number;
}

/**
 * Size of the whole file for a body of `body_bytes` (header + body + footer).
 *
 * @example
 * snapshotSizeBytes(0) === 96; // an empty snapshot: header and footer only
 */
export function snapshotSizeBytes(body_bytes: number): number {
  return HEADER_SIZE_BYTES + body_bytes + FOOTER_SIZE_BYTES;
}

/**
 * The block CRCs in file order, as u32 LE bytes, for the footer's CRC-32C of the block CRCs.
 * Checksummed once at the end: calling crc32cUpdate on 4-byte ranges between 1 MiB blocks makes
 * JavaScriptCore recompile the CRC loop into slower code.
 *
 * @example
 * const crcs = new BlockCrcList();
 * crcs.push(block_crc);
 * writeU32(footer, FOOTER_OFFSET.crc32c_of_block_crcs, crcs.checksum());
 */
export class BlockCrcList {
  private bytes = new Uint8Array(1024);
  private length_bytes = 0;

  push(crc: number): void {
    if (this.length_bytes + 4 > this.bytes.length) {
      const grown = new Uint8Array(this.bytes.length * 2);
      grown.set(this.bytes);
      this.bytes = grown;
    }
    writeU32(this.bytes, this.length_bytes, crc);
    this.length_bytes += 4;
  }

  /** CRC-32C of all pushed CRCs (0 when none). */
  checksum(): number {
    return crc32c(this.bytes, 0, this.length_bytes);
  }
}
