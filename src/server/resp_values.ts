/**
 * How RESP byte strings map onto stored msgpack values (docs/resp.md): a value written through RESP
 * is stored as a msgpack bin (header + the bytes); a stored str or bin reads back through RESP as its
 * payload bytes; any other msgpack value has no RESP form (GET: WRONGTYPE, MGET: nil).
 *
 * @example
 * const stored = binValue(bytes, 0, bytes.length); // 0xc4 len bytes… (bin8/16/32 by length)
 * binSize(bytes.length) === stored.length;          // true
 * payloadStart(stored);                      // 2: the payload is stored[2, stored.length)
 * msgpackTypeName(0x81);                     // "map"
 */

import { copyBytes } from "../engine/bytes.ts";
import { binHeaderBytes, strOrBinHeaderBytes, writeBinHeader } from "./msgpack.ts";

/** Largest payload of a msgpack bin (bin32). */
const MAX_BIN_BYTES = 0xffffffff;

/** Bytes of the stored form of `payload_bytes` RESP bytes (the bin header is 2, 3 or 5 bytes). */
export function binSize(payload_bytes: number): number {
  if (payload_bytes > MAX_BIN_BYTES)
    throw new Error(`binSize: ${payload_bytes} bytes do not fit a msgpack bin`);
  return payload_bytes + binHeaderBytes(payload_bytes);
}

/** The stored form of RESP bytes `src[start, +n)`: a msgpack bin, its header sized by the length. */
export function binValue(src: Uint8Array, start: number, n: number): Uint8Array {
  const header = binSize(n) - n;
  const out = new Uint8Array(header + n);
  writeBinHeader(out, 0, n);
  copyBytes(out, header, src, start, n);
  return out;
}

/**
 * Where the payload of a stored str or bin starts (it runs to the end: a stored value is exactly one
 * msgpack value), or -1 for any other type.
 */
export function payloadStart(value: Uint8Array): number {
  return strOrBinHeaderBytes(value[0]);
}

/** The msgpack type of a value by its first byte, for error messages. */
export function msgpackTypeName(first_byte: number): string {
  const b = first_byte;
  if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) return "integer";
  if (b <= 0x8f || b === 0xde || b === 0xdf) return "map";
  if (b <= 0x9f || b === 0xdc || b === 0xdd) return "array";
  if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb)) return "str";
  if (b === 0xc0) return "nil";
  if (b === 0xc2 || b === 0xc3) return "boolean";
  if (b === 0xca || b === 0xcb) return "float";
  if (b >= 0xc4 && b <= 0xc6) return "bin";
  return "ext"; // 0xc7-0xc9, 0xd4-0xd8 (0xc1 is never stored)
}
