/**
 * Worker of the mutex tests. Posts `"ready"`, sleeps until start word 2 is non-zero (so all workers
 * run at once), then `iterations` times takes lock word 0 and increments the plain (non-atomic)
 * counter in word 1, and posts `{ contended }`: how often it found the lock taken.
 */
import { lock, tryLock, unlock } from "../../src/engine/locks.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<{ control: SharedArrayBuffer; iterations: number }>) => {
  const words = new Int32Array(event.data.control);
  self.postMessage("ready");
  Atomics.wait(words, 2, 0);
  let contended = 0;
  for (let i = 0; i < event.data.iterations; i++) {
    if (!tryLock(words, 0)) {
      contended++;
      lock(words, 0);
    }
    const value = words[1]!; // read and write apart: a lost update shows if the lock fails
    words[1] = value + 1;
    unlock(words, 0);
  }
  self.postMessage({ contended });
};
