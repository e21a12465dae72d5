import { describe, expect, test } from "bun:test";
import { LOCK_GIVE_UP_CHECK_MS, lock, lockUnless, tryLock, unlock } from "../../src/engine/locks.ts";

function startWorker(): Worker {
  return new Worker(new URL("./locks-worker.ts", import.meta.url).href, { type: "module" });
}

/** Control words: 0 the lock, 1 the plain counter, 2 the start flag the workers wait on. */
function newControl(): SharedArrayBuffer {
  return new SharedArrayBuffer(3 * 4);
}

/** Starts a worker on `control`; resolves `ready`, then `done` with its contended-lock count. */
function run(
  control: SharedArrayBuffer,
  iterations: number,
): { ready: Promise<void>; done: Promise<number> } {
  const worker = startWorker();
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  const done = new Promise<number>((resolve, reject) => {
    worker.onmessage = (event) => (event.data === "ready" ? onReady() : resolve(event.data.contended));
    worker.onerror = (event) => reject(new Error(event.message));
  }).finally(() => worker.terminate());
  worker.postMessage({ control, iterations });
  return { ready, done };
}

function start(words: Int32Array): void {
  Atomics.store(words, 2, 1);
  Atomics.notify(words, 2);
}

describe("futex mutex", () => {
  test("tryLock takes a free lock only; unlock frees it", () => {
    const words = new Int32Array(new SharedArrayBuffer(8));
    expect(tryLock(words, 0)).toBe(true);
    expect(Atomics.load(words, 0)).toBe(1);
    expect(tryLock(words, 0)).toBe(false);
    unlock(words, 0);
    expect(Atomics.load(words, 0)).toBe(0);
    lock(words, 0);
    expect(tryLock(words, 0)).toBe(false);
    unlock(words, 0);
    expect(tryLock(words, 0)).toBe(true);
    unlock(words, 0);
  });

  test("unlock of a free lock is an invariant violation", () => {
    const words = new Int32Array(new SharedArrayBuffer(8));
    expect(() => unlock(words, 0)).toThrow(/unlock of a lock that is not held/);
  });

  test("lockUnless takes a free lock without asking give_up", () => {
    const words = new Int32Array(new SharedArrayBuffer(8));
    let asked = 0;
    expect(lockUnless(words, 0, () => ++asked > 0)).toBe(true);
    expect(asked).toBe(0);
    expect(tryLock(words, 0)).toBe(false);
    unlock(words, 0);
    expect(Atomics.load(words, 0)).toBe(0);
  });

  test("lockUnless on a lock that is never released sleeps between questions, then gives up", () => {
    const words = new Int32Array(new SharedArrayBuffer(8));
    lock(words, 0); // held by a holder that will not come back (this thread, which now waits)
    let asked = 0;
    const started_ms = performance.now();
    expect(lockUnless(words, 0, () => ++asked > 2)).toBe(false);
    expect(asked).toBe(3);
    // Two sleeps of LOCK_GIVE_UP_CHECK_MS between the three questions (timers may end a little early).
    expect(performance.now() - started_ms).toBeGreaterThan(1.5 * LOCK_GIVE_UP_CHECK_MS);
    // Still held, now marked as having waiters; the holder's unlock frees it.
    expect(Atomics.load(words, 0)).toBe(2);
    unlock(words, 0);
    expect(lockUnless(words, 0, () => true)).toBe(true);
    unlock(words, 0);
  });

  test("a waiter sleeps on a held lock and is woken by unlock", async () => {
    const control = newControl();
    const words = new Int32Array(control);
    lock(words, 0);
    start(words);
    const { done } = run(control, 1);
    // The worker marks the word 2 (locked + waiters) before it sleeps; spin until we observe it.
    const deadline_ms = performance.now() + 10_000;
    while (Atomics.load(words, 0) !== 2) {
      if (performance.now() > deadline_ms) throw new Error("worker never waited on the lock");
    }
    expect(words[1]).toBe(0);
    unlock(words, 0);
    await done;
    expect(Atomics.load(words, 1)).toBe(1);
    expect(Atomics.load(words, 0)).toBe(0);
  });

  test("4 workers × 100k plain increments under lock() lose no update", async () => {
    const control = newControl();
    const words = new Int32Array(control);
    const iterations = 100_000;
    const runs = Array.from({ length: 4 }, () => run(control, iterations));
    await Promise.all(runs.map((r) => r.ready));
    start(words);
    const contended = await Promise.all(runs.map((r) => r.done));
    expect(Atomics.load(words, 1)).toBe(4 * iterations);
    // The workers really overlapped, so an unprotected increment could have been lost.
    expect(contended.reduce((a, b) => a + b)).toBeGreaterThan(0);
    expect(Atomics.load(words, 0)).toBe(0);
  });
});
