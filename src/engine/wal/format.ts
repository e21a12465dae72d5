/**
 * WAL on-disk format: constants, segment file names, the 32-byte segment header, and the
 * little-endian integer helpers shared by the record codec. The format is specified in
 * docs/wal-format.md; this module and record.ts are its only implementation.
 *
 * @example
 * const header = encodeSegmentHeader(1); // 32 bytes, written at offset 0 of "00000000000000000001.wal"
 * decodeSegmentHeader(header, "00000000000000000001.wal"); // { first_lsn: 1, format_version: 2 }
 */

import { readU32, readU64, writeU32, writeU64 } from "../bytes.ts";
import { crc32 } from "../crc32.ts";
import { crc32c, crc32cUpdate } from "../crc32c.ts";
import { assert, CorruptionError } from "../errors.ts";

/** "WALKVWAL" in ASCII: the first 8 bytes of every segment. */
export const SEGMENT_MAGIC: Uint8Array = new Uint8Array([0x57, 0x41, 0x4c, 0x4b, 0x56, 0x57, 0x41, 0x4c]);
/** The segment format this walkv writes (records checksummed with CRC-32), and the newest it reads. */
export const FORMAT_VERSION = 2;
/** The oldest segment format this walkv reads: version 1, records checksummed with CRC-32C. */
export const OLDEST_FORMAT_VERSION = 1;
export const SEGMENT_HEADER_SIZE_BYTES = 32;
/** The header CRC (CRC-32C) covers bytes [16, 32), first_lsn and reserved; in version 2 [8, 12) too. */
const HEADER_CRC_START_BYTES = 16;
/** Segment file names: first LSN as 20 decimal digits, then this suffix. */
export const SEGMENT_SUFFIX = ".wal";
const SEGMENT_DIGITS = 20;

export const RECORD_HEADER_SIZE_BYTES = 24;
/**
 * The record CRC covers bytes [8, 24 + payload_length) of the record; its algorithm is the segment's
 * format version's ({@link recordChecksum}).
 */
export const RECORD_CRC_START_BYTES = 8;
/** Record type: a batch of entries applied atomically. Other values are reserved. */
export const RECORD_TYPE_BATCH = 1;

/** Fixed part of an entry: op, flags, reserved u16, key_length, value_length. */
export const ENTRY_HEADER_SIZE_BYTES = 12;
/** Size of the optional f64 expiry that follows the entry header when HAS_EXPIRY is set. */
export const ENTRY_EXPIRY_SIZE_BYTES = 8;
export const OP_SET = 1;
export const OP_DEL = 2;
/** Entry flag bit 0: an f64 expiry_unix_ms follows the fixed entry header. Other bits are reserved. */
export const ENTRY_FLAG_HAS_EXPIRY = 1;

/**
 * Name of the segment whose first record has LSN `first_lsn`.
 *
 * @example
 * segmentName(1) === "00000000000000000001.wal";
 */
export function segmentName(first_lsn: number): string {
  assert(Number.isSafeInteger(first_lsn) && first_lsn >= 1, `bad first_lsn ${first_lsn}`);
  return `${first_lsn.toString().padStart(SEGMENT_DIGITS, "0")}${SEGMENT_SUFFIX}`;
}

/**
 * First LSN encoded in a segment file name, or undefined if `name` is not a segment name
 * (other files in the WAL directory are ignored by callers, never deleted).
 *
 * @example
 * parseSegmentName("00000000000000000042.wal") === 42;
 * parseSegmentName("00000000000000000042.wal.tmp") === undefined;
 */
export function parseSegmentName(name: string): number | undefined {
  if (name.length !== SEGMENT_DIGITS + SEGMENT_SUFFIX.length || !name.endsWith(SEGMENT_SUFFIX))
    return undefined;
  const digits = name.slice(0, SEGMENT_DIGITS);
  if (!/^[0-9]+$/.test(digits)) return undefined;
  const first_lsn = Number(digits);
  if (!Number.isSafeInteger(first_lsn) || first_lsn < 1) return undefined;
  return first_lsn;
}

/** A record checksum: the CRC of `bytes[start, end)`, unsigned. */
export type RecordChecksum = (bytes: Uint8Array, start: number, end: number) => number;

/**
 * The checksum of the records of a segment of format `format_version`: CRC-32C for version 1,
 * CRC-32 (zlib's) for version 2. Chosen once per segment, never per record.
 *
 * @example
 * const checksum = recordChecksum(decodeSegmentHeader(header, path).format_version);
 * recordCrcMatches(chunk, offset, checksum);
 */
export function recordChecksum(format_version: number): RecordChecksum {
  assert(isReadableFormat(format_version), `no record checksum for format version ${format_version}`);
  return format_version === 1 ? crc32c : crc32;
}

