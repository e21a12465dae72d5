/**
 * Nanoseconds per call of the WAL's checksums at a few range sizes: crc32 (format 2 records: the
 * JavaScript loop below CRC32_NATIVE_MIN_BYTES, `zlib.crc32` from there), crc32c (format 1 records,
 * data.db), and, to place the threshold, CRC-32 by the JavaScript loop alone and by `zlib.crc32`
 * alone. Each figure is the median of 5 timed loops over a warm buffer (plain or
 * SharedArrayBuffer-backed, as the WAL ring is), the range's start moving by 0–7 bytes per call.
 *
 * @example
 * node_modules/.bin/bun scripts/bench-crc.ts --sizes 30,130,1700,120000
 */
import { parseArgs } from "node:util";
import { crc32 as zlibCrc32 } from "node:zlib";
import { buildCrcTables, crcUpdate } from "../src/engine/crc_slicing.ts";
import { CRC32_NATIVE_MIN_BYTES, crc32 } from "../src/engine/crc32.ts";
import { crc32c } from "../src/engine/crc32c.ts";
import { usageError } from "./flags.ts";

type Checksum = (bytes: Uint8Array, start: number, end: number) => number;

const CRC32_TABLES = buildCrcTables(0xedb88320);
const CHECKSUMS: [string, Checksum][] = [
  ["crc32", crc32],
  ["crc32c", crc32c],
  ["crc32 js loop", (bytes, start, end) => crcUpdate(CRC32_TABLES, 0, bytes, start, end)],
  ["zlib.crc32", (bytes, start, end) => zlibCrc32(bytes.subarray(start, end))],
];
/** Bytes checksummed per timed loop, so that every size takes about as long. */
const LOOP_BYTES = 40_000_000;
const ROUNDS = 5;

function parseSizes(): number[] {
  const { values } = parseArgs({ options: { sizes: { type: "string", default: "30,130,1700,120000" } } });
  const sizes = values.sizes.split(",").map(Number);
  if (!sizes.every((size) => Number.isSafeInteger(size) && size > 0)) usageError("--sizes N,N,…");
  return sizes;
}

/** Median ns per call of `checksum` over `size_bytes`-byte ranges of `buffer`. */
function nsPerCall(checksum: Checksum, buffer: Uint8Array, size_bytes: number): number {
  const calls = Math.max(200, Math.floor(LOOP_BYTES / (size_bytes + 50)));
  let sink = 0;
  for (let i = 0; i < calls; i++) sink ^= checksum(buffer, 8, 8 + size_bytes); // warm-up, JIT
  const rounds_ns: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const started_ms = performance.now();
    for (let i = 0; i < calls; i++) sink ^= checksum(buffer, 8 + (i & 7), 8 + (i & 7) + size_bytes);
    rounds_ns.push(((performance.now() - started_ms) * 1e6) / calls);
  }
  if (sink === -1) console.log("unreachable: keeps the checksums from being optimised away");
  return rounds_ns.sort((a, b) => a - b)[ROUNDS >> 1]!;
}

function filledBuffer(size_bytes: number, shared: boolean): Uint8Array {
  const length_bytes = size_bytes + 16;
  const buffer = new Uint8Array(shared ? new SharedArrayBuffer(length_bytes) : new ArrayBuffer(length_bytes));
  for (let i = 0; i < buffer.length; i++) buffer[i] = Math.imul(i, 0x9e3779b1) >>> 24;
  return buffer;
}

function main(): void {
  const sizes = parseSizes();
  console.log(
    `crc32 uses zlib.crc32 from ${CRC32_NATIVE_MIN_BYTES} bytes; ns per call (median of ${ROUNDS})`,
  );
  console.log(["bytes", "buffer", ...CHECKSUMS.map(([name]) => name)].join("\t"));
  for (const size_bytes of sizes) {
    for (const shared of [false, true]) {
      const buffer = filledBuffer(size_bytes, shared);
      const figures = CHECKSUMS.map(([, checksum]) => nsPerCall(checksum, buffer, size_bytes).toFixed(1));
      console.log([size_bytes, shared ? "shared" : "plain", ...figures].join("\t"));
    }
  }
}

main();
