import { describe, expect, test } from "bun:test";
import {
  Arena,
  type ArenaOptions,
  bufferIndex,
  CHUNK_BYTES_MAX,
  classSizeBytes,
  createArenaShared,
  makeRef,
  offsetBytes,
  SIZE_CLASS_COUNT,
  sizeClassOf,
} from "../../src/engine/arena.ts";
import { InvalidError, TooLargeError, UnavailableError } from "../../src/engine/errors.ts";
import type { ArenaWorkerRequest } from "./arena-worker.ts";
import {
  mulberry32,
  randomSize,
  runChunkWorkload,
  SEED,
  type SizeMix,
  type WorkloadResult,
} from "./arena-workload.ts";

const MiB = 1024 * 1024;
const KiB = 1024;

function newArena(options: Partial<ArenaOptions> = {}): Arena {
  return new Arena(createArenaShared({ buffer_count: 8, initial_bytes: 64 * KiB, ...options }));
}

describe("size classes", () => {
  test("class sizes are multiples of 8, strictly increasing, and their own class", () => {
    let previous = 0;
    for (let cls = 0; cls < SIZE_CLASS_COUNT; cls++) {
      const size = classSizeBytes(cls);
      expect(size % 8).toBe(0);
      expect(size).toBeGreaterThan(previous);
      expect(sizeClassOf(size)).toBe(cls);
      if (size < CHUNK_BYTES_MAX) expect(sizeClassOf(size + 1)).toBe(cls + 1);
      previous = size;
    }
    expect(classSizeBytes(SIZE_CLASS_COUNT - 1)).toBe(CHUNK_BYTES_MAX);
    expect(classSizeBytes(sizeClassOf(2 ** 28))).toBe(2 ** 28);
  });

  test("a size's class is the smallest that covers it; waste ≤ 12.5% above 256 bytes", () => {
    const next = mulberry32(SEED);
    const sizes = Array.from({ length: 4096 }, (_, i) => i + 1);
    for (let i = 0; i < 20_000; i++) sizes.push(1 + (next() % CHUNK_BYTES_MAX));
    for (const size of sizes) {
      const cls = sizeClassOf(size);
      const chunk = classSizeBytes(cls);
      if (chunk < size) throw new Error(`seed ${SEED}: size ${size} class ${cls} holds only ${chunk}`);
      if (cls > 0 && classSizeBytes(cls - 1) >= size)
        throw new Error(`seed ${SEED}: size ${size} class too big`);
      if (size > 256 && chunk > size * 1.125)
        throw new Error(`seed ${SEED}: size ${size} wastes ${chunk - size}`);
      if (size <= 256 && chunk - size >= 8) throw new Error(`size ${size} wastes ${chunk - size}`);
    }
  });

  test("sizes outside [1, 2**31] are invariant violations", () => {
    expect(() => sizeClassOf(0)).toThrow(/walkv invariant/);
    expect(() => sizeClassOf(CHUNK_BYTES_MAX + 1)).toThrow(/walkv invariant/);
    expect(() => sizeClassOf(1.5)).toThrow(/walkv invariant/);
    expect(() => classSizeBytes(SIZE_CLASS_COUNT)).toThrow(/walkv invariant/);
  });
});

describe("refs", () => {
  test("buffer index and offset round-trip, up to buffer 7 at 4 GiB − 8", () => {
    for (const [b, offset] of [
      [0, 8],
      [1, 0],
      [3, 4096],
      [7, 2 ** 32 - 8],
    ] as const) {
      const ref = makeRef(b, offset);
      expect(ref).toBeGreaterThanOrEqual(0);
      expect(ref).toBeLessThanOrEqual(0xffffffff);
      expect(bufferIndex(ref)).toBe(b);
      expect(offsetBytes(ref)).toBe(offset);
    }
    expect(makeRef(0, 0)).toBe(0);
    expect(() => makeRef(0, 4)).toThrow(/walkv invariant/);
    expect(() => makeRef(8, 0)).toThrow(/walkv invariant/);
  });
});

