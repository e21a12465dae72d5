/**
 * Turns a JavaScriptCore JITDump file into a perf map, so `perf report`/`perf script` name the JIT
 * frames of a Bun process. A script of `make profile` (scripts/profile.sh).
 *
 * Why: Bun's JavaScriptCore writes no /tmp/perf-PID.map. With `BUN_JSC_useJITDump=1` it writes a
 * JITDump (the format of linux tools/perf/Documentation/jitdump-specification.txt) to
 * `$BUN_JSC_jitDumpDirectory/jit-TID-PID.dump`. `perf inject --jit` ignores that file (it expects
 * `jit-PID.dump` and `perf record -k mono` from the start), but perf reads a perf map for any
 * anonymous executable mapping, so the code-load records are rewritten as one: `START SIZE name` per
 * line, hex. JSC frees and reuses JIT memory: a record that a later one overlaps is dropped. Some
 * code reaches freed memory without a record of its own (seen: 2-3% of the regions after a few
 * seconds of load), which would lend it a dead function's name; with `--live PID` (the process still
 * running, right after the profile) each region's recorded code is compared with the process's
 * memory and a region whose bytes mostly differ is dropped (its frames stay unnamed rather than
 * misnamed). Inline-cache patching changes a few bytes of live code, hence "mostly".
 *
 * With `--code ADDRESS` it writes instead the code bytes of the region that holds ADDRESS (among the
 * regions no later record overlaps: an address in reused memory names only the newest code there),
 * and names the region and an `objdump` command on stderr: perf cannot annotate JIT code, so this is
 * how a hot instruction (`perf script -F ip`) is seen in its function.
 *
 * @example
 * node_modules/.bin/bun scripts/jitdump.ts /tmp/x/jit-4242-4240.dump --live 4240 > /tmp/perf-4240.map
 * node_modules/.bin/bun scripts/jitdump.ts /tmp/x/jit-4242-4240.dump --code 0x7ff178be369f > /tmp/f.bin
 */
import * as fs from "node:fs";
import { parseArgs } from "node:util";
import { assert } from "../src/engine/errors.ts";

/**
 * One JIT code region: where it starts, how long it is, JSC's name ("JSC-DFG: lock#EBEOC8") and
 * the code bytes as they were when it was recorded.
 */
export interface JitSymbol {
  readonly start: number;
  readonly size_bytes: number;
  readonly name: string;
  readonly code: Uint8Array;
}

/** A region whose live bytes match its recorded code less than this (0..1) was reused: dropped. */
const MIN_SAME_BYTES_SHARE = 0.5;

const MAGIC = 0x4a695444; // "JiTD", little-endian
const FILE_HEADER_BYTES = 40;
const RECORD_HEADER_BYTES = 16;
const CODE_LOAD = 0;
/** Record header, then pid u32, tid u32, vma u64, code_address u64, code_size u64, code_index u64. */
const CODE_LOAD_FIXED_BYTES = RECORD_HEADER_BYTES + 40;
/** A dump past this is refused rather than read into memory (JSC writes each function's code too). */
const MAX_JITDUMP_BYTES = 2 * 1024 ** 3;

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
  if (name_end + 1 + size_bytes !== offset + record_bytes) {
    throw new Error(`jitdump: code size ${size_bytes} does not fill the record at byte ${offset}`);
  }
  const name = new TextDecoder().decode(bytes.subarray(name_start, name_end));
  return { start, size_bytes, name, code: bytes.subarray(name_end + 1, offset + record_bytes) };
}

/**
 * The symbols whose code still matches the live process's memory in at least MIN_SAME_BYTES_SHARE
 * of its bytes. `readLive(start, size_bytes)` returns the process's bytes there, or null if they
 * cannot be read (unmapped: dropped too).
 *
 * @example
 * const live = keepLive(latestWithoutOverlaps(symbols), (start, size) => readProcessMemory(pid, start, size));
 */
export function keepLive(
  symbols: readonly JitSymbol[],
  readLive: (start: number, size_bytes: number) => Uint8Array | null,
): JitSymbol[] {
  return symbols.filter((symbol) => {
    const live = readLive(symbol.start, symbol.size_bytes);
    if (live === null) return false;
    assert(live.length === symbol.size_bytes, "readLive returns the whole region");
    let same = 0;
    for (let i = 0; i < live.length; i++) if (live[i] === symbol.code[i]) same++;
    return same >= MIN_SAME_BYTES_SHARE * symbol.size_bytes;
  });
}

/**
 * Reads `size_bytes` of process `pid`'s memory at `start` (/proc/PID/mem: needs ptrace rights, e.g.
 * root); null where nothing is mapped.
 *
 * @example
 * readProcessMemory(4240, 0x7f1204b9c000, 384); // Uint8Array(384) or null
 */
