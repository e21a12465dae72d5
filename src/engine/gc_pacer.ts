/**
 * Garbage collection for the engine's blocking workers (the WAL writer and the checkpointer).
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

type Collect = () => void;

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
