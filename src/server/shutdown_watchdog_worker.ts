/**
 * Worker entry point of the shutdown watchdog (shutdown_watchdog.ts). Receives `{ flag, timeout_ms }`,
 * answers `{ counting: true }`, then waits on `flag[0]`: unless something stores 1 there and wakes it
 * within `timeout_ms`, it SIGKILLs the whole process. It writes nothing first: a write to a stderr
 * pipe that is full or closed could block or throw, and the kill must not depend on it (the daemon
 * logged the bound when it armed the watchdog).
 */
declare const self: Worker;

export {}; // a module: its `self` is this file's own declaration

self.onmessage = (event: MessageEvent) => {
  const { flag, timeout_ms } = event.data as { flag: Int32Array; timeout_ms: number };
  self.postMessage({ counting: true });
  if (Atomics.wait(flag, 0, 0, timeout_ms) === "timed-out") process.kill(process.pid, "SIGKILL");
};