describe("Arena", () => {
  test("chunks are non-null, 8-aligned, of their class size, inside their buffer", () => {
    const arena = newArena();
    const next = mulberry32(SEED);
    for (let i = 0; i < 2000; i++) {
      const size = randomSize(next, "mixed");
      const ref = arena.alloc(size);
      expect(ref).not.toBe(0);
      expect(offsetBytes(ref) % 8).toBe(0);
      const end = offsetBytes(ref) + classSizeBytes(sizeClassOf(size));
      if (end > arena.u8[bufferIndex(ref)]!.length)
        throw new Error(`seed ${SEED}: ref ${ref} past its buffer`);
      arena.f64[bufferIndex(ref)]![offsetBytes(ref) >>> 3] = i + 0.5; // 8-aligned float access
    }
    const stats = arena.stats();
    expect(stats.chunks_live).toBe(2000);
    expect(stats.live_bytes).toBeLessThanOrEqual(stats.bump_bytes);
    expect(stats.bump_bytes).toBeLessThanOrEqual(stats.reserved_bytes);
  });

  test("seeded random alloc/free never hands out overlapping live chunks", () => {
    const arena = newArena({ max_bytes_per_buffer: 2 * MiB, grow_step_bytes: 64 * KiB });
    const next = mulberry32(SEED);
    const live: { ref: number; size: number; b: number; start: number; end: number }[] = [];
    for (let op = 0; op < 20_000; op++) {
      if (live.length < 300 && (live.length === 0 || next() % 100 < 55)) {
        const size = randomSize(next, "mixed");
        const ref = arena.alloc(size);
        const b = bufferIndex(ref);
        const start = offsetBytes(ref);
        const end = start + classSizeBytes(sizeClassOf(size));
        const clash = live.find((c) => c.b === b && c.start < end && start < c.end);
        if (clash) throw new Error(`seed ${SEED} op ${op}: [${b}:${start},${end}) overlaps ref ${clash.ref}`);
        live.push({ ref, size, b, start, end });
      } else {
        const i = next() % live.length;
        arena.free(live[i]!.ref, live[i]!.size);
        live[i] = live[live.length - 1]!;
        live.pop();
      }
      if (op % 1000 === 0) {
        const expected = live.reduce((sum, c) => sum + c.end - c.start, 0);
        expect(arena.stats().live_bytes).toBe(expected);
      }
    }
    for (const chunk of live) arena.free(chunk.ref, chunk.size);
    expect(arena.stats()).toMatchObject({ live_bytes: 0, chunks_live: 0 });
  });

  test("single-thread tagged workload: no chunk is overwritten while live", () => {
    const arena = newArena({ max_bytes_per_buffer: 2 * MiB, grow_step_bytes: 64 * KiB });
    const result = runChunkWorkload(arena, 1, SEED, 20_000, 256, "mixed");
    expect(result.frees).toBe(result.allocs);
    expect(arena.stats()).toMatchObject({ live_bytes: 0, chunks_live: 0 });
  });

  test("steady same-size overwrites reuse freed chunks: memory does not grow", () => {
    const arena = newArena();
    const size = 100;
    const refs = Array.from({ length: 1000 }, () => arena.alloc(size));
    const before = arena.stats();
    for (let i = 0; i < 100_000; i++) {
      const slot = i % refs.length;
      const fresh = arena.alloc(size); // a table overwrite allocates the new value, then frees the old
      arena.free(refs[slot]!, size);
      refs[slot] = fresh;
    }
    const after = arena.stats();
    expect(after.reserved_bytes).toBe(before.reserved_bytes);
    expect(after.bump_bytes).toBe(before.bump_bytes);
    expect(after.live_bytes).toBe(1000 * classSizeBytes(sizeClassOf(size)));
    expect(after.chunks_live).toBe(1000);
  });

  test("a freed chunk is the next one its class hands out", () => {
    const arena = newArena();
    const a = arena.alloc(40);
    arena.alloc(40);
    arena.free(a, 40);
    expect(arena.alloc(33)).toBe(a); // 33 and 40 share the 40-byte class
  });

  test("buffers grow past their initial size; views follow and keep content", () => {
    const arena = newArena({ initial_bytes: 64 * KiB, grow_step_bytes: 64 * KiB });
    const initial = arena.stats().reserved_bytes;
    expect(initial).toBe(64 * KiB);
    const first = arena.alloc(100);
    arena.u32[0]![offsetBytes(first) >>> 2] = 0xdeadbeef;
    expect(arena.stats().reserved_bytes).toBe(initial); // one 64 KiB-ish run of 104-byte chunks fits
    const refs = Array.from({ length: 300 }, () => arena.alloc(1000));
    const grown = arena.stats().reserved_bytes;
    expect(grown).toBeGreaterThan(initial);
    expect(grown % (64 * KiB)).toBe(0); // grew in steps
    expect(arena.u8[0]!.length).toBe(arena.shared.buffers[0]!.byteLength);
    expect(arena.u32[0]![offsetBytes(first) >>> 2]).toBe(0xdeadbeef);
    const last = refs[refs.length - 1]!;
    arena.u32[0]![(offsetBytes(last) + 996) >>> 2] = 7; // the last word of the newest chunk is addressable
    expect(bufferIndex(last)).toBe(0);
  });

  test("the bump region crosses into the next buffer and accounts the wasted tail", () => {
    const arena = newArena({ buffer_count: 2, max_bytes_per_buffer: MiB, grow_step_bytes: 256 * KiB });
    const size = 100 * KiB; // 106496-byte class, bumped one chunk at a time
    const refs = Array.from({ length: 12 }, () => arena.alloc(size));
    expect(refs.map(bufferIndex)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
    expect(offsetBytes(refs[9]!)).toBe(0);
    const chunk = classSizeBytes(sizeClassOf(size));
    const stats = arena.stats();
    expect(stats.wasted_bytes).toBe(MiB - (8 + 9 * chunk));
    expect(stats.bump_bytes).toBe(8 + 12 * chunk);
    expect(stats.reserved_bytes).toBe(MiB + arena.shared.buffers[1]!.byteLength);
    const b1 = arena.u8[1]!;
    b1.fill(0xab, offsetBytes(refs[11]!), offsetBytes(refs[11]!) + chunk);
    expect(b1[offsetBytes(refs[11]!) + chunk - 1]).toBe(0xab);
  });

  test("out of memory throws UnavailableError; the arena stays usable", () => {
    const arena = newArena({ buffer_count: 1, max_bytes_per_buffer: MiB, grow_step_bytes: 128 * KiB });
    const refs: number[] = [];
    let error: unknown;
    try {
      for (;;) refs.push(arena.alloc(1000));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as Error).message).toBe(`out of memory: arena limit ${MiB} bytes reached`);
    expect(arena.stats().reserved_bytes).toBe(MiB);
    arena.free(refs.pop()!, 1000);
    expect(arena.alloc(1000)).toBeGreaterThan(0); // the class lock was released by the failed alloc
  });

  test("limit_bytes caps the sum of buffer lengths", () => {
    const arena = newArena({ max_bytes_per_buffer: MiB, limit_bytes: 256 * KiB, grow_step_bytes: 64 * KiB });
    expect(() => {
      for (;;) arena.alloc(50 * KiB);
    }).toThrow(`out of memory: arena limit ${256 * KiB} bytes reached`);
    expect(arena.stats().reserved_bytes).toBeLessThanOrEqual(256 * KiB);
  });

  test("allocations above max_chunk_bytes are TooLargeError", () => {
    const arena = newArena({ max_chunk_bytes: 4096 });
    expect(() => arena.alloc(4097)).toThrow(TooLargeError);
    expect(arena.alloc(4096)).toBeGreaterThan(0);
  });

  test("free asserts the ref is a chunk in range", () => {
    const arena = newArena();
    const ref = arena.alloc(64);
    expect(() => arena.free(0, 64)).toThrow(/walkv invariant/);
    expect(() => arena.free(ref + 1_000_000, 64)).toThrow(/walkv invariant/);
    expect(() => arena.free(makeRef(7, 8), 64)).toThrow(/walkv invariant/);
    expect(() => newArena({ buffer_count: 2 }).free(makeRef(3, 8), 64)).toThrow(/walkv invariant/);
    arena.free(ref, 64);
  });

  test("invalid options are InvalidError", () => {
    const invalid: Partial<ArenaOptions>[] = [
      { buffer_count: 0 },
      { buffer_count: 9 },
      { initial_bytes: 12 },
      { max_bytes_per_buffer: 2 ** 32 + 8 },
      { max_bytes_per_buffer: 64 * KiB },
      { grow_step_bytes: 0 },
      { limit_bytes: 9 * 2 ** 32 },
      { max_bytes_per_buffer: MiB, max_chunk_bytes: MiB },
    ];
    for (const options of invalid) expect(() => newArena(options)).toThrow(InvalidError);
  });
});

