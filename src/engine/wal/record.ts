/**
 * WAL records: the mutation model ({@link WalEntry}), the encoder, and a zero-copy decoder for
 * replay. One record is one atomic batch; every key it writes gets the record's LSN as version.
 * Layout (docs/wal-format.md), little-endian:
 *   record header (24): u32 payload_length | u32 crc of [8, 24 + payload_length) | u64 lsn |
 *                       u8 type = BATCH | u8 flags = 0 | u16 reserved = 0 | u32 entry_count ≥ 1
 *   entry: u8 op | u8 flags | u16 reserved = 0 | u32 key_length | u32 value_length |
 *          [f64 expiry_unix_ms if HAS_EXPIRY] | key | value
 * The crc is CRC-32 (zlib's) in the format version 2 segments this walkv writes, CRC-32C in the
 * version 1 segments it still reads: the encoder always writes CRC-32, a reader verifies with the
 * checksum of its segment's version ({@link recordCrcMatches}).
 *
 * @example
 * const entries = [setEntry(key, value)];
 * const bytes = new Uint8Array(encodedRecordSize(entries));
 * encodeRecord(lsn, entries, bytes, 0);
 */

import { copyBytes, MAX_LSN, MAX_U32, readU32, readU64, writeU32, writeU64 } from "../bytes.ts";
import { assert } from "../errors.ts";
import {
  ENTRY_EXPIRY_SIZE_BYTES,
  ENTRY_FLAG_HAS_EXPIRY,
  ENTRY_HEADER_SIZE_BYTES,
  FORMAT_VERSION,
  OP_DEL,
  OP_SET,
  RECORD_CRC_START_BYTES,
  RECORD_HEADER_SIZE_BYTES,
  RECORD_TYPE_BATCH,
  type RecordChecksum,
  recordChecksum,
} from "./format.ts";

/** The checksum {@link encodeRecord} seals records with: the written format's, CRC-32. */
const ENCODE_CHECKSUM: RecordChecksum = recordChecksum(FORMAT_VERSION);

/** Entry operation: {@link OP_SET} or {@link OP_DEL}. */
export type WalOp = typeof OP_SET | typeof OP_DEL;

/**
 * One key mutation inside a batch record. The key and the value are byte ranges of their arrays, so
 * a server hands the engine its input as it came (a view of a socket's buffer costs ≈ 1 µs in
 * JavaScriptCore, more than the rest of a SET's parsing): build entries with {@link setEntry},
 * {@link delEntry} or {@link setEntryIn}.
 */
export interface WalEntry {
  readonly op: WalOp;
  /** Holds the key at `[key_start, key_start + key_length)`. */
  readonly key: Uint8Array;
  readonly key_start: number;
  readonly key_length: number;
  /** SET: holds the new value at `[value_start, value_start + value_length)`; DEL: undefined. */
  readonly value: Uint8Array | undefined;
  readonly value_start: number;
  /** 0 for DEL. */
  readonly value_length: number;
  /** Absolute expiry time in Unix milliseconds; 0 = no expiry (reserved for TTL). */
  readonly expiry_unix_ms: number;
}

/**
 * A SET of `key` (all of it) to `value` (all of it).
 *
 * @example
 * await engine.write([setEntry(key, value)]);
 */
export function setEntry(key: Uint8Array, value: Uint8Array, expiry_unix_ms = 0): WalEntry {
  return setEntryIn(key, 0, key.length, value, 0, value.length, expiry_unix_ms);
}

/**
 * A SET whose key and value are ranges of larger arrays (often both of one request's buffer).
 *
 * @example
 * setEntryIn(input, key_start, key_length, input, value_start, value_length, 0);
 */
export function setEntryIn(
  key: Uint8Array,
  key_start: number,
  key_length: number,
  value: Uint8Array,
  value_start: number,
  value_length: number,
  expiry_unix_ms: number,
): WalEntry {
  return { op: OP_SET, key, key_start, key_length, value, value_start, value_length, expiry_unix_ms };
}

/**
 * A DEL of `key[key_start, key_start + key_length)` (all of `key` by default).
 *
 * @example
 * await engine.write([delEntry(key)]);
 */
export function delEntry(key: Uint8Array, key_start = 0, key_length = key.length - key_start): WalEntry {
  return {
    op: OP_DEL,
    key,
    key_start,
    key_length,
    value: undefined,
    value_start: 0,
    value_length: 0,
    expiry_unix_ms: 0,
  };
}

