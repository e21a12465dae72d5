/**
 * The engine's blocking workers collect their own garbage (src/engine/gc_pacer.ts). The pacer is
 * checked with a fake clock; the checkpoint worker end to end: repeated checkpoints of a table with a
 * 64 MiB arena must not pile up garbage in the process (before the fix, each checkpoint's garbage
 * stayed: JavaScriptCore sized that thread's budget by the arena it holds, ~2 × 2 × arena).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { procStatusBytes } from "../../scripts/proc_status.ts";
import { engineConfig } from "../../src/engine/config.ts";
import { GcPacer, HeapGrowthPacer } from "../../src/engine/gc_pacer.ts";
import { openEngine } from "../../src/engine/host.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const rssMiB = (): number => procStatusBytes("self") / 2 ** 20;

describe("HeapGrowthPacer", () => {
  test("collects when the heap doubles since the last collection, never below the floor", () => {
    let heap = 10;
    let collections = 0;
    const pacer = new HeapGrowthPacer({
      heap_bytes: () => heap,
      floor_bytes: 100,
      collect: () => {
        collections++;
        heap = 70; // what survives: the live data
      },
    });
    heap = 99;
    expect(pacer.collectIfGrown()).toBe(false); // under the floor
    heap = 100;
    expect(pacer.collectIfGrown()).toBe(true);
    expect(heap).toBe(70);
    heap = 139;
    expect(pacer.collectIfGrown()).toBe(false); // under twice the 70 that survived
    heap = 140;
    expect(pacer.collectIfGrown()).toBe(true);
    expect(collections).toBe(2);
    expect(pacer.collections).toBe(2);
  });

  test("by default it measures this thread's heap", () => {
    // Garbage left by earlier test files in this process would inflate the start (and the growth to
    // make), sometimes past the test's timeout: measure from a collected heap.
    Bun.gc(true);
    const pacer = new HeapGrowthPacer({ floor_bytes: 1 });
    expect(pacer.collectIfGrown()).toBe(false);
    const start_bytes = process.memoryUsage().heapUsed;
    const hold: string[] = [];
    while (process.memoryUsage().heapUsed < 2.5 * start_bytes && hold.length < 50_000_000) {
      for (let i = 0; i < 100_000; i++) hold.push(`${hold.length}:${i}`);
    }
    expect(pacer.collectIfGrown()).toBe(true);
    expect(pacer.collections).toBe(1);
    expect(hold.length).toBeGreaterThan(0);
  });
});

describe("GcPacer", () => {
  test("collects once per interval, never before it", () => {
    let clock_ms = 1000;
    let collections = 0;
    const pacer = new GcPacer(500, { now_ms: () => clock_ms, collect: () => collections++ });
    expect(pacer.collectIfDue()).toBe(false);
    clock_ms += 499;
    expect(pacer.collectIfDue()).toBe(false);
    clock_ms += 1;
    expect(pacer.collectIfDue()).toBe(true);
    expect(pacer.collectIfDue()).toBe(false);
    clock_ms += 5000; // a long gap still collects once
    expect(pacer.collectIfDue()).toBe(true);
    expect(pacer.collectIfDue()).toBe(false);
    expect(collections).toBe(2);
  });

  test("refuses a non-positive interval", () => {
    expect(() => new GcPacer(0)).toThrow();
  });
});

describe("checkpoint worker", () => {
  test.skipIf(process.platform !== "linux")(
    "repeated checkpoints of a 64 MiB arena keep the process RSS flat",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "walkv-gc-"));
      dirs.push(dir);
      const host = await openEngine(engineConfig({ data_dir: dir, fsync: "no" }), { log: () => {} });
      try {
        const KEYS = 200_000;
        const BATCH = 1000;
        const value = new Uint8Array(256).fill(7);
        const encoder = new TextEncoder();
        for (let first = 0; first < KEYS; first += BATCH) {
          const pairs = Array.from(
            { length: BATCH },
            (_, i) => [encoder.encode(`gc:${first + i}`), value] as const,
          );
          await host.engine.mset(pairs);
        }
        expect(host.engine.stats().memory.arena_live_bytes).toBeGreaterThan(60 * 2 ** 20);
        await host.checkpoint();
        Bun.gc(true);
        const before_mib = rssMiB();
        const CHECKPOINTS = 12;
        for (let i = 0; i < CHECKPOINTS; i++) {
          await host.engine.set(encoder.encode("gc:tick"), value); // each checkpoint covers a new LSN
          await host.checkpoint();
        }
        const growth_mib = rssMiB() - before_mib;
        // Each checkpoint of 200k keys leaves ≈ 25 MiB of garbage in its worker; uncollected, twelve
        // leave > 200 MiB. Collected after each, the growth is one checkpoint's worth at most.
        expect(growth_mib).toBeLessThan(64);
      } finally {
        await host.close();
      }
    },
    60_000,
  );
});
