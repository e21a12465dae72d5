import { describe, expect, test } from "bun:test";
import {
  formatPerfMap,
  type JitSymbol,
  keepLive,
  latestWithoutOverlaps,
  parseJitDump,
  regionAt,
} from "../../scripts/jitdump.ts";

const perfMap = (symbols: readonly JitSymbol[]) => formatPerfMap(latestWithoutOverlaps(symbols));

/** A JITDump file: the 40-byte header, then one record per entry (code loads, or other types). */
function jitDump(records: Array<JitSymbol | { type: number; body_bytes: number }>): Uint8Array {
  const parts: Uint8Array[] = [];
  const header = new DataView(new ArrayBuffer(40));
  header.setUint32(0, 0x4a695444, true);
  header.setUint32(4, 1, true);
  header.setUint32(8, 40, true);
  header.setUint32(12, 0x3e, true);
  parts.push(new Uint8Array(header.buffer));
  records.forEach((record, index) => {
    if ("type" in record) {
      const other = new DataView(new ArrayBuffer(16 + record.body_bytes));
      other.setUint32(0, record.type, true);
      other.setUint32(4, 16 + record.body_bytes, true);
      parts.push(new Uint8Array(other.buffer));
      return;
    }
    const name = new TextEncoder().encode(`${record.name}\0`);
    const total = 56 + name.length + record.size_bytes;
    const load = new DataView(new ArrayBuffer(56));
    load.setUint32(0, 0, true);
    load.setUint32(4, total, true);
    load.setBigUint64(8, BigInt(index), true);
    load.setUint32(16, 100, true);
    load.setUint32(20, 101, true);
    load.setBigUint64(24, BigInt(record.start), true);
    load.setBigUint64(32, BigInt(record.start), true);
    load.setBigUint64(40, BigInt(record.size_bytes), true);
    load.setBigUint64(48, BigInt(index), true);
    parts.push(new Uint8Array(load.buffer), name, record.code);
  });
  return new Uint8Array(Buffer.concat(parts));
}

/** A symbol with `size_bytes` of made-up code (byte i = i * 7 + fill). */
function symbol(start: number, size_bytes: number, name: string, fill = 0): JitSymbol {
  const code = Uint8Array.from({ length: size_bytes }, (_, i) => (i * 7 + fill) & 0xff);
  return { start, size_bytes, name, code };
}

const A = symbol(0x7f0000001000, 0x80, "JSC-Baseline: get#AAAAAA");
const B = symbol(0x7f0000001080, 0x40, "JSC-Thunk: DefaultCall");

describe("parseJitDump", () => {
  test("reads the code loads in file order and skips other record types", () => {
    const bytes = jitDump([A, { type: 2, body_bytes: 24 }, B]);
    expect(parseJitDump(bytes)).toEqual([A, B]);
  });

  test("ignores a truncated last record (the file is written while the process runs)", () => {
    const bytes = jitDump([A, B]);
    expect(parseJitDump(bytes.subarray(0, bytes.length - 3))).toEqual([A]);
  });

  test("refuses a file that is not a JITDump, or a malformed record, with its offset", () => {
    expect(() =>
      parseJitDump(new TextEncoder().encode("perf map, not a dump............................")),
    ).toThrow(/bad magic/);
    const bytes = jitDump([A]);
    new DataView(bytes.buffer).setUint32(40 + 4, 8, true); // record size below its own header
    expect(() => parseJitDump(bytes)).toThrow(/bad record size at byte 40/);
    const short = jitDump([A, B]);
    new DataView(short.buffer).setBigUint64(40 + 40, 0x70n, true); // code size: not what the record holds
    expect(() => parseJitDump(short)).toThrow(/code size 112 does not fill the record at byte 40/);
    const unterminated = jitDump([A]);
    unterminated.fill(0x41, 40 + 56); // name and code bytes: no NUL anywhere
    expect(() => parseJitDump(unterminated)).toThrow(/unterminated name at byte 96/);
  });
});

