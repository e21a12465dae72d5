/**
 * Turns a JavaScriptCore JITDump file into a perf map, so `perf report`/`perf script` name the JIT
 * frames of a Bun process. A script of `make profile` (scripts/profile.sh).
 *
 * Why: Bun's JavaScriptCore writes no /tmp/perf-PID.map. With `BUN_JSC_useJITDump=1` it writes a
 * JITDump (the format of linux tools/perf/Documentation/jitdump-specification.txt) to
 * `$BUN_JSC_jitDumpDirectory/jit-TID-PID.dump`. `perf inject --jit` ignores that file (it expects
 * `jit-PID.dump` and `perf record -k mono` from the start), but perf reads a perf map for any
 * anonymous executable mapping, so the code-load records are rewritten as one: `START SIZE name` per
 * line, hex. JSC frees and reuses JIT memory: a record that a later one overlaps is dropped (the map
 * describes the code as it was when the dump was read: profile first, convert after).
 *
 * @example
 * node_modules/.bin/bun scripts/jitdump.ts /tmp/x/jit-4242-4240.dump > /tmp/perf-4240.map
 */
import { assert } from "../src/engine/errors.ts";

/** One JIT code region: where it starts, how long it is, and JSC's name ("JSC-DFG: lock#EBEOC8"). */
export interface JitSymbol {
  readonly start: number;
  readonly size_bytes: number;
  readonly name: string;
}

const MAGIC = 0x4a695444; // "JiTD", little-endian
const FILE_HEADER_BYTES = 40;
const RECORD_HEADER_BYTES = 16;
const CODE_LOAD = 0;
/** Record header, then pid u32, tid u32, vma u64, code_address u64, code_size u64, code_index u64. */
const CODE_LOAD_FIXED_BYTES = RECORD_HEADER_BYTES + 40;
/** A dump past this is refused rather than read into memory (JSC writes each function's code too). */
export const MAX_JITDUMP_BYTES = 2 * 1024 ** 3;

/**
 * The code-load records of a JITDump, in file order. A truncated last record (the dump is written
 * while the process runs) is ignored; any other malformation throws with its byte offset.
 *
 * @example
 * parseJitDump(fs.readFileSync(path)).length; // 3150
 */
export function parseJitDump(bytes: Uint8Array): JitSymbol[] {
  if (bytes.length > MAX_JITDUMP_BYTES) throw new Error(`jitdump: ${bytes.length} bytes is over the limit`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < FILE_HEADER_BYTES || view.getUint32(0, true) !== MAGIC) {
    throw new Error("jitdump: not a little-endian JITDump file (bad magic)");
  }
  const header_bytes = view.getUint32(8, true);
  if (header_bytes < FILE_HEADER_BYTES || header_bytes > bytes.length) {
    throw new Error(`jitdump: bad header size ${header_bytes}`);
  }
  const symbols: JitSymbol[] = [];
  let offset = header_bytes;
  while (offset + RECORD_HEADER_BYTES <= bytes.length) {
    const type = view.getUint32(offset, true);
    const record_bytes = view.getUint32(offset + 4, true);
    if (record_bytes < RECORD_HEADER_BYTES) throw new Error(`jitdump: bad record size at byte ${offset}`);
    if (offset + record_bytes > bytes.length) break; // the tail being written
    if (type === CODE_LOAD) symbols.push(codeLoad(bytes, view, offset, record_bytes));
    offset += record_bytes;
  }
  return symbols;
}

function codeLoad(bytes: Uint8Array, view: DataView, offset: number, record_bytes: number): JitSymbol {
  if (record_bytes < CODE_LOAD_FIXED_BYTES + 1) throw new Error(`jitdump: short code load at byte ${offset}`);
  const start = Number(view.getBigUint64(offset + 24, true));
  const size_bytes = Number(view.getBigUint64(offset + 40, true));
  const name_start = offset + CODE_LOAD_FIXED_BYTES;
  const name_end = bytes.indexOf(0, name_start);
  if (name_end === -1 || name_end >= offset + record_bytes) {
    throw new Error(`jitdump: unterminated name at byte ${name_start}`);
  }
  if (!Number.isSafeInteger(start + size_bytes)) throw new Error(`jitdump: bad address at byte ${offset}`);
  const name = new TextDecoder().decode(bytes.subarray(name_start, name_end));
  return { start, size_bytes, name };
}

/**
 * The perf map text for `symbols` (in file order): sorted by address; a record that any later one
 * overlaps is dropped (its code was freed); empty regions dropped; newlines in names become spaces.
 *
 * @example
 * perfMap([{ start: 0x1000, size_bytes: 32, name: "JSC-Baseline: f#AB" }]); // "1000 20 JSC-Baseline: f#AB\n"
 */
export function perfMap(symbols: readonly JitSymbol[]): string {
  const kept = latestWithoutOverlaps(symbols);
  return kept
    .map((s) => `${s.start.toString(16)} ${s.size_bytes.toString(16)} ${oneLine(s.name)}\n`)
    .join("");
}

/** Newest first, each kept only if no newer record overlaps it; returned sorted by address. */
function latestWithoutOverlaps(symbols: readonly JitSymbol[]): JitSymbol[] {
  const kept: JitSymbol[] = [];
  const covered: Range[] = []; // what newer records occupy: sorted by start, disjoint, merged
  for (let i = symbols.length - 1; i >= 0; i--) {
    const symbol = symbols[i]!;
    if (symbol.size_bytes === 0) continue;
    const range = { start: symbol.start, end: symbol.start + symbol.size_bytes };
    const at = firstEndingAfter(covered, range.start);
    const next = covered[at];
    if (next === undefined || next.start >= range.end) kept.push(symbol);
    cover(covered, at, range);
  }
  kept.sort((a, b) => a.start - b.start);
  for (let i = 1; i < kept.length; i++) {
    assert(kept[i - 1]!.start + kept[i - 1]!.size_bytes <= kept[i]!.start, "perf map regions overlap");
  }
  return kept;
}

/** A half-open address range. */
interface Range {
  start: number;
  end: number;
}

/** Adds `range` to `covered` (sorted, disjoint), merging what it touches; `at` = firstEndingAfter. */
function cover(covered: Range[], at: number, range: Range): void {
  let last = at;
  while (last < covered.length && covered[last]!.start <= range.end) last++;
  const merged = { start: range.start, end: range.end };
  if (last > at) {
    merged.start = Math.min(merged.start, covered[at]!.start);
    merged.end = Math.max(merged.end, covered[last - 1]!.end);
  }
  covered.splice(at, last - at, merged);
}

/** Index of the first range of `sorted` (disjoint, by start) that ends after `address`. */
function firstEndingAfter(sorted: readonly Range[], address: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle]!.end <= address) low = middle + 1;
    else high = middle;
  }
  return low;
}

function oneLine(name: string): string {
  return name.replace(/[\r\n]/g, " ");
}

if (import.meta.main) {
  const path = process.argv[2];
  if (path === undefined || process.argv.length !== 3) {
    console.error("usage: bun scripts/jitdump.ts JITDUMP_FILE > /tmp/perf-PID.map");
    process.exit(2);
  }
  process.stdout.write(perfMap(parseJitDump(new Uint8Array(await Bun.file(path).arrayBuffer()))));
}
