/**
 * Garbage collection for walkv's workers: the engine's blocking workers (the WAL writer and the
 * checkpointer) by time, the I/O workers by heap growth ({@link HeapGrowthPacer}).
 *
 * Why they must collect themselves: JavaScriptCore counts every SharedArrayBuffer a thread holds as
 * that thread's own "extra memory" (each engine thread holds the whole arena and the WAL ring, counted
 * twice), and sizes a thread's collection budget in proportion to its heap size including that extra
 * memory. So each thread may pile up garbage of the order of twice the arena before it collects, and
 * the pile grows with the data. A thread that blocks in `Atomics.wait` and never returns to its event
 * loop also never gets the run-loop's timer-driven collections and sweeps, which would release that
 * memory sooner. Measured (docs/RELIABILITY.md "Soak"): in `make soak` these two threads held ≈ 300 MiB
 * of garbage beside an 80 MiB arena; a worker outside walkv making garbage next to a 256 MiB
 * SharedArrayBuffer reaches 1.4 GiB RSS (43 MiB without the buffer, 369 MiB with a full collection
 * every 2 s).
 *
 * A full collection of these small heaps takes a few milliseconds; the checkpointer runs one after
 * each checkpoint, the WAL writer at most once per {@link WAL_WRITER_GC_INTERVAL_MS}.
 *
 * @example
 * const pacer = new GcPacer(WAL_WRITER_GC_INTERVAL_MS);
 * while (!stopping) {
 *   writer.waitAndStep();
 *   pacer.collectIfDue();
 * }
 */
import { assert } from "./errors.ts";

/** The WAL writer collects at most this often (a collection pauses group commit for ~1–3 ms). */
export const WAL_WRITER_GC_INTERVAL_MS = 1000;
/** An I/O worker looks at its heap this often ({@link HeapGrowthPacer}). */
export const HEAP_CHECK_INTERVAL_MS = 1000;
/** {@link HeapGrowthPacer} never forces a collection of a heap smaller than this. */
export const HEAP_FLOOR_BYTES = 64 * 1024 * 1024;

type Collect = () => void;

/** This thread's JavaScript heap in bytes (live objects and garbage not yet collected). */
function heapUsedBytes(): number {
  return process.memoryUsage().heapUsed;
}

const bun = (globalThis as unknown as { Bun?: { gc(force_sync: boolean): void } }).Bun;

/**
 * A synchronous full collection under Bun; a no-op elsewhere (Deno/V8 exposes no collection call).
 *
 * @example
 * checkpointer.run();
 * collectGarbage(); // the checkpoint's garbage is released before the worker blocks again
 */
export function collectGarbage(): void {
  bun?.gc(true);
}

/**
 * Runs `collect` when at least `interval_ms` passed since the last time (or since construction).
 *
 * @example
 * const pacer = new GcPacer(1000, { now_ms: () => clock, collect: () => collections++ });
 * pacer.collectIfDue(); // false until 1000 ms passed
 */
export class GcPacer {
  private readonly now_ms: () => number;
  private readonly collect: Collect;
  private last_ms: number;

  constructor(
    private readonly interval_ms: number,
    options: { now_ms?: () => number; collect?: Collect } = {},
  ) {
    assert(Number.isSafeInteger(interval_ms) && interval_ms > 0, "GC interval must be a positive integer");
    this.now_ms = options.now_ms ?? Date.now;
    this.collect = options.collect ?? collectGarbage;
    this.last_ms = this.now_ms();
  }

  /** Collects if the interval passed; returns whether it collected. */
  collectIfDue(): boolean {
    const now_ms = this.now_ms();
    if (now_ms - this.last_ms < this.interval_ms) return false;
    this.collect();
    this.last_ms = this.now_ms();
    return true;
  }
}

/**
 * Forces a full collection when the heap has doubled since the last one (and passed a floor). For
 * threads that run an event loop but, sized by the SharedArrayBuffers they hold, only ever get quick
 * partial collections: objects that survive one stay until a full collection, which then never comes
 * (measured in `make soak`: an I/O worker went from 24k to 900k objects in 5 minutes, RSS creeping
 * ~15 MiB/min). The pause is paid only as often as garbage accumulates, not on a fixed timer.
 *
 * @example
 * const pacer = new HeapGrowthPacer();
 * setInterval(() => pacer.collectIfGrown(), HEAP_CHECK_INTERVAL_MS).unref();
 */
export class HeapGrowthPacer {
  private readonly heap_bytes: () => number;
  private readonly collect: Collect;
  private readonly floor_bytes: number;
  private limit_bytes: number;
  /** Collections forced so far. */
  collections = 0;

  constructor(options: { heap_bytes?: () => number; collect?: Collect; floor_bytes?: number } = {}) {
    this.heap_bytes = options.heap_bytes ?? heapUsedBytes;
    this.collect = options.collect ?? collectGarbage;
    this.floor_bytes = options.floor_bytes ?? HEAP_FLOOR_BYTES;
    assert(this.floor_bytes > 0, "heap floor must be positive");
    this.limit_bytes = Math.max(this.floor_bytes, 2 * this.heap_bytes());
  }

  /** Collects if the heap passed twice its size after the last collection; returns whether it did. */
  collectIfGrown(): boolean {
    if (this.heap_bytes() < this.limit_bytes) return false;
    this.collect();
    this.collections++;
    this.limit_bytes = Math.max(this.floor_bytes, 2 * this.heap_bytes());
    return true;
  }
}