function readProcessMemory(pid: number, start: number, size_bytes: number): Uint8Array | null {
  const fd = fs.openSync(`/proc/${pid}/mem`, "r");
  try {
    const bytes = new Uint8Array(size_bytes);
    return fs.readSync(fd, bytes, 0, size_bytes, start) === size_bytes ? bytes : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EIO") return null; // an unmapped page
    throw error;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The perf map text of regions sorted and disjoint (from latestWithoutOverlaps): one
 * `START SIZE name` line each, hex; newlines in names become spaces.
 *
 * @example
 * formatPerfMap([{ start: 0x1000, size_bytes: 32, name: "JSC-Baseline: f#AB", code }]); // "1000 20 JSC-Baseline: f#AB\n"
 */
export function formatPerfMap(kept: readonly JitSymbol[]): string {
  for (let i = 1; i < kept.length; i++) {
    assert(kept[i - 1]!.start + kept[i - 1]!.size_bytes <= kept[i]!.start, "perf map regions overlap");
  }
  return kept
    .map((s) => `${s.start.toString(16)} ${s.size_bytes.toString(16)} ${oneLine(s.name)}\n`)
    .join("");
}

/**
 * The symbols that no later one overlaps (their code was not freed), sorted by address, without
 * empty regions.
 *
 * @example
 * latestWithoutOverlaps(parseJitDump(bytes)).length; // 1216
 */
export function latestWithoutOverlaps(symbols: readonly JitSymbol[]): JitSymbol[] {
  const kept: JitSymbol[] = [];
  const covered: Range[] = []; // what newer records occupy: sorted by start, disjoint, merged
  for (let i = symbols.length - 1; i >= 0; i--) {
    const symbol = symbols[i]!;
    if (symbol.size_bytes === 0) continue;
    const range = { start: symbol.start, end: symbol.start + symbol.size_bytes };
    const at = firstEndingAfter(covered, range.start, (r) => r.end);
    const next = covered[at];
    if (next === undefined || next.start >= range.end) kept.push(symbol);
    cover(covered, at, range);
  }
  return kept.sort((a, b) => a.start - b.start);
}

/**
 * The region of `kept` (sorted and disjoint, from latestWithoutOverlaps) that holds `address`, or
 * undefined.
 *
 * @example
 * regionAt(latestWithoutOverlaps(parseJitDump(bytes)), 0x7ff178be369f)?.name; // "JSC-FTL: readVisible#DNMfZw"
 */
export function regionAt(kept: readonly JitSymbol[], address: number): JitSymbol | undefined {
  const region = kept[firstEndingAfter(kept, address, (s) => s.start + s.size_bytes)];
  return region !== undefined && region.start <= address ? region : undefined;
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

/**
 * Index of the first item of `sorted` (disjoint ranges, by start; `end` gives an item's end) that
 * ends after `address`: `sorted.length` if none.
 */
function firstEndingAfter<T>(sorted: readonly T[], address: number, end: (item: T) => number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (end(sorted[middle]!) <= address) low = middle + 1;
    else high = middle;
  }
  return low;
}

function oneLine(name: string): string {
  return name.replace(/[\r\n]/g, " ");
}

const USAGE =
  "usage: bun scripts/jitdump.ts JITDUMP_FILE [--live PID] > /tmp/perf-PID.map\n" +
  "       bun scripts/jitdump.ts JITDUMP_FILE --code ADDRESS > code.bin   (ADDRESS in hex, 0x...)";

/** `--code`: the region holding `address`, its bytes to stdout, what it is on stderr. */
function writeCode(symbols: readonly JitSymbol[], address: number): void {
  const region = regionAt(symbols, address);
  if (region === undefined) {
    console.error(`jitdump: no region holds 0x${address.toString(16)}`);
    process.exit(1);
  }
  const start = `0x${region.start.toString(16)}`;
  console.error(`jitdump: 0x${address.toString(16)} is ${oneLine(region.name)} + ${address - region.start}`);
  console.error(`jitdump: objdump -D -b binary -mi386:x86-64 --adjust-vma=${start} FILE`);
  process.stdout.write(region.code);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { live: { type: "string" }, code: { type: "string" } },
  });
  const pid = values.live === undefined ? undefined : Number(values.live);
  const address = values.code === undefined ? undefined : Number(values.code);
  if (
    positionals.length !== 1 ||
    (pid !== undefined && !(Number.isInteger(pid) && pid > 0)) ||
    (address !== undefined && !(/^0x[0-9a-f]+$/i.test(values.code!) && Number.isSafeInteger(address))) ||
    (pid !== undefined && address !== undefined)
  ) {
    console.error(USAGE);
    process.exit(2);
  }
  const symbols = latestWithoutOverlaps(
    parseJitDump(new Uint8Array(await Bun.file(positionals[0]!).arrayBuffer())),
  );
  if (address !== undefined) writeCode(symbols, address);
  else {
    const kept =
      pid === undefined ? symbols : keepLive(symbols, (start, size) => readProcessMemory(pid, start, size));
    if (pid !== undefined)
      console.error(`jitdump: ${symbols.length - kept.length} of ${symbols.length} regions reused: dropped`);
    process.stdout.write(formatPerfMap(kept));
  }
}
