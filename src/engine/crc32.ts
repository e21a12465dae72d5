/**
 * CRC-32 as zlib computes it (IEEE 802.3, reflected polynomial 0xEDB88320): the checksum of the
 * records of WAL format version 2 segments (docs/wal-format.md). The runtime's native `zlib.crc32`
 * (Bun, Deno) runs at ≈ 0.02 ns per byte, against ≈ 0.64 for the JavaScript slicing-by-8 loop
 * (crc_slicing.ts), but a call costs ≈ 75 ns (the subarray view and the native call): ranges shorter
 * than {@link CRC32_NATIVE_MIN_BYTES} go through the JavaScript loop instead. Both give the same CRC.
 *
 * @example
 * crc32(new TextEncoder().encode("123456789")) === 0xcbf43926
 */
import { crc32 as zlibCrc32 } from "node:zlib";
import { buildCrcTables, crcUpdate } from "./crc_slicing.ts";
import { assert } from "./errors.ts";

const CRC32_POLYNOMIAL_REFLECTED = 0xedb88320;
const TABLES = buildCrcTables(CRC32_POLYNOMIAL_REFLECTED);

/**
 * Ranges of this many bytes and more go to `zlib.crc32`. Measured in Bun 1.4.4 (median of 5 runs
 * of a call loop, plain and SharedArrayBuffer-backed arrays alike): 112 bytes 71–75 ns in
 * JavaScript against 75–77 native, 128 bytes 82 against 75–85, 160 bytes 104–106 against 80–81.
 */
export const CRC32_NATIVE_MIN_BYTES = 128;
checkNativeCrc32();

/**
 * CRC-32 (zlib's) of `bytes[start, end)`, unsigned.
 *
 * @example
 * writeU32(record, 4, crc32(record, 8, record.length));
 */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  assert(start >= 0 && start <= end && end <= bytes.length, "CRC range inside the array");
  if (end - start < CRC32_NATIVE_MIN_BYTES) return crcUpdate(TABLES, 0, bytes, start, end);
  return zlibCrc32(bytes.subarray(start, end));
}

/**
 * At load: the runtime's `zlib.crc32` exists and agrees with the JavaScript loop. A runtime whose
 * native CRC differed would write records that another runtime (or this one's loop, below the
 * threshold) reads as corrupt: refuse to start instead.
 */
function checkNativeCrc32(): void {
  const sample = new Uint8Array(2 * CRC32_NATIVE_MIN_BYTES);
  for (let i = 0; i < sample.length; i++) sample[i] = (i * 131 + 7) & 0xff;
  const native = typeof zlibCrc32 === "function" ? zlibCrc32(sample) : undefined;
  if (native !== crcUpdate(TABLES, 0, sample, 0, sample.length)) {
    throw new Error(
      "this runtime's zlib.crc32 is missing or is not CRC-32 (walkv is tested on Bun 1.4.4 and Deno 2.9.6): the WAL cannot be written",
    );
  }
}
