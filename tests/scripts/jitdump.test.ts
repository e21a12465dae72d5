import { describe, expect, test } from "bun:test";
import { type JitSymbol, parseJitDump, perfMap } from "../../scripts/jitdump.ts";

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
    const code_bytes = Math.min(record.size_bytes, 8); // the code copy; its length does not matter here
    const total = 56 + name.length + code_bytes;
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
    parts.push(new Uint8Array(load.buffer), name, new Uint8Array(code_bytes));
  });
  return new Uint8Array(Buffer.concat(parts));
}

const A = { start: 0x7f0000001000, size_bytes: 0x80, name: "JSC-Baseline: get#AAAAAA" };
const B = { start: 0x7f0000001080, size_bytes: 0x40, name: "JSC-Thunk: DefaultCall" };

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
    const reused = { start: 0x7f0000001040, size_bytes: 0x60, name: "JSC-DFG: set#BBBBBB" };
    expect(perfMap([A, B, reused])).toBe("7f0000001040 60 JSC-DFG: set#BBBBBB\n");
    expect(perfMap([reused, A])).toBe("7f0000001000 80 JSC-Baseline: get#AAAAAA\n");
  });

  test("drops empty regions and keeps names on one line", () => {
    const empty = { start: 0x10, size_bytes: 0, name: "empty" };
    const regex = { start: 0x20, size_bytes: 0x10, name: "JSC-YarrJIT: /a\nb/" };
    expect(perfMap([empty, regex])).toBe("20 10 JSC-YarrJIT: /a b/\n");
  });

  test("randomised: survivors are disjoint, overlapped by no later record, and include the newest", () => {
    const seed = Number(process.env.WALKV_SEED ?? Date.now() % 1_000_000);
    let state = seed;
    const next = (n: number) => {
      state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
      return state % n;
    };
    const symbols = Array.from({ length: 300 }, (_, i) => ({
      start: next(4096),
      size_bytes: 1 + next(64),
      name: `f${i}`,
    }));
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
