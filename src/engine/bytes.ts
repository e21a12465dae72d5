/**
 * Little-endian integer fields and byte copies shared by the on-disk formats (WAL, data.db) and the
 * table. u64 values are JS integers below 2^53, read and written as two u32 halves (no BigInt).
 *
 * @example
 * writeU64(buf, 8, lsn); readU64(buf, 8) === lsn;
 * copyBytes(arena_bytes, offset, key, 0, key.length);
 */
import { assert } from "./errors.ts";

/** LSNs are JS integers in [1, 2^53). */
export const MAX_LSN = Number.MAX_SAFE_INTEGER;
/** Largest value of a u32 length field. */
export const MAX_U32 = 0xffffffff;

/**
 * Reads the little-endian u32 at `bytes[offset]` (caller guarantees 4 bytes).
 *
 * @example
 * readU32(new Uint8Array([1, 0, 0, 0]), 0) === 1;
 */
export function readU32(bytes: Uint8Array, offset: number): number {
  return (
    (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>>
    0
  );
}

/**
 * Writes `value` (an integer in [0, 2^32)) as a little-endian u32 at `bytes[offset]`.
 *
 * @example
 * writeU32(buf, 0, 0xdeadbeef);
 */
export function writeU32(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value;
  bytes[offset + 1] = value >>> 8;
  bytes[offset + 2] = value >>> 16;
  bytes[offset + 3] = value >>> 24;
}

/**
 * Reads the big-endian u32 at `bytes[offset]` (network order: msgpack lengths, frame headers).
 *
 * @example
 * readU32BE(new Uint8Array([0, 0, 1, 0]), 0) === 256;
 */
export function readU32BE(bytes: Uint8Array, offset: number): number {
  return (
    ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>>
    0
  );
}

/**
 * Writes `value` (an integer in [0, 2^32)) as a big-endian u32 at `bytes[offset]`.
 *
 * @example
 * writeU32BE(frame, 0, body_bytes);
 */
export function writeU32BE(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value >>> 24;
  bytes[offset + 1] = value >>> 16;
  bytes[offset + 2] = value >>> 8;
  bytes[offset + 3] = value;
}

/**
 * Reads the little-endian u64 at `bytes[offset]` as two u32 halves. Returns -1 when the value is
 * 2^53 or more (not representable as an exact JS integer): callers report that as corruption.
 *
 * @example
 * readU64(encodeSegmentHeader(7), 16) === 7;
 */
export function readU64(bytes: Uint8Array, offset: number): number {
  const high = readU32(bytes, offset + 4);
  if (high > 0x1fffff) return -1;
  return high * 0x100000000 + readU32(bytes, offset);
}

/**
 * Writes `value` (an integer in [0, 2^53)) as a little-endian u64 at `bytes[offset]`.
 *
 * @example
 * writeU64(buf, 8, lsn);
 */
export function writeU64(bytes: Uint8Array, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 out of range: ${value}`);
  writeU32(bytes, offset, value >>> 0);
  writeU32(bytes, offset + 4, Math.floor(value / 0x100000000));
}

/** Below this length a byte loop beats `subarray` + `set` (which allocate and call into the runtime). */
const COPY_LOOP_MAX_BYTES = 64;

/**
 * Copies `src[src_offset, +length_bytes)` to `dst[dst_offset]`. Fast for the short keys and values
 * that dominate recovery and writes. Up to `loop_max_bytes` are copied by a loop (a caller whose
 * sources are small fresh arrays, for which `subarray` costs ≈ 1 µs in JavaScriptCore, passes more).
 *
 * @example
 * copyBytes(dst, 0, src, 16, 100);
 */
export function copyBytes(
  dst: Uint8Array,
  dst_offset: number,
  src: Uint8Array,
  src_offset: number,
  length_bytes: number,
  loop_max_bytes = COPY_LOOP_MAX_BYTES,
): void {
  if (length_bytes <= loop_max_bytes) {
    for (let i = 0; i < length_bytes; i++) dst[dst_offset + i] = src[src_offset + i]!;
  } else dst.set(src.subarray(src_offset, src_offset + length_bytes), dst_offset);
}

/**
 * Up to this many bytes, {@link copyOrView} copies. Measured in Bun 1.4.4: a `subarray` costs 80-100
 * ns whatever its length; a fresh array filled by a byte loop 45-80 ns at 16 bytes, 145-170 ns at 100.
 */
const COPY_NOT_VIEW_MAX_BYTES = 32;

/**
 * `src[start, end)` as the cheaper of two arrays that stay valid while `src` is not overwritten: a
 * copy of its own when short (allocating and filling a small array costs less than a view in
 * JavaScriptCore), else a view (no copy of a large value).
 *
 * @example
 * const key = copyOrView(frame, key_start, key_end); // kept by a pending write
 */
export function copyOrView(src: Uint8Array, start: number, end: number): Uint8Array {
  const n = end - start;
  if (n > COPY_NOT_VIEW_MAX_BYTES) return src.subarray(start, end);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = src[start + i]!;
  return out;
}

/**
 * `bytes` as 32-bit words from its first byte: the word view {@link copyWords} and
 * {@link copyToWords} take. `bytes` must start on a word boundary of its buffer.
 *
 * @example
 * const ring_words = wordView(ring); // ring_words[k] holds ring[4k, 4k + 4)
 */
export function wordView(bytes: Uint8Array): Uint32Array {
  if (bytes.byteOffset % 4 !== 0)
    throw new Error(`wordView: byte offset ${bytes.byteOffset} is not a multiple of 4`);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
}

/** Below this many bytes {@link copyWords} copies byte by byte (aligning costs more than it saves). */
const WORD_COPY_MIN_BYTES = 32;
/** From this many bytes on, {@link copyWords} leaves the copy to the runtime (`set` of a `subarray`). */
const NATIVE_COPY_MIN_BYTES = 4096;

/**
 * Copies `src8[src_offset, +length_bytes)` to `dst8[dst_offset]` four bytes at a time: 2-3 times
 * faster than a byte loop for a 100-400-byte value in JavaScriptCore, and no `subarray` (80-100 ns).
 * The destination is aligned first; a source at another alignment is read as whole words and shifted
 * (little-endian). `src32` and `dst32` are the word views ({@link wordView}) of `src8` and `dst8`;
 * bytes a word view does not reach (an array's last 1-3) are copied one by one.
 * From 4 KiB on the runtime copies (`set`), faster there than any loop.
 *
 * @example
 * copyWords(slab, slab_words, at, arena_bytes, arena_words, value_start, value_length);
 */
export function copyWords(
  dst8: Uint8Array,
  dst32: Uint32Array,
  dst_offset: number,
  src8: Uint8Array,
  src32: Uint32Array,
  src_offset: number,
  length_bytes: number,
): void {
  copyAligned(dst8, dst32, dst_offset, src8, src32, src_offset, length_bytes);
}

/**
 * Like {@link copyWords} from a source without a word view (any byte array: a request's bytes):
 * each word is packed from four source bytes and stored into `dst32`, the word view of `dst8` (the
 * arena, the WAL ring). For the 20-300-byte keys and values of writes a
 * JavaScriptCore native copy costs more in its call than in its bytes (100 bytes: 130-145 ns here,
 * 160-250 ns by `set(subarray)`).
 *
 * @example
 * copyToWords(arena_bytes, arena_words, value_at, request, value_start, value_length);
 */
export function copyToWords(
  dst8: Uint8Array,
  dst32: Uint32Array,
  dst_offset: number,
  src: Uint8Array,
  src_offset: number,
  length_bytes: number,
): void {
  copyAligned(dst8, dst32, dst_offset, src, undefined, src_offset, length_bytes);
}

/** {@link copyWords} (`src32` given) and {@link copyToWords} (undefined): align, words, tail. */
function copyAligned(
  dst8: Uint8Array,
  dst32: Uint32Array,
  dst_offset: number,
  src8: Uint8Array,
  src32: Uint32Array | undefined,
  src_offset: number,
  length_bytes: number,
): void {
  if (length_bytes >= NATIVE_COPY_MIN_BYTES) {
    dst8.set(src8.subarray(src_offset, src_offset + length_bytes), dst_offset);
    return;
  }
  let d = dst_offset;
  let s = src_offset;
  let n = length_bytes;
  if (n >= WORD_COPY_MIN_BYTES) {
    while ((d & 3) !== 0) {
      dst8[d++] = src8[s++]!;
      n--;
    }
    const words =
      src32 === undefined ? packWords(dst32, d >>> 2, src8, s, n) : shiftWords(dst32, d >>> 2, src32, s, n);
    d += words * 4;
    s += words * 4;
    n -= words * 4;
  }
  for (let i = 0; i < n; i++) dst8[d + i] = src8[s + i]!;
}

/** Stores up to `n >>> 2` words packed from `src[s…]` at `dst32[dw…]`; returns how many. */
function packWords(dst32: Uint32Array, dw: number, src: Uint8Array, s: number, n: number): number {
  const words = Math.max(0, Math.min(n >>> 2, dst32.length - dw));
  for (let k = 0, at = s; k < words; k++, at += 4) {
    dst32[dw + k] = src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24);
  }
  return words;
}

/**
 * Stores up to `n >>> 2` words of the source bytes from `s` (read as words of `src32`, shifted when
 * `s` is not word-aligned) at `dst32[dw…]`; returns how many. Whole words only, inside both views
 * (a shifted source reads one word ahead).
 */
function shiftWords(dst32: Uint32Array, dw: number, src32: Uint32Array, s: number, n: number): number {
  let sw = s >>> 2;
  const shift = (s & 3) * 8;
  const words = Math.max(0, Math.min(n >>> 2, dst32.length - dw, src32.length - sw - (shift === 0 ? 0 : 1)));
  if (shift === 0) {
    for (let k = 0; k < words; k++) dst32[dw + k] = src32[sw + k]!;
    return words;
  }
  let low = src32[sw]! >>> shift;
  for (let k = 0; k < words; k++) {
    const high = src32[++sw]!;
    dst32[dw + k] = low | (high << (32 - shift));
    low = high >>> shift;
  }
  return words;
}