function isReadableFormat(format_version: number): boolean {
  return (
    Number.isInteger(format_version) &&
    format_version >= OLDEST_FORMAT_VERSION &&
    format_version <= FORMAT_VERSION
  );
}

/** A verified segment header. */
export interface SegmentHeader {
  readonly first_lsn: number;
  /** {@link OLDEST_FORMAT_VERSION} to {@link FORMAT_VERSION}: says which checksum its records carry. */
  readonly format_version: number;
}

/**
 * The 32-byte header that starts the segment whose first record has LSN `first_lsn`, of format
 * {@link FORMAT_VERSION} unless told otherwise: recovery copies the records of a version 1 segment
 * under a version 1 header, since they keep their CRC-32C.
 *
 * @example
 * io.write(file, encodeSegmentHeader(first_lsn), 0);
 */
export function encodeSegmentHeader(first_lsn: number, format_version = FORMAT_VERSION): Uint8Array {
  assert(Number.isSafeInteger(first_lsn) && first_lsn >= 1, `bad first_lsn ${first_lsn}`);
  assert(isReadableFormat(format_version), `bad format_version ${format_version}`);
  const header = new Uint8Array(SEGMENT_HEADER_SIZE_BYTES);
  header.set(SEGMENT_MAGIC, 0);
  writeU32(header, 8, format_version);
  writeU64(header, 16, first_lsn);
  // bytes [24, 32) are reserved and stay 0.
  writeU32(header, 12, headerCrc(header, format_version));
  return header;
}

/**
 * The CRC-32C a header of `format_version` carries: over bytes [16, 32) in version 1; in version 2
 * over the version field [8, 12) too, so that a version damaged from 2 to 1 is a bad header, not
 * records whose checksums fail (which, at the end of the newest segment, would read as a torn tail).
 */
function headerCrc(header: Uint8Array, format_version: number): number {
  const crc = format_version === 1 ? 0 : crc32cUpdate(0, header, 8, 12);
  return crc32cUpdate(crc, header, HEADER_CRC_START_BYTES, SEGMENT_HEADER_SIZE_BYTES);
}

/**
 * Verifies the segment header in `bytes[0, 32)` and returns its first LSN and format version (1 or
 * 2). Throws {@link CorruptionError} naming `file` and the offending byte offset on a bad magic, an
 * unknown or newer format version, a bad CRC, a non-zero reserved field or an out-of-range first LSN.
 *
 * @example
 * const { first_lsn, format_version } = decodeSegmentHeader(bytes, "/data/wal/00000000000000000001.wal");
 */
export function decodeSegmentHeader(bytes: Uint8Array, file: string): SegmentHeader {
  if (bytes.length < SEGMENT_HEADER_SIZE_BYTES) {
    throw new CorruptionError(file, 0, `segment header is ${bytes.length} bytes, expected 32`);
  }
  for (let i = 0; i < SEGMENT_MAGIC.length; i++) {
    if (bytes[i] !== SEGMENT_MAGIC[i])
      throw new CorruptionError(file, 0, "bad magic: not a walkv WAL segment");
  }
  const version = readU32(bytes, 8);
  if (version > FORMAT_VERSION) {
    throw new CorruptionError(
      file,
      8,
      `format version ${version} is newer than this walkv supports (${FORMAT_VERSION})`,
    );
  }
  if (!isReadableFormat(version)) throw new CorruptionError(file, 8, `unknown format version ${version}`);
  const stored_crc = readU32(bytes, 12);
  const actual_crc = headerCrc(bytes, version);
  if (stored_crc !== actual_crc) throw new CorruptionError(file, 12, "segment header CRC mismatch");
  const first_lsn = readU64(bytes, 16);
  if (first_lsn < 1) throw new CorruptionError(file, 16, "segment first_lsn out of range");
  if (readU32(bytes, 24) !== 0 || readU32(bytes, 28) !== 0) {
    throw new CorruptionError(file, 24, "segment header reserved field is not zero");
  }
  return { first_lsn, format_version: version };
}

/**
 * True when the header in `bytes` failed only because its format version is newer than ours: such a
 * segment must never be mistaken for a torn write and cut off.
 *
 * @example
 * if (isNewerFormat(header)) throw error; // keep it, the operator must upgrade walkv
 */
export function isNewerFormat(bytes: Uint8Array): boolean {
  if (bytes.length < 12) return false;
  for (let i = 0; i < SEGMENT_MAGIC.length; i++) if (bytes[i] !== SEGMENT_MAGIC[i]) return false;
  return readU32(bytes, 8) > FORMAT_VERSION;
}
