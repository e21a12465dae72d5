/**
 * The shutdown watchdog (src/server/shutdown_watchdog.ts), in child processes: disarmed in time it
 * does nothing; not disarmed it SIGKILLs its process even while the main thread is blocked.
 * The daemon's own test is in lifecycle.test.ts ("a close that hangs after the drain timed out").
 */
import { describe, expect, test } from "bun:test";
import * as path from "node:path";

const BUN = process.execPath;
const MODULE = path.resolve(import.meta.dir, "../../src/server/shutdown_watchdog.ts");
const TIMEOUT_MS = 200;

/** Runs `then` in a child after arming a watchdog of TIMEOUT_MS; prints "survived" if it gets to. */
async function child(then: string) {
  const started_ms = performance.now();
  const code =
    `const { armShutdownWatchdog } = await import(${JSON.stringify(MODULE)});\n` +
    `const watchdog = await armShutdownWatchdog(${TIMEOUT_MS});\n${then}\nconsole.log("survived");`;
  const proc = Bun.spawn([BUN, "-e", code], { stdout: "pipe", stderr: "pipe" });
  const [exit, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { exit, signal: proc.signalCode, stdout, stderr, elapsed_ms: performance.now() - started_ms };
}

describe("shutdown watchdog", () => {
  test("disarmed before its timeout: the process lives on", async () => {
    // Outliving the timeout three times over shows that nothing fires: there is no event for that.
    const r = await child(
      `console.log(watchdog.counting);\nwatchdog.disarm();\nawait Bun.sleep(${3 * TIMEOUT_MS});`,
    );
    expect({ ...r, elapsed_ms: 0 }).toEqual({
      exit: 0,
      signal: null,
      stdout: "true\nsurvived\n",
      stderr: "",
      elapsed_ms: 0,
    });
  });

  test("not disarmed: SIGKILL, though the main thread is blocked", async () => {
    // The main thread blocks for 30 s in Atomics.wait: none of its own timers could run.
    const r = await child("Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30_000);");
    expect(r.signal).toBe("SIGKILL");
    expect(r.stdout).toBe("");
    expect(r.elapsed_ms).toBeGreaterThanOrEqual(TIMEOUT_MS); // a timer never fires early
  });
});