/**
 * True if `entry`'s ranges lie inside their arrays and it is a well-formed SET or DEL (the engine
 * checks every entry it is given with this before anything changes).
 */
export function entryInBounds(entry: WalEntry): boolean {
  const { key, key_start, key_length, value, value_start, value_length } = entry;
  if (!(key instanceof Uint8Array) || !inRange(key, key_start, key_length)) return false;
  if (entry.op === OP_DEL) return value === undefined && value_length === 0;
  return entry.op === OP_SET && value instanceof Uint8Array && inRange(value, value_start, value_length);
}

function inRange(bytes: Uint8Array, start: number, length: number): boolean {
  return (
    Number.isSafeInteger(start) &&
    Number.isSafeInteger(length) &&
    start >= 0 &&
    length >= 0 &&
    start + length <= bytes.length
  );
}

/** Raw header fields of a record, not yet validated. */
export interface RecordHeader {
  readonly payload_length_bytes: number;
  /** CRC-32C in a format version 1 segment, CRC-32 in a version 2 segment. */
  readonly crc: number;
  /** -1 when the stored u64 is ≥ 2^53. */
  readonly lsn: number;
  readonly type: number;
  readonly flags: number;
  readonly reserved: number;
  readonly entry_count: number;
}

/**
 * Called once per entry by {@link visitRecordEntries}, with offsets into the record's buffer
 * (no copies). `value_length` is 0 for DEL; `expiry_unix_ms` is 0 when the entry has none.
 */
export type EntryVisitor = (
  op: WalOp,
  key_offset: number,
  key_length_bytes: number,
  value_offset: number,
  value_length_bytes: number,
  expiry_unix_ms: number,
) => void;

// f64 expiry is copied through a scratch buffer: faster than a DataView per record. The format is
// little-endian, so this requires a little-endian host (every platform Bun and Deno ship for).
const f64_scratch = new Float64Array(1);
const f64_scratch_bytes = new Uint8Array(f64_scratch.buffer);
assert(new Uint8Array(new Uint16Array([1]).buffer)[0] === 1, "walkv requires a little-endian host");

/**
 * Bytes `entry` adds to its record (the record header is RECORD_HEADER_SIZE_BYTES more).
 *
 * @example
 * RECORD_HEADER_SIZE_BYTES + entrySizeBytes(entry) === encodedRecordSize([entry]);
 */
export function entrySizeBytes(entry: WalEntry): number {
  return entryBytes(entry.key_length, entry.value_length, entry.expiry_unix_ms);
}

/**
 * Size in bytes of an entry of a `key_length`-byte key and a `value_length`-byte value, before it
 * is made ({@link entrySizeBytes} of the entry it would be).
 *
 * @example
 * entryBytes(key.length, value.length, 0) === entrySizeBytes(setEntry(key, value));
 */
export function entryBytes(key_length: number, value_length: number, expiry_unix_ms: number): number {
  const expiry_bytes = expiry_unix_ms === 0 ? 0 : ENTRY_EXPIRY_SIZE_BYTES;
  return ENTRY_HEADER_SIZE_BYTES + expiry_bytes + key_length + value_length;
}

/**
 * Size in bytes of the record that {@link encodeRecord} writes for `entries`. Callers compare it
 * with their record size limit before encoding.
 *
 * @example
 * const size_bytes = encodedRecordSize([delEntry(key)]);
 */
export function encodedRecordSize(entries: readonly WalEntry[]): number {
  let size_bytes = RECORD_HEADER_SIZE_BYTES;
  for (const entry of entries) size_bytes += entrySizeBytes(entry);
  return size_bytes;
}

function assertEntry(entry: WalEntry): void {
  assert(entryInBounds(entry), "an entry is a SET with a value or a DEL without, its ranges in bounds");
  assert(entry.key_length <= MAX_U32 && entry.value_length <= MAX_U32, "key or value over u32");
  assert(Number.isFinite(entry.expiry_unix_ms) && entry.expiry_unix_ms >= 0, "bad expiry_unix_ms");
}