describe("Arena across workers", () => {
  const options = {
    buffer_count: 8,
    initial_bytes: 64 * KiB,
    max_bytes_per_buffer: 2 * MiB,
    grow_step_bytes: 64 * KiB,
  };

  async function runWorkers(mix: SizeMix, ops: number, live_max: number): Promise<WorkloadResult[]> {
    const shared = createArenaShared(options);
    const results = await Promise.all(
      [1, 2, 3, 4].map((worker_id) => runWorker({ shared, worker_id, seed: SEED, ops, live_max, mix })),
    );
    for (const result of results) expect(result.frees).toBe(result.allocs);
    expect(new Arena(shared).stats()).toMatchObject({ live_bytes: 0, chunks_live: 0 });
    return results;
  }

  test("4 workers, mixed sizes with growth and buffer crossing: no chunk is live in two workers", async () => {
    const results = await runWorkers("mixed", 20_000, 256);
    expect(Math.max(...results.map((r) => r.max_buffer_index))).toBeGreaterThan(0); // crossed buffers
  });

  test("4 workers on the same few classes: no chunk is live in two workers", async () => {
    await runWorkers("hot", 200_000, 64);
  });
});

function runWorker(request: ArenaWorkerRequest): Promise<WorkloadResult> {
  const worker = new Worker(new URL("./arena-worker.ts", import.meta.url).href, { type: "module" });
  return new Promise<WorkloadResult>((resolve, reject) => {
    worker.onmessage = (event) =>
      event.data.ok
        ? resolve(event.data.result)
        : reject(new Error(`worker ${request.worker_id}: ${event.data.error}`));
    worker.onerror = (event) => reject(new Error(`worker ${request.worker_id}: ${event.message}`));
    worker.postMessage(request);
  }).finally(() => worker.terminate());
}