describe("perfMap", () => {
  test("one hex `START SIZE name` line per region, sorted by address", () => {
    expect(perfMap([B, A])).toBe(
      "7f0000001000 80 JSC-Baseline: get#AAAAAA\n7f0000001080 40 JSC-Thunk: DefaultCall\n",
    );
  });

  test("a later record replaces the earlier ones it overlaps (JIT memory is reused)", () => {
    const reused = symbol(0x7f0000001040, 0x60, "JSC-DFG: set#BBBBBB");
    expect(perfMap([A, B, reused])).toBe("7f0000001040 60 JSC-DFG: set#BBBBBB\n");
    expect(perfMap([reused, A])).toBe("7f0000001000 80 JSC-Baseline: get#AAAAAA\n");
  });

  test("drops empty regions and keeps names on one line", () => {
    const empty = symbol(0x10, 0, "empty");
    const regex = symbol(0x20, 0x10, "JSC-YarrJIT: /a\nb/");
    expect(perfMap([empty, regex])).toBe("20 10 JSC-YarrJIT: /a b/\n");
  });

  test("randomised: survivors are disjoint, overlapped by no later record, and include the newest", () => {
    const seed = Number(process.env.WALKV_SEED ?? Date.now() % 1_000_000);
    let state = seed;
    const next = (n: number) => {
      state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
      return state % n;
    };
    const symbols = Array.from({ length: 300 }, (_, i) => symbol(next(4096), 1 + next(64), `f${i}`));
    const lines = perfMap(symbols).trimEnd().split("\n");
    const regions = lines.map((line) => {
      const [start, size, name] = line.split(" ");
      return {
        start: Number.parseInt(start!, 16),
        size: Number.parseInt(size!, 16),
        index: Number(name!.slice(1)),
      };
    });
    try {
      for (let i = 1; i < regions.length; i++) {
        expect(regions[i - 1]!.start + regions[i - 1]!.size).toBeLessThanOrEqual(regions[i]!.start);
      }
      for (const region of regions) {
        const newer = symbols.slice(region.index + 1);
        const overlapped = newer.some(
          (s) => s.start < region.start + region.size && region.start < s.start + s.size_bytes,
        );
        expect(overlapped).toBe(false);
      }
      expect(regions.some((r) => r.index === 299)).toBe(true);
      for (const [index, s] of symbols.entries()) {
        const later = symbols.slice(index + 1);
        const free = !later.some((o) => o.start < s.start + s.size_bytes && s.start < o.start + o.size_bytes);
        expect(regions.some((r) => r.index === index)).toBe(free);
      }
    } catch (error) {
      console.error(`perfMap randomised test failed with WALKV_SEED=${seed}`);
      throw error;
    }
  });
});

describe("regionAt", () => {
  const C = symbol(0x7f0000002000, 0x10, "JSC-FTL: readVisible#DNMfZw");
  const kept = latestWithoutOverlaps([A, B, C]);

  test("finds the region holding an address: its first byte, inside, its last byte", () => {
    expect(regionAt(kept, A.start)).toBe(A);
    expect(regionAt(kept, A.start + 0x7f)).toBe(A);
    expect(regionAt(kept, B.start)).toBe(B);
    expect(regionAt(kept, C.start + 0x0f)).toBe(C);
  });

  test("no region before the first, in a gap, or past the last", () => {
    expect(regionAt(kept, A.start - 1)).toBeUndefined();
    expect(regionAt(kept, B.start + B.size_bytes)).toBeUndefined(); // the gap before C
    expect(regionAt(kept, C.start + C.size_bytes)).toBeUndefined();
    expect(regionAt([], A.start)).toBeUndefined();
  });

  test("a reused address names the newest code there", () => {
    const newer = symbol(A.start + 0x20, 0x10, "JSC-DFG: set#BBBBBB", 3);
    expect(regionAt(latestWithoutOverlaps([A, newer]), A.start + 0x24)).toBe(newer);
  });
});

describe("keepLive", () => {
  /** Process memory: A's code as recorded but for 3 patched bytes, B's region reused by other code. */
  const memory = new Map<number, Uint8Array>([
    [A.start, Uint8Array.from(A.code, (byte, i) => (i % 40 === 0 ? byte ^ 0xff : byte))],
    [B.start, symbol(B.start, B.size_bytes, "other", 3).code],
  ]);

  test("keeps a region whose code mostly matches, drops one reused by other code", () => {
    expect(keepLive([A, B], (start) => memory.get(start) ?? null)).toEqual([A]);
  });

  test("drops a region the process no longer maps", () => {
    expect(keepLive([A, B], () => null)).toEqual([]);
  });
});