function encodeEntry(entry: WalEntry, into: Uint8Array, offset: number): number {
  assertEntry(entry);
  const has_expiry = entry.expiry_unix_ms !== 0;
  const { key_length, value_length } = entry;
  into[offset] = entry.op;
  into[offset + 1] = has_expiry ? ENTRY_FLAG_HAS_EXPIRY : 0;
  into[offset + 2] = 0;
  into[offset + 3] = 0;
  writeU32(into, offset + 4, key_length);
  writeU32(into, offset + 8, value_length);
  let p = offset + ENTRY_HEADER_SIZE_BYTES;
  if (has_expiry) {
    f64_scratch[0] = entry.expiry_unix_ms;
    into.set(f64_scratch_bytes, p);
    p += ENTRY_EXPIRY_SIZE_BYTES;
  }
  copyBytes(into, p, entry.key, entry.key_start, key_length);
  p += key_length;
  if (entry.value !== undefined) copyBytes(into, p, entry.value, entry.value_start, value_length);
  return p + value_length - offset;
}

/**
 * Encodes one BATCH record with LSN `lsn` into `into[offset, offset + size)` and returns the size
 * (= {@link encodedRecordSize}); the caller sizes the buffer. Computes the CRC, that of format
 * version {@link FORMAT_VERSION} (CRC-32): records go to the current segment, always of that version.
 *
 * @example
 * const written_bytes = encodeRecord(lsn, entries, buffer, buffer_used_bytes);
 */
export function encodeRecord(
  lsn: number,
  entries: readonly WalEntry[],
  into: Uint8Array,
  offset: number,
): number {
  assert(Number.isSafeInteger(lsn) && lsn >= 1 && lsn <= MAX_LSN, `bad lsn ${lsn}`);
  assert(entries.length >= 1 && entries.length <= MAX_U32, "a record holds 1 to 2^32-1 entries");
  const size_bytes = encodedRecordSize(entries);
  assert(size_bytes - RECORD_HEADER_SIZE_BYTES <= MAX_U32, "record payload over u32");
  assert(
    Number.isSafeInteger(offset) && offset >= 0 && offset + size_bytes <= into.length,
    "buffer too small",
  );
  writeU32(into, offset, size_bytes - RECORD_HEADER_SIZE_BYTES);
  writeU64(into, offset + 8, lsn);
  into[offset + 16] = RECORD_TYPE_BATCH;
  into[offset + 17] = 0;
  into[offset + 18] = 0;
  into[offset + 19] = 0;
  writeU32(into, offset + 20, entries.length);
  let p = offset + RECORD_HEADER_SIZE_BYTES;
  for (const entry of entries) p += encodeEntry(entry, into, p);
  assert(p === offset + size_bytes, "encoded size mismatch");
  writeU32(into, offset + 4, ENCODE_CHECKSUM(into, offset + RECORD_CRC_START_BYTES, p));
  return size_bytes;
}

/**
 * Total size (header + payload) the record at `bytes[offset]` claims; needs the 4 length bytes.
 *
 * @example
 * const record_length_bytes = recordLengthBytes(chunk, 0);
 */
export function recordLengthBytes(bytes: Uint8Array, offset: number): number {
  return RECORD_HEADER_SIZE_BYTES + readU32(bytes, offset);
}

/**
 * Raw header fields of the record at `bytes[offset]` (needs 24 bytes); validation is {@link recordDefect}'s.
 *
 * @example
 * decodeRecordHeader(bytes, 0).lsn;
 */
export function decodeRecordHeader(bytes: Uint8Array, offset: number): RecordHeader {
  assert(offset >= 0 && offset + RECORD_HEADER_SIZE_BYTES <= bytes.length, "record header out of bounds");
  return {
    payload_length_bytes: readU32(bytes, offset),
    crc: readU32(bytes, offset + 4),
    lsn: readU64(bytes, offset + 8),
    type: bytes[offset + 16]!,
    flags: bytes[offset + 17]!,
    reserved: bytes[offset + 18]! | (bytes[offset + 19]! << 8),
    entry_count: readU32(bytes, offset + 20),
  };
}

/**
 * True when the stored CRC of the record at `bytes[offset]` matches its contents as computed by
 * `checksum`, that of the record's segment's format version ({@link recordChecksum}); the whole
 * record must be in `bytes`.
 *
 * @example
 * const checksum = recordChecksum(header.format_version); // once per segment
 * if (!recordCrcMatches(chunk, offset, checksum)) classifyTornOrCorrupt();
 */
