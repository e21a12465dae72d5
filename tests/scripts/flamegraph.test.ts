import { describe, expect, test } from "bun:test";
import {
  foldPerfScript,
  formatFolded,
  MAX_STACK_FRAMES,
  parseFolded,
  renderFlameGraph,
} from "../../scripts/flamegraph.ts";

/** `perf script -F comm,tid,ip,sym,dso` output: three samples, two of them the same stack. */
const PERF_SCRIPT = `Worker 101 
\t    7f00000010f2 JSC-FTL: findSlot#DDsB5Z+0x232 (/tmp/perf-100.map)
\t    7f0000001085 JSC-FTL: set#CemPuJ (/tmp/perf-100.map)
\t         187f5c4 [unknown] (/opt/bun/bin/bun.exe)
\t         1c749ef [unknown] (/opt/bun/bin/bun.exe)
\t           891f5 start_thread (/usr/lib/x86_64-linux-gnu/libc.so.6)

Worker 101 
\t    7f00000010f0 JSC-DFG: findSlot#DDsB5Z (/tmp/perf-100.map)
\t    7f0000001085 JSC-Baseline: set#CemPuJ (/tmp/perf-100.map)
\t         187f5c4 [unknown] (/opt/bun/bin/bun.exe)
\t           891f5 start_thread (/usr/lib/x86_64-linux-gnu/libc.so.6)

Bun Pool 0 102 
\tffffffff8226e639 _raw_spin_unlock_irqrestore+0x19 ([kernel.kallsyms])
\tffffffff8225a6c1 do_syscall_64 ([kernel.kallsyms])
\t          10aba4 __send;x (/usr/lib/x86_64-linux-gnu/libc.so.6)
`;

describe("foldPerfScript", () => {
  test("folds stacks root first, merges equal stacks and a function's JIT tiers, names unnamed frames by dso", () => {
    const folded = foldPerfScript(PERF_SCRIPT);
    expect([...folded]).toEqual([
      ["Worker;start_thread;[bun.exe];js: set#CemPuJ;js: findSlot#DDsB5Z", 2],
      ["Bun Pool 0;__send:x;do_syscall_64_[k];_raw_spin_unlock_irqrestore_[k]", 1],
    ]);
  });

  test("JSC code other than a function's keeps its name", () => {
    const text =
      "bun 7\n\t7f01 JSC-Thunk: CallTrampoline (/tmp/perf-7.map)\n\t7f02 JSC-FTL: run#AB (/tmp/perf-7.map)\n";
    expect([...foldPerfScript(text)]).toEqual([["bun;js: run#AB;JSC-Thunk: CallTrampoline", 1]]);
  });

  test("unnamed JIT frames are [JIT], whichever process they came from", () => {
    const text =
      "bun 7\n\t7f01 [unknown] (/tmp/perf-7.map)\n\t7f02 [unknown] ([JIT] tid 7)\n\t3 main (/x/bun)\n";
    expect([...foldPerfScript(text)]).toEqual([["bun;main;[JIT]", 1]]);
  });

  test("keeps a run of distinct named frames", () => {
    const folded = foldPerfScript("bun 7\n\t1 f (/x/bun.exe)\n\t2 f (/x/bun.exe)\n\t3 main (/x/bun.exe)\n");
    expect([...folded]).toEqual([["bun;main;f;f", 1]]);
  });

  test("a sample without frames counts for its thread", () => {
    expect([...foldPerfScript("mi-scavenger 9\n\n")]).toEqual([["mi-scavenger", 1]]);
  });

  test("refuses text that is not perf script output, naming the line", () => {
    expect(() => foldPerfScript("bun 7\n\t1 f (/x/bun.exe)\n: garbage here\n")).toThrow(/line 3/);
    expect(() => foldPerfScript("\t1 f (/x/bun.exe)\n")).toThrow(/line 1/);
  });

  test("refuses a stack deeper than the limit", () => {
    const frames = Array.from({ length: MAX_STACK_FRAMES + 1 }, (_, i) => `\t${i.toString(16)} f${i} (/x/a)`);
    expect(() => foldPerfScript(`bun 7\n${frames.join("\n")}\n`)).toThrow(/over 1024 frames/);
  });
});

describe("folded text", () => {
  test("round-trips, sorted, and sums repeated stacks", () => {
    const folded = new Map([
      ["b;x", 2],
      ["a;y z", 5],
    ]);
    const text = formatFolded(folded);
    expect(text).toBe("a;y z 5\nb;x 2\n");
    expect(parseFolded(text)).toEqual(folded);
    expect(parseFolded("a 1\na 2\n\n")).toEqual(new Map([["a", 3]]));
  });

  test("refuses a line without a count", () => {
    expect(() => parseFolded("a;b 1\na;b\n")).toThrow(/line 2/);
  });
});

describe("renderFlameGraph", () => {
  const folded = parseFolded("bun;main;f 3\nbun;main;g 1\nbun;main 4\nWorker;run 8\n");
  const svg = renderFlameGraph(folded, { title: "t <&>", width_px: 1020 });
  /** [name, x, y, width] of every drawn frame, from the rectangles and their titles. */
  const frames = [
    ...svg.matchAll(/<title>(.*?) \((\d+) samples.*?<rect x="([\d.]+)" y="(\d+)" width="([\d.]+)"/g),
  ].map((m) => ({ name: m[1], samples: Number(m[2]), x: Number(m[3]), y: Number(m[4]), w: Number(m[5]) }));
  const frame = (name: string) => frames.find((f) => f.name === name)!;

  test("one rectangle per frame of the merged call tree", () => {
    expect(frames.map((f) => f.name).sort()).toEqual(["Worker", "all", "bun", "f", "g", "main", "run"]);
    expect(frame("all").samples).toBe(16);
    expect(frame("main").samples).toBe(8);
  });

  test("width is proportional to samples; children sit on their parent, inside it", () => {
    const px_per_sample = (1020 - 20) / 16;
    for (const f of frames) expect(f.w).toBeCloseTo(f.samples * px_per_sample, 0);
    expect(frame("main").y).toBe(frame("bun").y - 16);
    expect(frame("f").y).toBe(frame("main").y - 16);
    expect(frame("f").x).toBeCloseTo(frame("main").x, 1);
    expect(frame("g").x).toBeCloseTo(frame("f").x + frame("f").w, 0);
    expect(frame("g").x + frame("g").w).toBeLessThanOrEqual(frame("main").x + frame("main").w + 0.1);
  });

  test("a title too long for the width is cut", () => {
    const long = renderFlameGraph(folded, { title: "x".repeat(500), width_px: 200 });
    expect(long).toMatch(/>x{10,20}…<\/text>/);
  });

  test("escapes the title and names; is one well-formed svg element", () => {
    expect(svg).toContain("t &#60;&#38;&#62;");
    expect(svg).not.toContain("<&>");
    expect(svg.match(/<svg /g)?.length).toBe(1);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg.match(/<g>/g)?.length).toBe(svg.match(/<\/g>/g)?.length);
  });

  test("frames too narrow to see are left out", () => {
    const tiny = renderFlameGraph(parseFolded("a 100000\nb 1\n"), { title: "x", width_px: 1020 });
    expect(tiny).toContain("<title>a (");
    expect(tiny).not.toContain("<title>b (");
  });

  test("empty input gives a graph without frames", () => {
    const empty = renderFlameGraph(new Map(), { title: "none" });
    expect(empty).toContain(">none</text>");
    expect(empty).not.toContain("<g>");
  });
});
