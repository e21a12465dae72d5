/**
 * Worker entry point of the shutdown watchdog (shutdown_watchdog.ts). Receives `{ flag, timeout_ms }`,
 * answers `{ counting: true }`, then waits on `flag[0]`: if nothing stores 1 there and wakes it within
 * `timeout_ms`, it writes why to stderr and SIGKILLs the whole process.
 */
import * as fs from "node:fs";

declare const self: Worker;

self.onmessage = (event: MessageEvent) => {
  const { flag, timeout_ms } = event.data as { flag: Int32Array; timeout_ms: number };
  self.postMessage({ counting: true });
  if (Atomics.wait(flag, 0, 0, timeout_ms) !== "timed-out") return;
  fs.writeSync(
    2,
    `${new Date().toISOString()} shutdown: the close did not end within ${timeout_ms} ms of the drain timeout; ` +
      "killing the process (SIGKILL, as kill -9: the next start recovers from the WAL)\n",
  );
  process.kill(process.pid, "SIGKILL");
};
