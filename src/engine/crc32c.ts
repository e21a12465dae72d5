/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of `data.db` (header, blocks,
 * footer), of every WAL segment header, and of the records of WAL format version 1 segments (format
 * 2 records use CRC-32, crc32.ts). Computed by the shared slicing-by-8 loop of crc_slicing.ts.
 *
 * @example
 * crc32c(new TextEncoder().encode("123456789")) === 0xe3069283
 */
import { buildCrcTables, crcUpdate } from "./crc_slicing.ts";

const CRC32C_POLYNOMIAL_REFLECTED = 0x82f63b78;
const TABLES = buildCrcTables(CRC32C_POLYNOMIAL_REFLECTED);

/**
 * Extends a running CRC-32C with `bytes[start, end)`. Start a fresh checksum with `crc = 0`.
 *
 * @example
 * const whole = crc32c(ab);
 * const split = crc32cUpdate(crc32cUpdate(0, ab, 0, 3), ab, 3, ab.length); // whole === split
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  return crcUpdate(TABLES, crc, bytes, start, end);
}

/**
 * CRC-32C of `bytes[start, end)`, unsigned.
 *
 * @example
 * writeU32(header, 12, crc32c(header, 16, 32));
 */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return crcUpdate(TABLES, 0, bytes, start, end);
}
