/**
 * Waits, on one thread, for the LSNs of that thread's writes to become visible. One queue per thread
 * (LSNs are reserved in order on a thread, so it is FIFO) and at most one `Atomics.waitAsync` on the
 * WAL buffer's publish word at a time, however many writes are in flight.
 *
 * A write's promise resolves when its LSN is visible, and rejects with UnavailableError when its
 * record was rolled back after a write error (its failure epoch ended below it) or the log stopped.
 *
 * While writes wait, the thread polls once per event-loop turn (`setImmediate`), and only sleeps in
 * `Atomics.waitAsync` once `spin_us` have passed since the window began: at the first re-arm after one
 * of its writes settled (or at its first wait), so while writes keep settling it keeps polling. On a busy server a
 * sleeping event loop pays a wake-up for each publish, and another for each socket that becomes
 * readable while it sleeps; with fsync `always` (a publish per fdatasync) those wake-ups, not the
 * fdatasync, set the pace (PROFILING.md, fourteenth session). InnoDB's redo log waits spin the same
 * way before they sleep (`innodb_log_wait_for_flush_spin_hwm`). The poll costs CPU only while this
 * thread has writes waiting, and for at most `spin_us` without one settling.
 *
 * @example
 * const visibility = new Visibility(buffer, { spin_us: 300 });
 * await visibility.wait(lsn, epoch); // epoch = buffer.epoch() read when the LSN was reserved
 */
import { setImmediate } from "node:timers";
import { assert, UnavailableError } from "../errors.ts";
import { WAL_STOPPED, type WalBuffer } from "./wal_buffer.ts";

interface Waiter {
  readonly lsn: number;
  readonly epoch: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/** Longest single waitAsync; the queue is re-polled after it. */
const WAIT_SLICE_MS = 1000;

/** Options of a {@link Visibility}. */
export interface VisibilityOptions {
  /** Inline (simulation) mode: nothing waits asynchronously; the caller calls poll(). */
  readonly inline?: boolean;
  /** Poll once per event-loop turn for this long without a write settling, then sleep; 0 = never poll. */
  readonly spin_us: number;
  /** The clock of the spin's window (tests); default `performance.now`. */
  readonly now_ms?: () => number;
}

export class Visibility {
  private readonly buffer: WalBuffer;
  private readonly queue: Waiter[] = [];
  private head = 0;
  private armed = false;
  private readonly inline: boolean;
  private readonly spin_ms: number;
  private readonly now_ms: () => number;
  /** Writes settled so far. */
  private settled = 0;
  /** `settled` when the spin's window began (-1: none began yet), and when it began (`now_ms`). */
  private spin_settled = -1;
  private spin_since_ms = 0;
  private readonly on_turn = (): void => {
    this.armed = false;
    this.poll();
  };

  constructor(buffer: WalBuffer, options: VisibilityOptions) {
    const { spin_us } = options;
    assert(Number.isInteger(spin_us) && spin_us >= 0, "spin_us is a count of microseconds");
    this.buffer = buffer;
    this.inline = options.inline ?? false;
    this.spin_ms = spin_us / 1000;
    this.now_ms = options.now_ms ?? (() => performance.now());
  }

  /** Resolves once `lsn` (reserved in failure epoch `epoch`) is visible. */
  wait(lsn: number, epoch: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ lsn, epoch, resolve, reject });
      this.poll();
    });
  }

  /** Settles every waiter whose outcome is known; re-arms the async wait if any remain. */
  poll(): void {
    // The publish word is read first: a publish after this point changes it, so the wait armed
    // below with this value cannot miss it.
    const seq = this.buffer.publishSeq();
    const visible = this.buffer.visibleLsn();
    const epoch = this.buffer.epoch();
    const stopped = this.buffer.state() === WAL_STOPPED;
    while (this.head < this.queue.length) {
      const w = this.queue[this.head]!;
      const outcome = settle(w.lsn, w.epoch, visible, epoch, stopped, this.buffer);
      if (outcome === "pending") break;
      this.head++;
      this.settled++;
      if (outcome === "ok") w.resolve();
      else w.reject(this.failure());
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (this.head < this.queue.length) this.arm(seq);
  }

  /**
   * What became of `lsn` (reserved in failure epoch `epoch`) so far, without waiting: visible
   * ("ok"), rolled back or the log stopped ("failed"), or not yet known ("pending").
   *
   * @example
   * if (visibility.outcome(lsn, epoch) === "failed") throw visibility.failure();
   */
  outcome(lsn: number, epoch: number): Outcome {
    const stopped = this.buffer.state() === WAL_STOPPED;
    return settle(lsn, epoch, this.buffer.visibleLsn(), this.buffer.epoch(), stopped, this.buffer);
  }

  /** The error a failed write is rejected with. */
  failure(): UnavailableError {
    return new UnavailableError(`write not applied: ${this.buffer.lastError() || "write-ahead log failed"}`);
  }

  /** Writes waiting. */
  pending(): number {
    return this.queue.length - this.head;
  }

  private arm(seq: number): void {
    if (this.armed || this.inline) return;
    if (this.spinning()) {
      this.armed = true;
      setImmediate(this.on_turn);
      return;
    }
    const promise = this.buffer.waitPublishAsync(seq, WAIT_SLICE_MS);
    if (promise === undefined) {
      queueMicrotask(() => this.poll());
      return;
    }
    this.armed = true;
    promise.then(this.on_turn);
  }

  /** True while the spin's window, restarted by each settled write, is less than `spin_ms` old. */
  private spinning(): boolean {
    if (this.spin_ms === 0) return false;
    const now_ms = this.now_ms();
    if (this.settled !== this.spin_settled) {
      this.spin_settled = this.settled;
      this.spin_since_ms = now_ms;
    }
    return now_ms - this.spin_since_ms < this.spin_ms;
  }
}

type Outcome = "ok" | "failed" | "pending";

function settle(
  lsn: number,
  lsn_epoch: number,
  visible: number,
  epoch: number,
  stopped: boolean,
  buffer: WalBuffer,
): Outcome {
  if (lsn_epoch !== epoch) return lsn <= buffer.failureVisibleLsn(lsn_epoch) ? "ok" : "failed";
  if (lsn <= visible) return "ok";
  return stopped ? "failed" : "pending";
}
