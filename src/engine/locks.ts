/**
 * Futex-style mutex over one Int32 word of shared memory (Drepper, "Futexes Are Tricky", mutex 2),
 * usable by every Worker that holds a view of the same SharedArrayBuffer. Word states:
 * `0` free, `1` locked, `2` locked with (possible) waiters. An uncontended lock/unlock pair is one
 * compare-exchange plus one exchange; `Atomics.notify` is called only when someone may be waiting.
 *
 * The arena uses one such word per size class and one for its bump region; the table uses them for
 * its shards. Not re-entrant, no owner check: unlocking a word you did not lock is a bug.
 *
 * @example
 * const words = new Int32Array(new SharedArrayBuffer(8)); // word 0: lock, word 1: guarded counter
 * lock(words, 0);
 * try { words[1]! += 1; } finally { unlock(words, 0); }
 */
import { assert } from "./errors.ts";

const UNLOCKED = 0;
const LOCKED = 1;
const LOCKED_WAITERS = 2;

/** Compare-exchange attempts before a contended `lock` sleeps in `Atomics.wait`. */
const SPIN_LIMIT = 100;

/**
 * Takes the lock at `i32[index]` without blocking. Returns `true` if this call took it.
 *
 * @example
 * if (tryLock(words, 0)) { try { work(); } finally { unlock(words, 0); } }
 */
export function tryLock(i32: Int32Array, index: number): boolean {
  return Atomics.compareExchange(i32, index, UNLOCKED, LOCKED) === UNLOCKED;
}

/**
 * Takes the lock at `i32[index]`: spins briefly, then sleeps in `Atomics.wait` until woken by `unlock`.
 * Blocks the calling thread (the Bun and Deno main threads allow `Atomics.wait`).
 *
 * @example
 * lock(words, 0);
 * try { words[1]! += 1; } finally { unlock(words, 0); }
 */
export function lock(i32: Int32Array, index: number): void {
  if (Atomics.compareExchange(i32, index, UNLOCKED, LOCKED) !== UNLOCKED) lockContended(i32, index);
}

/** How long {@link lockUnless} sleeps between two looks at its `give_up` condition. */
export const LOCK_GIVE_UP_CHECK_MS = 100;

/**
 * Takes the lock at `i32[index]` like {@link lock}, but once its brief spin failed it asks
 * `give_up()` before each sleep (so at once, then every LOCK_GIVE_UP_CHECK_MS) and returns `false`
 * (without the lock) when that says yes. For a waiter that must not wait forever on a holder that
 * may be gone (a thread terminated inside its critical section at shutdown). Returns `true` if this
 * call took the lock.
 *
 * @example
 * if (!lockUnless(words, 0, () => stopping)) throw new Error("gave up");
 * try { words[1]! += 1; } finally { unlock(words, 0); }
 */
export function lockUnless(i32: Int32Array, index: number, give_up: () => boolean): boolean {
  return (
    Atomics.compareExchange(i32, index, UNLOCKED, LOCKED) === UNLOCKED || lockContended(i32, index, give_up)
  );
}

/**
 * The slow path of {@link lock} and {@link lockUnless}, kept apart so the fast path stays small
 * enough to inline. Without `give_up` it sleeps until woken and always takes the lock.
 */
function lockContended(i32: Int32Array, index: number, give_up?: () => boolean): boolean {
  for (let spin = 0; spin < SPIN_LIMIT; spin++) {
    if (Atomics.load(i32, index) === UNLOCKED && tryLock(i32, index)) return true;
  }
  // Announce a waiter; whoever unlocks will notify. We own the lock once the old state was UNLOCKED,
  // and leave it marked LOCKED_WAITERS because other sleepers may remain. A waiter that gives up
  // leaves it so too, which costs the holder one needless notify.
  const sleep_ms = give_up === undefined ? Number.POSITIVE_INFINITY : LOCK_GIVE_UP_CHECK_MS;
  let state = Atomics.exchange(i32, index, LOCKED_WAITERS);
  while (state !== UNLOCKED) {
    if (give_up?.()) return false;
    Atomics.wait(i32, index, LOCKED_WAITERS, sleep_ms);
    state = Atomics.exchange(i32, index, LOCKED_WAITERS);
  }
  return true;
}

/**
 * Releases the lock at `i32[index]`, waking one sleeper if any may be waiting.
 * Asserts the lock was held.
 *
 * @example
 * lock(words, 0);
 * unlock(words, 0);
 */
export function unlock(i32: Int32Array, index: number): void {
  const state = Atomics.exchange(i32, index, UNLOCKED);
  assert(state === LOCKED || state === LOCKED_WAITERS, "unlock of a lock that is not held");
  if (state === LOCKED_WAITERS) Atomics.notify(i32, index, 1);
}
