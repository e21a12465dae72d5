/**
 * The last resort of a shutdown that went wrong. Once the drain has timed out (`--shutdown-timeout`),
 * the rest of the close — I/O workers terminated, a running checkpoint abandoned, the WAL made
 * durable, files removed — must end within {@link CLOSE_AFTER_DRAIN_TIMEOUT_MS}, or the process
 * SIGKILLs itself: exactly what `kill -9` does, which loses no acknowledged write (the next start
 * recovers from the WAL). Without it a fault during that close (a failed WAL write or fdatasync, a
 * worker cut off inside the WAL's publish counter) could leave the daemon hung for good.
 *
 * The timer runs on a thread of its own, blocked in `Atomics.wait`: it fires even when the main
 * thread is stuck in a loop and its own timers never run.
 *
 * @example
 * const watchdog = await armShutdownWatchdog(CLOSE_AFTER_DRAIN_TIMEOUT_MS);
 * await teardown(...);   // if this hangs, the process is killed after 10 s
 * watchdog.disarm();
 */
import { assert } from "../engine/errors.ts";

/** How long the close may take after the drain timed out before the process kills itself. */
export const CLOSE_AFTER_DRAIN_TIMEOUT_MS = 10_000;

/** An armed watchdog: {@link disarm} it once the close has ended. */
export interface ShutdownWatchdog {
  /** Stops the countdown and ends the watchdog's thread. */
  disarm(): void;
}

/**
 * Starts the watchdog's thread and resolves once it is counting: from then on, unless
 * {@link ShutdownWatchdog.disarm} comes within `timeout_ms`, it writes one line to stderr and sends
 * SIGKILL to this process.
 *
 * @example
 * const watchdog = await armShutdownWatchdog(10_000);
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
    worker.addEventListener("message", () => resolve({ disarm }), { once: true });
    worker.postMessage({ flag, timeout_ms });
  });
}