export function recordCrcMatches(bytes: Uint8Array, offset: number, checksum: RecordChecksum): boolean {
  const end = offset + recordLengthBytes(bytes, offset);
  assert(offset >= 0 && end <= bytes.length, "record out of bounds");
  return readU32(bytes, offset + 4) === checksum(bytes, offset + RECORD_CRC_START_BYTES, end);
}

/**
 * Why the record at `bytes[offset]` with decoded `header` is malformed (reserved type, flags or
 * entry fields, entry_count 0, LSN out of range, payload not consumed exactly), or undefined if it
 * is well-formed. Does not check the CRC: see {@link recordCrcMatches}.
 *
 * @example
 * const defect = recordDefect(bytes, offset, decodeRecordHeader(bytes, offset));
 * if (defect !== undefined) throw new CorruptionError(file, file_offset, defect);
 */
export function recordDefect(bytes: Uint8Array, offset: number, header: RecordHeader): string | undefined {
  if (header.type !== RECORD_TYPE_BATCH) return `reserved record type ${header.type}`;
  if (header.flags !== 0) return `reserved record flags 0x${header.flags.toString(16)}`;
  if (header.reserved !== 0) return "record reserved field is not zero";
  if (header.lsn < 1) return "record lsn out of range [1, 2^53)";
  if (header.entry_count === 0) return "record has no entries";
  return walkEntries(bytes, offset, null);
}

/**
 * Calls `visit` for each entry of the well-formed record at `bytes[record_offset]` in order, with
 * offsets into `bytes`: no allocation per entry. The record must have passed {@link recordDefect}.
 *
 * @example
 * visitRecordEntries(bytes, offset, (op, key_offset, key_length) => {
 *   if (op === OP_DEL) table.delete(bytes.subarray(key_offset, key_offset + key_length));
 * });
 */
export function visitRecordEntries(bytes: Uint8Array, record_offset: number, visit: EntryVisitor): void {
  const defect = walkEntries(bytes, record_offset, visit);
  assert(defect === undefined, `visitRecordEntries on a malformed record: ${defect}`);
}

/** Walks the entries, validating each, calling `visit` if given; returns the first defect found. */
function walkEntries(
  bytes: Uint8Array,
  record_offset: number,
  visit: EntryVisitor | null,
): string | undefined {
  const payload_end = record_offset + recordLengthBytes(bytes, record_offset);
  const entry_count = readU32(bytes, record_offset + 20);
  assert(payload_end <= bytes.length, "record out of bounds");
  let p = record_offset + RECORD_HEADER_SIZE_BYTES;
  for (let i = 0; i < entry_count; i++) {
    if (p + ENTRY_HEADER_SIZE_BYTES > payload_end) return `entry ${i} runs past the payload`;
    const op = bytes[p]!;
    const flags = bytes[p + 1]!;
    const key_length = readU32(bytes, p + 4);
    const value_length = readU32(bytes, p + 8);
    if (op !== OP_SET && op !== OP_DEL) return `entry ${i} has reserved op ${op}`;
    if ((flags & ~ENTRY_FLAG_HAS_EXPIRY) !== 0)
      return `entry ${i} has reserved flags 0x${flags.toString(16)}`;
    if (bytes[p + 2] !== 0 || bytes[p + 3] !== 0) return `entry ${i} reserved field is not zero`;
    if (op === OP_DEL && value_length !== 0) return `entry ${i} is a DEL with a value`;
    p += ENTRY_HEADER_SIZE_BYTES;
    let expiry_unix_ms = 0;
    if (flags !== 0) {
      if (p + ENTRY_EXPIRY_SIZE_BYTES > payload_end) return `entry ${i} expiry runs past the payload`;
      f64_scratch_bytes.set(bytes.subarray(p, p + ENTRY_EXPIRY_SIZE_BYTES));
      expiry_unix_ms = f64_scratch[0]!;
      if (!(Number.isFinite(expiry_unix_ms) && expiry_unix_ms > 0)) return `entry ${i} has a bad expiry`;
      p += ENTRY_EXPIRY_SIZE_BYTES;
    }
    if (p + key_length + value_length > payload_end) return `entry ${i} key or value runs past the payload`;
    if (visit !== null) visit(op, p, key_length, p + key_length, value_length, expiry_unix_ms);
    p += key_length + value_length;
  }
  if (p !== payload_end) return `payload has ${payload_end - p} bytes after the last entry`;
  return undefined;
}
