/**
 * The last resort of a shutdown that went wrong. Once the drain has timed out (`--shutdown-timeout`),
 * the rest of the close — I/O workers terminated, a running checkpoint abandoned, the WAL made
 * durable, files removed — must end within {@link CLOSE_AFTER_DRAIN_TIMEOUT_MS}, or the process
 * SIGKILLs itself: exactly what `kill -9` does, which loses no acknowledged write (each is in the
 * WAL, and the next start recovers and syncs it). Without it a fault during that close (a failed WAL
 * write or fdatasync, a worker cut off inside the WAL's publish counter) could hang the daemon for
 * good.
 *
 * The countdown runs on a thread of its own, blocked in `Atomics.wait`: it fires even when the main
 * thread is stuck in a loop and its own timers never run. While armed it also keeps the process
 * alive: disarm it once the close has ended (the daemon then exits at once).
 *
 * @example
 * const watchdog = await armShutdownWatchdog(CLOSE_AFTER_DRAIN_TIMEOUT_MS);
 * if (!watchdog.counting) log("shutdown watchdog did not start");
 * try {
 *   await teardown(); // if this hangs, the process is killed when the time is up
 * } finally {
 *   watchdog.disarm();
 * }
 */
import { assert } from "../engine/errors.ts";

/**
 * How long the close may take after the drain timed out before the process kills itself: up to 5 s
 * for the I/O workers' threads to end (under Deno the whole 5 s: it reports no end), then the
 * engine's close (a running checkpoint gives up between shards, the WAL is synced).
 */
export const CLOSE_AFTER_DRAIN_TIMEOUT_MS = 15_000;
/** How long the watchdog's thread may take to start counting before the close goes on without it. */
const START_TIMEOUT_MS = 2_000;

/** An armed watchdog. */
export interface ShutdownWatchdog {
  /** False if its thread failed to start, or was not counting within 2 s (the close goes on). */
  readonly counting: boolean;
  /** Stops the countdown and ends the watchdog's thread. */
  disarm(): void;
}

/**
 * Starts the watchdog's thread and resolves once it counts (or failed to start): unless
 * {@link ShutdownWatchdog.disarm} comes within `timeout_ms`, it then sends SIGKILL to this process.
 *
 * @example
 * const watchdog = await armShutdownWatchdog(15_000);
 */
export function armShutdownWatchdog(timeout_ms: number): Promise<ShutdownWatchdog> {
  assert(Number.isInteger(timeout_ms) && timeout_ms > 0, "watchdog timeout is a positive number of ms");
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL("./shutdown_watchdog_worker.ts", import.meta.url).href, {
    type: "module",
  });
  const disarm = () => {
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    worker.terminate();
  };
  return new Promise((resolve) => {
    const done = (counting: boolean) => {
      clearTimeout(timer);
      resolve({ counting, disarm });
    };
    const timer = setTimeout(() => done(false), START_TIMEOUT_MS);
    worker.addEventListener("message", () => done(true), { once: true });
    worker.addEventListener("error", () => done(false), { once: true });
    worker.postMessage({ flag, timeout_ms });
  });
}
